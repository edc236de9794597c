// Public channels: subscribe, events triggered with the pusher server SDK, socket_id exclusion.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  echoListen, eventually, getJson, pusherError, recordChannel, recordErrors, subscribed, uid, useServer,
  vacated, waitEvent, waitState,
} from '../lib/helpers.mjs';

describe('public channels', () => {
  const env = useServer();

  it('subscribes: pusher:subscription_succeeded fires and channel.subscribed is true', async (t) => {
    const p = await env.kit(t).connected();
    const name = uid('pub-');
    const [ch, data] = await subscribed(p, name);
    assert.equal(ch.subscribed, true);
    assert.equal(ch.name, name);
    assert.deepEqual(data, {});
    assert.deepEqual(p.allChannels().map((c) => c.name), [name]);
  });

  it('receives an object triggered by the SDK as the same object', async (t) => {
    const name = uid('pub-');
    const { ch } = await env.kit(t).subscriber(name);
    const got = waitEvent(ch, 'order-shipped');
    const res = await env.sdk.trigger(name, 'order-shipped', { id: 17, items: ['a', 'b'], total: 9.5, gift: false });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    assert.deepEqual(await got, { id: 17, items: ['a', 'b'], total: 9.5, gift: false });
  });

  it('relays string data verbatim (non-JSON text and unicode)', async (t) => {
    const name = uid('pub-');
    const { rec } = await env.kit(t).subscriber(name);
    await env.sdk.trigger(name, 'text', 'hello, world');
    await env.sdk.trigger(name, 'text', 'héllo ✓ 日本 🎉 "quoted" \\ back');
    await env.sdk.trigger(name, 'text', '{"already":"json"}');
    await rec.count(3);
    assert.deepEqual(rec.items.map((e) => e.data), [
      'hello, world',
      'héllo ✓ 日本 🎉 "quoted" \\ back',
      { already: 'json' },
    ]);
  });

  it('delivers events in the order they were triggered', async (t) => {
    const name = uid('pub-');
    const { rec } = await env.kit(t).subscriber(name);
    for (let i = 0; i < 20; i++) await env.sdk.trigger(name, 'seq', { i });
    await rec.count(20);
    assert.deepEqual(rec.items.map((e) => e.data.i), Array.from({ length: 20 }, (_, i) => i));
  });

  it('multi-channel trigger reaches each channel exactly once', async (t) => {
    const k = env.kit(t);
    const a = await k.connected();
    const b = await k.connected();
    const [c1, c2, c3] = [uid('multi-'), uid('multi-'), uid('multi-')];
    const recs = [];
    for (const [p, name] of [[a, c1], [a, c2], [b, c3]]) recs.push(recordChannel((await subscribed(p, name))[0]));
    await env.sdk.trigger([c1, c2, c3], 'fanout', { to: 'all' });
    await env.sdk.trigger([c1, c2, c3], 'done', 1);
    for (const r of recs) {
      await r.count(2);
      assert.deepEqual(r.items.map((e) => [e.event, e.data]), [['fanout', { to: 'all' }], ['done', 1]]);
    }
  });

  it('triggerBatch delivers every event to its channel, in order', async (t) => {
    const p = await env.kit(t).connected();
    const [n1, n2] = [uid('batch-'), uid('batch-')];
    const [r1, r2] = [recordChannel(p.subscribe(n1)), recordChannel(p.subscribe(n2))];
    await Promise.all([n1, n2].map((n) => waitEvent(p.channel(n), 'pusher:subscription_succeeded')));
    const res = await env.sdk.triggerBatch([
      { channel: n1, name: 'e1', data: { n: 1 } },
      { channel: n2, name: 'e2', data: 'two' },
      { channel: n1, name: 'e3', data: { n: 3 } },
    ]);
    assert.deepEqual(await res.json(), {});
    await r1.count(2);
    await r2.count(1);
    assert.deepEqual(r1.items.map((e) => [e.event, e.data]), [['e1', { n: 1 }], ['e3', { n: 3 }]]);
    assert.deepEqual(r2.items.map((e) => [e.event, e.data]), [['e2', 'two']]);
  });

  it('trigger with socket_id skips that connection only', async (t) => {
    const name = uid('excl-');
    const [a, b] = await env.kit(t).subscribers(name, 2);
    await env.sdk.trigger(name, 'not-for-a', { x: 1 }, { socket_id: a.p.connection.socket_id });
    await env.sdk.trigger(name, 'for-everyone', { x: 2 });
    await a.rec.count(1);
    await b.rec.count(2);
    // Events on one connection arrive in order: seeing the second one without the first proves
    // the first was never sent to A.
    assert.deepEqual(a.rec.items.map((e) => e.event), ['for-everyone']);
    assert.deepEqual(b.rec.items.map((e) => [e.event, e.data]), [['not-for-a', { x: 1 }], ['for-everyone', { x: 2 }]]);
  });

  it('Laravel toOthers(): the app reads X-Socket-ID from Echo and the sender is excluded', async (t) => {
    const k = env.kit(t);
    const sender = k.echo();
    const other = k.echo();
    await waitState(sender.connector.pusher, 'connected');
    await waitState(other.connector.pusher, 'connected');
    const room = uid('room-');
    const senderGot = [];
    const otherGot = [];
    await Promise.all([
      new Promise((r) => sender.channel(room).subscribed(r).listen('.MessagePosted', (e) => senderGot.push(e))),
      new Promise((r) => other.channel(room).subscribed(r).listen('.MessagePosted', (e) => otherGot.push(e))),
    ]);
    const otherNext = waitEvent(other.connector.pusher.channel(room), 'MessagePosted');
    // What axios does with Echo's interceptor: X-Socket-ID = echo.socketId()
    const res = await fetch(`${env.auth.url}/api/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Socket-ID': sender.socketId() },
      body: JSON.stringify({ channel: room, event: 'MessagePosted', data: { body: 'hi', author: 'sender' } }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await otherNext, { body: 'hi', author: 'sender' });
    // Then a broadcast to everyone; the sender sees only that one.
    const senderNext = waitEvent(sender.connector.pusher.channel(room), 'MessagePosted');
    await env.sdk.trigger(room, 'MessagePosted', { body: 'all' });
    assert.deepEqual(await senderNext, { body: 'all' });
    await eventually(async () => otherGot.length, (n) => n === 2, { what: 'other to get 2 events' });
    assert.deepEqual(senderGot, [{ body: 'all' }]);
    assert.deepEqual(otherGot, [{ body: 'hi', author: 'sender' }, { body: 'all' }]);
  });

  it('Echo .listen() with the default namespace matches App.Events.* event names', async (t) => {
    const echo = env.kit(t).echo();
    const name = uid('orders-');
    const { next } = await echoListen(echo.channel(name), (ch, cb) => ch.listen('OrderShipped', cb));
    await env.sdk.trigger(name, 'App\\Events\\OrderShipped', { order: { id: 5 } });
    assert.deepEqual(await next, { order: { id: 5 } });
  });

  it('after unsubscribe no more events arrive and the channel is vacated', async (t) => {
    const name = uid('unsub-');
    const { p: a, rec } = await env.kit(t).subscriber(name);
    await env.sdk.trigger(name, 'before', 1);
    await rec.count(1);
    a.unsubscribe(name);
    assert.deepEqual(await vacated(env.sdk, name), { occupied: false });
    // Subscribe to a second channel and trigger on both: only the second arrives.
    const other = uid('unsub-');
    const [ch2] = await subscribed(a, other);
    const rec2 = recordChannel(ch2);
    await env.sdk.trigger([name, other], 'after', 2);
    await rec2.count(1);
    assert.deepEqual(rec.items.map((e) => e.event), ['before']);
  });

  it('bind_global on the client sees event name and data for every channel', async (t) => {
    const p = await env.kit(t).connected();
    const [n1, n2] = [uid('glob-'), uid('glob-')];
    await subscribed(p, n1);
    await subscribed(p, n2);
    const seen = [];
    const done = new Promise((resolve) => p.bind_global((event, data) => {
      if (event.startsWith('pusher')) return;
      seen.push([event, data]);
      if (seen.length === 2) resolve();
    }));
    await env.sdk.trigger(n1, 'g1', { c: 1 });
    await env.sdk.trigger(n2, 'g2', { c: 2 });
    await done;
    assert.deepEqual(seen, [['g1', { c: 1 }], ['g2', { c: 2 }]]);
  });

  it('trigger with info=subscription_count reports the subscriber count', async (t) => {
    const name = uid('count-');
    await env.kit(t).subscribers(name, 2);
    const res = await env.sdk.trigger(name, 'counted', {}, { info: 'subscription_count' });
    assert.deepEqual(await res.json(), { channels: { [name]: { subscription_count: 2 } } });
  });

  it('an event of exactly 10240 bytes is delivered intact', async (t) => {
    const name = uid('big-');
    const { ch } = await env.kit(t).subscriber(name);
    const data = 'x'.repeat(10240);
    const got = waitEvent(ch, 'big');
    await env.sdk.trigger(name, 'big', data);
    const received = await got;
    assert.equal(received.length, 10240);
    assert.equal(received, data);
  });

  it('fan-out: 40 pusher-js clients on one channel all receive one trigger', async (t) => {
    const k = env.kit(t);
    const name = uid('fan-');
    const clients = await Promise.all(Array.from({ length: 40 }, () => k.connected()));
    const channels = await Promise.all(clients.map((p) => subscribed(p, name).then(([ch]) => ch)));
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 40 });
    const got = Promise.all(channels.map((ch) => waitEvent(ch, 'broadcast')));
    await env.sdk.trigger(name, 'broadcast', { n: 40 });
    const all = await got;
    assert.equal(all.length, 40);
    for (const d of all) assert.deepEqual(d, { n: 40 });
  });

  it('unsubscribe then subscribe again on the same connection works', async (t) => {
    const name = uid('resub-');
    const { p } = await env.kit(t).subscriber(name);
    p.unsubscribe(name);
    const [ch] = await subscribed(p, name);
    assert.equal(ch.subscribed, true);
    const got = waitEvent(ch, 'again');
    await env.sdk.trigger(name, 'again', { ok: 1 });
    assert.deepEqual(await got, { ok: 1 });
  });

  it('a channel name over 164 characters is refused with pusher:error', async (t) => {
    const p = await env.kit(t).connected();
    const errors = recordErrors(p);
    const name = 'long-' + 'x'.repeat(160);
    assert.equal(name.length, 165);
    p.subscribe(name);
    assert.deepEqual(await pusherError(errors), {
      message: `Invalid channel name "${name}": must be at most 164 characters (got 165)`,
      code: null,
    });
    assert.equal(p.channel(name).subscribed, false);
  });

  it('Echo leaveChannel() unsubscribes: the channel is vacated', async (t) => {
    const echo = env.kit(t).echo();
    const name = uid('leave-');
    await new Promise((r) => echo.channel(name).subscribed(r));
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`), { occupied: true });
    echo.leaveChannel(name);
    assert.deepEqual(await vacated(env.sdk, name), { occupied: false });
  });

  it('triggerBatch items honour their own socket_id', async (t) => {
    const name = uid('batch-excl-');
    const [a, b] = await env.kit(t).subscribers(name, 2);
    await env.sdk.triggerBatch([
      { channel: name, name: 'skip-a', data: 1, socket_id: a.p.connection.socket_id },
      { channel: name, name: 'skip-b', data: 2, socket_id: b.p.connection.socket_id },
      { channel: name, name: 'all', data: 3 },
    ]);
    await a.rec.count(2);
    await b.rec.count(2);
    assert.deepEqual(a.rec.items.map((e) => e.event), ['skip-b', 'all']);
    assert.deepEqual(b.rec.items.map((e) => e.event), ['skip-a', 'all']);
  });

  it('an event sent right after subscription_succeeded is not held back (no Nagle/delayed-ACK stall)', async (t) => {
    // A server that leaves Nagle's algorithm on holds a small frame written right after the
    // previous one until the client ACKs it, and Linux delays that ACK by 40 ms.
    const k = env.kit(t);
    const delays = [];
    for (let i = 0; i < 7; i++) {
      const name = uid('lat-');
      const { p, ch } = await k.subscriber(name);
      const got = waitEvent(ch, 'e');
      await env.sdk.trigger(name, 'e', { i });
      const t0 = performance.now();
      await got;
      delays.push(performance.now() - t0);
      p.disconnect();
    }
    delays.sort((a, b) => a - b);
    const median = delays[3];
    assert.ok(median < 20, `median delivery ${median.toFixed(1)} ms after the REST reply; all: ${delays.map((d) => d.toFixed(1)).join(', ')}`);
  });
});

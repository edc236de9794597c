// Public channels: subscribe, events triggered with the pusher server SDK, socket_id exclusion.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  kit, recordChannel, sharedServer, startAuthServer, serverSdk, subscribed, uid, waitEvent,
  waitState, getJson, eventually, recordErrors,
} from '../lib/helpers.mjs';

describe('public channels', () => {
  let server, auth, sdk;
  before(async () => {
    server = await sharedServer();
    auth = await startAuthServer(server.port);
    sdk = serverSdk(server.port);
  });
  after(async () => {
    await auth.close();
    await server.stop();
  });

  it('subscribes: pusher:subscription_succeeded fires and channel.subscribed is true', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('pub-');
    const [ch, data] = await subscribed(p, name);
    assert.equal(ch.subscribed, true);
    assert.equal(ch.name, name);
    assert.deepEqual(data, {});
    assert.deepEqual(p.allChannels().map((c) => c.name), [name]);
  });

  it('receives an object triggered by the SDK as the same object', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('pub-');
    const [ch] = await subscribed(p, name);
    const got = waitEvent(ch, 'order-shipped');
    const res = await sdk.trigger(name, 'order-shipped', { id: 17, items: ['a', 'b'], total: 9.5, gift: false });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    assert.deepEqual(await got, { id: 17, items: ['a', 'b'], total: 9.5, gift: false });
  });

  it('relays string data verbatim (non-JSON text and unicode)', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('pub-');
    const [ch] = await subscribed(p, name);
    const rec = recordChannel(ch);
    await sdk.trigger(name, 'text', 'hello, world');
    await sdk.trigger(name, 'text', 'héllo ✓ 日本 🎉 "quoted" \\ back');
    await sdk.trigger(name, 'text', '{"already":"json"}');
    await rec.count(3);
    assert.deepEqual(rec.items.map((e) => e.data), [
      'hello, world',
      'héllo ✓ 日本 🎉 "quoted" \\ back',
      { already: 'json' },
    ]);
  });

  it('delivers events in the order they were triggered', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('pub-');
    const [ch] = await subscribed(p, name);
    const rec = recordChannel(ch);
    for (let i = 0; i < 20; i++) await sdk.trigger(name, 'seq', { i });
    await rec.count(20);
    assert.deepEqual(rec.items.map((e) => e.data.i), Array.from({ length: 20 }, (_, i) => i));
  });

  it('multi-channel trigger reaches each channel exactly once', async (t) => {
    const k = kit(t, server);
    const a = await k.connected();
    const b = await k.connected();
    const [c1, c2, c3] = [uid('multi-'), uid('multi-'), uid('multi-')];
    const [a1] = await subscribed(a, c1);
    const [a2] = await subscribed(a, c2);
    const [b3] = await subscribed(b, c3);
    const ra = recordChannel(a1);
    const ra2 = recordChannel(a2);
    const rb = recordChannel(b3);
    await sdk.trigger([c1, c2, c3], 'fanout', { to: 'all' });
    await sdk.trigger([c1, c2, c3], 'done', 1);
    await ra.count(2);
    await ra2.count(2);
    await rb.count(2);
    for (const r of [ra, ra2, rb]) {
      assert.deepEqual(r.items.map((e) => [e.event, e.data]), [['fanout', { to: 'all' }], ['done', 1]]);
    }
  });

  it('triggerBatch delivers every event to its channel, in order', async (t) => {
    const p = await kit(t, server).connected();
    const [n1, n2] = [uid('batch-'), uid('batch-')];
    const [ch1] = await subscribed(p, n1);
    const [ch2] = await subscribed(p, n2);
    const r1 = recordChannel(ch1);
    const r2 = recordChannel(ch2);
    const res = await sdk.triggerBatch([
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
    const k = kit(t, server);
    const a = await k.connected();
    const b = await k.connected();
    const name = uid('excl-');
    const [cha] = await subscribed(a, name);
    const [chb] = await subscribed(b, name);
    const ra = recordChannel(cha);
    const rb = recordChannel(chb);
    await sdk.trigger(name, 'not-for-a', { x: 1 }, { socket_id: a.connection.socket_id });
    await sdk.trigger(name, 'for-everyone', { x: 2 });
    await ra.count(1);
    await rb.count(2);
    // Events on one connection arrive in order: seeing the second one without the first proves
    // the first was never sent to A.
    assert.deepEqual(ra.items.map((e) => e.event), ['for-everyone']);
    assert.deepEqual(rb.items.map((e) => [e.event, e.data]), [['not-for-a', { x: 1 }], ['for-everyone', { x: 2 }]]);
  });

  it('Laravel toOthers(): the app reads X-Socket-ID from Echo and the sender is excluded', async (t) => {
    const k = kit(t, server);
    const sender = k.echo({ auth });
    const other = k.echo({ auth });
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
    const res = await fetch(`${auth.url}/api/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Socket-ID': sender.socketId() },
      body: JSON.stringify({ channel: room, event: 'MessagePosted', data: { body: 'hi', author: 'sender' } }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await otherNext, { body: 'hi', author: 'sender' });
    // Then a broadcast to everyone; the sender sees only that one.
    const senderNext = waitEvent(sender.connector.pusher.channel(room), 'MessagePosted');
    await sdk.trigger(room, 'MessagePosted', { body: 'all' });
    assert.deepEqual(await senderNext, { body: 'all' });
    await eventually(async () => otherGot.length, (n) => n === 2, { what: 'other to get 2 events' });
    assert.deepEqual(senderGot, [{ body: 'all' }]);
    assert.deepEqual(otherGot, [{ body: 'hi', author: 'sender' }, { body: 'all' }]);
  });

  it('Echo .listen() with the default namespace matches App.Events.* event names', async (t) => {
    const k = kit(t, server);
    const echo = k.echo({ auth });
    const name = uid('orders-');
    let got;
    await new Promise((ready) => {
      got = new Promise((resolve) => echo.channel(name).subscribed(ready).listen('OrderShipped', resolve));
    });
    await sdk.trigger(name, 'App\\Events\\OrderShipped', { order: { id: 5 } });
    assert.deepEqual(await got, { order: { id: 5 } });
  });

  it('after unsubscribe no more events arrive and the channel is vacated', async (t) => {
    const k = kit(t, server);
    const a = await k.connected();
    const name = uid('unsub-');
    const [ch] = await subscribed(a, name);
    const rec = recordChannel(ch);
    await sdk.trigger(name, 'before', 1);
    await rec.count(1);
    a.unsubscribe(name);
    const info = await eventually(() => getJson(sdk, `/channels/${name}`), (b) => b.occupied === false,
      { what: 'channel to be vacated' });
    assert.deepEqual(info, { occupied: false });
    // Subscribe to a second channel and trigger on both: only the second arrives.
    const other = uid('unsub-');
    const [ch2] = await subscribed(a, other);
    const rec2 = recordChannel(ch2);
    await sdk.trigger([name, other], 'after', 2);
    await rec2.count(1);
    assert.deepEqual(rec.items.map((e) => e.event), ['before']);
  });

  it('bind_global on the client sees event name and data for every channel', async (t) => {
    const p = await kit(t, server).connected();
    const [n1, n2] = [uid('glob-'), uid('glob-')];
    await subscribed(p, n1);
    await subscribed(p, n2);
    const seen = [];
    const done = new Promise((resolve) => p.bind_global((event, data) => {
      if (event.startsWith('pusher')) return;
      seen.push([event, data]);
      if (seen.length === 2) resolve();
    }));
    await sdk.trigger(n1, 'g1', { c: 1 });
    await sdk.trigger(n2, 'g2', { c: 2 });
    await done;
    assert.deepEqual(seen, [['g1', { c: 1 }], ['g2', { c: 2 }]]);
  });

  it('trigger with info=subscription_count reports the subscriber count', async (t) => {
    const k = kit(t, server);
    const name = uid('count-');
    await subscribed(await k.connected(), name);
    await subscribed(await k.connected(), name);
    const res = await sdk.trigger(name, 'counted', {}, { info: 'subscription_count' });
    assert.deepEqual(await res.json(), { channels: { [name]: { subscription_count: 2 } } });
  });

  it('an event of exactly 10240 bytes is delivered intact', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('big-');
    const [ch] = await subscribed(p, name);
    const data = 'x'.repeat(10240);
    const got = waitEvent(ch, 'big');
    await sdk.trigger(name, 'big', data);
    const received = await got;
    assert.equal(received.length, 10240);
    assert.equal(received, data);
  });

  it('fan-out: 40 pusher-js clients on one channel all receive one trigger', async (t) => {
    const k = kit(t, server);
    const name = uid('fan-');
    const clients = await Promise.all(Array.from({ length: 40 }, () => k.connected()));
    const channels = await Promise.all(clients.map((p) => subscribed(p, name).then(([ch]) => ch)));
    assert.deepEqual(await getJson(sdk, `/channels/${name}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 40 });
    const got = Promise.all(channels.map((ch) => waitEvent(ch, 'broadcast')));
    await sdk.trigger(name, 'broadcast', { n: 40 });
    const all = await got;
    assert.equal(all.length, 40);
    for (const d of all) assert.deepEqual(d, { n: 40 });
  });

  it('unsubscribe then subscribe again on the same connection works', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('resub-');
    await subscribed(p, name);
    p.unsubscribe(name);
    const [ch] = await subscribed(p, name);
    assert.equal(ch.subscribed, true);
    const got = waitEvent(ch, 'again');
    await sdk.trigger(name, 'again', { ok: 1 });
    assert.deepEqual(await got, { ok: 1 });
  });

  it('a channel name over 164 characters is refused with pusher:error', async (t) => {
    const p = await kit(t, server).connected();
    const errors = recordErrors(p);
    const name = 'long-' + 'x'.repeat(160);
    assert.equal(name.length, 165);
    p.subscribe(name);
    const err = await errors.find((e) => e.type === 'PusherError');
    assert.deepEqual(err.data, {
      message: `Invalid channel name "${name}": must be at most 164 characters (got 165)`,
      code: null,
    });
    assert.equal(p.channel(name).subscribed, false);
  });

  it('Echo leaveChannel() unsubscribes: the channel is vacated', async (t) => {
    const echo = kit(t, server).echo({ auth });
    const name = uid('leave-');
    await new Promise((r) => echo.channel(name).subscribed(r));
    assert.deepEqual(await getJson(sdk, `/channels/${name}`), { occupied: true });
    echo.leaveChannel(name);
    const info = await eventually(() => getJson(sdk, `/channels/${name}`), (b) => b.occupied === false,
      { what: 'channel to be vacated' });
    assert.deepEqual(info, { occupied: false });
  });

  it('triggerBatch items honour their own socket_id', async (t) => {
    const k = kit(t, server);
    const a = await k.connected();
    const b = await k.connected();
    const name = uid('batch-excl-');
    const [ca] = await subscribed(a, name);
    const [cb] = await subscribed(b, name);
    const ra = recordChannel(ca);
    const rb = recordChannel(cb);
    await sdk.triggerBatch([
      { channel: name, name: 'skip-a', data: 1, socket_id: a.connection.socket_id },
      { channel: name, name: 'skip-b', data: 2, socket_id: b.connection.socket_id },
      { channel: name, name: 'all', data: 3 },
    ]);
    await ra.count(2);
    await rb.count(2);
    assert.deepEqual(ra.items.map((e) => e.event), ['skip-b', 'all']);
    assert.deepEqual(rb.items.map((e) => e.event), ['skip-a', 'all']);
  });

  it('an event sent right after subscription_succeeded is not held back (no Nagle/delayed-ACK stall)', async (t) => {
    // A server that leaves Nagle's algorithm on holds a small frame written right after the
    // previous one until the client ACKs it, and Linux delays that ACK by 40 ms.
    const k = kit(t, server);
    const delays = [];
    for (let i = 0; i < 7; i++) {
      const p = await k.connected();
      const name = uid('lat-');
      const [ch] = await subscribed(p, name);
      const got = waitEvent(ch, 'e');
      await sdk.trigger(name, 'e', { i });
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

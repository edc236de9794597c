// Subscription counts: this file runs its own poxide whose default app has subscription_count = true
// (the second app keeps the default, off) and a webhook target for subscription_count only.
// pusher-js emits pusher:subscription_count on the channel and keeps channel.subscriptionCount.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  APP2, Recorder, getJson, recordChannel, recordMessages, serverSdk, sleep, startWebhookReceiver, subscribed,
  uid, useServer, waitEvent,
} from '../lib/helpers.mjs';

const ALICE = { id: 'alice', info: { name: 'Alice' } };
const BOB = { id: 'bob', info: { name: 'Bob' } };

const count = (n) => ({ subscription_count: n });

describe('subscription counts (subscription_count = true)', () => {
  let receiver;
  before(async () => {
    receiver = await startWebhookReceiver();
  });
  const env = useServer({
    own: () => ({ app: { subscription_count: true, webhooks: [{ url: receiver.url, event_types: ['subscription_count'] }] } }),
  });
  after(() => receiver.close());

  /** A connected client subscribing to `name`, its pusher:subscription_count events recorded from the start. */
  async function counting(k, name, opts) {
    const p = await k.connected(opts);
    const ch = p.subscribe(name);
    const counts = new Recorder();
    const times = [];
    ch.bind('pusher:subscription_count', (data) => {
      times.push(performance.now());
      counts.push(data);
    });
    await waitEvent(ch, 'pusher:subscription_succeeded');
    return { p, ch, counts, times };
  }

  /** The frames a client received, by event name, once a marker triggered on `name` arrived. */
  async function framesUntilMarker(msgs, name) {
    await env.sdk.trigger(name, 'marker', {});
    await msgs.find((m) => m.event === 'marker' && m.channel === name);
    return msgs.items.filter((m) => m.channel === name).map((m) => m.event);
  }

  it('pusher:subscription_count follows joins and leaves; channel.subscriptionCount holds it', async (t) => {
    const k = env.kit(t);
    const name = uid('room-');
    const a = await counting(k, name);
    assert.deepEqual(await a.counts.next(), count(1));
    assert.equal(a.ch.subscriptionCount, 1);
    const b = await counting(k, name);
    assert.deepEqual(await b.counts.next(), count(2));
    assert.deepEqual(await a.counts.next(), count(2));
    assert.equal(a.ch.subscriptionCount, 2);
    assert.equal(b.ch.subscriptionCount, 2);
    b.p.unsubscribe(name);
    assert.deepEqual(await a.counts.next(), count(1));
    assert.equal(a.ch.subscriptionCount, 1);
    const c = await counting(k, name);
    assert.deepEqual(await c.counts.next(), count(2));
    assert.deepEqual(await a.counts.next(), count(2));
    c.p.disconnect();
    assert.deepEqual(await a.counts.next(), count(1));
    assert.equal(a.ch.subscriptionCount, 1);
    assert.deepEqual(a.counts.items, [count(1), count(2), count(1), count(2), count(1)]);
    assert.deepEqual(b.counts.items, [count(2)]);
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 1 });
    // The webhook target asked for subscription_count only: the same sequence, nothing else.
    a.p.disconnect();
    const hooks = await receiver.waitFor([name], 6);
    assert.deepEqual(hooks, [1, 2, 1, 2, 1, 0].map((n) => ({ name: 'subscription_count', channel: name, subscription_count: n })));
    assert.ok(receiver.requestsFor([name]).every((r) => r.valid));
  });

  it('a joiner gets its count right after subscription_succeeded, and after the cached event', async (t) => {
    const k = env.kit(t);
    const empty = uid('cache-empty-');
    const full = uid('cache-full-');
    await env.sdk.trigger(full, 'tick', { n: 1 });
    const p = await k.connected();
    const events = (name) => {
      const rec = recordChannel(p.subscribe(name), { includePusher: true });
      return rec.count(3).then((items) => items.map((e) => [e.event, e.data]));
    };
    assert.deepEqual(await events(empty), [
      ['pusher:subscription_succeeded', {}],
      ['pusher:cache_miss', undefined],
      ['pusher:subscription_count', count(1)],
    ]);
    assert.deepEqual(await events(full), [
      ['pusher:subscription_succeeded', {}],
      ['tick', { n: 1 }],
      ['pusher:subscription_count', count(1)],
    ]);
  });

  it('private channels are counted, and a socket dropped without a close frame counts as leaving', async (t) => {
    const k = env.kit(t);
    const name = uid('private-count-');
    const a = await counting(k, name);
    assert.deepEqual(await a.counts.next(), count(1));
    const raw = await k.raw();
    const token = env.sdk.authorizeChannel(raw.socketId, name);
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: token.auth } });
    assert.deepEqual(await raw.frames.next(), { event: 'pusher_internal:subscription_succeeded', channel: name, data: '{}' });
    assert.deepEqual(await raw.frames.next(),
      { event: 'pusher_internal:subscription_count', channel: name, data: '{"subscription_count":2}' });
    assert.deepEqual(await a.counts.next(), count(2));
    raw.ws.terminate();
    assert.deepEqual(await a.counts.next(), count(1));
    assert.equal(a.ch.subscriptionCount, 1);
  });

  it('presence channels get no subscription_count (REST still counts)', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-nocount-');
    const p = await k.connected({ user: ALICE });
    const msgs = recordMessages(p);
    await subscribed(p, name);
    await subscribed(await k.connected({ user: BOB }), name);
    assert.deepEqual(await framesUntilMarker(msgs, name),
      ['pusher_internal:subscription_succeeded', 'pusher_internal:member_added', 'marker']);
    assert.equal(p.channel(name).subscriptionCount, undefined);
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 2 });
    assert.deepEqual(receiver.eventsFor([name]), []);
  });

  it('an app without the setting (the second app) gets none', async (t) => {
    const k = env.kit(t, { key: APP2.key });
    const name = uid('app2-nocount-');
    const p = await k.connected();
    const msgs = recordMessages(p);
    await subscribed(p, name);
    await subscribed(await k.connected(), name);
    const sdk2 = serverSdk(env.port, APP2);
    await sdk2.trigger(name, 'marker', {});
    await msgs.find((m) => m.event === 'marker');
    assert.deepEqual(msgs.items.filter((m) => m.channel === name).map((m) => m.event),
      ['pusher_internal:subscription_succeeded', 'marker']);
    assert.deepEqual(await getJson(sdk2, `/channels/${name}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 2 });
  });

  it('over 100 subscribers: updates at most every 5 s, the deferred one with the count as it is then', async (t) => {
    const k = env.kit(t);
    const name = uid('crowd-');
    const watcher = await counting(k, name);
    const others = await Promise.all(Array.from({ length: 99 }, () => k.connected()));
    // One join at a time, each once the watcher has its count (concurrent joins: see below).
    for (const [i, p] of others.entries()) {
      await subscribed(p, name);
      await watcher.counts.count(i + 2);
    }
    // Every count up to 100 came straight away.
    assert.deepEqual(watcher.counts.items, Array.from({ length: 100 }, (_, i) => count(i + 1)));
    // Two more join: the 101st is held back until 5 s after the last update, and what comes then is
    // the count by then.
    await subscribed(await k.connected(), name);
    await subscribed(await k.connected(), name);
    await watcher.counts.count(101, 10000);
    assert.deepEqual(watcher.counts.items[100], count(102));
    const waited = watcher.times[100] - watcher.times[99];
    assert.ok(waited > 4500 && waited < 6000, `deferred update ${Math.round(waited)} ms after the previous one`);
    await sleep(300);
    assert.equal(watcher.counts.items.length, 101);
    assert.equal(watcher.ch.subscriptionCount, 102);
  });

  it('concurrent joins: every subscriber ends with the channel\'s count', async (t) => {
    const k = env.kit(t);
    const stale = [];
    for (let round = 0; round < 20; round++) {
      const name = uid('race-');
      const all = await Promise.all(Array.from({ length: 12 }, () => k.connected()));
      const channels = await Promise.all(all.map((p) => subscribed(p, name).then(([ch]) => ch)));
      const { subscription_count: n } = await getJson(env.sdk, `/channels/${name}`, { info: 'subscription_count' });
      await sleep(100);
      const held = channels.map((ch) => ch.subscriptionCount);
      if (n !== 12 || held.some((c) => c !== 12)) stale.push({ round, rest: n, held });
      for (const p of all) p.disconnect();
    }
    assert.deepEqual(stale, []);
  });
});

// Cache channels: the last triggered event is replayed to new subscribers, else pusher:cache_miss.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  getJson, pusherError, recordChannel, recordErrors, subscribed, uid, useServer,
} from '../lib/helpers.mjs';

describe('cache channels', () => {
  const env = useServer();

  /** Subscribes a new client and resolves to the first `n` events of the channel, pusher: ones included. */
  async function firstEvents(t, name, n, opts) {
    const p = await env.kit(t).connected(opts);
    const ch = p.subscribe(name);
    const items = await recordChannel(ch, { includePusher: true }).count(n);
    return { ch, items };
  }

  it('an empty cache channel emits pusher:cache_miss after subscription_succeeded', async (t) => {
    const { items } = await firstEvents(t, uid('cache-ticker-'), 2);
    assert.deepEqual(items.map((e) => e.event), ['pusher:subscription_succeeded', 'pusher:cache_miss']);
  });

  it('a new subscriber first gets the last event triggered, exactly as sent', async (t) => {
    const name = uid('cache-price-');
    await env.sdk.trigger(name, 'price', { symbol: 'ACME', price: 10 });
    await env.sdk.trigger(name, 'price', { symbol: 'ACME', price: 12.5 });
    const { items } = await firstEvents(t, name, 2);
    assert.deepEqual(items.map((e) => [e.event, e.data]), [
      ['pusher:subscription_succeeded', {}],
      ['price', { symbol: 'ACME', price: 12.5 }],
    ]);
  });

  it('live events keep flowing after the cached one, and update the cache', async (t) => {
    const k = env.kit(t);
    const name = uid('cache-live-');
    await env.sdk.trigger(name, 'state', { v: 1 });
    const a = await k.subscriber(name);
    await a.rec.count(1);
    await env.sdk.trigger(name, 'state', { v: 2 });
    await a.rec.count(2);
    assert.deepEqual(a.rec.items.map((e) => e.data), [{ v: 1 }, { v: 2 }]);
    const b = await k.subscriber(name);
    await b.rec.count(1);
    assert.deepEqual(b.rec.items.map((e) => [e.event, e.data]), [['state', { v: 2 }]]);
  });

  it('REST channel info reports the cached data and a ttl within 30 minutes', async (t) => {
    const name = uid('cache-info-');
    await env.sdk.trigger(name, 'cfg', { mode: 'dark' });
    await env.kit(t).subscriber(name);
    const info = await getJson(env.sdk, `/channels/${name}`, { info: 'cache,subscription_count' });
    assert.equal(info.occupied, true);
    assert.equal(info.subscription_count, 1);
    assert.equal(info.cache.data, '{"mode":"dark"}');
    assert.ok(Number.isInteger(info.cache.ttl) && info.cache.ttl > 1700 && info.cache.ttl <= 1800, `ttl ${info.cache.ttl}`);
  });

  it('private-cache-: authorized subscriber gets the cached event', async (t) => {
    const name = uid('private-cache-orders-');
    await env.sdk.trigger(name, 'latest', { order: 3 });
    const { items } = await firstEvents(t, name, 2);
    assert.deepEqual(items.map((e) => [e.event, e.data]), [
      ['pusher:subscription_succeeded', {}],
      ['latest', { order: 3 }],
    ]);
  });

  it('presence-cache-: members and the cached event', async (t) => {
    const name = uid('presence-cache-room-');
    const first = await firstEvents(t, name, 2, { user: { id: 'u1', info: { n: 1 } } });
    assert.deepEqual(first.items.map((e) => e.event), ['pusher:subscription_succeeded', 'pusher:cache_miss']);
    assert.equal(first.ch.members.count, 1);
    await env.sdk.trigger(name, 'topic', { t: 'hello' });
    const { items } = await firstEvents(t, name, 2, { user: { id: 'u2' } });
    assert.deepEqual(items.map((e) => e.event), ['pusher:subscription_succeeded', 'topic']);
    assert.deepEqual(items[1].data, { t: 'hello' });
  });

  it('client events are refused on public cache channels', async (t) => {
    const p = await env.kit(t).connected();
    const name = uid('cache-chat-');
    const [ch] = await subscribed(p, name);
    const errors = recordErrors(p);
    ch.trigger('client-x', { a: 1 });
    assert.deepEqual(await pusherError(errors), {
      message: `Cannot broadcast client event (client events are only allowed on private and presence channels, not ${name})`,
      code: null,
    });
  });
});

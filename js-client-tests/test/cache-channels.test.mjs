// Cache channels: the last triggered event is replayed to new subscribers, else pusher:cache_miss.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  kit, recordChannel, sharedServer, startAuthServer, serverSdk, subscribed, uid, getJson, recordErrors,
} from '../lib/helpers.mjs';

describe('cache channels', () => {
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

  it('an empty cache channel emits pusher:cache_miss after subscription_succeeded', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('cache-ticker-');
    const ch = p.subscribe(name);
    const rec = recordChannel(ch, { includePusher: true });
    await rec.count(2);
    assert.deepEqual(rec.items.map((e) => e.event), ['pusher:subscription_succeeded', 'pusher:cache_miss']);
  });

  it('a new subscriber first gets the last event triggered, exactly as sent', async (t) => {
    const k = kit(t, server);
    const name = uid('cache-price-');
    await sdk.trigger(name, 'price', { symbol: 'ACME', price: 10 });
    await sdk.trigger(name, 'price', { symbol: 'ACME', price: 12.5 });
    const p = await k.connected();
    const rec = recordChannel(p.subscribe(name), { includePusher: true });
    await rec.count(2);
    assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [
      ['pusher:subscription_succeeded', {}],
      ['price', { symbol: 'ACME', price: 12.5 }],
    ]);
  });

  it('live events keep flowing after the cached one, and update the cache', async (t) => {
    const k = kit(t, server);
    const name = uid('cache-live-');
    await sdk.trigger(name, 'state', { v: 1 });
    const a = await k.connected();
    const ra = recordChannel(a.subscribe(name));
    await ra.count(1);
    await sdk.trigger(name, 'state', { v: 2 });
    await ra.count(2);
    assert.deepEqual(ra.items.map((e) => e.data), [{ v: 1 }, { v: 2 }]);
    const b = await k.connected();
    const rb = recordChannel(b.subscribe(name));
    await rb.count(1);
    assert.deepEqual(rb.items.map((e) => [e.event, e.data]), [['state', { v: 2 }]]);
  });

  it('REST channel info reports the cached data and a ttl within 30 minutes', async (t) => {
    const name = uid('cache-info-');
    await sdk.trigger(name, 'cfg', { mode: 'dark' });
    const p = await kit(t, server).connected();
    await subscribed(p, name);
    const info = await getJson(sdk, `/channels/${name}`, { info: 'cache,subscription_count' });
    assert.equal(info.occupied, true);
    assert.equal(info.subscription_count, 1);
    assert.equal(info.cache.data, '{"mode":"dark"}');
    assert.ok(Number.isInteger(info.cache.ttl) && info.cache.ttl > 1700 && info.cache.ttl <= 1800, `ttl ${info.cache.ttl}`);
  });

  it('private-cache-: authorized subscriber gets the cached event', async (t) => {
    const name = uid('private-cache-orders-');
    await sdk.trigger(name, 'latest', { order: 3 });
    const p = await kit(t, { ...server, auth }).connected();
    const rec = recordChannel(p.subscribe(name), { includePusher: true });
    await rec.count(2);
    assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [
      ['pusher:subscription_succeeded', {}],
      ['latest', { order: 3 }],
    ]);
  });

  it('presence-cache-: members and the cached event', async (t) => {
    const name = uid('presence-cache-room-');
    const p = await kit(t, { ...server, auth }).connected({ user: { id: 'u1', info: { n: 1 } } });
    const ch = p.subscribe(name);
    const rec = recordChannel(ch, { includePusher: true });
    await rec.count(2);
    assert.deepEqual(rec.items.map((e) => e.event), ['pusher:subscription_succeeded', 'pusher:cache_miss']);
    assert.equal(ch.members.count, 1);
    await sdk.trigger(name, 'topic', { t: 'hello' });
    const p2 = await kit(t, { ...server, auth }).connected({ user: { id: 'u2' } });
    const rec2 = recordChannel(p2.subscribe(name), { includePusher: true });
    await rec2.count(2);
    assert.deepEqual(rec2.items.map((e) => e.event), ['pusher:subscription_succeeded', 'topic']);
    assert.deepEqual(rec2.items[1].data, { t: 'hello' });
  });

  it('client events are refused on public cache channels', async (t) => {
    const p = await kit(t, server).connected();
    const name = uid('cache-chat-');
    const [ch] = await subscribed(p, name);
    const errors = recordErrors(p);
    ch.trigger('client-x', { a: 1 });
    const err = await errors.find((e) => e.type === 'PusherError');
    assert.deepEqual(err.data, {
      message: `Cannot broadcast client event (client events are only allowed on private and presence channels, not ${name})`,
      code: null,
    });
  });
});

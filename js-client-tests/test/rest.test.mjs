// REST reads and trigger replies through the `pusher` Node SDK.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  APP, APP2, eventually, getJson, requestError, serverSdk, subscribed, uid, useServer, waitEvent,
} from '../lib/helpers.mjs';

describe('REST API via the pusher SDK', () => {
  const env = useServer();

  it('GET /channels with filter_by_prefix lists exactly the occupied channels', async (t) => {
    const k = env.kit(t);
    const prefix = uid('lst') + '-';
    const p = await k.connected();
    await subscribed(p, prefix + 'a');
    await subscribed(p, prefix + 'b');
    await subscribed(await k.connected(), prefix + 'b');
    await subscribed(p, uid('other-'));
    assert.deepEqual(await getJson(env.sdk, '/channels', { filter_by_prefix: prefix }),
      { channels: { [prefix + 'a']: {}, [prefix + 'b']: {} } });
  });

  it('GET /channels with a prefix matching nothing is empty', async () => {
    assert.deepEqual(await getJson(env.sdk, '/channels', { filter_by_prefix: uid('nothing-') }), { channels: {} });
  });

  it('GET /channels?filter_by_prefix=presence-…&info=user_count counts users per channel', async (t) => {
    const k = env.kit(t);
    const prefix = 'presence-' + uid('cnt') + '-';
    await subscribed(await k.connected({ user: { id: 'u1' } }), prefix + 'one');
    await subscribed(await k.connected({ user: { id: 'u2' } }), prefix + 'one');
    await subscribed(await k.connected({ user: { id: 'u2' } }), prefix + 'one');
    await subscribed(await k.connected({ user: { id: 'u3' } }), prefix + 'two');
    assert.deepEqual(await getJson(env.sdk, '/channels', { filter_by_prefix: prefix, info: 'user_count' }), {
      channels: { [prefix + 'one']: { user_count: 2 }, [prefix + 'two']: { user_count: 1 } },
    });
  });

  it('GET /channels with info=user_count but no presence- prefix is a 400', async () => {
    const { status, body } = await requestError(env.sdk.get({ path: '/channels', params: { info: 'user_count' } }));
    assert.equal(status, 400);
    assert.equal(body, 'Invalid info attribute "user_count": only available for presence channels');
  });

  it('GET /channels/{name} with subscription_count', async (t) => {
    const k = env.kit(t);
    const name = uid('private-info-');
    await subscribed(await k.connected(), name);
    await subscribed(await k.connected(), name);
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 2 });
  });

  it('GET /channels/{name} for an empty channel: occupied false', async () => {
    assert.deepEqual(await getJson(env.sdk, `/channels/${uid('empty-')}`), { occupied: false });
  });

  it('GET /channels/{name}?info=user_count on a non-presence channel is a 400', async () => {
    const name = uid('plain-');
    const { status, body } = await requestError(env.sdk.get({ path: `/channels/${name}`, params: { info: 'user_count' } }));
    assert.equal(status, 400);
    assert.equal(body, 'Invalid info attribute "user_count": only available for presence channels');
  });

  it('GET /channels/{name}/users on a non-presence channel is a 400', async () => {
    const name = uid('private-notpresence-');
    const { status, body } = await requestError(env.sdk.get({ path: `/channels/${name}/users` }));
    assert.equal(status, 400);
    assert.equal(body, `Channel ${name} is not a presence channel`);
  });

  it('GET /channels/{presence}/users follows joins and leaves', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-users-');
    const a = await k.connected({ user: { id: 'zed' } });
    const b = await k.connected({ user: { id: 'amy' } });
    await subscribed(a, name);
    await subscribed(b, name);
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}/users`), { users: [{ id: 'amy' }, { id: 'zed' }] });
    a.disconnect();
    const after1 = await eventually(() => getJson(env.sdk, `/channels/${name}/users`), (b) => b.users.length === 1,
      { what: 'zed to leave' });
    assert.deepEqual(after1, { users: [{ id: 'amy' }] });
  });

  it('trigger with info=user_count,subscription_count answers per channel', async (t) => {
    const k = env.kit(t);
    const pres = uid('presence-trig-');
    const pub = uid('pub-trig-');
    await subscribed(await k.connected({ user: { id: 'x1' } }), pres);
    await subscribed(await k.connected({ user: { id: 'x2' } }), pres);
    await subscribed(await k.connected(), pub);
    const res = await env.sdk.trigger([pres, pub], 'hello', {}, { info: 'user_count,subscription_count' });
    assert.deepEqual(await res.json(), {
      channels: {
        [pres]: { user_count: 2, subscription_count: 2 },
        [pub]: { subscription_count: 1 },
      },
    });
  });

  it('triggerBatch with info answers by position', async (t) => {
    const k = env.kit(t);
    const pub = uid('pub-b-');
    await subscribed(await k.connected(), pub);
    const res = await env.sdk.triggerBatch([
      { channel: pub, name: 'a', data: {}, info: 'subscription_count' },
      { channel: uid('pub-none-'), name: 'b', data: {} },
    ]);
    assert.deepEqual(await res.json(), { batch: [{ subscription_count: 1 }, {}] });
  });

  it('a request signed with the wrong secret is a 401 with the expected string to sign', async () => {
    const bad = serverSdk(env.port, { ...APP, secret: 'wrong' });
    const { status, body } = await requestError(bad.get({ path: '/channels' }));
    assert.equal(status, 401);
    assert.match(body, /^Invalid signature: you should have sent HmacSHA256Hex\("GET\\n\/apps\/app_id\/channels\\nauth_key=app_key&auth_timestamp=\d+&auth_version=1\.0", your_secret_key\), but you sent "[0-9a-f]{64}"$/);
  });

  it('an unknown app id is a 404', async () => {
    const other = serverSdk(env.port, { ...APP, id: '999999' });
    const { status, body } = await requestError(other.trigger('c', 'e', {}));
    assert.equal(status, 404);
    assert.equal(body, 'Unknown app id: 999999');
  });

  it('event data over 10240 bytes is a 413', async () => {
    const { status, body } = await requestError(env.sdk.trigger(uid('big-'), 'too-big', 'x'.repeat(10241)));
    assert.equal(status, 413);
    assert.equal(body, 'The data content of this event exceeds the allowed maximum (10240 bytes). See http://pusher.com/docs/server_api_guide/server_publishing_events for more info');
  });

  it('a batch of 11 events is a 400', async () => {
    const batch = Array.from({ length: 11 }, (_, i) => ({ channel: 'c', name: 'e', data: String(i) }));
    const { status, body } = await requestError(env.sdk.triggerBatch(batch));
    assert.equal(status, 400);
    assert.equal(body, 'Too many events in batch: 11 given, at most 10 are allowed');
  });

  it('GET /channels without a prefix includes public, private and presence channels', async (t) => {
    const k = env.kit(t);
    const tag = uid('all');
    const names = [`${tag}-pub`, `private-${tag}-priv`, `presence-${tag}-pres`, `private-encrypted-${tag}-enc`, `cache-${tag}-c`];
    const p = await k.connected({ user: { id: 'lister' } });
    for (const n of names) await subscribed(p, n);
    const { channels } = await getJson(env.sdk, '/channels');
    const mine = Object.keys(channels).filter((n) => n.includes(tag)).sort();
    assert.deepEqual(mine, [...names].sort());
    for (const n of names) assert.deepEqual(channels[n], {});
  });

  it('trigger with info on an unoccupied channel reports zero', async () => {
    const name = uid('nobody-');
    const pres = uid('presence-nobody-');
    const res = await env.sdk.trigger([name, pres], 'e', {}, { info: 'subscription_count,user_count' });
    assert.deepEqual(await res.json(), {
      channels: { [name]: { subscription_count: 0 }, [pres]: { user_count: 0, subscription_count: 0 } },
    });
  });

  it('a channel name over 164 characters is a 400 from the REST API', async () => {
    const name = 'r'.repeat(165);
    const { status, body } = await requestError(env.sdk.trigger(name, 'e', {}));
    assert.equal(status, 400);
    assert.equal(body, `Invalid channel name "${name}": must be at most 164 characters (got 165)`);
  });

  it('the second app is addressed with its own id and credentials', async (t) => {
    const sdk2 = serverSdk(env.port, APP2);
    const k = env.kit(t, { key: APP2.key });
    const name = uid('app2-');
    const [ch] = await subscribed(await k.connected(), name);
    assert.deepEqual(await getJson(sdk2, `/channels/${name}`, { info: 'subscription_count' }),
      { occupied: true, subscription_count: 1 });
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`), { occupied: false });
    // The default app's key does not sign for the second app.
    const cross = serverSdk(env.port, { ...APP2, key: APP.key, secret: APP.secret });
    const { status, body } = await requestError(cross.get({ path: '/channels' }));
    assert.equal(status, 401);
    assert.equal(body, `Unknown auth_key: ${APP.key}`);
    const got = waitEvent(ch, 'hello2');
    await sdk2.trigger(name, 'hello2', { app: 2 });
    assert.deepEqual(await got, { app: 2 });
  });
});

// Connection lifecycle through pusher-js and Laravel Echo.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  APP2, Pusher, getJson, ownServer, recordMessages, recordStates, serverSdk, uid, useServer, vacated,
  waitEvent, waitState, watchClose,
} from '../lib/helpers.mjs';

const SOCKET_ID = /^\d+\.\d+$/;

describe('connection', () => {
  const env = useServer();

  it('goes connecting -> connected and gets a socket id', async (t) => {
    const p = env.kit(t).client();
    // pusher-js starts connecting inside the constructor.
    assert.equal(p.connection.state, 'connecting');
    const states = recordStates(p);
    const ev = await waitEvent(p.connection, 'connected');
    assert.deepEqual(states.items, ['connected']);
    assert.equal(p.connection.state, 'connected');
    assert.match(p.connection.socket_id, SOCKET_ID);
    assert.equal(ev.socket_id, p.connection.socket_id);
  });

  it('adopts the activity_timeout poxide advertises (120 s)', async (t) => {
    const p = await env.kit(t).connected();
    // pusher-js keeps min(own 120000 ms, server's activity_timeout * 1000)
    assert.equal(p.connection.activityTimeout, 120000);
  });

  it('gives every connection its own socket id', async (t) => {
    const k = env.kit(t);
    const ps = await Promise.all([k.connected(), k.connected(), k.connected()]);
    const ids = ps.map((p) => p.connection.socket_id);
    for (const id of ids) assert.match(id, SOCKET_ID);
    assert.equal(new Set(ids).size, 3);
  });

  it('an unknown app key is refused with 4001 and pusher-js does not reconnect', async (t) => {
    const p = env.kit(t).client({ key: 'no-such-key' });
    assert.equal(p.connection.state, 'connecting');
    const close = watchClose(p);
    const { states } = close;
    assert.deepEqual(await close.error, {
      type: 'PusherError',
      data: { code: 4001, message: 'Application does not exist' },
    });
    // 4000-4099 is the "refused" class: pusher-js gives up and ends disconnected, never connected.
    assert.deepEqual(states.items, ['disconnected']);
    assert.equal(p.connection.socket_id, undefined);
    // A refused connection makes no further attempt: the state stays put while pusher-js's
    // immediate-retry (0 ms) and backoff (1 s) paths would have fired.
    await new Promise((r) => setTimeout(r, 1300));
    assert.deepEqual(states.items, ['disconnected']);
  });

  it('connects to the second app with its own key, isolated from the default app', async (t) => {
    const name = uid('iso-');
    const [one, two] = await env.kit(t).subscribers(name, [{}, { key: APP2.key }]);
    assert.match(two.p.connection.socket_id, SOCKET_ID);
    const sdk2 = serverSdk(env.port, APP2);
    await env.sdk.trigger(name, 'from-app1', { n: 1 });
    await sdk2.trigger(name, 'from-app2', { n: 2 });
    await one.rec.count(1);
    await two.rec.count(1);
    assert.deepEqual(one.rec.items.map((e) => [e.event, e.data]), [['from-app1', { n: 1 }]]);
    assert.deepEqual(two.rec.items.map((e) => [e.event, e.data]), [['from-app2', { n: 2 }]]);
    // The same channel name in each app is a different channel.
    const info1 = await getJson(env.sdk, `/channels/${name}`, { info: 'subscription_count' });
    const info2 = await getJson(sdk2, `/channels/${name}`, { info: 'subscription_count' });
    assert.deepEqual(info1, { occupied: true, subscription_count: 1 });
    assert.deepEqual(info2, { occupied: true, subscription_count: 1 });
  });

  it('disconnect() closes the socket and the channel becomes unoccupied', async (t) => {
    const name = uid('bye-');
    const { p } = await env.kit(t).subscriber(name);
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`), { occupied: true });
    const states = recordStates(p);
    p.disconnect();
    assert.deepEqual(states.items, ['disconnected']);
    assert.deepEqual(await vacated(env.sdk, name), { occupied: false });
  });

  it('connect() after disconnect() gets a fresh socket id', async (t) => {
    const p = await env.kit(t).connected();
    const first = p.connection.socket_id;
    p.disconnect();
    p.connect();
    await waitState(p, 'connected');
    assert.match(p.connection.socket_id, SOCKET_ID);
    assert.notEqual(p.connection.socket_id, first);
  });

  it('Laravel Echo connects through pusher-js and exposes the socket id', async (t) => {
    const echo = env.kit(t).echo();
    const pusher = echo.connector.pusher;
    assert.ok(pusher instanceof Pusher);
    await waitState(pusher, 'connected');
    assert.equal(echo.connectionStatus(), 'connected');
    assert.match(echo.socketId(), SOCKET_ID);
    assert.equal(echo.socketId(), pusher.connection.socket_id);
    echo.disconnect();
    assert.equal(pusher.connection.state, 'disconnected');
  });

  it('answers a pusher:ping sent through pusher-js with pusher:pong', async (t) => {
    const p = await env.kit(t).connected();
    const msgs = recordMessages(p);
    assert.equal(p.send_event('pusher:ping', {}), true);
    const pong = await msgs.find((m) => m.event === 'pusher:pong');
    assert.deepEqual(pong.data, {});
    assert.equal(p.connection.state, 'connected');
  });

  it('an app over max_connections refuses with 4004 and pusher-js does not reconnect', async (t) => {
    const { k } = await ownServer(t, { app: { max_connections: 2 } });
    await k.connected();
    await k.connected();
    const close = watchClose(k.client());
    assert.deepEqual(await close.error, {
      type: 'PusherError',
      data: { code: 4004, message: 'Application is over connection quota' },
    });
    assert.deepEqual(close.states.items, ['disconnected']);
    // The second app has its own quota.
    const other = await k.connected({ key: APP2.key });
    assert.equal(other.connection.state, 'connected');
  });
});

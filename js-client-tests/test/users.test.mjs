// User features through pusher-js's signin() and user.watchlist, and the SDK's authenticateUser
// (the app's user-auth endpoint), sendToUser and terminateUserConnections.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  Recorder, pusherError, recordErrors, recordStates, signIn, uid, useServer, waitEvent, watchClose,
} from '../lib/helpers.mjs';

async function userChannelReady(p) {
  const ch = p.user.serverToUserChannel;
  if (!ch.subscribed) await waitEvent(ch, 'pusher:subscription_succeeded');
}

function recordUserEvents(p, event) {
  const rec = new Recorder();
  p.user.bind(event, (data) => rec.push(data));
  return rec;
}

/** pusher.user.watchlist's 'online' and 'offline' events, as pusher-js emits them: {name, user_ids}. */
function recordWatchlist(p) {
  const rec = new Recorder();
  for (const name of ['online', 'offline']) p.user.watchlist.bind(name, (e) => rec.push(e));
  return rec;
}

describe('users: signin, sendToUser, watchlist, terminateUserConnections', () => {
  const env = useServer();

  /** A client signed in as {id, watchlist}, with its watchlist events recorded from before signin. */
  async function watcher(k, watchlist) {
    const p = await k.connected({ user: { id: uid('watcher-'), watchlist } });
    const events = recordWatchlist(p);
    await signIn(p);
    return { p, events };
  }

  /**
   * Sends the watcher a user event and waits for it: whatever poxide sent that watcher before is
   * in its recorders by then.
   */
  async function marker(w) {
    const got = waitEvent(w.p.user, 'marker');
    await env.sdk.sendToUser(w.p.user.user_data.id, 'marker', {});
    await got;
  }

  it('pusher-js signs in through the user-auth endpoint', async (t) => {
    const id = uid('user-');
    const p = await env.kit(t).signedIn({ id, info: { name: 'Uma' } });
    assert.deepEqual(p.user.user_data, { id, user_info: { name: 'Uma' } });
    // pusher-js subscribes to the user's own #server-to-user- channel after signin_success.
    await userChannelReady(p);
    assert.equal(p.user.serverToUserChannel.name, `#server-to-user-${id}`);
    assert.equal(p.user.serverToUserChannel.subscribed, true);
  });

  it('a signin signed with the wrong secret is refused with pusher:error; the connection stays up', async (t) => {
    const id = uid('user-');
    const p = await env.kit(t).connected({ user: { id }, userAuthPath: '/pusher/user-auth-wrong-secret' });
    const errors = recordErrors(p);
    p.signin();
    const err = await pusherError(errors);
    // The SDK signs the user_data it serialized: {"id":"…"}.
    const prefix = `Invalid signature: Expected HMAC SHA256 hex digest of ${p.connection.socket_id}::user::{"id":"${id}"}, but got `;
    assert.equal(err.code, null);
    assert.ok(err.message.startsWith(prefix), err.message);
    assert.match(err.message.slice(prefix.length), /^[0-9a-f]{64}$/);
    assert.equal(p.user.user_data, null);
    assert.equal(p.user.serverToUserChannel, null);
    assert.equal(p.connection.state, 'connected');
  });

  it('sendToUser reaches every connection of that user and no one else', async (t) => {
    const k = env.kit(t);
    const id = uid('user-');
    const a1 = await k.signedIn({ id });
    const a2 = await k.signedIn({ id });
    const other = await k.signedIn({ id: uid('user-') });
    await Promise.all([a1, a2, other].map(userChannelReady));
    const r1 = recordUserEvents(a1, 'notice');
    const r2 = recordUserEvents(a2, 'notice');
    const ro = recordUserEvents(other, 'notice');
    const res = await env.sdk.sendToUser(id, 'notice', { text: 'your order shipped' });
    assert.equal(res.status, 200);
    assert.deepEqual(await r1.next(), { text: 'your order shipped' });
    assert.deepEqual(await r2.next(), { text: 'your order shipped' });
    // A later event for the other user reaches it with nothing before it.
    await env.sdk.sendToUser(other.user.user_data.id, 'notice', { text: 'yours' });
    assert.deepEqual(await ro.next(), { text: 'yours' });
    assert.deepEqual(ro.items, [{ text: 'yours' }]);
  });

  it('sendToUser data arrives as sent: strings, nested objects, several event names in order', async (t) => {
    const id = uid('user-');
    const p = await env.kit(t).signedIn({ id });
    await userChannelReady(p);
    const got = new Recorder();
    p.user.bind_global((event, data) => got.push([event, data]));
    await env.sdk.sendToUser(id, 'text', 'plain words');
    await env.sdk.sendToUser(id, 'nested', { a: [1, { b: null }], c: 'ü 日本' });
    await env.sdk.sendToUser(id, 'text', '{"already":"json"}');
    await got.count(3);
    assert.deepEqual(got.items, [
      ['text', 'plain words'],
      ['nested', { a: [1, { b: null }], c: 'ü 日本' }],
      ['text', { already: 'json' }],
    ]);
  });

  it("subscribing to another user's #server-to-user- channel is refused", async (t) => {
    const k = env.kit(t);
    const id = uid('user-');
    await k.signedIn({ id });
    const raw = await k.raw();
    const name = `#server-to-user-${id}`;
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: '' } });
    const err = await raw.frames.next();
    assert.equal(err.event, 'pusher:error');
    const subErr = await raw.frames.next();
    assert.equal(subErr.event, 'pusher:subscription_error');
    assert.equal(subErr.channel, name);
    assert.equal(subErr.data.type, 'AuthError');
    assert.equal(subErr.data.status, 401);
    assert.equal(subErr.data.error, err.data.message);
  });

  it("terminateUserConnections closes all that user's connections (4009) and leaves others alone", async (t) => {
    const k = env.kit(t);
    const id = uid('user-');
    const victims = [await k.signedIn({ id }), await k.signedIn({ id })];
    const bystander = await k.signedIn({ id: uid('user-') });
    const closes = victims.map(watchClose);
    const bystanderStates = recordStates(bystander);
    const res = await env.sdk.terminateUserConnections(id);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    for (const close of closes) {
      assert.deepEqual(await close.error, {
        type: 'PusherError',
        data: { code: 4009, message: 'Connection terminated by the application' },
      });
      // 4009 is in pusher-js's "refused" class: it does not reconnect.
      assert.deepEqual(close.states.items, ['disconnected']);
    }
    assert.deepEqual(bystanderStates.items, []);
    assert.equal(bystander.connection.state, 'connected');
  });

  it('watchlist: offline at signin, online when the watched user signs in, offline when it leaves', async (t) => {
    const k = env.kit(t);
    const [b, c] = [uid('b-'), uid('c-')];
    const a = await watcher(k, [b, c]);
    // Nobody watched is online: one 'offline' event with every id, no 'online' event.
    assert.deepEqual(await a.events.next(), { name: 'offline', user_ids: [b, c] });
    const bp = await k.signedIn({ id: b });
    assert.deepEqual(await a.events.next(), { name: 'online', user_ids: [b] });
    bp.disconnect();
    // No grace period for watchlist events: the close itself reports the user offline.
    assert.deepEqual(await a.events.next(), { name: 'offline', user_ids: [b] });
    // Someone not on the watchlist coming and going is not reported.
    (await k.signedIn({ id: uid('stranger-') })).disconnect();
    await marker(a);
    assert.deepEqual(a.events.items, [
      { name: 'offline', user_ids: [b, c] },
      { name: 'online', user_ids: [b] },
      { name: 'offline', user_ids: [b] },
    ]);
  });

  it('watchlist at signin: online and offline ids, each in watchlist order', async (t) => {
    const k = env.kit(t);
    const tag = uid();
    // Watchlist order is neither sorted nor the order the users signed in.
    const [zed, amy, kim, bo] = ['zed', 'amy', 'kim', 'bo'].map((n) => `${n}-${tag}`);
    await k.signedIn({ id: kim });
    await k.signedIn({ id: zed });
    const a = await watcher(k, [zed, amy, kim, bo]);
    await a.events.count(2);
    assert.deepEqual(a.events.items, [
      { name: 'online', user_ids: [zed, kim] },
      { name: 'offline', user_ids: [amy, bo] },
    ]);
  });

  it('watchlist: a user on two connections goes online once and offline with the last one', async (t) => {
    const k = env.kit(t);
    const b = uid('b-');
    const a = await watcher(k, [b]);
    assert.deepEqual(await a.events.next(), { name: 'offline', user_ids: [b] });
    const b1 = await k.signedIn({ id: b });
    assert.deepEqual(await a.events.next(), { name: 'online', user_ids: [b] });
    const b2 = await k.signedIn({ id: b });
    b1.disconnect();
    await marker(a);
    assert.equal(a.events.items.length, 2, JSON.stringify(a.events.items));
    b2.disconnect();
    assert.deepEqual(await a.events.next(), { name: 'offline', user_ids: [b] });
  });

  it('watchlist: terminateUserConnections reports the user offline', async (t) => {
    const k = env.kit(t);
    const b = uid('b-');
    const bp = await k.signedIn({ id: b });
    const a = await watcher(k, [b]);
    assert.deepEqual(await a.events.next(), { name: 'online', user_ids: [b] });
    const close = watchClose(bp);
    await env.sdk.terminateUserConnections(b);
    assert.deepEqual(await a.events.next(), { name: 'offline', user_ids: [b] });
    assert.equal((await close.error).data.code, 4009);
  });

  it('a user without a watchlist gets no watchlist events', async (t) => {
    const k = env.kit(t);
    const a = await watcher(k, undefined);
    await k.signedIn({ id: uid('someone-') });
    await marker(a);
    assert.deepEqual(a.events.items, []);
  });

  it('a watchlist over 100 ids: the first 100 are watched and pusher:error 4302 follows', async (t) => {
    const k = env.kit(t);
    const tag = uid();
    const ids = Array.from({ length: 102 }, (_, i) => `w${i}-${tag}`);
    const p = await k.connected({ user: { id: uid('greedy-'), watchlist: ids } });
    const events = recordWatchlist(p);
    const errors = recordErrors(p);
    await signIn(p);
    assert.deepEqual(await pusherError(errors),
      { message: 'Watchlist limit exceeded: only the first 100 user ids are watched', code: 4302 });
    assert.deepEqual(await events.next(), { name: 'offline', user_ids: ids.slice(0, 100) });
    // The 101st is not watched, the 100th is.
    const w = { p, events };
    (await k.signedIn({ id: ids[100] })).disconnect();
    await k.signedIn({ id: ids[99] });
    assert.deepEqual(await events.next(), { name: 'online', user_ids: [ids[99]] });
    await marker(w);
    assert.equal(events.items.length, 2, JSON.stringify(events.items));
    assert.equal(p.connection.state, 'connected');
  });
});

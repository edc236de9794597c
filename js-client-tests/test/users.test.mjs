// User features through pusher-js's signin() and the SDK's sendToUser / terminateUserConnections.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  kit, Recorder, recordErrors, recordStates, sharedServer, startAuthServer, serverSdk, uid, waitEvent,
} from '../lib/helpers.mjs';

async function signedIn(k, user) {
  const p = await k.connected({ user });
  p.signin();
  await p.user.signinDonePromise;
  return p;
}

async function userChannelReady(p) {
  const ch = p.user.serverToUserChannel;
  if (!ch.subscribed) await waitEvent(ch, 'pusher:subscription_succeeded');
}

function recordUserEvents(p, event) {
  const rec = new Recorder();
  p.user.bind(event, (data) => rec.push(data));
  return rec;
}

describe('users: signin, sendToUser, terminateUserConnections', () => {
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

  it('pusher-js signs in through the user-auth endpoint', async (t) => {
    const k = kit(t, { ...server, auth });
    const id = uid('user-');
    const p = await signedIn(k, { id, info: { name: 'Uma' } });
    assert.deepEqual(p.user.user_data, { id, user_info: { name: 'Uma' } });
    // pusher-js subscribes to the user's own #server-to-user- channel after signin_success.
    await userChannelReady(p);
    assert.equal(p.user.serverToUserChannel.name, `#server-to-user-${id}`);
    assert.equal(p.user.serverToUserChannel.subscribed, true);
  });

  it('sendToUser reaches every connection of that user and no one else', async (t) => {
    const k = kit(t, { ...server, auth });
    const id = uid('user-');
    const a1 = await signedIn(k, { id });
    const a2 = await signedIn(k, { id });
    const other = await signedIn(k, { id: uid('user-') });
    await Promise.all([a1, a2, other].map(userChannelReady));
    const r1 = recordUserEvents(a1, 'notice');
    const r2 = recordUserEvents(a2, 'notice');
    const ro = recordUserEvents(other, 'notice');
    const res = await sdk.sendToUser(id, 'notice', { text: 'your order shipped' });
    assert.equal(res.status, 200);
    assert.deepEqual(await r1.next(), { text: 'your order shipped' });
    assert.deepEqual(await r2.next(), { text: 'your order shipped' });
    // A later event for the other user reaches it with nothing before it.
    await sdk.sendToUser(other.user.user_data.id, 'notice', { text: 'yours' });
    assert.deepEqual(await ro.next(), { text: 'yours' });
    assert.deepEqual(ro.items, [{ text: 'yours' }]);
  });

  it("subscribing to another user's #server-to-user- channel is refused", async (t) => {
    const k = kit(t, { ...server, auth });
    const id = uid('user-');
    await signedIn(k, { id });
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

  it("terminateUserConnections closes that user's connections (4009) and leaves others alone", async (t) => {
    const k = kit(t, { ...server, auth });
    const id = uid('user-');
    const victim = await signedIn(k, { id });
    const bystander = await signedIn(k, { id: uid('user-') });
    const errors = recordErrors(victim);
    const states = recordStates(victim);
    const bystanderStates = recordStates(bystander);
    const res = await sdk.terminateUserConnections(id);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    const err = await errors.find((e) => e.type === 'WebSocketError');
    assert.deepEqual(err.error, {
      type: 'PusherError',
      data: { code: 4009, message: 'Connection terminated by the application' },
    });
    // 4009 is in pusher-js's "refused" class: it does not reconnect.
    await states.find((s) => s === 'disconnected');
    assert.deepEqual(states.items, ['disconnected']);
    assert.deepEqual(bystanderStates.items, []);
    assert.equal(bystander.connection.state, 'connected');
  });
});

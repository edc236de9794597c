// Private channels: pusher-js's ajax authorizer against an app endpoint built with the
// pusher SDK's authorizeChannel, events, and subscription failures where apps look for them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  APP2, echoListen, pusherError, recordChannel, recordErrors, subscribed, uid, useServer, waitEvent, waitState,
} from '../lib/helpers.mjs';

describe('private channels', () => {
  const env = useServer();

  it('authorizes through the ajax endpoint and subscribes', async (t) => {
    const p = await env.kit(t).connected();
    const name = uid('private-orders-');
    const before = env.auth.requests.length;
    const [ch, data] = await subscribed(p, name);
    assert.equal(ch.subscribed, true);
    assert.deepEqual(data, {});
    const reqs = env.auth.requests.slice(before).filter((r) => r.params.channel_name === name);
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].path, '/pusher/auth');
    assert.equal(reqs[0].params.socket_id, p.connection.socket_id);
    assert.equal(reqs[0].headers['content-type'], 'application/x-www-form-urlencoded');
  });

  it('receives events triggered on the private channel', async (t) => {
    const name = uid('private-orders-');
    const { ch } = await env.kit(t).subscriber(name);
    const got = waitEvent(ch, 'order-paid');
    await env.sdk.trigger(name, 'order-paid', { id: 99, amount: '12.00' });
    assert.deepEqual(await got, { id: 99, amount: '12.00' });
  });

  it('a public and a private channel in one multi-channel trigger', async (t) => {
    const p = await env.kit(t).connected();
    const priv = uid('private-m-');
    const pub = uid('pub-m-');
    const recs = [];
    for (const name of [priv, pub]) recs.push(recordChannel((await subscribed(p, name))[0]));
    await env.sdk.trigger([priv, pub], 'both', { ok: true });
    for (const rec of recs) {
      await rec.count(1);
      assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [['both', { ok: true }]]);
    }
  });

  it('socket_id exclusion works on private channels', async (t) => {
    const name = uid('private-excl-');
    const [a, b] = await env.kit(t).subscribers(name, 2);
    await env.sdk.trigger(name, 'skip-a', 1, { socket_id: a.p.connection.socket_id });
    await env.sdk.trigger(name, 'skip-b', 2, { socket_id: b.p.connection.socket_id });
    await a.rec.count(1);
    await b.rec.count(1);
    assert.deepEqual(a.rec.items.map((e) => e.event), ['skip-b']);
    assert.deepEqual(b.rec.items.map((e) => e.event), ['skip-a']);
  });

  it('an auth endpoint answering 403 surfaces as pusher:subscription_error (AuthError, 403)', async (t) => {
    const p = await env.kit(t).connected({ authPath: '/pusher/auth-forbidden' });
    const name = uid('private-no-');
    const ch = p.subscribe(name);
    const err = await waitEvent(ch, 'pusher:subscription_error');
    assert.equal(err.type, 'AuthError');
    assert.equal(err.status, 403);
    assert.equal(ch.subscribed, false);
  });

  it('a bad signature is refused by poxide: pusher:subscription_error AuthError/401 with the reason', async (t) => {
    const p = await env.kit(t).connected({ authPath: '/pusher/auth-wrong-secret' });
    const errors = recordErrors(p);
    const name = uid('private-badsig-');
    const ch = p.subscribe(name);
    const err = await waitEvent(ch, 'pusher:subscription_error');
    const prefix = `Invalid signature: Expected HMAC SHA256 hex digest of ${p.connection.socket_id}:${name}, but got `;
    assert.equal(err.type, 'AuthError');
    assert.equal(err.status, 401);
    assert.ok(err.error.startsWith(prefix), err.error);
    assert.match(err.error.slice(prefix.length), /^[0-9a-f]{64}$/);
    assert.equal(ch.subscribed, false);
    // The connection-level pusher:error carries the same message, and the connection stays up.
    assert.deepEqual(await pusherError(errors), { message: err.error, code: null });
    assert.equal(p.connection.state, 'connected');
  });

  it('a token for another app key is refused: Invalid key in subscription auth data', async (t) => {
    const p = await env.kit(t).connected({ authPath: '/pusher/auth-wrong-app' });
    const name = uid('private-wrongkey-');
    const err = await waitEvent(p.subscribe(name), 'pusher:subscription_error');
    assert.deepEqual(err, {
      type: 'AuthError',
      error: `Invalid key in subscription auth data: "${APP2.key}"`,
      status: 401,
    });
  });

  it('after a refused subscription the connection still works for other channels', async (t) => {
    const p = await env.kit(t).connected({ authPath: '/pusher/auth-wrong-secret' });
    await waitEvent(p.subscribe(uid('private-x-')), 'pusher:subscription_error');
    const pub = uid('still-ok-');
    const [ch] = await subscribed(p, pub);
    const got = waitEvent(ch, 'ping');
    await env.sdk.trigger(pub, 'ping', { alive: true });
    assert.deepEqual(await got, { alive: true });
  });

  it('Echo .private().listen() receives events', async (t) => {
    const echo = env.kit(t).echo();
    const name = uid('orders-');
    const { next } = await echoListen(echo.private(name), (ch, cb) => ch.listen('.Shipped', cb));
    await env.sdk.trigger(`private-${name}`, 'Shipped', { tracking: 'ZX-1' });
    assert.deepEqual(await next, { tracking: 'ZX-1' });
  });

  it("Echo's .error() fires for a server-side refusal, with poxide's status and message", async (t) => {
    const echo = env.kit(t).echo({ authPath: '/pusher/auth-wrong-app' });
    await waitState(echo.connector.pusher, 'connected');
    const name = uid('secret-');
    const err = await new Promise((resolve) => echo.private(name).error(resolve));
    assert.deepEqual(err, {
      type: 'AuthError',
      error: `Invalid key in subscription auth data: "${APP2.key}"`,
      status: 401,
    });
  });

  it("Echo's .error() fires when the app's auth endpoint refuses (403)", async (t) => {
    const echo = env.kit(t).echo({ authPath: '/pusher/auth-forbidden' });
    const err = await new Promise((resolve) => echo.private(uid('nope-')).error(resolve));
    assert.equal(err.type, 'AuthError');
    assert.equal(err.status, 403);
  });

  it('a # channel is reserved (pusher-js refuses it locally; raw socket gets subscription_error)', async (t) => {
    const k = env.kit(t);
    const p = await k.connected();
    const name = uid('#reserved-');
    assert.throws(() => p.subscribe(name), /Cannot create a channel with name "#reserved-/);
    const raw = await k.raw();
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: '' } });
    const message = `Cannot subscribe to ${name}: channels starting with # are reserved`;
    assert.deepEqual(await raw.frames.next(), { event: 'pusher:error', data: { message, code: null } });
    assert.deepEqual(await raw.frames.next(), {
      event: 'pusher:subscription_error',
      channel: name,
      data: { type: 'AuthError', error: message, status: 401 },
    });
  });

  it("Echo .notification() on Laravel's private-App.Models.User.{id} channel", async (t) => {
    const echo = env.kit(t).echo();
    const userChannel = `App.Models.User.${Math.floor(Math.random() * 1e6)}`;
    const { next } = await echoListen(echo.private(userChannel), (ch, cb) => ch.notification(cb));
    // What Laravel's broadcast notification channel sends.
    await env.sdk.trigger(`private-${userChannel}`, 'Illuminate\\Notifications\\Events\\BroadcastNotificationCreated',
      { id: 'n-1', type: 'App\\Notifications\\InvoicePaid', amount: 42 });
    assert.deepEqual(await next, { id: 'n-1', type: 'App\\Notifications\\InvoicePaid', amount: 42 });
  });
});

// Reconnection: this file runs its own poxide, restarts it on the same port mid-test, and checks
// that pusher-js / Echo reconnect and resubscribe by themselves.
//
// Timing note: poxide closes with 4200 before its process exits, so pusher-js's immediate retry
// meets a closed port. pusher-js ignores a failed attempt until that attempt's 15 s timeout
// (SequentialStrategy, not configurable), so one graceful restart costs ~15 s of reconnect time.
// All graceful-restart checks therefore share a single restart.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Recorder, eventually, getJson, recordChannel, recordErrors, recordStates, subscribed, uid, useServer,
  waitEvent, waitState,
} from '../lib/helpers.mjs';

const SOCKET_ID = /^\d+\.\d+$/;
const RECONNECT_TIMEOUT = 25000;

describe('reconnection after a server restart', () => {
  const env = useServer({ own: {} });

  it('a raw socket gets pusher:error 4200 and close 4200 on graceful shutdown', async (t) => {
    const raw = await env.kit(t).raw();
    const stopped = env.server.stop('SIGTERM');
    assert.deepEqual(await raw.frames.next(), {
      event: 'pusher:error',
      data: { message: 'Server is shutting down, please reconnect', code: 4200 },
    });
    assert.deepEqual(await raw.closed, { code: 4200, reason: 'Server is shutting down, please reconnect' });
    const exit = await stopped;
    assert.equal(exit.code, 0, `poxide exit ${JSON.stringify(exit)}`);
    await env.server.start();
  });

  describe('graceful restart (SIGTERM, then start on the same port)', () => {
    // Clients live for the whole group; the hooks below own them.
    const clients = [];
    const track = (p) => { clients.push(p); return p; };
    let ann, bob, echo, echoGot;
    let annFirst, bobFirst;
    let channels;
    let annStates, annErrors;
    let resubscribed;

    before(async () => {
      const k = env.kit({ after: () => {} });
      ann = track(await k.connected({ user: { id: 'ann', info: { name: 'Ann' } } }));
      bob = track(await k.connected({ user: { id: 'bob', info: { name: 'Bob' } } }));
      echo = k.echo();
      track(echo.connector.pusher);
      annFirst = ann.connection.socket_id;
      bobFirst = bob.connection.socket_id;
      channels = { pub: uid('re-pub-'), priv: uid('private-re-'), pres: uid('presence-re-'), echo: uid('echo-re-') };
      const [cPub] = await subscribed(ann, channels.pub);
      const [cPriv] = await subscribed(ann, channels.priv);
      const [cPres] = await subscribed(ann, channels.pres);
      await subscribed(bob, channels.pres);
      echoGot = new Recorder();
      await new Promise((ready) => echo.private(channels.echo).subscribed(ready).listen('.Tick', (e) => echoGot.push(e)));
      await eventually(async () => cPres.members.count, (n) => n === 2, { what: 'bob in ann\'s member list' });

      annStates = recordStates(ann);
      annErrors = recordErrors(ann);
      const echoChannel = echo.connector.pusher.channel(`private-${channels.echo}`);
      resubscribed = Promise.all([cPub, cPriv, cPres, bob.channel(channels.pres), echoChannel]
        .map((c) => waitEvent(c, 'pusher:subscription_succeeded', { timeout: RECONNECT_TIMEOUT })));

      await env.server.stop();
      await env.server.start();
      await Promise.all([ann, bob, echo.connector.pusher].map((p) => waitState(p, 'connected', RECONNECT_TIMEOUT)));
      await resubscribed;
    });
    after(() => {
      for (const p of clients) p.disconnect();
    });

    it('pusher-js saw the 4200 close and went connecting -> connected, never failed', async () => {
      const closeErr = annErrors.items.find((e) => e.type === 'WebSocketError');
      assert.deepEqual(closeErr.error, {
        type: 'PusherError',
        data: { code: 4200, message: 'Server is shutting down, please reconnect' },
      });
      assert.equal(annStates.items[0], 'connecting');
      assert.equal(annStates.items.at(-1), 'connected');
      // 'unavailable' is allowed: pusher-js reports it after 10 s of connecting.
      assert.deepEqual(annStates.items.filter((s) => !['connecting', 'unavailable', 'connected'].includes(s)), []);
    });

    it('every client has a new socket id', () => {
      assert.match(ann.connection.socket_id, SOCKET_ID);
      assert.match(bob.connection.socket_id, SOCKET_ID);
      assert.notEqual(ann.connection.socket_id, annFirst);
      assert.notEqual(bob.connection.socket_id, bobFirst);
    });

    it('public, private and presence channels are subscribed again and receive events', async () => {
      const rec = [channels.pub, channels.priv, channels.pres].map((n) => recordChannel(ann.channel(n)));
      await env.sdk.trigger([channels.pub, channels.priv, channels.pres], 'after-restart', { ok: 1 });
      for (const r of rec) {
        await r.count(1);
        assert.deepEqual(r.items.map((e) => [e.event, e.data]), [['after-restart', { ok: 1 }]]);
      }
    });

    it('presence membership is rebuilt: both users, seen by pusher-js and by REST', async () => {
      const ch = ann.channel(channels.pres);
      if (ch.members.count < 2) await waitEvent(ch, 'pusher:member_added', { filter: (m) => m.id === 'bob' });
      assert.equal(ch.members.count, 2);
      assert.deepEqual(ch.members.me, { id: 'ann', info: { name: 'Ann' } });
      assert.deepEqual(ch.members.get('bob'), { id: 'bob', info: { name: 'Bob' } });
      assert.deepEqual(await getJson(env.sdk, `/channels/${channels.pres}/users`), { users: [{ id: 'ann' }, { id: 'bob' }] });
    });

    it('the Laravel Echo listener keeps working', async () => {
      await env.sdk.trigger(`private-${channels.echo}`, 'Tick', { n: 2 });
      assert.deepEqual(await echoGot.next(), { n: 2 });
      assert.equal(echo.connectionStatus(), 'connected');
    });
  });

  it('pusher-js also recovers from a crash (SIGKILL, no close frame)', async (t) => {
    const name = uid('crash-');
    const { p, ch } = await env.kit(t).subscriber(name);
    const first = p.connection.socket_id;
    const resub = waitEvent(ch, 'pusher:subscription_succeeded', { timeout: RECONNECT_TIMEOUT });
    await env.server.stop('SIGKILL');
    await env.server.start();
    await resub;
    assert.notEqual(p.connection.socket_id, first);
    const got = waitEvent(ch, 'alive');
    await env.sdk.trigger(name, 'alive', { after: 'crash' });
    assert.deepEqual(await got, { after: 'crash' });
  });
});

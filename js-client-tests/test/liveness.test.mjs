// Liveness with a short activity timeout (own poxide: activity_timeout = 1 s, pong_timeout_ms = 1000):
// pusher-js answers the server's pings and stays connected; a silent raw socket is closed with 4201.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, recordMessages, recordStates, sleep, uid, useServer } from '../lib/helpers.mjs';

describe('liveness (activity_timeout = 1 s, pong timeout 1 s)', () => {
  const env = useServer({ own: { activityTimeout: 1, pongTimeoutMs: 1000 } });

  it('advertises activity_timeout 1 in connection_established', async (t) => {
    const raw = await env.kit(t).raw();
    assert.equal(raw.established.event, 'pusher:connection_established');
    const data = JSON.parse(raw.established.data);
    assert.equal(data.activity_timeout, 1);
    assert.deepEqual(Object.keys(data), ['socket_id', 'activity_timeout']);
  });

  it('pusher-js adopts the 1 s activity timeout', async (t) => {
    const p = await env.kit(t).connected();
    assert.equal(p.connection.activityTimeout, 1000);
  });

  it('pusher-js stays connected across several idle periods and keeps receiving events', async (t) => {
    const name = uid('alive-');
    const { p, rec } = await env.kit(t).subscriber(name);
    const id = p.connection.socket_id;
    const states = recordStates(p);
    const msgs = recordMessages(p);
    // 4 s is two full activity + pong windows: a connection that did not keep the server
    // satisfied would have been closed (4201) twice over by now.
    await sleep(4000);
    // Both sides ping after 1 s of silence, so the traffic mixes server pings (pusher-js answers
    // them with pusher:pong) and replies to pusher-js's own pings. At least one server ping must
    // have reached pusher-js; surviving it means pusher-js answered within the 1 s pong timeout.
    const pings = msgs.items.filter((m) => m.event === 'pusher:ping');
    const pongs = msgs.items.filter((m) => m.event === 'pusher:pong');
    assert.ok(pings.length >= 1, `expected a server ping, got ${JSON.stringify(msgs.items)}`);
    assert.ok(pings.length + pongs.length >= 3, `expected keep-alive traffic, got ${JSON.stringify(msgs.items)}`);
    for (const m of [...pings, ...pongs]) assert.deepEqual(m.data, {});
    assert.deepEqual(states.items, []);
    assert.equal(p.connection.state, 'connected');
    assert.equal(p.connection.socket_id, id);
    await env.sdk.trigger(name, 'still-here', { ok: true });
    await rec.count(1);
    assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [['still-here', { ok: true }]]);
  });

  it('poxide sends pusher:ping after 1 s of client silence', async (t) => {
    // From before the connection exists: the server's 1 s starts later, so however slow this
    // process is, the ping cannot arrive sooner (a causal bound, not a timing window).
    const start = Date.now();
    const raw = await env.kit(t).raw();
    const ping = await raw.frames.next(3000);
    assert.deepEqual(ping, { event: 'pusher:ping', data: {} });
    assert.ok(Date.now() - start >= 995, `ping after ${Date.now() - start} ms`);
  });

  it('a raw socket that answers pings stays open', async (t) => {
    const raw = await env.kit(t).raw();
    let pings = 0;
    raw.ws.on('message', (buf) => {
      if (JSON.parse(buf.toString()).event === 'pusher:ping') {
        pings += 1;
        raw.send({ event: 'pusher:pong', data: {} });
      }
    });
    await eventually(() => pings, (n) => n >= 3, { timeout: 15000, what: 'three pings answered' });
    assert.equal(raw.ws.readyState, raw.ws.OPEN);
  });

  it('a raw socket that never answers gets pusher:error 4201 and close 4201', async (t) => {
    const start = Date.now();
    const raw = await env.kit(t).raw();
    assert.deepEqual(await raw.frames.next(3000), { event: 'pusher:ping', data: {} });
    assert.deepEqual(await raw.frames.next(3000), {
      event: 'pusher:error',
      data: { message: 'Pong reply not received', code: 4201 },
    });
    const closed = await raw.closed;
    assert.equal(closed.code, 4201);
    // 1 s of silence, then 1 s for the pong, both after the connection began: a causal bound.
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 1995, `closed after ${elapsed} ms`);
  });

  it('client pusher:ping frames count as activity', async (t) => {
    const raw = await env.kit(t).raw();
    const timer = setInterval(() => raw.send({ event: 'pusher:ping', data: {} }), 400);
    t.after(() => clearInterval(timer));
    await sleep(3000);
    clearInterval(timer);
    const events = raw.frames.items.slice(1).map((f) => f.event);
    // Never silent for 1 s, so the server never needs to ping: only pongs come back.
    assert.ok(events.length >= 6, JSON.stringify(events));
    assert.deepEqual(new Set(events), new Set(['pusher:pong']));
    assert.equal(raw.ws.readyState, raw.ws.OPEN);
  });
});

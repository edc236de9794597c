// The test double's inspection API used as an app's browser test would use it (wait for the
// subscription instead of sleeping, trigger, then assert on what was published; reset between
// tests while pusher-js clients are connected: they reconnect and resubscribe), and --record.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { binaryPath, HOST, ownServer, recordStates, waitEvent } from '../lib/helpers.mjs';

async function inspect(port, path, init) {
  const res = await fetch(`http://${HOST}:${port}/_poxide${path}`, init);
  return { status: res.status, body: await res.json() };
}

describe('inspection API', () => {
  it('no sleep before trigger: wait for the subscriber, publish, read back what was published', async (t) => {
    const { server, sdk, k } = await ownServer(t, { inspect: true });
    const p = await k.connected();
    const ch = p.subscribe('orders');
    const received = waitEvent(ch, 'order-created');
    const ready = await inspect(server.port, '/channels/wait?app_id=app_id&channel=orders&subscribers=1&timeout_ms=10000');
    assert.deepEqual(ready, { status: 200, body: { channel: 'orders', subscription_count: 1 } });
    await sdk.trigger('orders', 'order-created', { id: 7 });
    assert.deepEqual(await received, { id: 7 });
    const found = await inspect(server.port, '/events/wait?channel=orders&event=order-created');
    assert.equal(found.status, 200);
    const { time_ms: _time, ...event } = found.body.event;
    assert.deepEqual(event, {
      seq: 1, app_id: 'app_id', channel: 'orders', event: 'order-created', data: '{"id":7}',
      source: 'api', socket_id: null, user_id: null,
    });
  });

  it('reset closes pusher-js with 4200; it reconnects, resubscribes and gets the next event', async (t) => {
    const { server, sdk, k } = await ownServer(t, { inspect: true });
    const p = await k.connected();
    const states = recordStates(p);
    const ch = p.subscribe('feed');
    await waitEvent(ch, 'pusher:subscription_succeeded');
    const reset = await inspect(server.port, '/reset', { method: 'POST' });
    assert.deepEqual(reset, { status: 200, body: {} });
    await states.until((s) => s.lastIndexOf('connected') > s.indexOf('connecting') && s.includes('connecting'), 10000, 'reconnect');
    const back = await inspect(server.port, '/channels/wait?app_id=app_id&channel=feed&timeout_ms=10000');
    assert.equal(back.status, 200);
    const next = waitEvent(ch, 'news');
    await sdk.trigger('feed', 'news', 'fresh');
    assert.equal(await next, 'fresh');
    const { body } = await inspect(server.port, '/events');
    assert.deepEqual(body.events.map((e) => [e.seq, e.event]), [[1, 'news']]);
  });
});

describe('record and replay', () => {
  it('a session of real pusher-js clients, recorded with --record, replays green against another server', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poxide-recorded-'));
    const recording = await ownServer(t, { record: dir });
    const alice = await recording.k.connected({ user: { id: 'alice', info: { name: 'Alice' } } });
    const room = alice.subscribe('presence-room');
    await waitEvent(room, 'pusher:subscription_succeeded');
    // Bound first: bob's member_added may arrive in the same read as his subscription.
    const added = waitEvent(room, 'pusher:member_added');
    const bob = await recording.k.connected({ user: { id: 'bob' } });
    const bobRoom = bob.subscribe('presence-room');
    await waitEvent(bobRoom, 'pusher:subscription_succeeded');
    await added;
    const typed = waitEvent(bobRoom, 'client-typing');
    room.trigger('client-typing', { on: true });
    await typed;
    const news = waitEvent(room, 'news');
    await recording.sdk.trigger('presence-room', 'news', { n: 1 });
    await news;
    bob.disconnect();
    await waitEvent(room, 'pusher:member_removed');
    alice.disconnect();
    await recording.server.stop();
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl'));
    assert.ok(files.length >= 1, 'transcripts were written');

    const fresh = await ownServer(t, {});
    // A recording pins poxide's exact frames: a poxide-level scenario, graded with --strict.
    const run = spawnSync(binaryPath(), ['conformance', '--strict', '--url', `ws://${HOST}:${fresh.server.port}`, '--dir', dir], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, new RegExp(`\npoxide: ${files.length} passed, 0 failed, 0 skipped\n`));
  });
});

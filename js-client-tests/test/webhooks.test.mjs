// Webhooks as the app receives them, checked with the official Node SDK's pusher.webhook():
// this file runs its own poxide whose default app posts every event to a receiver here (and
// member events only to a second one), with a 300 ms grace period and 50 ms batches.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  APP, APP2, PusherServer, pusherError, recordErrors, sleep, startAuthServer, startWebhookReceiver,
  subscribed, uid, useServer, waitEvent, waitState,
} from '../lib/helpers.mjs';

const GRACE_MS = 300;
const BATCH_MS = 50;
const RETRY_MS = 100;
// After the expected events: long enough for anything still held or batched to arrive as well.
const QUIET_MS = GRACE_MS + BATCH_MS + 250;

const ALICE = { id: 'alice', info: { name: 'Alice' } };
const BOB = { id: 'bob', info: { name: 'Bob' } };

const occupied = (channel) => ({ name: 'channel_occupied', channel });
const vacated = (channel) => ({ name: 'channel_vacated', channel });
const added = (channel, userId) => ({ name: 'member_added', channel, user_id: userId });
const removed = (channel, userId) => ({ name: 'member_removed', channel, user_id: userId });

/** Events in a canonical order, for comparing what poxide may batch in any order. */
function canonical(events) {
  const key = (e) => JSON.stringify(e, Object.keys(e).sort());
  return [...events].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

describe('webhooks, validated by the pusher SDK', () => {
  let receiver, members;
  // Channels whose first request the receiver answers 503.
  const failFirst = new Set();
  // Bodies this file posts to the receiver itself (not from poxide).
  const forgedBodies = new Set();
  before(async () => {
    receiver = await startWebhookReceiver({
      respond: (req) => {
        const hit = req.events.find((e) => failFirst.has(e.channel));
        if (!hit) return 200;
        failFirst.delete(hit.channel);
        return 503;
      },
    });
    members = await startWebhookReceiver();
  });
  const env = useServer({
    own: () => ({
      app: {
        webhooks: [
          { url: receiver.url },
          { url: members.url, event_types: ['member_added', 'member_removed'] },
        ],
      },
      sections: {
        webhook_delivery: { grace_ms: GRACE_MS, batch_ms: BATCH_MS, retry_initial_ms: RETRY_MS },
      },
    }),
  });
  after(async () => {
    await receiver.close();
    await members.close();
  });

  /**
   * Waits for the expected events on these channels, then QUIET_MS for any more; asserts the
   * receiver got exactly those (in any order) in requests that all passed isValid(). Resolves to
   * those requests.
   */
  async function expectHooks(channels, expected, target = receiver) {
    await target.waitFor(channels, expected.length);
    await sleep(QUIET_MS);
    assert.deepEqual(canonical(target.eventsFor(channels)), canonical(expected));
    const requests = target.requestsFor(channels);
    for (const r of requests) {
      assert.equal(r.valid, true, `isValid() false for ${JSON.stringify(r.headers)} ${r.rawBody}`);
      assert.ok(Math.abs(r.time.getTime() - Date.now()) < 5000, `time_ms ${r.time.toISOString()}`);
    }
    return requests;
  }

  it('channel_occupied on the first subscriber, channel_vacated a grace period after the last leaves', async (t) => {
    const k = env.kit(t);
    const name = uid('orders-');
    const [a, b] = await k.subscribers(name, 2);
    // The same name in the second app (no webhooks configured) sends nothing.
    await k.subscriber(name, { key: APP2.key });
    await receiver.waitFor([name], 1);
    a.p.unsubscribe(name);
    // Longer than the grace period: a vacated wrongly sent here would not merge with the real one.
    await sleep(GRACE_MS + BATCH_MS);
    b.p.disconnect();
    const left = performance.now();
    const requests = await expectHooks([name], [occupied(name), vacated(name)]);
    const vacatedAt = requests.find((r) => r.events.some((e) => e.name === 'channel_vacated')).at;
    assert.ok(vacatedAt - left >= GRACE_MS, `channel_vacated ${Math.round(vacatedAt - left)} ms after the last left`);
    assert.deepEqual(members.eventsFor([name]), []);
  });

  it('presence: member_added / member_removed per user (not per connection), user ids as strings', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-room-');
    const [alice, bob1, bob2, seven] = await k.subscribers(name,
      [{ user: ALICE }, { user: BOB }, { user: BOB }, { user: { id: 7 } }]);
    await receiver.waitFor([name], 4);
    bob1.p.disconnect(); // bob is still there on bob2
    // Longer than the grace period, so a member_removed wrongly sent here would stay a second one.
    await sleep(GRACE_MS + BATCH_MS);
    bob2.p.unsubscribe(name);
    seven.p.disconnect();
    alice.p.disconnect();
    const memberEvents = [
      added(name, 'alice'), added(name, 'bob'), added(name, '7'),
      removed(name, 'bob'), removed(name, '7'), removed(name, 'alice'),
    ];
    await expectHooks([name], [occupied(name), ...memberEvents, vacated(name)]);
    // The second target asked for member events only.
    await expectHooks([name], memberEvents, members);
  });

  it('client_event on private and presence channels: event, data as a string, socket_id, user_id', async (t) => {
    const k = env.kit(t);
    const priv = uid('private-chat-');
    const pres = uid('presence-chat-');
    const pub = uid('public-chat-');
    const [a, b] = await k.subscribers(priv, 2);
    const [alice, bob] = await k.subscribers(pres, [{ user: ALICE }, { user: BOB }]);
    const [c] = await k.subscribers(pub, 1);
    a.ch.trigger('client-typing', { typing: true });
    a.ch.trigger('client-text', 'plain "text"');
    alice.ch.trigger('client-moved', { x: 1, y: [2, 3] });
    // Refused on a public channel, so not reported either.
    const errors = recordErrors(c.p);
    c.ch.trigger('client-nope', {});
    await pusherError(errors);
    await b.rec.count(2);
    await bob.rec.count(1);
    await expectHooks([priv, pres, pub], [
      occupied(priv), occupied(pres), occupied(pub), added(pres, 'alice'), added(pres, 'bob'),
      {
        name: 'client_event', channel: priv, event: 'client-typing', data: '{"typing":true}',
        socket_id: a.p.connection.socket_id,
      },
      {
        name: 'client_event', channel: priv, event: 'client-text', data: 'plain "text"',
        socket_id: a.p.connection.socket_id,
      },
      {
        name: 'client_event', channel: pres, event: 'client-moved', data: '{"x":1,"y":[2,3]}',
        socket_id: alice.p.connection.socket_id, user_id: 'alice',
      },
    ]);
  });

  it('cache_miss once for an empty cache channel, none once it holds an event', async (t) => {
    const k = env.kit(t);
    const name = uid('cache-quotes-');
    // Both subscribers miss (pusher:cache_miss each), the app hears about it once.
    for (const s of await k.subscribers(name, 2)) {
      assert.deepEqual(s.rec.items, []);
    }
    await env.sdk.trigger(name, 'quote', { price: 1 });
    const late = await k.subscriber(name);
    await late.rec.count(1);
    assert.deepEqual(late.rec.items.map((e) => [e.event, e.data]), [['quote', { price: 1 }]]);
    await expectHooks([name], [occupied(name), { name: 'cache_miss', channel: name }]);
  });

  it('leaving and coming back within the grace period sends nothing (a page refresh)', async (t) => {
    const k = env.kit(t);
    const pub = uid('refresh-');
    const pres = uid('presence-refresh-');
    const p = await k.connected({ user: ALICE });
    const [cPub] = await subscribed(p, pub);
    const [cPres] = await subscribed(p, pres);
    await receiver.waitFor([pub, pres], 3);
    const back = Promise.all([cPub, cPres].map((ch) => waitEvent(ch, 'pusher:subscription_succeeded')));
    p.disconnect();
    p.connect(); // a new connection; pusher-js subscribes to both channels again
    await back;
    const first = [occupied(pub), occupied(pres), added(pres, 'alice')];
    await expectHooks([pub, pres], first);
    // Leaving for good is reported.
    p.disconnect();
    await expectHooks([pub, pres], [...first, vacated(pub), vacated(pres), removed(pres, 'alice')]);
  });

  it('a request answered 503 is sent again, the same body and signature', async (t) => {
    const name = uid('retry-');
    failFirst.add(name);
    await env.kit(t).subscriber(name);
    await receiver.waitFor([name], 1);
    const requests = receiver.requestsFor([name]);
    assert.deepEqual(requests.map((r) => [r.status, r.valid]), [[503, true], [200, true]]);
    assert.equal(requests[1].rawBody, requests[0].rawBody);
    assert.equal(requests[1].headers['x-pusher-signature'], requests[0].headers['x-pusher-signature']);
    assert.ok(requests[1].at - requests[0].at >= RETRY_MS * 0.9, `retried after ${requests[1].at - requests[0].at} ms`);
    assert.deepEqual(receiver.eventsFor([name]), [occupied(name)]);
  });

  it('isValid() rejects a request whose body, key or secret is not the one poxide signed with', async (t) => {
    const name = uid('tamper-');
    await env.kit(t).subscriber(name);
    await receiver.waitFor([name], 1);
    const [req] = receiver.requestsFor([name]);
    assert.equal(req.path, '/hook');
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers['x-pusher-key'], APP.key);
    assert.match(req.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
    const valid = (headers, rawBody, sdk = receiver.sdk) => sdk.webhook({ headers, rawBody }).isValid();
    assert.equal(valid(req.headers, req.rawBody), true);
    assert.equal(valid(req.headers, req.rawBody.replace(name, `${name}x`)), false);
    assert.equal(valid(req.headers, req.rawBody.replace('channel_occupied', 'channel_vacated')), false);
    assert.equal(valid(req.headers, `${req.rawBody} `), false);
    assert.equal(valid({ ...req.headers, 'x-pusher-key': APP2.key }, req.rawBody), false);
    assert.equal(valid({ ...req.headers, 'content-type': 'text/plain' }, req.rawBody), false);
    const otherSecret = new PusherServer({ appId: APP.id, key: APP.key, secret: 'not-the-secret' });
    assert.equal(valid(req.headers, req.rawBody, otherSecret), false);
    // Posted to the receiver, a tampered copy is refused there too.
    const forged = req.rawBody.replace(name, `${name}-forged`);
    forgedBodies.add(forged);
    const res = await fetch(receiver.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-pusher-key': APP.key,
        'x-pusher-signature': req.headers['x-pusher-signature'],
      },
      body: forged,
    });
    assert.equal(res.status, 401);
    const last = receiver.requests.items.at(-1);
    assert.equal(last.rawBody, forged);
    assert.equal(last.valid, false);
  });

  it("the second app's channels produce no webhooks", async (t) => {
    const auth2 = await startAuthServer(env.port, APP2);
    t.after(() => auth2.close());
    const k = env.kit(t, { key: APP2.key, auth: auth2 });
    const name = uid('presence-app2-');
    const p = await k.connected({ user: ALICE });
    await subscribed(p, name);
    p.disconnect();
    await waitState(p, 'disconnected');
    await sleep(QUIET_MS);
    assert.deepEqual(receiver.eventsFor([name]), []);
    assert.deepEqual(members.eventsFor([name]), []);
  });

  it('every request poxide sent to either receiver passed isValid()', () => {
    const fromPoxide = [...receiver.requests.items, ...members.requests.items]
      .filter((r) => !forgedBodies.has(r.rawBody));
    // The tests above make at least this many (so this one is meant to run after them).
    assert.ok(fromPoxide.length >= 20, `${fromPoxide.length} requests`);
    assert.deepEqual(fromPoxide.filter((r) => !r.valid).map((r) => r.rawBody), []);
    for (const r of fromPoxide) {
      assert.equal(r.headers['x-pusher-key'], APP.key);
      assert.equal(r.headers['content-type'], 'application/json');
    }
  });
});

// Client events: pusher-js channel.trigger('client-…') and Echo whisper/listenForWhisper.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  Recorder, pusherError, recordErrors, uid, useServer, waitEvent, waitState,
} from '../lib/helpers.mjs';

const ALICE = { id: 'alice', info: { name: 'Alice' } };
const BOB = { id: 'bob', info: { name: 'Bob' } };

const NOT_ON_PUBLIC = (name) =>
  `Cannot broadcast client event (client events are only allowed on private and presence channels, not ${name})`;

/** Resolves to {data, meta} of the next `event` on a pusher-js channel. */
function withMeta(ch, event) {
  return new Promise((resolve) => ch.bind(event, (data, meta) => resolve({ data, meta })));
}

describe('client events', () => {
  const env = useServer();

  it('private channel: the other subscriber receives the exact data, the sender gets no echo', async (t) => {
    const name = uid('private-chat-');
    const [a, b] = await env.kit(t).subscribers(name, 2);
    assert.equal(a.ch.trigger('client-typing', { typing: true, who: 'a' }), true);
    await b.rec.count(1);
    assert.deepEqual(b.rec.items.map((e) => [e.event, e.data]), [['client-typing', { typing: true, who: 'a' }]]);
    // A later server event reaches the sender with nothing before it: no echo of its own client event.
    await env.sdk.trigger(name, 'marker', 1);
    await a.rec.count(1);
    assert.deepEqual(a.rec.items.map((e) => e.event), ['marker']);
  });

  it('string and nested data are relayed as sent', async (t) => {
    const [a, b] = await env.kit(t).subscribers(uid('private-chat-'), 2);
    a.ch.trigger('client-text', 'just a string');
    a.ch.trigger('client-nested', { a: [1, { b: null }], c: 'ü' });
    await b.rec.count(2);
    assert.deepEqual(b.rec.items.map((e) => [e.event, e.data]), [
      ['client-text', 'just a string'],
      ['client-nested', { a: [1, { b: null }], c: 'ü' }],
    ]);
  });

  it('presence channel: receivers get the sender user_id in the metadata', async (t) => {
    const [a, b] = await env.kit(t).subscribers(uid('presence-chat-'), [{ user: ALICE }, { user: BOB }]);
    const got = withMeta(b.ch, 'client-moved');
    a.ch.trigger('client-moved', { x: 3, y: 4 });
    const { data, meta } = await got;
    assert.deepEqual(data, { x: 3, y: 4 });
    assert.deepEqual(meta, { user_id: 'alice' });
  });

  it('rejected on a public channel with pusher:error, and not delivered', async (t) => {
    const name = uid('public-chat-');
    const [a, b] = await env.kit(t).subscribers(name, 2);
    const errors = recordErrors(a.p);
    a.ch.trigger('client-hello', { hi: 1 });
    assert.deepEqual(await pusherError(errors), { message: NOT_ON_PUBLIC(name), code: null });
    assert.equal(a.p.connection.state, 'connected');
    await env.sdk.trigger(name, 'marker', 1);
    await b.rec.count(1);
    assert.deepEqual(b.rec.items.map((e) => e.event), ['marker']);
  });

  it('rejected before the subscription exists: not subscribed to channel', async (t) => {
    const a = await env.kit(t).connected();
    const name = uid('private-early-');
    const errors = recordErrors(a);
    // The subscribe goes out only after the auth round trip, so this client event comes first.
    const ch = a.subscribe(name);
    // Bound before the error is awaited: both replies can arrive in one read, and then
    // pusher-js emits them in the same tick.
    const succeeded = waitEvent(ch, 'pusher:subscription_succeeded');
    ch.trigger('client-too-early', {});
    assert.deepEqual(await pusherError(errors), {
      message: `Cannot broadcast client event (connection not subscribed to channel ${name})`,
      code: null,
    });
    await succeeded;
  });

  it('the 11th client event within a second is refused with code 4301', async (t) => {
    const name = uid('private-burst-');
    const [a, b] = await env.kit(t).subscribers(name, 2);
    const errors = recordErrors(a.p);
    for (let i = 0; i < 11; i++) a.ch.trigger('client-burst', { i });
    assert.deepEqual(await pusherError(errors), { message: 'Client event rejected due to rate limit', code: 4301 });
    await env.sdk.trigger(name, 'marker', 1);
    await b.rec.find((e) => e.event === 'marker');
    assert.deepEqual(b.rec.items.filter((e) => e.event === 'client-burst').map((e) => e.data.i),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(a.p.connection.state, 'connected');
  });

  it('Echo whisper / listenForWhisper on a private channel', async (t) => {
    const k = env.kit(t);
    const alice = k.echo();
    const bob = k.echo();
    const name = uid('doc-');
    await new Promise((r) => alice.private(name).subscribed(r));
    const whispers = new Recorder();
    await new Promise((r) => bob.private(name).subscribed(r).listenForWhisper('typing', (e) => whispers.push(e)));
    const ownWhispers = [];
    alice.private(name).listenForWhisper('typing', (e) => ownWhispers.push(e));
    alice.private(name).whisper('typing', { name: 'Alice', typing: true });
    assert.deepEqual(await whispers.next(), { name: 'Alice', typing: true });
    // No echo to the whisperer: a later server event arrives with no whisper before it.
    const marker = waitEvent(alice.connector.pusher.channel(`private-${name}`), 'marker');
    await env.sdk.trigger(`private-${name}`, 'marker', 1);
    await marker;
    assert.deepEqual(ownWhispers, []);
  });

  it('Echo whisper on a presence channel carries the user id', async (t) => {
    const k = env.kit(t);
    const alice = k.echo({ user: ALICE });
    const bob = k.echo({ user: BOB });
    const name = uid('editing-');
    await new Promise((r) => alice.join(name).here(r));
    const whisper = new Promise((resolve) => {
      bob.join(name).here(() => {
        alice.join(name).whisper('cursor', { line: 12 });
      });
      bob.connector.pusher.channel(`presence-${name}`).bind('client-cursor', (data, meta) => resolve({ data, meta }));
    });
    const got = await whisper;
    assert.deepEqual(got, { data: { line: 12 }, meta: { user_id: 'alice' } });
  });

  it('Echo whisper on a public channel surfaces poxide\'s refusal on the connection', async (t) => {
    const echo = env.kit(t).echo();
    const pusher = echo.connector.pusher;
    await waitState(pusher, 'connected');
    const errors = recordErrors(pusher);
    const name = uid('public-');
    await new Promise((r) => echo.channel(name).subscribed(r));
    // Echo's public channel has no whisper(); apps that try go through pusher-js directly.
    assert.equal(typeof echo.channel(name).whisper, 'undefined');
    pusher.channel(name).trigger('client-typing', {});
    assert.equal((await pusherError(errors)).message, NOT_ON_PUBLIC(name));
  });

  it('encrypted channels: pusher-js refuses client events, and so does poxide', async (t) => {
    const k = env.kit(t);
    const name = uid('private-encrypted-ce-');
    const { ch } = await k.subscriber(name);
    assert.throws(() => ch.trigger('client-x', {}), /Client events are not currently supported for encrypted channels/);
    // A client that sends one anyway (raw socket, signed by the app's SDK) is refused by the server.
    const raw = await k.raw();
    const token = env.sdk.authorizeChannel(raw.socketId, name);
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: token.auth } });
    assert.deepEqual(await raw.frames.next(),
      { event: 'pusher_internal:subscription_succeeded', channel: name, data: '{}' });
    raw.send({ event: 'client-x', channel: name, data: { nonce: 'n', ciphertext: 'c' } });
    assert.deepEqual(await raw.frames.next(), {
      event: 'pusher:error',
      data: { message: `Cannot broadcast client event (client events are not supported on encrypted channel ${name})`, code: null },
    });
  });

  it('a numeric presence user_id arrives as the string user_id of the client event', async (t) => {
    const [a, b] = await env.kit(t).subscribers(uid('presence-num-ce-'), [{ user: { id: 7 } }, { user: BOB }]);
    const got = withMeta(b.ch, 'client-n');
    a.ch.trigger('client-n', { v: 1 });
    assert.deepEqual(await got, { data: { v: 1 }, meta: { user_id: '7' } });
  });

  it('client event data over 10240 bytes is refused and not relayed', async (t) => {
    const [a, b] = await env.kit(t).subscribers(uid('private-big-ce-'), 2);
    const errors = recordErrors(a.p);
    a.ch.trigger('client-big', 'y'.repeat(10239)); // 10241 bytes of JSON text with the quotes
    assert.deepEqual(await pusherError(errors), {
      message: 'Client event rejected: data exceeds the allowed maximum (10240 bytes)',
      code: null,
    });
    a.ch.trigger('client-fits', 'y'.repeat(10238)); // exactly 10240
    await b.rec.count(1);
    assert.deepEqual(b.rec.items.map((e) => [e.event, e.data.length]), [['client-fits', 10238]]);
  });
});

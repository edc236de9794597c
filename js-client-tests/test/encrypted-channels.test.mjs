// private-encrypted- channels: the app's SDK encrypts with its master key, the auth endpoint hands
// pusher-js the per-channel shared_secret, poxide relays ciphertext it cannot read.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { echoListen, recordChannel, uid, useServer, waitEvent } from '../lib/helpers.mjs';

describe('private-encrypted channels', () => {
  const env = useServer();

  it('pusher-js subscribes and decrypts an event triggered by the SDK', async (t) => {
    const name = uid('private-encrypted-dm-');
    const { ch, data } = await env.kit(t).subscriber(name);
    assert.deepEqual(data, {});
    const got = waitEvent(ch, 'secret-message');
    await env.sdk.trigger(name, 'secret-message', { text: 'meet at noon', n: [1, 2, 3] });
    assert.deepEqual(await got, { text: 'meet at noon', n: [1, 2, 3] });
  });

  it('poxide relays only ciphertext: a raw subscriber sees nonce and ciphertext, no plaintext', async (t) => {
    const name = uid('private-encrypted-wire-');
    const raw = await env.kit(t).raw();
    const token = env.sdk.authorizeChannel(raw.socketId, name);
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: token.auth } });
    assert.deepEqual(await raw.frames.next(),
      { event: 'pusher_internal:subscription_succeeded', channel: name, data: '{}' });
    await env.sdk.trigger(name, 'secret', { text: 'plaintext-marker' });
    const frame = await raw.frames.next();
    assert.equal(frame.event, 'secret');
    assert.equal(frame.channel, name);
    assert.equal(typeof frame.data, 'string');
    const payload = JSON.parse(frame.data);
    assert.deepEqual(Object.keys(payload).sort(), ['ciphertext', 'nonce']);
    assert.equal(Buffer.from(payload.nonce, 'base64').length, 24);
    assert.ok(!frame.data.includes('plaintext-marker'));
  });

  it('triggerBatch encrypts per item and pusher-js decrypts each in order', async (t) => {
    const p = await env.kit(t).connected();
    const name = uid('private-encrypted-batch-');
    const plain = uid('plain-');
    const [rec, recPlain] = [recordChannel(p.subscribe(name)), recordChannel(p.subscribe(plain))];
    await Promise.all([name, plain].map((n) => waitEvent(p.channel(n), 'pusher:subscription_succeeded')));
    await env.sdk.triggerBatch([
      { channel: name, name: 'e1', data: { n: 1 } },
      { channel: plain, name: 'e2', data: { n: 2 } },
      { channel: name, name: 'e3', data: 'three' },
    ]);
    await rec.count(2);
    await recPlain.count(1);
    assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [['e1', { n: 1 }], ['e3', 'three']]);
    assert.deepEqual(recPlain.items.map((e) => [e.event, e.data]), [['e2', { n: 2 }]]);
  });

  it('two subscribers both decrypt; socket_id exclusion still applies', async (t) => {
    const name = uid('private-encrypted-pair-');
    const [a, b] = await env.kit(t).subscribers(name, 2);
    await env.sdk.trigger(name, 'only-b', { to: 'b' }, { socket_id: a.p.connection.socket_id });
    await env.sdk.trigger(name, 'both', { to: 'all' });
    await a.rec.count(1);
    await b.rec.count(2);
    assert.deepEqual(a.rec.items.map((e) => [e.event, e.data]), [['both', { to: 'all' }]]);
    assert.deepEqual(b.rec.items.map((e) => [e.event, e.data]), [['only-b', { to: 'b' }], ['both', { to: 'all' }]]);
  });

  it('Echo encryptedPrivate().listen() receives decrypted data', async (t) => {
    const echo = env.kit(t).echo();
    const name = uid('vault-');
    const { next } = await echoListen(echo.encryptedPrivate(name), (ch, cb) => ch.listen('.Opened', cb));
    await env.sdk.trigger(`private-encrypted-${name}`, 'Opened', { by: 'Echo' });
    assert.deepEqual(await next, { by: 'Echo' });
  });

  it('private-encrypted-cache-: a late subscriber gets the cached ciphertext and decrypts it', async (t) => {
    const p = await env.kit(t).connected();
    const name = uid('private-encrypted-cache-');
    await env.sdk.trigger(name, 'last-state', { level: 7 });
    const ch = p.subscribe(name);
    const rec = recordChannel(ch);
    await rec.count(1);
    assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [['last-state', { level: 7 }]]);
  });
});

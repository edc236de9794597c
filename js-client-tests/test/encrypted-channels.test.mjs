// private-encrypted- channels: the app's SDK encrypts with its master key, the auth endpoint hands
// pusher-js the per-channel shared_secret, poxide relays ciphertext it cannot read.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  kit, recordChannel, sharedServer, startAuthServer, serverSdk, subscribed, uid,
  waitEvent,
} from '../lib/helpers.mjs';

describe('private-encrypted channels', () => {
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

  it('pusher-js subscribes and decrypts an event triggered by the SDK', async (t) => {
    const p = await kit(t, { ...server, auth }).connected();
    const name = uid('private-encrypted-dm-');
    const [ch, data] = await subscribed(p, name);
    assert.deepEqual(data, {});
    const got = waitEvent(ch, 'secret-message');
    await sdk.trigger(name, 'secret-message', { text: 'meet at noon', n: [1, 2, 3] });
    assert.deepEqual(await got, { text: 'meet at noon', n: [1, 2, 3] });
  });

  it('poxide relays only ciphertext: a raw subscriber sees nonce and ciphertext, no plaintext', async (t) => {
    const k = kit(t, { ...server, auth });
    const name = uid('private-encrypted-wire-');
    const raw = await k.raw();
    const token = sdk.authorizeChannel(raw.socketId, name);
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: token.auth } });
    assert.deepEqual(await raw.frames.next(),
      { event: 'pusher_internal:subscription_succeeded', channel: name, data: '{}' });
    await sdk.trigger(name, 'secret', { text: 'plaintext-marker' });
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
    const p = await kit(t, { ...server, auth }).connected();
    const name = uid('private-encrypted-batch-');
    const plain = uid('plain-');
    const [ch] = await subscribed(p, name);
    const [pc] = await subscribed(p, plain);
    const rec = recordChannel(ch);
    const recPlain = recordChannel(pc);
    await sdk.triggerBatch([
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
    const k = kit(t, { ...server, auth });
    const a = await k.connected();
    const b = await k.connected();
    const name = uid('private-encrypted-pair-');
    const [ca] = await subscribed(a, name);
    const [cb] = await subscribed(b, name);
    const ra = recordChannel(ca);
    const rb = recordChannel(cb);
    await sdk.trigger(name, 'only-b', { to: 'b' }, { socket_id: a.connection.socket_id });
    await sdk.trigger(name, 'both', { to: 'all' });
    await ra.count(1);
    await rb.count(2);
    assert.deepEqual(ra.items.map((e) => [e.event, e.data]), [['both', { to: 'all' }]]);
    assert.deepEqual(rb.items.map((e) => [e.event, e.data]), [['only-b', { to: 'b' }], ['both', { to: 'all' }]]);
  });

  it('Echo encryptedPrivate().listen() receives decrypted data', async (t) => {
    const echo = kit(t, { ...server, auth }).echo({ auth });
    const name = uid('vault-');
    let got;
    await new Promise((ready) => {
      got = new Promise((resolve) => echo.encryptedPrivate(name).subscribed(ready).listen('.Opened', resolve));
    });
    await sdk.trigger(`private-encrypted-${name}`, 'Opened', { by: 'Echo' });
    assert.deepEqual(await got, { by: 'Echo' });
  });

  it('private-encrypted-cache-: a late subscriber gets the cached ciphertext and decrypts it', async (t) => {
    const p = await kit(t, { ...server, auth }).connected();
    const name = uid('private-encrypted-cache-');
    await sdk.trigger(name, 'last-state', { level: 7 });
    const ch = p.subscribe(name);
    const rec = recordChannel(ch);
    await rec.count(1);
    assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [['last-state', { level: 7 }]]);
  });
});

// Apps from a database (SQLite), changed with `poxide apps` while the server runs, as pusher-js
// and the Node SDK see it: a rotated secret, a disabled app, an app added.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  APP, binaryPath, eventually, ownServer, requestError, serverSdk, subscribed, uid, waitEvent,
  watchClose,
} from '../lib/helpers.mjs';

function apps(url, ...args) {
  const run = spawnSync(binaryPath(), ['apps', '--database-url', url, ...args], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout;
}

function credential(out, name) {
  return out.split('\n').find((l) => l.startsWith(`${name}=`)).slice(name.length + 1);
}

/** Resolves once a trigger with `sdk` fails with `status`; to the failure's body. */
async function refusedWith(sdk, status) {
  return eventually(
    async () => {
      try {
        await sdk.trigger('probe', 'e', {});
        return null;
      } catch (e) {
        return e.status === status ? e.body : null;
      }
    },
    (body) => body !== null,
    { timeout: 20000, what: `a ${status} from the SDK` },
  );
}

describe('apps from a database', () => {
  it('a rotated secret, a disabled app and an added one reach pusher-js and the SDK live', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poxide-store-'));
    const url = `sqlite://${path.join(dir, 'apps.db')}`;
    // The default app's credentials, so the test's auth endpoint signs for it.
    apps(url, 'add', '--id', APP.id, '--key', APP.key, '--secret', APP.secret, 'client_events=true');
    const { server, k } = await ownServer(t, { sections: { apps_store: { url, refresh_ms: 100 } } });

    const name = uid('private-store-');
    const { p, rec } = await k.subscriber(name);
    const sdk = serverSdk(server.port);
    await sdk.trigger(name, 'before', { n: 1 });
    await rec.count(1);

    // Rotated: the SDK with the old secret is refused, with the new one it delivers.
    const rotated = credential(apps(url, 'set', APP.id, '--rotate-secret'), 'secret');
    assert.notEqual(rotated, APP.secret);
    assert.match(await refusedWith(sdk, 401), /Invalid signature/);
    const fresh = serverSdk(server.port, { ...APP, secret: rotated });
    await fresh.trigger(name, 'after', { n: 2 });
    await rec.count(2);
    assert.deepEqual(rec.items.map((e) => [e.event, e.data]), [['before', { n: 1 }], ['after', { n: 2 }]]);

    // A limit changed: with one connection open, pusher-js is refused over quota.
    apps(url, 'set', APP.id, 'max_connections=1');
    const over = await eventually(
      async () => {
        const c = k.client();
        const outcome = await Promise.race([
          waitEvent(c.connection, 'connected').then(() => null),
          watchClose(c).error,
        ]);
        c.disconnect();
        return outcome;
      },
      (e) => e !== null,
      { timeout: 20000, what: 'max_connections=1 applied' },
    );
    assert.deepEqual(over, {
      type: 'PusherError',
      data: { code: 4004, message: 'Application is over connection quota' },
    });
    apps(url, 'set', APP.id, 'max_connections=null');

    // Disabled: pusher-js is closed with 4003 and, in the refused class, does not come back.
    const close = watchClose(p);
    apps(url, 'set', APP.id, 'enabled=false');
    assert.deepEqual(await close.error, {
      type: 'PusherError',
      data: { code: 4003, message: 'Application is disabled' },
    });
    assert.equal(p.connection.state, 'disconnected');
    const refused = watchClose(k.client());
    assert.equal((await refused.error).data.code, 4003);
    const { status, body } = await requestError(fresh.trigger(name, 'e', {}));
    assert.equal(status, 403);
    assert.equal(body, `Application is disabled: ${APP.id}`);

    // Added: a new key connects without a restart.
    const added = apps(url, 'add');
    const key = credential(added, 'key');
    const id = credential(added, 'id');
    // Until this node has read the change, the key is refused with 4001: try again then.
    const other = await eventually(
      async () => {
        const c = k.client({ key });
        const outcome = await Promise.race([
          waitEvent(c.connection, 'connected').then(() => 'connected'),
          watchClose(c).error.then((e) => e.data.code),
        ]);
        if (outcome === 'connected') return c;
        assert.equal(outcome, 4001);
        c.disconnect();
        return null;
      },
      (c) => c !== null,
      { timeout: 20000, what: 'the added app served' },
    );
    const channel = other.subscribe('news');
    await subscribed(other, 'news');
    const sdk2 = serverSdk(server.port, { id, key, secret: credential(added, 'secret') });
    const got = waitEvent(channel, 'headline');
    await sdk2.trigger('news', 'headline', { title: 'live' });
    assert.deepEqual(await got, { title: 'live' });
  });
});

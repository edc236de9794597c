// TLS with real clients: pusher-js (forceTLS, wssPort) and the Node SDK (useTLS) against a
// poxide serving a certificate made here, signed by a CA the client process trusts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { APP, HOST, PoxideProcess, PusherServer, REPO_ROOT, freePort, uid } from '../lib/helpers.mjs';

/** A CA and a certificate for localhost and 127.0.0.1 signed by it. */
function makeCertificates() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poxide-tls-'));
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=poxide test CA');
  openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  return { dir, ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

describe('TLS', () => {
  let certs;
  let server;
  let tlsPort;

  before(async () => {
    certs = makeCertificates();
    tlsPort = await freePort();
    server = await new PoxideProcess({
      sections: { tls: { cert: certs.cert, key: certs.key, port: tlsPort } },
    }).start();
  });

  after(async () => {
    await server?.stop();
    if (certs) fs.rmSync(certs.dir, { recursive: true, force: true });
  });

  it('pusher-js with forceTLS and wssPort, and the Node SDK with useTLS, work over TLS', async () => {
    const channel = uid('tls-');
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'js-client-tests', 'lib', 'tls-client.mjs')], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: certs.ca, TLS_PORT: String(tlsPort), CHANNEL: channel },
      timeout: 20000,
    });
    const result = JSON.parse(stdout.trim().split('\n').pop());
    assert.match(result.url, new RegExp(`^wss://127\\.0\\.0\\.1:${tlsPort}/app/app_key\\?protocol=7&client=js&version=[0-9.]+&flash=false$`));
    assert.match(result.socketId, /^\d+\.\d+$/);
    assert.equal(result.status, 200);
    assert.deepEqual(result.data, { n: 1 });
  });

  it('a client that does not trust the certificate is refused by its own TLS check', async () => {
    // This process trusts only the system's CAs, not the test's.
    const sdk = new PusherServer({ ...APP, appId: APP.id, host: HOST, port: String(tlsPort), useTLS: true });
    await assert.rejects(sdk.trigger(uid('tls-'), 'x', {}), (e) => {
      // The SDK wraps the fetch error, which carries the TLS one.
      assert.match(String(e.error?.message ?? e.error), /certificate/);
      return true;
    });
  });
});

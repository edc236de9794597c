// The README's Node snippet runs as written: saved as publish.mjs (next to node_modules, as in
// an app) with only its port changed to the test server's, it publishes what it says.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { REPO_ROOT, useServer, waitEvent } from '../lib/helpers.mjs';

/** The first ```js block after `marker` in the README. */
function snippetAfter(marker) {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README has no ${marker}`);
  const block = readme.slice(at).match(/```js\n([\s\S]*?)```/);
  assert.ok(block, `no js block after ${marker}`);
  return block[1];
}

describe('README', () => {
  const env = useServer();

  it('the Node SDK snippet (publish.mjs) publishes order-shipped to orders', async (t) => {
    const snippet = snippetAfter('save it as `publish.mjs`');
    assert.match(snippet, /port: "8080"/);
    const dir = fs.mkdtempSync(path.join(REPO_ROOT, 'js-client-tests', '.readme-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'publish.mjs');
    fs.writeFileSync(file, snippet.replace('port: "8080"', `port: "${env.port}"`));

    const p = await env.kit(t).connected();
    const channel = p.subscribe('orders');
    await waitEvent(channel, 'pusher:subscription_succeeded');
    const received = waitEvent(channel, 'order-shipped');
    await promisify(execFile)(process.execPath, [file], { timeout: 20000 });
    assert.deepEqual(await received, { id: 17 });
  });
});

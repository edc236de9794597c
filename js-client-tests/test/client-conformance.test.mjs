// The client harness, `poxide client-conformance`, grading real client libraries through their
// reference drivers (conformance/drivers/): each library fails exactly the scenarios its
// deviations file lists, and a scenario altered to demand the wrong behaviour fails pusher-js.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, binaryPath } from '../lib/helpers.mjs';

const DRIVERS = path.join(REPO_ROOT, 'conformance', 'drivers');
const PUSHER_JS = `node ${path.join(DRIVERS, 'pusher-js', 'driver.mjs')}`;
// pysher sends a subscribe before it registers the channel, so the answer can be lost (its
// README): the driver registers it first, so that the other features are graded at all.
const PYSHER = `PYSHER_DRIVER_PRE_REGISTER=1 ${path.join(REPO_ROOT, 'js-client-tests', '.venv', 'bin', 'python')} ${path.join(DRIVERS, 'pysher', 'driver.py')}`;

/** Runs `poxide client-conformance`; resolves to its exit status, output and JSON report. */
function grade(args) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poxide-clients-'));
  const json = path.join(dir, 'report.json');
  return new Promise((resolve) => {
    const child = spawn(binaryPath(), ['client-conformance', '--jobs', '6', '--json', json, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (status) => {
      const report = fs.existsSync(json) ? JSON.parse(fs.readFileSync(json, 'utf8')) : null;
      fs.rmSync(dir, { recursive: true, force: true });
      resolve({ status, stdout, stderr, report });
    });
  });
}

/** Every scenario of the report with its outcome at its level. */
function outcomes(report) {
  return report.features.flatMap((f) => f.scenarios.map((s) => ({
    name: s.name,
    outcome: (s.protocol ?? s.poxide).outcome,
  })));
}

/** The deviations file's scenarios: those always failed, and those that vary with timing. */
function listed(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n').map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const entries = lines.map((l) => {
    const at = l.indexOf(':');
    return { name: l.slice(0, at).trim(), varies: l.slice(at + 1).trim().startsWith('(varies)') };
  });
  return {
    always: entries.filter((e) => !e.varies).map((e) => e.name).sort(),
    varies: entries.filter((e) => e.varies).map((e) => e.name),
  };
}

/** The failed scenarios are the listed ones, give or take those listed as varying. */
function assertDeviations(failed, { always, varies }) {
  assert.deepEqual(failed.filter((n) => !varies.includes(n)), always);
}

const SCENARIOS = fs.readdirSync(path.join(REPO_ROOT, 'conformance', 'clients'))
  .filter((f) => f.endsWith('.jsonl')).length;

describe('client conformance harness', { timeout: 600000 }, () => {
  it('pusher-js fails only the scenarios listed as its deviations', async () => {
    const deviations = path.join(DRIVERS, 'pusher-js', 'deviations.txt');
    const run = await grade(['--driver', PUSHER_JS, '--deviations', deviations]);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const all = outcomes(run.report);
    assert.equal(all.length, SCENARIOS);
    assert.ok(SCENARIOS >= 40);
    const failed = all.filter((o) => o.outcome === 'failed').map((o) => o.name).sort();
    assertDeviations(failed, listed(deviations));
    const skipped = all.filter((o) => o.outcome === 'skipped').map((o) => o.name);
    assert.deepEqual(skipped, [], 'pusher-js implements every feature the scenarios use');
    assert.match(run.stdout, /failures are exactly the known deviations/);
  });

  it('pysher fails only the scenarios listed as its deviations, and skips what it lacks', async () => {
    const deviations = path.join(DRIVERS, 'pysher', 'deviations.txt');
    const run = await grade(['--driver', PYSHER, '--deviations', deviations]);
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    const all = outcomes(run.report);
    assert.equal(all.length, SCENARIOS);
    const failed = all.filter((o) => o.outcome === 'failed').map((o) => o.name).sort();
    assertDeviations(failed, listed(deviations));
    assert.ok(all.filter((o) => o.outcome === 'passed').length >= 20);
  });

  it('a scenario demanding a reconnect after 4001 fails pusher-js, and the run says so', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poxide-altered-'));
    const original = fs.readFileSync(
      path.join(REPO_ROOT, 'conformance', 'clients', 'close-4001-no-reconnect.jsonl'), 'utf8',
    );
    assert.match(original, /\{"expect_no_connection": 3000\}/);
    const altered = original
      .replaceAll('close-4001-no-reconnect', 'close-4001-wrongly-reconnects')
      .replace('{"expect_no_connection": 3000}', '{"accept": "c2", "timeout_ms": 3000}');
    fs.writeFileSync(path.join(dir, 'close-4001-wrongly-reconnects.jsonl'), altered);
    fs.writeFileSync(path.join(dir, 'close-4001-no-reconnect.jsonl'), original);
    const run = await grade(['--driver', PUSHER_JS, '--dir', dir]);
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(run.status, 1, run.stdout);
    assert.deepEqual(outcomes(run.report), [
      { name: 'close-4001-no-reconnect', outcome: 'passed' },
      { name: 'close-4001-wrongly-reconnects', outcome: 'failed' },
    ]);
    assert.match(run.stdout, /FAIL \[protocol\] close-4001-wrongly-reconnects: line 7: the library opened no WebSocket within 3000 ms/);
    assert.match(run.stdout, /protocol: 1 passed, 1 failed, 0 skipped/);
  });
});

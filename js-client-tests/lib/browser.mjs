// Debian's chromium, headless, driven by playwright-core: for the tests of the web console and
// of pusher-js's HTTP fallback transports in a real browser.
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * Launches chromium. The flags keep it from reaching for Google's services, which this network
 * refuses (and which would slow every start).
 */
export async function launchChromium() {
  assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM}: apt-get install chromium (ci/test.sh does)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

// pusher-js's HTTP fallback transports in a real browser (Debian's chromium through
// playwright-core): a page on another origin loads pusher-js's browser build with
// `enabledTransports: ['xhr_streaming']`, then `['xhr_polling']`, then with `window.WebSocket`
// removed before pusher-js loads and the default transports. Each time: connect, get
// REST-triggered events on public, private and presence channels, see another page's presence
// membership and client events, sign in and get a `sendToUser` event, and see a closed tab leave
// the presence channel.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';

import { launchChromium } from '../lib/browser.mjs';
import { APP, HOST, REPO_ROOT, eventually, readBody, uid, useServer } from '../lib/helpers.mjs';

const TIMEOUT = 20000;
const PUSHER_JS = path.join(REPO_ROOT, 'js-client-tests', 'node_modules', 'pusher-js', 'dist', 'web', 'pusher.js');

/** The app's page: pusher-js pointed at poxide for both wsHost and httpHost, auth through this origin. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>http transports</title>
<script>
  const params = new URLSearchParams(location.search);
  // Before pusher-js loads, as a browser without WebSockets would be.
  if (params.get('nows')) { window.WebSocket = undefined; window.MozWebSocket = undefined; }
</script>
<script src="/pusher.js"></script>
<script>
  window.seen = [];
  const record = (what) => window.seen.push(what);
  const post = (url, body) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    .then((r) => r.json());
  const options = {
    cluster: 'mt1',
    wsHost: params.get('host'), wsPort: Number(params.get('port')),
    httpHost: params.get('host'), httpPort: Number(params.get('port')),
    forceTLS: false,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, done) =>
        post('/auth', { socketId, channelName, user: params.get('user') }).then((a) => done(null, a), (e) => done(e, null)),
    },
    userAuthentication: {
      customHandler: ({ socketId }, done) =>
        post('/user-auth', { socketId, user: params.get('user') }).then((a) => done(null, a), (e) => done(e, null)),
    },
  };
  if (params.get('transports')) options.enabledTransports = params.get('transports').split(',');
  window.pusher = new Pusher(params.get('key'), options);
  pusher.connection.bind('state_change', (s) => record({ state: s.current }));
  window.join = (name) => new Promise((resolve) => {
    const ch = pusher.subscribe(name);
    ch.bind_global((event, data) => record({ channel: name, event, data }));
    ch.bind('pusher:subscription_succeeded', () => resolve(true));
  });
  window.transport = () => pusher.connection.connection && pusher.connection.connection.transport.name;
</script>`;

/** Serves the page, pusher-js and the app's auth endpoints (signed with the Node SDK). */
async function startAppOrigin(sdk) {
  const server = http.createServer(async (req, res) => {
    if (req.method === 'GET' && req.url.startsWith('/page')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(PAGE);
    }
    if (req.method === 'GET' && req.url === '/pusher.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(fs.readFileSync(PUSHER_JS));
    }
    const body = JSON.parse((await readBody(req)) || '{}');
    const user = { user_id: body.user, user_info: { name: `User ${body.user}` } };
    let answer;
    if (req.url === '/auth') {
      const presence = body.channelName.startsWith('presence-') ? user : undefined;
      answer = sdk.authorizeChannel(body.socketId, body.channelName, presence);
    } else if (req.url === '/user-auth') {
      answer = sdk.authenticateUser(body.socketId, { id: body.user, name: `User ${body.user}` });
    } else {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  return { server, url: `http://${HOST}:${server.address().port}` };
}

const MODES = [
  { name: 'xhr_streaming', query: 'transports=xhr_streaming', transport: 'xhr_streaming' },
  { name: 'xhr_polling', query: 'transports=xhr_polling', transport: 'xhr_polling' },
  { name: 'no WebSocket, default transports', query: 'nows=1', transport: 'xhr_streaming' },
];

describe('HTTP fallback transports with pusher-js in chromium', () => {
  const env = useServer({ own: {} });
  let browser;
  let origin;
  const pageErrors = [];

  before(async () => {
    browser = await launchChromium();
    origin = await startAppOrigin(env.sdk);
  });

  after(async () => {
    await browser?.close();
    origin?.server.close();
  });

  async function open(mode, user) {
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const query = `${mode.query}&host=${HOST}&port=${env.port}&key=${APP.key}&user=${user}`;
    await page.goto(`${origin.url}/page?${query}`);
    await page.waitForFunction(() => window.pusher.connection.state === 'connected', null, { timeout: TIMEOUT });
    return page;
  }

  const seen = (page, pred, what) => eventually(() => page.evaluate(() => window.seen), (list) => list.some(pred), { timeout: TIMEOUT, what });

  for (const mode of MODES) {
    it(`${mode.name}: channels, presence, client events, sign-in, and leaving`, async () => {
      const alice = await open(mode, 'alice');
      assert.equal(await alice.evaluate(() => window.transport()), mode.transport);
      const socketId = await alice.evaluate(() => window.pusher.connection.socket_id);
      assert.match(socketId, /^\d+\.\d+$/);

      const [pub, priv, room] = [uid('news-'), uid('private-notes-'), uid('presence-room-')];
      for (const name of [pub, priv, room]) assert.equal(await alice.evaluate((n) => window.join(n), name), true);
      await env.sdk.trigger([pub, priv, room], 'greet', { n: 1 });
      for (const name of [pub, priv, room]) {
        await seen(alice, (s) => s.channel === name && s.event === 'greet' && s.data?.n === 1, `greet on ${name}`);
      }

      // Another page (on a WebSocket) joins the presence channel and sends a client event.
      const bob = await open({ query: 'transports=ws' }, 'bob');
      await bob.evaluate((n) => window.join(n), room);
      await seen(alice, (s) => s.channel === room && s.event === 'pusher:member_added' && s.data?.id === 'bob', 'bob joining');
      await bob.evaluate((n) => window.pusher.channel(n).trigger('client-wave', { from: 'bob' }), room);
      await seen(alice, (s) => s.channel === room && s.event === 'client-wave' && s.data?.from === 'bob', 'the client event');
      // And the other way: the HTTP page's client event reaches the WebSocket page.
      await alice.evaluate((n) => window.pusher.channel(n).trigger('client-wave', { from: 'alice' }), room);
      await seen(bob, (s) => s.channel === room && s.event === 'client-wave' && s.data?.from === 'alice', 'the reply');

      // Sign-in and a server-to-user event.
      await alice.evaluate(async () => {
        window.pusher.user.bind('note', (data) => window.seen.push({ user: 'note', data }));
        window.pusher.signin();
        await window.pusher.user.signinDonePromise;
      });
      await eventually(async () => {
        await env.sdk.sendToUser('alice', 'note', { hi: 'alice' });
        return alice.evaluate(() => window.seen);
      }, (list) => list.some((s) => s.user === 'note' && s.data?.hi === 'alice'), { timeout: TIMEOUT, interval: 500, what: 'the user event' });

      // Closing the tab ends the session: bob sees alice leave.
      await alice.close({ runBeforeUnload: true });
      await seen(bob, (s) => s.channel === room && s.event === 'pusher:member_removed' && s.data?.id === 'alice', 'alice leaving');
      await bob.close();
      assert.deepEqual(pageErrors, []);
    });
  }
});

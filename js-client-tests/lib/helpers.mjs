// Shared helpers for the real-client tests: poxide processes, pusher-js / Echo clients,
// an app-side auth endpoint built with the `pusher` server SDK, and event waits with timeouts.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { before, after } from 'node:test';

import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import Echo from 'laravel-echo';
import WebSocket from 'ws';

export { Pusher, PusherServer, Echo, WebSocket };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const HOST = '127.0.0.1';

/** The default app (poxide's built-in defaults) and the second app of the test configuration. */
export const APP = { id: 'app_id', key: 'app_key', secret: 'secret' };
// The Python SDK only accepts numeric app ids, so the second app has one.
export const APP2 = { id: '424242', key: 'app2_key', secret: 'app2_secret' };
/** 32 bytes, base64: the app's end-to-end encryption master key (never sent to poxide). */
export const MASTER_KEY_B64 = Buffer.from(
  Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 0xff),
).toString('base64');

export const DEFAULT_TIMEOUT = 5000;

export function binaryPath() {
  return process.env.POXIDE_BIN || path.join(REPO_ROOT, 'target', 'release', 'poxide');
}

/** A short random suffix so every test uses its own channel names on a shared server. */
export function uid(prefix = '') {
  return prefix + randomBytes(5).toString('hex');
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A free TCP port on HOST, picked below the kernel's ephemeral range (32768+ on Linux) so that the
 * many outgoing client connections of a parallel test run cannot grab it between this check and
 * poxide binding it.
 */
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const srv = net.createServer();
    const ok = await new Promise((resolve) => {
      srv.once('error', () => resolve(false));
      srv.listen(port, HOST, () => resolve(true));
    });
    if (ok) {
      await new Promise((r) => srv.close(r));
      return port;
    }
  }
  throw new Error('no free port found');
}

/** Resolves once something accepts TCP connections on HOST:port. */
export async function waitForPort(port, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: HOST, port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${HOST}:${port} after ${timeout} ms`);
    await sleep(50);
  }
}

function tomlValue(v) {
  // JSON strings, numbers, booleans and arrays of those are valid TOML as they are.
  return typeof v === 'string' || Array.isArray(v) ? JSON.stringify(v) : String(v);
}

function tomlTable(header, entries) {
  return [header, ...Object.entries(entries).map(([k, v]) => `${k} = ${tomlValue(v)}`)].join('\n');
}

/** One `[[apps]]` table; `webhooks: [{url, event_types?}, …]` becomes its `[[apps.webhooks]]`. */
function appToml({ webhooks = [], ...app }) {
  return [tomlTable('[[apps]]', app), ...webhooks.map((w) => tomlTable('[[apps.webhooks]]', w))].join('\n');
}

/**
 * Writes a TOML config: the default app plus the second app (both with client events on),
 * with optional per-app overrides (`webhooks` included), server-level settings (`inspect`
 * turns on the test double's /_poxide/ API) and extra
 * top-level tables (`sections: {webhook_delivery: {grace_ms: 300}}`).
 */
export function writeConfig({ port, activityTimeout, pongTimeoutMs, inspect, record, app = {}, app2 = {}, sections = {} }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'poxide-js-'));
  const file = path.join(dir, 'poxide.toml');
  const top = [`host = "${HOST}"`, `port = ${port}`];
  if (inspect) top.push('inspect = true');
  if (record) top.push(`record = ${JSON.stringify(record)}`);
  if (activityTimeout !== undefined) top.push(`activity_timeout = ${activityTimeout}`);
  if (pongTimeoutMs !== undefined) top.push(`pong_timeout_ms = ${pongTimeoutMs}`);
  const text = [
    top.join('\n'),
    appToml({ ...APP, client_events: true, ...app }),
    appToml({ ...APP2, client_events: true, ...app2 }),
    // Many servers run at once: none takes the metrics port unless asked to.
    ...Object.entries({ metrics: { port: 0 }, ...sections }).map(([name, entries]) => tomlTable(`[${name}]`, entries)),
    '',
  ].join('\n\n');
  fs.writeFileSync(file, text);
  return file;
}

/**
 * The environment for a poxide child: ours without the variables poxide reads as overrides
 * (PORT, POXIDE_*, Poxa's names), so the generated config file is what counts.
 */
export function serverEnv() {
  const overrides = new Set(['PORT', 'PAYLOAD_LIMIT', 'ACTIVITY_TIMEOUT', 'WEB_HOOK']);
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (overrides.has(k) || (k.startsWith('POXIDE_') && k !== 'POXIDE_BIN') || k.startsWith('POXA_')) continue;
    env[k] = v;
  }
  return env;
}

/** A poxide process started from the release binary (or POXIDE_BIN). */
export class PoxideProcess {
  constructor(opts = {}) {
    this.opts = opts;
    this.port = opts.port;
    this.proc = null;
    this.log = [];
  }

  /**
   * Starts poxide. A port picked here is re-picked if another process took it meanwhile; a port
   * given by the caller (or kept for a restart) is retried for a moment.
   */
  async start() {
    const fixed = Boolean(this.port);
    for (let attempt = 1; ; attempt++) {
      if (!fixed && (!this.port || attempt > 1)) this.port = await freePort();
      try {
        return await this.startOnce();
      } catch (e) {
        if (!/Address already in use/.test(e.message) || attempt >= 5) throw e;
        if (fixed) await sleep(200);
      }
    }
  }

  async startOnce() {
    const config = writeConfig({ ...this.opts, port: this.port });
    const bin = binaryPath();
    if (!fs.existsSync(bin)) throw new Error(`poxide binary not found at ${bin} (set POXIDE_BIN)`);
    const proc = spawn(bin, ['--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: serverEnv(),
    });
    this.proc = proc;
    this.exited = once(proc, 'exit');
    const wanted = `listening on ${HOST}:${this.port}`;
    const ready = new Promise((resolve, reject) => {
      let buf = '';
      const onData = (chunk) => {
        const s = chunk.toString();
        this.log.push(s);
        if (this.log.length > 200) this.log.shift();
        buf += s;
        if (buf.includes(wanted)) resolve();
        buf = buf.slice(-500);
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      proc.once('exit', (code, sig) => reject(new Error(`poxide exited early (code ${code}, signal ${sig}):\n${this.log.join('')}`)));
      setTimeout(() => reject(new Error(`poxide did not log "${wanted}" within 10 s:\n${this.log.join('')}`)), 10000).unref();
    });
    await ready;
    await waitForPort(this.port);
    return this;
  }

  /** Graceful stop (SIGTERM): poxide closes every connection with 4200. */
  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const proc = this.proc;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    const [code, sig] = await this.exited;
    clearTimeout(timer);
    this.proc = null;
    return { code, signal: sig };
  }

  async restart() {
    await this.stop();
    return this.start();
  }
}

/**
 * The server the tests share: the one the CI script started (POXIDE_TEST_PORT), or else one started here
 * from the binary for the duration of the test file.
 */
export async function sharedServer() {
  if (process.env.POXIDE_TEST_PORT) {
    const port = Number(process.env.POXIDE_TEST_PORT);
    // The cluster run: clients go round-robin over these nodes, REST calls to POXIDE_TEST_PORT.
    const clientPorts = (process.env.POXIDE_TEST_CLIENT_PORTS || '').split(',').filter(Boolean).map(Number);
    for (const p of [port, ...clientPorts]) await waitForPort(p);
    return { port, clientPorts: clientPorts.length ? clientPorts : [port], stop: async () => {} };
  }
  return new PoxideProcess().start();
}

/** The `pusher` server SDK pointed at poxide. */
export function serverSdk(port, app = APP, extra = {}) {
  return new PusherServer({
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: HOST,
    port: String(port),
    useTLS: false,
    encryptionMasterKeyBase64: MASTER_KEY_B64,
    timeout: 5000,
    ...extra,
  });
}

/**
 * The fixtures of a describe block, set up by the before/after hooks this registers: `env.server`
 * (the shared server, or with `own` a PoxideProcess of its own; `own` may be a function returning
 * the options, called when the hook runs), `env.port`, `env.auth` (the app's endpoints, see
 * startAuthServer), `env.sdk` (the default app's server SDK) and `env.kit(t, opts)`, a per-test kit
 * with that server and auth.
 */
export function useServer({ own } = {}) {
  const env = {
    kit: (t, opts = {}) => kit(t, { port: env.port, clientPorts: env.clientPorts, auth: env.auth, ...opts }),
  };
  before(async () => {
    env.server = own
      ? await new PoxideProcess(typeof own === 'function' ? own() : own).start()
      : await sharedServer();
    env.port = env.server.port;
    env.clientPorts = env.server.clientPorts || [env.port];
    env.auth = await startAuthServer(env.port);
    env.sdk = serverSdk(env.port);
  });
  after(async () => {
    await env.auth?.close();
    await env.server?.stop();
  });
  return env;
}

/**
 * A poxide of this test's own (PoxideProcess options), with its auth endpoints and a kit; torn down
 * after the test, clients first. Resolves to {server, auth, sdk, k}.
 */
export async function ownServer(t, opts = {}) {
  const server = new PoxideProcess({ ...opts, port: await freePort() });
  const auth = await startAuthServer(server.port);
  // t.after hooks run in registration order: clients go before their server does.
  const k = kit(t, { port: server.port, auth });
  t.after(() => auth.close());
  t.after(() => server.stop());
  await server.start();
  return { server, auth, sdk: serverSdk(server.port), k };
}

export async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The app's own HTTP server, as a real backend would run it next to poxide:
 * - POST /pusher/auth: channel authorization with the SDK's authorizeChannel. Presence user data
 *   comes from the `user_id` / `user_info` params the client adds (a real app takes it from the
 *   session). Encrypted channels get `shared_secret` from the SDK's master key.
 * - POST /pusher/auth-forbidden: 403, as an app refusing the user.
 * - POST /pusher/auth-wrong-secret: signs with a wrong secret (a misconfigured app).
 * - POST /pusher/auth-wrong-app: signs with the second app's credentials.
 * - POST /pusher/user-auth: user authentication (pusher-js signin) with the SDK's authenticateUser;
 *   user_data is {id, user_info?, watchlist?} from the `user_id` / `user_info` / `watchlist` params.
 * - POST /pusher/user-auth-wrong-secret: the same, signed with a wrong secret.
 * - POST /api/messages: a controller that broadcasts `{channel, event, data}` "to others", i.e.
 *   with socket_id from the X-Socket-ID header, the way Laravel's toOthers() does.
 */
export async function startAuthServer(port, app = APP) {
  const sdk = serverSdk(port, app);
  const wrongSecret = serverSdk(port, { ...app, secret: 'not-the-secret' });
  const otherApp = serverSdk(port, app === APP ? APP2 : APP);
  const requests = [];
  const server = http.createServer(async (req, res) => {
    try {
      const body = await readBody(req);
      const url = new URL(req.url, `http://${HOST}`);
      if (req.method === 'POST' && url.pathname === '/api/messages') {
        const msg = JSON.parse(body);
        const socketId = req.headers['x-socket-id'];
        await sdk.trigger(msg.channel, msg.event, msg.data, socketId ? { socket_id: socketId } : undefined);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
        return;
      }
      const params = Object.fromEntries(new URLSearchParams(body));
      requests.push({ path: url.pathname, params, headers: req.headers });
      const userSigner = { '/pusher/user-auth': sdk, '/pusher/user-auth-wrong-secret': wrongSecret }[url.pathname];
      if (userSigner) {
        const userData = { id: String(JSON.parse(params.user_id)) };
        if (params.user_info) userData.user_info = JSON.parse(params.user_info);
        if (params.watchlist) userData.watchlist = JSON.parse(params.watchlist);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(userSigner.authenticateUser(params.socket_id, userData)));
        return;
      }
      const signer = {
        '/pusher/auth': sdk,
        '/pusher/auth-wrong-secret': wrongSecret,
        '/pusher/auth-wrong-app': otherApp,
      }[url.pathname];
      if (url.pathname === '/pusher/auth-forbidden' || !signer) {
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.end('Forbidden');
        return;
      }
      const channel = params.channel_name;
      let presenceData;
      if (channel.startsWith('presence-')) {
        // user_id is sent JSON-encoded so a test can use a numeric id, as apps with integer keys do.
        presenceData = { user_id: JSON.parse(params.user_id) };
        if (params.user_info) presenceData.user_info = JSON.parse(params.user_info);
      }
      const auth = signer.authorizeChannel(params.socket_id, channel, presenceData);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(auth));
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e && e.stack));
    }
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  const url = `http://${HOST}:${server.address().port}`;
  return {
    url,
    requests,
    sdk,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

/** pusher-js options as a real app configures them for a self-hosted server. */
export function clientOptions({
  port, auth, authPath = '/pusher/auth', userAuthPath = '/pusher/user-auth', user, extra = {},
}) {
  const opts = {
    cluster: 'mt1', // required by pusher-js 8; unused because wsHost is set
    wsHost: HOST,
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    ...extra,
  };
  if (auth) {
    const params = {};
    if (user) {
      params.user_id = JSON.stringify(user.id);
      if (user.info !== undefined) params.user_info = JSON.stringify(user.info);
      if (user.watchlist !== undefined) params.watchlist = JSON.stringify(user.watchlist);
    }
    opts.channelAuthorization = { endpoint: auth.url + authPath, transport: 'ajax', params };
    opts.userAuthentication = { endpoint: auth.url + userAuthPath, transport: 'ajax', params };
  }
  return opts;
}

/**
 * Per-test resource tracking: everything created through it is torn down by `t.after`.
 */
export function kit(t, { port, clientPorts = [port], auth, key = APP.key }) {
  const clients = [];
  const sockets = [];
  // Each new client on the next node (a single node: always `port`).
  let placed = 0;
  const nextPort = () => clientPorts[placed++ % clientPorts.length];
  t.after(() => {
    for (const c of clients) {
      try { c.disconnect(); } catch { /* already gone */ }
    }
    for (const s of sockets) {
      try { s.terminate(); } catch { /* already gone */ }
    }
  });
  return {
    /** A pusher-js client (not yet waited for). */
    client({ user, authPath, userAuthPath, key: k = key, extra } = {}) {
      const p = new Pusher(k, clientOptions({ port: nextPort(), auth, authPath, userAuthPath, user, extra }));
      clients.push(p);
      return p;
    },
    /** A pusher-js client that is connected. */
    async connected(opts) {
      const p = this.client(opts);
      await waitState(p, 'connected');
      return p;
    },
    /**
     * A connected client subscribed to `name`, with a recorder of the channel's events (not the
     * pusher: ones): {p, ch, data, rec}. `opts` as for client().
     */
    async subscriber(name, opts) {
      const p = await this.connected(opts);
      const ch = p.subscribe(name);
      // Recording from the subscribe on: a cache channel's event may come in the same read as
      // pusher:subscription_succeeded.
      const rec = recordChannel(ch);
      const data = await waitEvent(ch, 'pusher:subscription_succeeded');
      return { p, ch, data, rec };
    },
    /** subscriber() for each entry of `who` (a count, or a list of client options), one after another. */
    async subscribers(name, who = 2) {
      const list = typeof who === 'number' ? Array.from({ length: who }, () => ({})) : who;
      const out = [];
      for (const opts of list) out.push(await this.subscriber(name, opts));
      return out;
    },
    /** A connected client signed in as `user` ({id, info?, watchlist?}) through the user-auth endpoint. */
    async signedIn(user, opts = {}) {
      return signIn(await this.connected({ ...opts, user }));
    },
    /** A Laravel Echo instance using pusher-js. */
    echo({ user, authPath = '/pusher/auth', key: k = key, extra } = {}) {
      const e = new Echo({
        broadcaster: 'pusher',
        key: k,
        Pusher,
        ...clientOptions({ port: nextPort(), auth, authPath, user, extra }),
      });
      clients.push(e.connector.pusher);
      return e;
    },
    /** A raw WebSocket (the `ws` package) on /app/{key}, with a frame recorder. */
    async raw(k = key, query = 'protocol=7&client=js&version=8.4.0&flash=false') {
      const ws = new WebSocket(`ws://${HOST}:${nextPort()}/app/${k}?${query}`);
      sockets.push(ws);
      const frames = new Recorder();
      ws.on('message', (buf, isBinary) => {
        const text = buf.toString();
        let msg;
        try { msg = JSON.parse(text); } catch { msg = { unparsed: text }; }
        frames.push(msg);
      });
      const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
      await once(ws, 'open');
      const established = await frames.next();
      return {
        ws,
        frames,
        closed,
        established,
        socketId: JSON.parse(established.data).socket_id,
        send: (obj) => ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)),
      };
    },
    track(p) { clients.push(p); return p; },
  };
}

/** Resolves when `emitter.bind(event)` fires (pusher-js channels, connections, the client). */
export function waitEvent(emitter, event, { timeout = DEFAULT_TIMEOUT, filter } = {}) {
  return new Promise((resolve, reject) => {
    const cb = (data, metadata) => {
      if (filter && !filter(data, metadata)) return;
      clearTimeout(timer);
      emitter.unbind(event, cb);
      resolve(data);
    };
    const timer = setTimeout(() => {
      emitter.unbind(event, cb);
      reject(new Error(`timed out after ${timeout} ms waiting for "${event}"`));
    }, timeout);
    emitter.bind(event, cb);
  });
}

/** Resolves once the pusher-js connection is in `state` (immediately if it already is). */
export function waitState(pusher, state, timeout = DEFAULT_TIMEOUT) {
  if (pusher.connection.state === state) return Promise.resolve();
  return waitEvent(pusher.connection, state, { timeout }).then(() => undefined);
}

/** Subscribes and waits for pusher:subscription_succeeded; resolves to [channel, data]. */
export async function subscribed(pusher, name, timeout = DEFAULT_TIMEOUT) {
  const ch = pusher.subscribe(name);
  const data = await waitEvent(ch, 'pusher:subscription_succeeded', { timeout });
  return [ch, data];
}

/** Collects items and lets a test wait for the next one / for N of them, with a timeout. */
export class Recorder {
  constructor() {
    this.items = [];
    this.waiters = [];
    this.cursor = 0;
  }
  push(item) {
    this.items.push(item);
    for (const w of [...this.waiters]) w.check();
  }
  /** Waits until `pred(items)` holds. */
  until(pred, timeout = DEFAULT_TIMEOUT, what = 'condition') {
    return new Promise((resolve, reject) => {
      const w = {
        check: () => {
          let r;
          try { r = pred(this.items); } catch (e) { r = false; }
          if (r) {
            clearTimeout(w.timer);
            this.waiters = this.waiters.filter((x) => x !== w);
            resolve(r);
            return true;
          }
          return false;
        },
      };
      if (w.check()) return;
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}; got ${JSON.stringify(this.items).slice(0, 2000)}`));
      }, timeout);
      this.waiters.push(w);
    });
  }
  /** The next item not yet returned by next(). */
  async next(timeout = DEFAULT_TIMEOUT) {
    const i = this.cursor;
    await this.until((items) => items.length > i, timeout, `item #${i}`);
    this.cursor = i + 1;
    return this.items[i];
  }
  /** Waits for the first item matching `pred` (from the start). */
  find(pred, timeout = DEFAULT_TIMEOUT, what = 'a matching item') {
    return this.until((items) => items.find(pred), timeout, what);
  }
  count(n, timeout = DEFAULT_TIMEOUT) {
    return this.until((items) => items.length >= n && items, timeout, `${n} items`);
  }
}

/** Records every non-internal event a pusher-js channel emits: {event, data, meta}. */
export function recordChannel(channel, { includePusher = false } = {}) {
  const rec = new Recorder();
  channel.bind_global((event, data, meta) => {
    if (!includePusher && event.startsWith('pusher:')) return;
    rec.push({ event, data, meta });
  });
  return rec;
}

/** Records the connection-level `error` events of a pusher-js client. */
export function recordErrors(pusher) {
  const rec = new Recorder();
  pusher.connection.bind('error', (e) => rec.push(e));
  return rec;
}

/** Records every protocol message pusher-js receives (includes pusher:ping etc.). */
export function recordMessages(pusher) {
  const rec = new Recorder();
  pusher.connection.bind('message', (m) => rec.push(m));
  return rec;
}

/** Records the pusher-js connection state changes: ['connecting','connected',...]. */
export function recordStates(pusher) {
  const rec = new Recorder();
  pusher.connection.bind('state_change', ({ current }) => rec.push(current));
  return rec;
}

/** Polls an async function until `pred(value)` holds (for REST reads that follow WebSocket actions). */
export async function eventually(fn, pred, { timeout = DEFAULT_TIMEOUT, interval = 50, what = 'value' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last ${JSON.stringify(last)}`);
    await sleep(interval);
  }
}

/** GET through the SDK and parse the JSON body. */
export async function getJson(sdk, pathname, params) {
  const res = await sdk.get({ path: pathname, params });
  return res.json();
}

/** Awaits a promise expected to reject with the SDK's RequestError; returns {status, body}. */
export async function requestError(promise) {
  try {
    const res = await promise;
    throw new Error(`expected a RequestError, got status ${res.status}: ${await res.text()}`);
  } catch (e) {
    if (e.status === undefined) throw e;
    return { status: e.status, body: e.body };
  }
}

/**
 * Attaches a listener to a Laravel Echo channel and waits until it is subscribed. Resolves to
 * {next}, a promise of the first payload `listen(channel, cb)` hands to `cb`.
 */
export async function echoListen(channel, listen) {
  let next;
  await new Promise((ready) => {
    next = new Promise((resolve) => listen(channel.subscribed(ready), resolve));
  });
  return { next };
}

/** Signs a connected pusher-js client in (pusher.signin()) and waits for the outcome. */
export async function signIn(p) {
  p.signin();
  await p.user.signinDonePromise;
  return p;
}

/** The data of the next connection-level PusherError (a pusher:error frame) in `errors`. */
export async function pusherError(errors) {
  return (await errors.find((e) => e.type === 'PusherError')).data;
}

/**
 * Follows a pusher-js client until the server closes it: `await close.error` is the close's
 * {type, data: {code, message}} once pusher-js has gone to `disconnected`; `close.states` records
 * every state from now on.
 */
export function watchClose(p) {
  const states = recordStates(p);
  const errors = recordErrors(p);
  const error = (async () => {
    const err = await errors.find((e) => e.type === 'WebSocketError');
    await states.find((s) => s === 'disconnected');
    return err.error;
  })();
  return { states, error };
}

/** Polls REST until the channel is unoccupied; resolves to its final channel info. */
export function vacated(sdk, name) {
  return eventually(() => getJson(sdk, `/channels/${name}`), (b) => b.occupied === false,
    { what: `${name} to be vacated` });
}

/**
 * The app's webhook endpoint: an HTTP server on HOST whose POST /hook checks every request with the
 * SDK's `pusher.webhook({headers, rawBody})` (credentials of `app`). `requests` records
 * {headers, rawBody, valid, events, time, at, status} (`valid`: isValid(); `events`: getEvents();
 * `at`: performance.now() on arrival); `events` records each event of a request answered 200, with
 * the index of its request. Invalid requests are answered 401; `respond(req)` may return a status
 * other than 200 for a valid one (to make poxide retry).
 */
export async function startWebhookReceiver({ app = APP, respond = () => 200 } = {}) {
  const sdk = new PusherServer({ appId: app.id, key: app.key, secret: app.secret });
  const requests = new Recorder();
  const events = new Recorder();
  const server = http.createServer(async (req, res) => {
    const rawBody = await readBody(req);
    const hook = sdk.webhook({ headers: req.headers, rawBody });
    const valid = hook.isValid();
    let body = {};
    try { body = JSON.parse(rawBody); } catch { /* recorded as is; `valid` is false then */ }
    const entry = {
      path: req.url,
      headers: req.headers,
      rawBody,
      valid,
      // From the SDK when it accepts the request; else parsed here, so a test can still say which.
      events: valid ? hook.getEvents() : body.events ?? [],
      time: valid ? hook.getTime() : null,
      at: performance.now(),
    };
    // An app refuses what does not validate; respond() decides for the rest.
    const status = valid ? respond(entry) : 401;
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(status === 200 ? 'ok' : 'refused');
    entry.status = status;
    requests.push(entry);
    if (status === 200) {
      const request = requests.items.length - 1;
      for (const event of entry.events) events.push({ event, request, timeMs: entry.time.getTime() });
    }
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  return {
    url: `http://${HOST}:${server.address().port}/hook`,
    sdk,
    requests,
    events,
    /**
     * The events delivered (200) for these channels so far, in poxide's order: by the body's time_ms
     * (one per batch, a retry keeps its own), then by position.
     */
    eventsFor(channels) {
      return events.items.filter((e) => channels.includes(e.event.channel))
        .sort((a, b) => a.timeMs - b.timeMs)
        .map((e) => e.event);
    },
    /** Waits until `n` events for these channels were delivered; resolves to eventsFor(channels). */
    async waitFor(channels, n, timeout = DEFAULT_TIMEOUT) {
      try {
        await events.until((items) => items.filter((e) => channels.includes(e.event.channel)).length >= n,
          timeout, `${n} webhook events for ${channels.join(', ')}`);
      } catch (e) {
        const got = requests.items.map((r) => ({ status: r.status, valid: r.valid, body: r.rawBody }));
        e.message += `\nrequests received: ${JSON.stringify(got).slice(0, 3000)}`;
        throw e;
      }
      return this.eventsFor(channels);
    },
    /** The requests that carried an event for one of these channels. */
    requestsFor(channels) {
      return requests.items.filter((r) => r.events.some((e) => channels.includes(e.channel)));
    },
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

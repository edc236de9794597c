#!/usr/bin/env node
// Reference driver of `poxide client-conformance` for pusher-js (Node build, 8.6.0).
//
// Speaks the driver protocol of the client conformance harness: commands come as JSON Lines on
// stdin, reports go as JSON Lines to stdout, logs go to stderr. See README.md next to this file.
//
// The library is the real pusher-js installed for the JS client tests
// (js-client-tests/node_modules/pusher-js), loaded by path so this driver needs no install of its
// own. Its Node build bundles tweetnacl (encrypted channels) and an XMLHttpRequest implementation
// (the 'ajax' auth transport), so the driver uses pusher-js's own auth requests.
import { createRequire } from 'node:module';
import { Console } from 'node:console';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LIB = path.resolve(HERE, '../../../js-client-tests/node_modules/pusher-js');

// stdout carries reports only: everything that would print (pusher-js's logger, deprecation
// warnings, stray console.log calls) goes to stderr.
globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });

function log(...parts) {
  const text = parts.map((p) => (typeof p === 'string' ? p : safeJson(p))).join(' ');
  process.stderr.write(`[pusher-js driver ${new Date().toISOString()}] ${text}\n`);
}

function safeJson(v) {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// A browser logs an exception thrown in a WebSocket message handler and carries on; Node would
// end the process. pusher-js throws from its own handler on some malformed frames (a frame
// without "event": pusher.ts reads event.event.indexOf), so keep the process alive the way a
// browser page would, and say so on stderr.
process.on('uncaughtException', (err) => {
  log('uncaught exception (ignored, as a browser would):', err && err.stack ? err.stack : String(err));
});
process.on('unhandledRejection', (err) => {
  log('unhandled rejection (ignored):', err && err.stack ? err.stack : String(err));
});

let Pusher;
try {
  const require = createRequire(import.meta.url);
  Pusher = require(LIB);
  if (Pusher && Pusher.default) Pusher = Pusher.default;
} catch (e) {
  log(`cannot load pusher-js from ${LIB}: ${e && e.message}`);
  process.exit(1);
}
Pusher.log = (message) => log('pusher-js:', message);

const STATES = new Set(['connecting', 'connected', 'unavailable', 'failed', 'disconnected']);

let pusher = null;

/** The reportable parts of an error pusher-js emits on its connection. */
function errorParts(err) {
  // Shapes (connection.ts, connection_manager.ts, protocol.ts):
  //   {type:'PusherError', data:{message, code}}          a pusher:error frame, or a close code
  //   {type:'WebSocketError', error:{type:'PusherError', data:{code, message}}}   a close code again
  //   {type:'WebSocketError', error:<transport error>}    a socket error
  //   {type:'MessageParseError', error, data}             a frame that is not JSON
  //   {type:'HandshakeError', error}
  let e = err;
  if (e && e.type === 'WebSocketError' && e.error && e.error.type === 'PusherError') e = e.error;
  if (e && e.type === 'PusherError' && e.data && typeof e.data === 'object') {
    const message = e.data.message;
    const code = e.data.code;
    return {
      message: typeof message === 'string' ? message : message == null ? null : safeJson(message),
      code: typeof code === 'number' ? code : null,
    };
  }
  if (e && e.type === 'MessageParseError') {
    return { message: `MessageParseError: ${String(e.error)}`, code: null };
  }
  const inner = e && (e.error !== undefined ? e.error : e);
  let message = null;
  if (typeof inner === 'string') message = inner;
  else if (inner && typeof inner.message === 'string') message = inner.message;
  else if (inner != null) message = safeJson(inner);
  return { message: e && e.type ? `${e.type}${message ? ': ' + message : ''}` : message, code: null };
}

function membersOf(channel) {
  const m = channel.members;
  const ids = Object.keys(m.members || {}).sort();
  return { count: m.count, me: m.me ? m.me.id : m.myID, ids };
}

/** Reports everything a channel hands to the app: wraps its emit, the one path to bound callbacks. */
function watchChannel(channel) {
  if (channel.__driverWatched) return;
  channel.__driverWatched = true;
  const emit = channel.emit;
  channel.emit = function (eventName, data, metadata) {
    try {
      reportChannelEmit(channel, eventName, data, metadata);
    } catch (e) {
      log('report failed:', e && e.stack);
    }
    return emit.call(this, eventName, data, metadata);
  };
}

function reportChannelEmit(channel, eventName, data, metadata) {
  const name = channel.name;
  // Only channels the app still holds are reported (after unsubscribe, nothing).
  if (pusher.channel(name) !== channel) return;
  switch (eventName) {
    case 'pusher:subscription_succeeded':
      if (name.startsWith('presence-')) report({ report: 'subscribed', channel: name, members: membersOf(channel) });
      else report({ report: 'subscribed', channel: name });
      return;
    case 'pusher:subscription_error': {
      const d = data && typeof data === 'object' ? data : {};
      report({
        report: 'subscription_error',
        channel: name,
        status: typeof d.status === 'number' ? d.status : null,
        type: typeof d.type === 'string' ? d.type : null,
      });
      return;
    }
    case 'pusher:member_added':
      report({ report: 'member_added', channel: name, id: data.id, info: data.info === undefined ? null : data.info });
      return;
    case 'pusher:member_removed':
      report({ report: 'member_removed', channel: name, id: data.id });
      return;
    case 'pusher:subscription_count':
      report({
        report: 'subscription_count',
        channel: name,
        count: data && typeof data === 'object' && 'subscription_count' in data ? data.subscription_count : null,
      });
      return;
    case 'pusher:cache_miss':
      report({ report: 'cache_miss', channel: name });
      return;
    default:
      if (eventName.startsWith('pusher:') || eventName.startsWith('pusher_internal:')) {
        log(`internal event on ${name} not reported:`, eventName, data);
        return;
      }
      {
        const r = { report: 'event', channel: name, event: eventName, data: data === undefined ? null : data };
        if (metadata && metadata.user_id !== undefined) r.user_id = metadata.user_id;
        report(r);
      }
  }
}

function connect(options) {
  if (pusher) {
    log('connect: already created; connecting again');
    pusher.connect();
    return;
  }
  const tls = Boolean(options.tls);
  const config = {
    cluster: 'mt1', // required by pusher-js 8; unused because wsHost is set
    wsHost: options.host,
    wsPort: options.port,
    forceTLS: tls,
    enabledTransports: ['ws'],
    disableStats: true,
  };
  // With tls the 'ws' transport goes to wss://host:wssPort. Without, wssPort keeps pusher-js's
  // default (443): after close code 4000 pusher-js switches to TLS and tries there.
  if (tls) config.wssPort = options.port;
  if (options.auth_endpoint) config.channelAuthorization = { endpoint: options.auth_endpoint, transport: 'ajax' };
  if (options.user_auth_endpoint) config.userAuthentication = { endpoint: options.user_auth_endpoint, transport: 'ajax' };
  if (options.activity_timeout_ms !== undefined) config.activityTimeout = options.activity_timeout_ms;
  if (options.pong_timeout_ms !== undefined) config.pongTimeout = options.pong_timeout_ms;
  // encryption_master_key_base64 is the app server's key: a client gets each channel's
  // shared_secret from the auth endpoint, so pusher-js has no use for it.
  log('new Pusher', options.key, config);
  pusher = new Pusher(options.key, config);

  pusher.connection.bind('state_change', ({ previous, current }) => {
    log(`state ${previous} -> ${current}`);
    if (!STATES.has(current)) return;
    if (current === 'connected') report({ report: 'state', state: current, socket_id: pusher.connection.socket_id });
    else report({ report: 'state', state: current });
  });
  // The constructor already started connecting (initialized -> connecting) before any binding.
  if (STATES.has(pusher.connection.state)) {
    const current = pusher.connection.state;
    if (current === 'connected') report({ report: 'state', state: current, socket_id: pusher.connection.socket_id });
    else report({ report: 'state', state: current });
  }

  // A close code is emitted twice (Connection.handleCloseEvent, then the manager's
  // withErrorEmitted wrapping the same object): report it once.
  const seen = new WeakSet();
  pusher.connection.bind('error', (err) => {
    log('connection error:', err);
    const inner = err && err.type === 'WebSocketError' && err.error && typeof err.error === 'object' ? err.error : err;
    if (inner && typeof inner === 'object') {
      if (seen.has(inner)) return;
      seen.add(inner);
    }
    report({ report: 'error', ...errorParts(err) });
  });

  // Bound after pusher-js's own message handlers (pusher.ts, user.ts, watchlist.ts), so this
  // runs once they have handled the frame.
  pusher.connection.bind('message', (event) => {
    const name = event.event;
    if (name === 'pusher:signin_success') {
      const userData = pusher.user.user_data;
      if (userData != null) report({ report: 'signed_in', user_data: userData });
      else log('pusher:signin_success not accepted by pusher-js (user_data unusable)');
      return;
    }
    if (event.channel === undefined || event.channel === null) {
      if (typeof name === 'string' && !name.startsWith('pusher:') && !name.startsWith('pusher_internal:')) {
        report({ report: 'event', channel: null, event: name, data: event.data === undefined ? null : event.data });
      }
    }
  });

  pusher.user.bind_global((eventName, data) => {
    if (eventName.startsWith('pusher:') || eventName.startsWith('pusher_internal:')) {
      // pusher:signin_error: the driver protocol has no report for it (see README).
      log('user event not reported:', eventName, data);
      return;
    }
    report({ report: 'server_user_event', event: eventName, data: data === undefined ? null : data });
  });

  pusher.user.watchlist.bind_global((eventName, entry) => {
    report({ report: 'watchlist', name: eventName, user_ids: entry && Array.isArray(entry.user_ids) ? entry.user_ids : [] });
  });
}

function requirePusher(cmd) {
  if (!pusher) throw new Error(`${cmd} before connect`);
  return pusher;
}

function handle(msg) {
  const { cmd, id } = msg;
  switch (cmd) {
    case 'connect':
      connect(msg.options || {});
      return;
    case 'subscribe': {
      const ch = requirePusher(cmd).subscribe(msg.channel);
      watchChannel(ch);
      return;
    }
    case 'unsubscribe':
      requirePusher(cmd).unsubscribe(msg.channel);
      return;
    case 'trigger': {
      const p = requirePusher(cmd);
      const ch = p.channel(msg.channel);
      if (!ch) {
        report({ report: 'result', id, ok: false, error: `no channel ${msg.channel} (pusher-js triggers through a subscribed channel)` });
        return;
      }
      let sent;
      try {
        sent = ch.trigger(msg.event, msg.data);
      } catch (e) {
        report({ report: 'result', id, ok: false, error: String((e && e.message) || e) });
        return;
      }
      report(sent ? { report: 'result', id, ok: true } : { report: 'result', id, ok: false, error: 'pusher-js did not send it (not connected)' });
      return;
    }
    case 'signin':
      requirePusher(cmd).signin();
      return;
    case 'disconnect':
      requirePusher(cmd).disconnect();
      return;
    case 'exit':
      shutdown(0);
      return;
    default:
      report({ report: 'unsupported', cmd: String(cmd), why: 'unknown command' });
  }
}

let exiting = false;
function shutdown(code) {
  if (exiting) return;
  exiting = true;
  try {
    if (pusher) pusher.disconnect();
  } catch (e) {
    log('disconnect on exit failed:', e && e.message);
  }
  // Let stdout drain before leaving.
  process.stdout.write('', () => process.exit(code));
  setTimeout(() => process.exit(code), 500).unref();
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  const text = line.trim();
  if (!text) return;
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    log('bad command line (not JSON):', text);
    return;
  }
  log('cmd', msg);
  try {
    handle(msg);
  } catch (e) {
    log(`command ${msg.cmd} failed:`, e && e.stack ? e.stack : String(e));
    report({ report: 'result', id: msg.id, ok: false, error: String((e && e.message) || e) });
  }
});
rl.on('close', () => {
  log('stdin closed; exiting');
  shutdown(0);
});

report({ report: 'ready' });

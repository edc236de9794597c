// A pusher-js process driven by the Python tests over stdin/stdout (one JSON object per line).
//
// stdin commands:
//   {"cmd":"connect","conn":"a","user":{"id":"u1","info":{...}}}     -> {"type":"connected","conn":"a","socket_id":"1.2"}
//   {"cmd":"subscribe","conn":"a","channel":"c"}                    -> {"type":"subscribed","conn":"a","channel":"c","members":[...]}
//                                                                     or {"type":"subscription_error","conn":"a","channel":"c","error":{...}}
//   {"cmd":"disconnect","conn":"a"}                                 -> {"type":"disconnected","conn":"a"}
// and for every event a subscribed channel receives:
//   {"type":"event","conn":"a","channel":"c","event":"e","data":<decoded data>}
//
// Env: POXIDE_TEST_PORT (required), LISTENER_APP_KEY / LISTENER_APP_ID / LISTENER_APP_SECRET (default: the
// second app), LISTENER_MASTER_KEY_B64 (encryption master key shared with the Python SDK).
import readline from 'node:readline';
import {
  APP2, MASTER_KEY_B64, Pusher, clientOptions, startAuthServer, waitState,
} from '../lib/helpers.mjs';

const port = Number(process.env.POXIDE_TEST_PORT);
if (!port) {
  console.error('POXIDE_TEST_PORT is required');
  process.exit(2);
}
const app = {
  id: process.env.LISTENER_APP_ID || APP2.id,
  key: process.env.LISTENER_APP_KEY || APP2.key,
  secret: process.env.LISTENER_APP_SECRET || APP2.secret,
};
if (process.env.LISTENER_MASTER_KEY_B64 && process.env.LISTENER_MASTER_KEY_B64 !== MASTER_KEY_B64) {
  console.error('LISTENER_MASTER_KEY_B64 does not match the master key in lib/helpers.mjs');
  process.exit(2);
}

const auth = await startAuthServer(port, app);
const conns = new Map();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'connect': {
      const p = new Pusher(app.key, clientOptions({ port, auth, user: cmd.user }));
      conns.set(cmd.conn, p);
      await waitState(p, 'connected', 10000);
      out({ type: 'connected', conn: cmd.conn, socket_id: p.connection.socket_id });
      break;
    }
    case 'subscribe': {
      const p = conns.get(cmd.conn);
      const ch = p.subscribe(cmd.channel);
      ch.bind('pusher:subscription_succeeded', (data) => {
        const members = [];
        if (data && typeof data.each === 'function') data.each((m) => members.push({ id: m.id, info: m.info }));
        out({ type: 'subscribed', conn: cmd.conn, channel: cmd.channel, members });
      });
      ch.bind('pusher:subscription_error', (error) => {
        out({ type: 'subscription_error', conn: cmd.conn, channel: cmd.channel, error });
      });
      ch.bind_global((event, data) => {
        if (event.startsWith('pusher:')) return;
        out({ type: 'event', conn: cmd.conn, channel: cmd.channel, event, data });
      });
      break;
    }
    case 'disconnect': {
      const p = conns.get(cmd.conn);
      p.disconnect();
      conns.delete(cmd.conn);
      out({ type: 'disconnected', conn: cmd.conn });
      break;
    }
    case 'quit': {
      for (const p of conns.values()) p.disconnect();
      await auth.close();
      process.exit(0);
      break;
    }
    default:
      out({ type: 'error', message: `unknown command ${JSON.stringify(cmd)}` });
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ type: 'error', message: `bad JSON: ${line}` });
    return;
  }
  handle(cmd).catch((e) => out({ type: 'error', message: String(e && e.stack) }));
});
rl.on('close', async () => {
  for (const p of conns.values()) p.disconnect();
  await auth.close();
  process.exit(0);
});
out({ type: 'ready' });

// Run by test/tls.test.mjs in a process of its own, because Node reads NODE_EXTRA_CA_CERTS (the
// test's CA) only at start-up: pusher-js over wss:// (forceTLS with wssPort, as an app moving
// from hosted Pusher configures it) and the Node SDK over https:// (useTLS). Prints one JSON line.
import { APP, HOST, Pusher, PusherServer } from './helpers.mjs';

const tlsPort = Number(process.env.TLS_PORT);
const channelName = process.env.CHANNEL;
const fail = (why) => {
  console.log(JSON.stringify({ error: String(why) }));
  process.exit(1);
};
setTimeout(() => fail('timed out'), 10000).unref();

const client = new Pusher(APP.key, {
  cluster: 'mt1',
  wsHost: HOST,
  wssPort: tlsPort,
  forceTLS: true,
  enabledTransports: ['ws'],
});
client.connection.bind('error', (e) => fail(JSON.stringify(e)));
const channel = client.subscribe(channelName);
channel.bind('pusher:subscription_succeeded', async () => {
  const sdk = new PusherServer({
    appId: APP.id,
    key: APP.key,
    secret: APP.secret,
    host: HOST,
    port: String(tlsPort),
    useTLS: true,
  });
  try {
    const response = await sdk.trigger(channelName, 'over-tls', { n: 1 });
    channel.bind('over-tls', (data) => {
      console.log(JSON.stringify({
        // The URL pusher-js opened (its transport's WebSocket).
        url: client.connection.connection?.transport?.socket?.url ?? null,
        socketId: client.connection.socket_id,
        status: response.status,
        data,
      }));
      client.disconnect();
      process.exit(0);
    });
  } catch (e) {
    fail(e);
  }
});

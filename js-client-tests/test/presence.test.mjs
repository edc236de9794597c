// Presence channels through pusher-js's Members API and Echo's join().here/joining/leaving.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  Recorder, eventually, getJson, ownServer, uid, useServer, waitEvent, waitState,
} from '../lib/helpers.mjs';

function memberList(members) {
  const out = [];
  members.each((m) => out.push({ id: m.id, info: m.info }));
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
}

function recordMembership(channel) {
  const rec = new Recorder();
  channel.bind('pusher:member_added', (m) => rec.push({ added: m.id, info: m.info }));
  channel.bind('pusher:member_removed', (m) => rec.push({ removed: m.id }));
  return rec;
}

/** Echo join(): resolves to here()'s users once joined; joining()/leaving() users go to the recorders. */
function echoJoin(echo, name, { joins, leaves } = {}) {
  return new Promise((resolve) => {
    echo.join(name)
      .here(resolve)
      .joining((u) => joins?.push(u))
      .leaving((u) => leaves?.push(u));
  });
}

const byName = (users) => [...users].sort((x, y) => x.name.localeCompare(y.name));

const ALICE = { id: 'alice', info: { name: 'Alice', role: 'admin' } };
const BOB = { id: 'bob', info: { name: 'Bob' } };
const CAROL = { id: 'carol', info: { name: 'Carol' } };

describe('presence channels', () => {
  const env = useServer();

  it('subscription_succeeded carries the members, including me', async (t) => {
    const name = uid('presence-room-');
    const { ch, data: members } = await env.kit(t).subscriber(name, { user: ALICE });
    assert.equal(members, ch.members);
    assert.equal(members.count, 1);
    assert.deepEqual(members.me, { id: 'alice', info: { name: 'Alice', role: 'admin' } });
    assert.deepEqual(memberList(members), [{ id: 'alice', info: { name: 'Alice', role: 'admin' } }]);
  });

  it('a second user sees both members and the first sees pusher:member_added', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-room-');
    const { ch: cha } = await k.subscriber(name, { user: ALICE });
    const added = waitEvent(cha, 'pusher:member_added');
    const { data: membersB } = await k.subscriber(name, { user: BOB });
    assert.deepEqual(await added, { id: 'bob', info: { name: 'Bob' } });
    assert.equal(membersB.count, 2);
    assert.deepEqual(membersB.me, { id: 'bob', info: { name: 'Bob' } });
    assert.deepEqual(memberList(membersB), [
      { id: 'alice', info: { name: 'Alice', role: 'admin' } },
      { id: 'bob', info: { name: 'Bob' } },
    ]);
    assert.equal(cha.members.count, 2);
    assert.deepEqual(cha.members.get('bob'), { id: 'bob', info: { name: 'Bob' } });
  });

  it('unsubscribing sends pusher:member_removed to the others', async (t) => {
    const name = uid('presence-room-');
    const [{ ch: cha }, { p: b }] = await env.kit(t).subscribers(name, [{ user: ALICE }, { user: BOB }]);
    await eventually(async () => cha.members.count, (n) => n === 2, { what: 'bob to be added' });
    const removed = waitEvent(cha, 'pusher:member_removed');
    b.unsubscribe(name);
    assert.deepEqual(await removed, { id: 'bob', info: { name: 'Bob' } });
    assert.equal(cha.members.count, 1);
    assert.deepEqual(memberList(cha.members), [{ id: 'alice', info: { name: 'Alice', role: 'admin' } }]);
  });

  it('disconnecting sends pusher:member_removed to the others', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-room-');
    const { ch: cha } = await k.subscriber(name, { user: ALICE });
    const added = waitEvent(cha, 'pusher:member_added');
    const { p: c } = await k.subscriber(name, { user: CAROL });
    await added;
    const removed = waitEvent(cha, 'pusher:member_removed');
    c.disconnect();
    assert.deepEqual(await removed, { id: 'carol', info: { name: 'Carol' } });
    assert.equal(cha.members.count, 1);
  });

  it('one user on two sockets is one member: added once, removed when the last socket leaves', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-multi-');
    const { ch: cw } = await k.subscriber(name, { user: ALICE });
    const events = recordMembership(cw);
    const [{ p: bob1, data: m1 }, { p: bob2, data: m2 }] = await k.subscribers(name, [{ user: BOB }, { user: BOB }]);
    assert.equal(m1.count, 2);
    assert.equal(m2.count, 2);
    assert.deepEqual(memberList(m2), [
      { id: 'alice', info: { name: 'Alice', role: 'admin' } },
      { id: 'bob', info: { name: 'Bob' } },
    ]);
    // REST agrees: two distinct users on three connections.
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`, { info: 'user_count,subscription_count' }),
      { occupied: true, user_count: 2, subscription_count: 3 });
    // The first of bob's sockets leaving is not a membership change...
    bob1.disconnect();
    await eventually(() => getJson(env.sdk, `/channels/${name}`, { info: 'subscription_count' }),
      (b) => b.subscription_count === 2, { what: 'bob1 to leave' });
    // ...the last one is. Only then does the watcher hear member_removed.
    bob2.unsubscribe(name);
    await events.count(2);
    assert.deepEqual(events.items, [{ added: 'bob', info: { name: 'Bob' } }, { removed: 'bob' }]);
    assert.equal(cw.members.count, 1);
  });

  it('REST lists the presence users sorted by id, and user_count', async (t) => {
    const name = uid('presence-rest-');
    await env.kit(t).subscribers(name, [CAROL, ALICE, BOB].map((user) => ({ user })));
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}/users`),
      { users: [{ id: 'alice' }, { id: 'bob' }, { id: 'carol' }] });
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`, { info: 'user_count' }),
      { occupied: true, user_count: 3 });
  });

  it('a numeric user_id is a string member id everywhere', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-num-');
    const { ch: cha } = await k.subscriber(name, { user: ALICE });
    const added = waitEvent(cha, 'pusher:member_added');
    // The app's auth endpoint signs {"user_id":42}; the SDK keeps the number.
    const { data: members } = await k.subscriber(name, { user: { id: 42, info: { name: 'Answer' } } });
    assert.deepEqual(await added, { id: '42', info: { name: 'Answer' } });
    assert.deepEqual(members.get('42'), { id: '42', info: { name: 'Answer' } });
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}/users`), { users: [{ id: '42' }, { id: 'alice' }] });
  });

  it('a member without user_info has null info', async (t) => {
    const name = uid('presence-noinfo-');
    const { data: members } = await env.kit(t).subscriber(name, { user: { id: 'anon' } });
    assert.equal(members.count, 1);
    assert.deepEqual(memberList(members), [{ id: 'anon', info: null }]);
  });

  it('events triggered on a presence channel reach all members', async (t) => {
    const name = uid('presence-ev-');
    const [{ ch: ca }, { ch: cb }] = await env.kit(t).subscribers(name, [{ user: ALICE }, { user: BOB }]);
    const ga = waitEvent(ca, 'announce');
    const gb = waitEvent(cb, 'announce');
    await env.sdk.trigger(name, 'announce', { text: 'standup' });
    assert.deepEqual(await ga, { text: 'standup' });
    assert.deepEqual(await gb, { text: 'standup' });
  });

  it('Echo join(): here() lists users, joining()/leaving() follow others', async (t) => {
    const k = env.kit(t);
    const name = uid('lobby-');
    const joins = new Recorder();
    const leaves = new Recorder();
    const here = await echoJoin(k.echo({ user: ALICE }), name, { joins, leaves });
    assert.deepEqual(here, [{ name: 'Alice', role: 'admin' }]);
    const bob = k.echo({ user: BOB });
    const bobHere = await echoJoin(bob, name);
    assert.deepEqual(byName(bobHere), [{ name: 'Alice', role: 'admin' }, { name: 'Bob' }]);
    assert.deepEqual(await joins.next(), { name: 'Bob' });
    bob.leave(name);
    assert.deepEqual(await leaves.next(), { name: 'Bob' });
  });

  it("Echo join(): a late joiner's here() lists everyone; leaving() waits for a member's last connection", async (t) => {
    const k = env.kit(t);
    const name = uid('lobby-');
    const joins = new Recorder();
    const leaves = new Recorder();
    await echoJoin(k.echo({ user: ALICE }), name, { joins, leaves });
    const bobTabs = [k.echo({ user: BOB }), k.echo({ user: BOB })];
    for (const tab of bobTabs) await echoJoin(tab, name);
    const carolHere = await echoJoin(k.echo({ user: CAROL }), name);
    assert.deepEqual(byName(carolHere), [{ name: 'Alice', role: 'admin' }, { name: 'Bob' }, { name: 'Carol' }]);
    // Bob's second tab is not a new member.
    assert.deepEqual(await joins.count(2), [{ name: 'Bob' }, { name: 'Carol' }]);
    bobTabs[0].disconnect();
    await eventually(() => getJson(env.sdk, `/channels/presence-${name}`, { info: 'subscription_count' }),
      (b) => b.subscription_count === 3, { what: "bob's first tab to leave" });
    assert.deepEqual(leaves.items, []);
    bobTabs[1].disconnect();
    assert.deepEqual(await leaves.next(), { name: 'Bob' });
    assert.deepEqual(joins.items, [{ name: 'Bob' }, { name: 'Carol' }]);
  });

  it('a user on a full presence channel gets pusher:subscription_error LimitReached', async (t) => {
    const { k } = await ownServer(t, { app: { max_presence_members: 2 } });
    const name = uid('presence-full-');
    // Another socket of an existing member is not a new member and is let in.
    const [, , { data: again }] = await k.subscribers(name, [{ user: ALICE }, { user: BOB }, { user: BOB }]);
    assert.equal(again.count, 2);
    const carol = await k.connected({ user: CAROL });
    const err = await waitEvent(carol.subscribe(name), 'pusher:subscription_error');
    assert.deepEqual(err, {
      type: 'LimitReached',
      error: `Cannot subscribe to ${name}: presence channel is full (2 members)`,
      status: 4100,
    });
    await waitState(carol, 'connected');
  });

  it('a socket dropped without a close frame still produces pusher:member_removed', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-drop-');
    const { ch: cw } = await k.subscriber(name, { user: ALICE });
    const raw = await k.raw();
    const channelData = JSON.stringify({ user_id: 'dropper', user_info: { name: 'Drop' } });
    const token = env.sdk.authorizeChannel(raw.socketId, name, JSON.parse(channelData));
    const added = waitEvent(cw, 'pusher:member_added');
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth: token.auth, channel_data: token.channel_data } });
    assert.deepEqual(await added, { id: 'dropper', info: { name: 'Drop' } });
    const removed = waitEvent(cw, 'pusher:member_removed');
    raw.ws.terminate(); // TCP closed, no WebSocket close frame
    assert.deepEqual(await removed, { id: 'dropper', info: { name: 'Drop' } });
    assert.equal(cw.members.count, 1);
  });

  it('user_info over 1024 bytes is refused: pusher:subscription_error InvalidRequest/400', async (t) => {
    const info = { bio: 'x'.repeat(1100) };
    const p = await env.kit(t).connected({ user: { id: 'big', info } });
    const name = uid('presence-bigInfo-');
    const err = await waitEvent(p.subscribe(name), 'pusher:subscription_error');
    assert.deepEqual(err, {
      type: 'InvalidRequest',
      error: 'Invalid channel_data: user_info exceeds 1024 bytes',
      status: 400,
    });
    assert.deepEqual(await getJson(env.sdk, `/channels/${name}`), { occupied: false });
  });

  it('unicode user_info round-trips exactly', async (t) => {
    const k = env.kit(t);
    const name = uid('presence-uni-');
    const info = { name: 'Zoë Ñandú 日本 🎉', tags: ['a"b', 'c\\d'] };
    const { ch: cw } = await k.subscriber(name, { user: ALICE });
    const added = waitEvent(cw, 'pusher:member_added');
    const { data: members } = await k.subscriber(name, { user: { id: 'zoe', info } });
    assert.deepEqual(await added, { id: 'zoe', info });
    assert.deepEqual(members.me, { id: 'zoe', info });
  });
});

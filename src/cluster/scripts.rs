//! The Lua scripts that change shared state. Each runs atomically in Redis and returns the
//! transitions it made, so exactly one node learns of each (occupied, vacated, member added or
//! removed, first cache miss) and it alone sends the frames and webhooks. Every script takes
//! the app's key base (`Keys::app`) as its first argument; results are arrays of strings.
//!
//! Departures (vacated channels, removed members) are not reported as webhooks at once: they
//! go into the app's `departures` sorted set, due after the grace period. A join before that
//! removes the entry, so a page that reloads onto another node produces no webhooks; entries
//! still there when due are popped by one node and sent.

use std::sync::LazyLock;

use redis::Script;

/// ARGV: base, socket id, node id, max connections (0: none). Returns `1`, or `0` when the
/// app is at its limit across the cluster.
pub static ADD_SOCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, sid, node, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local sockets = base .. ':sockets'
if max > 0 and redis.call('HLEN', sockets) >= max then return '0' end
redis.call('HSET', sockets, sid, node)
return '1'
"#,
    )
});

/// ARGV: base, channel, socket id, user id ('' when not presence), user info JSON ('' for
/// none), max presence members, due time of a departure (ms), '1' on cache channels.
/// Returns `{'full'}`, or `{'ok', occupied, occupied is news, member added, member added is
/// news, sequence, cached frame or '', first cache miss, then user id, info pairs}`.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, ch, sid, uid, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max, is_cache = tonumber(ARGV[6]), ARGV[7] == '1'
local c = base .. ':ch:' .. ch
local members, infos = c .. ':members', c .. ':info'
local departures = base .. ':departures'
if uid ~= '' and redis.call('HEXISTS', members, uid) == 0
    and redis.call('HLEN', members) >= max then
  return {'full'}
end
local occupied, occupied_news, added, added_news = '0', '0', '0', '0'
if redis.call('HLEN', c .. ':subs') == 0 then
  occupied = '1'
  redis.call('SADD', base .. ':channels', ch)
  if redis.call('ZREM', departures, 'v\n' .. ch) == 0 then occupied_news = '1' end
end
redis.call('HSET', c .. ':subs', sid, uid)
redis.call('HSET', base .. ':sock:' .. sid, 'ch:' .. ch, uid)
if uid ~= '' then
  if redis.call('HINCRBY', members, uid, 1) == 1 then
    added = '1'
    if info ~= '' then redis.call('HSET', infos, uid, info) end
    if redis.call('ZREM', departures, 'm\n' .. ch .. '\n' .. uid) == 0 then added_news = '1' end
  end
end
local cached = redis.call('HGET', c .. ':cache', 'f') or ''
local miss = '0'
if is_cache and cached == '' and redis.call('SET', c .. ':miss', '1', 'NX') then miss = '1' end
local seq = redis.call('GET', base .. ':seq') or '0'
local out = {'ok', occupied, occupied_news, added, added_news, seq, cached, miss}
if uid ~= '' then
  local ids = redis.call('HKEYS', members)
  for _, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', infos, id) or ''
  end
end
return out
"#,
    )
});

/// ARGV: base, channel, socket id, due time of a departure (ms). Returns `{vacated,
/// removed user id or ''}`; `{'0', ''}` when the socket was not subscribed.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, ch, sid, due = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local c = base .. ':ch:' .. ch
local uid = redis.call('HGET', c .. ':subs', sid)
if not uid then return {'0', ''} end
redis.call('HDEL', c .. ':subs', sid)
redis.call('HDEL', base .. ':sock:' .. sid, 'ch:' .. ch)
local departures = base .. ':departures'
local removed, vacated = '', '0'
if uid ~= '' and redis.call('HINCRBY', c .. ':members', uid, -1) <= 0 then
  redis.call('HDEL', c .. ':members', uid)
  redis.call('HDEL', c .. ':info', uid)
  redis.call('ZADD', departures, due, 'm\n' .. ch .. '\n' .. uid)
  removed = uid
end
if redis.call('HLEN', c .. ':subs') == 0 then
  vacated = '1'
  redis.call('SREM', base .. ':channels', ch)
  redis.call('DEL', c .. ':miss')
  redis.call('ZADD', departures, due, 'v\n' .. ch)
end
return {vacated, removed}
"#,
    )
});

/// ARGV: base, topic, channel, socket id to skip ('' for none), frame text, then for cache
/// channels the data and the TTL in ms. Numbers the event and publishes
/// `sequence\nexcept\nframe` when the channel has subscribers anywhere.
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, topic, ch, except, frame = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local c = base .. ':ch:' .. ch
local seq = redis.call('INCR', base .. ':seq')
if ARGV[6] then
  redis.call('HSET', c .. ':cache', 'f', frame, 'd', ARGV[6])
  redis.call('PEXPIRE', c .. ':cache', ARGV[7])
  redis.call('DEL', c .. ':miss')
end
if redis.call('EXISTS', c .. ':subs') == 1 then
  redis.call('PUBLISH', topic, seq .. '\n' .. except .. '\n' .. frame)
end
return '1'
"#,
    )
});

/// ARGV: base, topic, channel, the count frame's text before and after the number. Reads the
/// count and publishes it in one step, so updates arrive in the order they were read.
pub static PUBLISH_COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, topic, ch, before, after = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local c = base .. ':ch:' .. ch
local count = redis.call('HLEN', c .. ':subs')
if count > 0 then
  local seq = redis.call('INCR', base .. ':seq')
  redis.call('PUBLISH', topic, seq .. '\n\n' .. before .. count .. after)
end
return tostring(count)
"#,
    )
});

/// ARGV: base, user id, socket id, node id. Returns '1' when it is the user's first
/// connection in the cluster.
pub static ADD_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, uid, sid, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local users = base .. ':users:' .. uid
redis.call('HSET', users, sid, node)
redis.call('HSET', base .. ':sock:' .. sid, 'user', uid)
if redis.call('HLEN', users) == 1 then return '1' end
return '0'
"#,
    )
});

/// ARGV: base, user id, socket id. Returns '1' when it was the user's last connection.
pub static REMOVE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, uid, sid = ARGV[1], ARGV[2], ARGV[3]
redis.call('HDEL', base .. ':sock:' .. sid, 'user')
if redis.call('HDEL', base .. ':users:' .. uid, sid) == 1
    and redis.call('EXISTS', base .. ':users:' .. uid) == 0 then
  return '1'
end
return '0'
"#,
    )
});

/// ARGV: base, now (ms), most to pop. Removes and returns the departures that are due.
pub static POP_DEPARTURES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local departures = ARGV[1] .. ':departures'
local due = redis.call('ZRANGEBYSCORE', departures, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #due > 0 then redis.call('ZREM', departures, unpack(due)) end
return due
"#,
    )
});

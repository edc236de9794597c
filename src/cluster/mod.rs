//! Cluster mode: several nodes share one Redis (or Valkey), and a client cannot tell that
//! there is more than one.
//!
//! - Shared state, not scatter-gather: every subscription, presence member and signed-in user
//!   is in Redis (`keys.rs`), changed by Lua scripts that return the transitions they made
//!   (`scripts.rs`), so each transition is seen by exactly one node. REST reads are answered
//!   from Redis alone, never by asking the other nodes, so a slow or paused node delays nobody.
//! - Fan-out through Redis pub/sub: one topic per Pusher channel, which a node subscribes to
//!   while it has subscribers there (`local.rs` is that node-local registry, `pubsub.rs` the
//!   subscriber connection). Each event is serialized once and numbered, so a joiner gets it
//!   exactly once.
//! - Nodes heartbeat into a sorted set; a node silent for `node_timeout` is swept by one of
//!   the others through the same scripts, with the frames and webhooks its departures imply
//!   (`nodes.rs`). Webhook departures wait out the grace period in Redis and are popped by
//!   whichever node is alive.
//! - Every Redis call has a deadline; a call that misses it is an error (503 on REST, 4200 on
//!   a WebSocket), never a guess. When the node loses Redis it closes its connections with 4200
//!   (they may have missed events), refuses new ones with 4100 until it is back, then cleans up
//!   what it left behind.

mod journal;
mod keys;
mod local;
mod nodes;
mod pubsub;
mod scripts;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::{
    keys::Keys,
    local::Local,
    pubsub::{Command, UserMessage},
};
use crate::{
    channel::ChannelKind,
    config::ClusterConfig,
    error::CloseError,
    frame::{self, Frame, Member},
    hub::{
        Adapter, CacheEntry, CachedEvent, ChannelStats, FirstFrames, HubEvent, HubResult,
        JoinError, Joined, Left, Refusal, Subscriber, Unavailable,
    },
    socket::Outbox,
};

/// Deadline of every Redis call.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Hub events waiting for the server to apply them.
const EVENT_QUEUE: usize = 10_000;

/// How many channels a listing reads or counts per Redis command.
const LIST_BATCH: usize = 500;

pub struct ClusterAdapter {
    inner: Arc<Inner>,
    events: Mutex<Option<mpsc::Receiver<HubEvent>>>,
}

/// What the adapter and its background tasks share.
struct Inner {
    node: String,
    keys: Keys,
    client: redis::Client,
    conn: ConnectionManager,
    local: Local,
    commands: mpsc::UnboundedSender<Command>,
    /// Subscribed to Redis and clean: connections are accepted.
    ready: AtomicBool,
    /// The subscriber connection is up. While it is down every call fails at once instead of
    /// waiting out its deadline (a node closing thousands of connections must not take hours).
    reachable: AtomicBool,
    /// Some cleanup did not reach Redis: the node's leftovers must be swept.
    needs_sweep: AtomicBool,
    events: mpsc::Sender<HubEvent>,
    /// The ids of the apps this node serves, replaced when they change.
    apps: std::sync::RwLock<Arc<Vec<String>>>,
    grace_ms: u64,
    node_timeout: Duration,
    stop: CancellationToken,
}

impl Inner {
    fn apps(&self) -> Arc<Vec<String>> {
        self.apps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ClusterAdapter {
    /// Starts the node's Redis connections in the background; until they are up it refuses
    /// connections (4100) and REST reads (503).
    pub fn start(
        settings: &ClusterConfig,
        apps: Vec<String>,
        grace_ms: u64,
    ) -> Result<ClusterAdapter, redis::RedisError> {
        let client = redis::Client::open(settings.redis_url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let inner = Arc::new(Inner {
            node: format!("{:016x}", rand::random::<u64>()),
            keys: Keys::new(&settings.prefix),
            client,
            conn,
            local: Local::default(),
            commands,
            ready: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
            needs_sweep: AtomicBool::new(false),
            events,
            apps: std::sync::RwLock::new(Arc::new(apps)),
            grace_ms,
            node_timeout: settings.node_timeout,
            stop: CancellationToken::new(),
        });
        tokio::spawn(pubsub::run(inner.clone(), command_rx));
        tokio::spawn(nodes::maintain(inner.clone()));
        tracing::info!(node = %inner.node, prefix = %settings.prefix, "cluster mode: joining the nodes on {}", redact(&settings.redis_url));
        Ok(ClusterAdapter {
            inner,
            events: Mutex::new(Some(events_rx)),
        })
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl Inner {
    /// Runs one Redis call within the deadline.
    async fn call<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> HubResult<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.reachable.load(Ordering::Acquire) {
            return Err(Unavailable);
        }
        match tokio::time::timeout(OP_TIMEOUT, f(self.conn.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::debug!("redis call failed: {e}");
                Err(Unavailable)
            }
            Err(_) => {
                tracing::debug!("redis call timed out");
                Err(Unavailable)
            }
        }
    }

    /// One command within the deadline.
    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> HubResult<T> {
        self.call(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// One pipeline (one round trip) within the deadline.
    async fn pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> HubResult<T> {
        self.call(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }

    async fn script(&self, script: &redis::Script, args: &[&str]) -> HubResult<Vec<String>> {
        self.call(|mut conn| async move {
            let mut invocation = script.prepare_invoke();
            for arg in args {
                invocation.arg(*arg);
            }
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    fn departure_due(&self) -> String {
        (now_ms() + self.grace_ms).to_string()
    }

    async fn leave(&self, app: &str, channel: &str, socket_id: &str) -> HubResult<Left> {
        let base = self.keys.app(app);
        let due = self.departure_due();
        let out = self
            .script(&scripts::LEAVE, &[&base, channel, socket_id, &due])
            .await?;
        Ok(Left {
            vacated: out.first().is_some_and(|v| v == "1"),
            member_removed: out.get(1).filter(|u| !u.is_empty()).cloned(),
        })
    }

    async fn remove_user(&self, app: &str, user_id: &str, socket_id: &str) -> HubResult<bool> {
        let base = self.keys.app(app);
        let out = self
            .script(&scripts::REMOVE_USER, &[&base, user_id, socket_id])
            .await?;
        Ok(out.first().is_some_and(|v| v == "1"))
    }

    /// Removes whatever Redis still holds for a connection that is gone, reporting the
    /// transitions as hub events: used on every disconnect (for anything a failed call left)
    /// and for the connections of dead nodes.
    async fn sweep_socket(&self, app: &str, socket_id: &str, node: &str) -> HubResult<()> {
        let base = self.keys.app(app);
        let sock_key = format!("{base}:sock:{socket_id}");
        let fields: Vec<(String, String)> = self.cmd(redis::cmd("HGETALL").arg(&sock_key)).await?;
        for (field, value) in fields {
            if let Some(channel) = field.strip_prefix("ch:") {
                let left = self.leave(app, channel, socket_id).await?;
                // Even with no transition: the subscription count changed.
                let _ = self
                    .events
                    .send(HubEvent::Left {
                        app: app.to_string(),
                        channel: channel.to_string(),
                        left,
                    })
                    .await;
            } else if field == "user" && self.remove_user(app, &value, socket_id).await? {
                let _ = self
                    .events
                    .send(HubEvent::Offline {
                        app: app.to_string(),
                        user_id: value,
                    })
                    .await;
            }
        }
        let sockets = format!("{base}:sockets");
        let sock_key = format!("{base}:sock:{socket_id}");
        let node_key = self.keys.node_sockets(node);
        let member = format!("{app}\n{socket_id}");
        self.pipe(
            redis::pipe()
                .hdel(&sockets, socket_id)
                .ignore()
                .del(&sock_key)
                .ignore()
                .srem(&node_key, &member)
                .ignore(),
        )
        .await
    }

    fn check_ready(&self) -> HubResult<()> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Unavailable)
        }
    }
}

fn flag(out: &[String], i: usize) -> bool {
    out.get(i).is_some_and(|v| v == "1")
}

#[async_trait]
impl Adapter for ClusterAdapter {
    async fn add_socket(
        &self,
        app: &str,
        socket: &Outbox,
        max: Option<usize>,
    ) -> Result<(), Refusal> {
        let inner = &self.inner;
        inner.check_ready().map_err(|_| Refusal::Unavailable)?;
        let sid = socket.socket_id();
        // Known locally first, so a sweep of this node's leftovers never takes it for one.
        inner.local.add_socket(app, socket);
        let refuse = |refusal| {
            inner.local.remove_socket(sid);
            Err(refusal)
        };
        // Registered with the node before the app: if the node dies between the two, the
        // sweep finds the id and removes nothing else.
        let node_key = inner.keys.node_sockets(&inner.node);
        let member = format!("{app}\n{sid}");
        let registered = inner
            .cmd::<()>(redis::cmd("SADD").arg(&node_key).arg(&member))
            .await;
        if registered.is_err() {
            return refuse(Refusal::Unavailable);
        }
        let base = inner.keys.app(app);
        let max = max.unwrap_or(0).to_string();
        match inner
            .script(&scripts::ADD_SOCKET, &[&base, sid, &inner.node, &max])
            .await
        {
            Ok(out) if flag(&out, 0) => Ok(()),
            Ok(_) => {
                let _ = inner.sweep_socket(app, sid, &inner.node).await;
                refuse(Refusal::OverQuota)
            }
            Err(_) => refuse(Refusal::Unavailable),
        }
    }

    async fn remove_socket(&self, app: &str, socket_id: &str) {
        let inner = &self.inner;
        inner.local.remove_socket(socket_id);
        if inner
            .sweep_socket(app, socket_id, &inner.node)
            .await
            .is_err()
        {
            inner.needs_sweep.store(true, Ordering::Release);
        }
    }

    async fn subscribe(
        &self,
        app: &str,
        channel: &str,
        sub: Subscriber<'_>,
        first_frames: FirstFrames<'_>,
    ) -> Result<Joined, JoinError> {
        let inner = &self.inner;
        let topic = inner.keys.channel_topic(app, channel);
        let socket = sub.socket;
        let mut subscribed = inner.local.enter(&topic, socket, &inner.commands);
        let result = async {
            tokio::time::timeout(OP_TIMEOUT, subscribed.wait_for(|s| *s))
                .await
                .map_err(|_| Unavailable)?
                .map_err(|_| Unavailable)?;
            let base = inner.keys.app(app);
            let (uid, info) = match &sub.member {
                Some(m) => (
                    m.user_id.as_str(),
                    m.user_info.as_ref().map_or("", |i| i.get()),
                ),
                None => ("", ""),
            };
            let max = sub.max_members.to_string();
            let cache = if ChannelKind::of(channel).cache {
                "1"
            } else {
                "0"
            };
            inner
                .script(
                    &scripts::JOIN,
                    &[&base, channel, socket.socket_id(), uid, info, &max, cache],
                )
                .await
        }
        .await;
        let out = match result {
            Ok(out) if out.first().is_some_and(|s| s == "ok") => out,
            other => {
                inner
                    .local
                    .leave(&topic, socket.socket_id(), &inner.commands);
                return Err(match other {
                    Ok(_) => JoinError::PresenceFull,
                    Err(_) => JoinError::Unavailable,
                });
            }
        };
        let mut members: Vec<Member> = out
            .get(8..)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|pair| Member {
                user_id: pair[0].clone(),
                user_info: (!pair[1].is_empty())
                    .then(|| RawValue::from_string(pair[1].clone()).ok().map(Arc::from))
                    .flatten(),
            })
            .collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let cached = out
            .get(6)
            .filter(|f| !f.is_empty())
            .map(|f| Frame::from(f.as_str()));
        let joined = Joined {
            occupied: flag(&out, 1),
            occupied_webhook: flag(&out, 2),
            member_added: flag(&out, 3),
            member_added_webhook: flag(&out, 4),
            members,
            cached,
            first_cache_miss: flag(&out, 7),
        };
        let seq = out.get(5).and_then(|s| s.parse().ok()).unwrap_or(0);
        inner
            .local
            .admit(&topic, socket, first_frames(&joined), seq);
        Ok(joined)
    }

    async fn unsubscribe(&self, app: &str, channel: &str, socket_id: &str) -> Left {
        let inner = &self.inner;
        let topic = inner.keys.channel_topic(app, channel);
        inner.local.leave(&topic, socket_id, &inner.commands);
        match inner.leave(app, channel, socket_id).await {
            Ok(left) => left,
            Err(_) => {
                inner.needs_sweep.store(true, Ordering::Release);
                Left::default()
            }
        }
    }

    async fn publish(
        &self,
        app: &str,
        channel: &str,
        frame: Frame,
        except: Option<&str>,
        cache: Option<CacheEntry<'_>>,
    ) -> HubResult<()> {
        let inner = &self.inner;
        let base = inner.keys.app(app);
        let topic = inner.keys.channel_topic(app, channel);
        let except = except.unwrap_or("");
        let ttl;
        let mut args = vec![base.as_str(), topic.as_str(), channel, except, frame.text()];
        if let Some(cache) = &cache {
            ttl = (cache.ttl_seconds * 1000).to_string();
            args.push(cache.data);
            args.push(&ttl);
        }
        inner.script(&scripts::PUBLISH, &args).await.map(drop)
    }

    async fn publish_subscription_count(&self, app: &str, channel: &str) -> HubResult<usize> {
        let inner = &self.inner;
        // The frame around the number, from the one place that formats it.
        const MARK: usize = usize::MAX;
        let template = frame::subscription_count(channel, MARK);
        let (before, after) = template
            .text()
            .split_once(&MARK.to_string())
            .expect("the count appears in its frame");
        let base = inner.keys.app(app);
        let topic = inner.keys.channel_topic(app, channel);
        let out = inner
            .script(
                &scripts::PUBLISH_COUNT,
                &[&base, &topic, channel, before, after],
            )
            .await?;
        Ok(out.first().and_then(|c| c.parse().ok()).unwrap_or(0))
    }

    async fn channels(&self, app: &str) -> HubResult<Vec<(String, ChannelStats)>> {
        let inner = &self.inner;
        let base = inner.keys.app(app);
        let key = format!("{base}:channels");
        // Redis runs one command at a time for every node: a large set is read and counted in
        // bounded steps (SSCAN, then a pipeline per batch) so no single command holds it up.
        let mut names = std::collections::BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = inner
                .cmd(
                    redis::cmd("SSCAN")
                        .arg(&key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(LIST_BATCH),
                )
                .await?;
            names.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let names: Vec<String> = names.into_iter().collect();
        let mut list = Vec::with_capacity(names.len());
        for batch in names.chunks(LIST_BATCH) {
            let mut pipe = redis::pipe();
            for name in batch {
                pipe.hlen(format!("{base}:ch:{name}:subs"));
                pipe.hlen(format!("{base}:ch:{name}:members"));
            }
            let counts: Vec<usize> = inner.pipe(&pipe).await?;
            for (name, c) in batch.iter().zip(counts.chunks_exact(2)) {
                if c[0] > 0 {
                    let stats = ChannelStats {
                        subscription_count: c[0],
                        user_count: c[1],
                    };
                    list.push((name.clone(), stats));
                }
            }
        }
        Ok(list)
    }

    async fn channel_stats(&self, app: &str, channel: &str) -> HubResult<ChannelStats> {
        let base = self.inner.keys.app(app);
        let (subscription_count, user_count) = self
            .inner
            .pipe(
                redis::pipe()
                    .hlen(format!("{base}:ch:{channel}:subs"))
                    .hlen(format!("{base}:ch:{channel}:members")),
            )
            .await?;
        Ok(ChannelStats {
            subscription_count,
            user_count,
        })
    }

    async fn cached_event(&self, app: &str, channel: &str) -> HubResult<Option<CachedEvent>> {
        let key = format!("{}:ch:{channel}:cache", self.inner.keys.app(app));
        let (data, ttl_ms): (Option<String>, i64) = self
            .inner
            .pipe(redis::pipe().hget(&key, "d").pttl(&key))
            .await?;
        Ok(data.map(|data| CachedEvent {
            data,
            ttl_seconds: (ttl_ms.max(0) / 1000) as u64,
        }))
    }

    async fn members(&self, app: &str, channel: &str) -> HubResult<Vec<Member>> {
        let key = format!("{}:ch:{channel}:members", self.inner.keys.app(app));
        let mut ids: Vec<String> = self.inner.cmd(redis::cmd("HKEYS").arg(&key)).await?;
        ids.sort();
        Ok(ids
            .into_iter()
            .map(|user_id| Member {
                user_id,
                user_info: None,
            })
            .collect())
    }

    async fn add_user(&self, app: &str, user_id: &str, socket: &Outbox) -> HubResult<bool> {
        let inner = &self.inner;
        inner.local.add_user(app, user_id, socket);
        let base = inner.keys.app(app);
        let out = inner
            .script(
                &scripts::ADD_USER,
                &[&base, user_id, socket.socket_id(), &inner.node],
            )
            .await?;
        Ok(flag(&out, 0))
    }

    async fn remove_user(&self, app: &str, user_id: &str, socket_id: &str) -> bool {
        let inner = &self.inner;
        inner.local.remove_user(app, user_id, socket_id);
        match inner.remove_user(app, user_id, socket_id).await {
            Ok(last) => last,
            Err(_) => {
                inner.needs_sweep.store(true, Ordering::Release);
                false
            }
        }
    }

    async fn publish_to_user(
        &self,
        app: &str,
        user_id: &str,
        frame: Frame,
        except: Option<&str>,
    ) -> HubResult<()> {
        let message = UserMessage::ToUser {
            user_id,
            except: except.unwrap_or(""),
            frame: frame.text(),
        };
        self.publish_user_message(app, message.encode()).await
    }

    async fn terminate_user(&self, app: &str, user_id: &str) -> HubResult<()> {
        self.publish_user_message(app, UserMessage::Terminate { user_id }.encode())
            .await
    }

    async fn online_users(&self, app: &str, user_ids: &[String]) -> HubResult<Vec<String>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let base = self.inner.keys.app(app);
        let mut pipe = redis::pipe();
        for id in user_ids {
            pipe.exists(format!("{base}:users:{id}"));
        }
        let exists: Vec<bool> = self.inner.pipe(&pipe).await?;
        Ok(user_ids
            .iter()
            .zip(exists)
            .filter(|(_, online)| *online)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn watch(&self, app: &str, socket: &Outbox, user_ids: &[String]) -> HubResult<()> {
        self.inner.local.watch(app, user_ids, socket);
        Ok(())
    }

    async fn unwatch(&self, app: &str, socket_id: &str, user_ids: &[String]) {
        self.inner.local.unwatch(app, user_ids, socket_id);
    }

    async fn publish_to_watchers(&self, app: &str, user_id: &str, frame: Frame) -> HubResult<()> {
        let message = UserMessage::ToWatchers {
            user_id,
            frame: frame.text(),
        };
        self.publish_user_message(app, message.encode()).await
    }

    async fn clear_caches(&self) {
        for app in self.inner.apps().iter() {
            let pattern = format!("{}:ch:*:cache", self.inner.keys.app(app));
            let _ = self
                .inner
                .call(|mut conn| async move {
                    let mut cursor: u64 = 0;
                    loop {
                        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut conn)
                            .await?;
                        if !keys.is_empty() {
                            redis::cmd("DEL")
                                .arg(&keys)
                                .query_async::<()>(&mut conn)
                                .await?;
                        }
                        if next == 0 {
                            return Ok(());
                        }
                        cursor = next;
                    }
                })
                .await;
        }
    }

    fn events(&self) -> Option<mpsc::Receiver<HubEvent>> {
        self.events.lock().expect("not poisoned").take()
    }

    fn settles_grace(&self) -> bool {
        true
    }

    fn webhook_journal(&self) -> Option<Arc<dyn crate::webhook::Journal>> {
        Some(Arc::new(journal::ClusterJournal::new(self.inner.clone())))
    }

    fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    fn local_channels(&self) -> Vec<(String, usize)> {
        let inner = &self.inner;
        inner
            .apps()
            .iter()
            .map(|app| {
                let prefix = inner.keys.channel_topic(app, "");
                (app.clone(), inner.local.live_channels(&prefix))
            })
            .collect()
    }

    fn close_app(&self, app: &str, reason: CloseError) -> usize {
        self.inner.local.close_app(app, reason)
    }

    fn apps_changed(&self, ids: Vec<String>) {
        *self.inner.apps.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ids);
    }

    async fn shutdown(&self) {
        nodes::leave_cluster(&self.inner).await;
        self.inner.stop.cancel();
    }
}

impl ClusterAdapter {
    async fn publish_user_message(&self, app: &str, message: String) -> HubResult<()> {
        let topic = self.inner.keys.user_topic(app);
        self.inner
            .cmd(redis::cmd("PUBLISH").arg(&topic).arg(&message))
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_the_logs() {
        assert_eq!(
            super::redact("redis://:hunter2@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(super::redact("redis://db:6379"), "redis://db:6379");
    }
}

//! The in-process adapter: channel state in sharded maps (no global lock), delivery straight into
//! each subscriber's bounded queue.

use std::{
    collections::{BTreeSet, HashMap},
    ops::Bound,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use dashmap::DashMap;
use serde_json::value::RawValue;

use super::{
    Adapter, CacheEntry, CachedEvent, ChannelStats, FirstFrames, HubResult, JoinError, Joined,
    Left, Refusal, Subscriber,
};
use crate::{
    frame::{self, Frame, Member},
    socket::Outbox,
};

#[derive(Default)]
pub struct MemoryAdapter {
    apps: DashMap<String, Arc<AppState>>,
}

#[derive(Default)]
struct AppState {
    sockets: DashMap<Arc<str>, Outbox>,
    connections: AtomicUsize,
    channels: DashMap<String, Channel>,
    /// The names of the channels with subscribers, in order. Listings walk this a batch at a time
    /// instead of iterating `channels`, which would hold each shard's lock for the whole shard.
    /// Written only when a channel becomes occupied or vacated, under that channel's entry lock.
    occupied: Mutex<BTreeSet<String>>,
    /// Signed-in connections by user id.
    users: DashMap<String, HashMap<Arc<str>, Outbox>>,
    /// Connections watching a user id.
    watchers: DashMap<String, HashMap<Arc<str>, Outbox>>,
    /// Cache publishes since expired, unsubscribed cache channels were last swept.
    cache_publishes: AtomicUsize,
}

/// The most channel names a listing copies under one hold of the index lock; it yields to other
/// tasks between batches.
const LIST_BATCH: usize = 256;

/// Cache channels nobody subscribes to are only visited again by a sweep, every this many
/// cache publishes, so their memory stays bounded without a timer.
const CACHE_SWEEP_EVERY: usize = 1024;

#[derive(Default)]
struct Channel {
    subscribers: HashMap<Arc<str>, Subscription>,
    /// Presence members by user id, with how many of this channel's connections each has.
    members: HashMap<String, MemberEntry>,
    cache: Option<Cache>,
    /// A `cache_miss` was reported since the cache was last empty.
    miss_reported: bool,
}

struct Subscription {
    outbox: Outbox,
    user_id: Option<String>,
}

struct MemberEntry {
    info: Option<Arc<RawValue>>,
    connections: usize,
}

struct Cache {
    frame: Frame,
    data: String,
    expires: Instant,
}

impl Channel {
    fn live_cache(&self) -> Option<&Cache> {
        self.cache.as_ref().filter(|c| c.expires > Instant::now())
    }

    /// An empty channel is kept only while it holds a cached event.
    fn is_disposable(&self) -> bool {
        self.subscribers.is_empty() && self.live_cache().is_none()
    }

    fn sorted_members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .members
            .iter()
            .map(|(id, entry)| Member {
                user_id: id.clone(),
                user_info: entry.info.clone(),
            })
            .collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        members
    }

    fn deliver(&self, frame: &Frame, except: Option<&str>) {
        for (id, sub) in &self.subscribers {
            if except != Some(&**id) {
                sub.outbox.send(frame.clone());
            }
        }
    }

    fn stats(&self) -> ChannelStats {
        ChannelStats {
            subscription_count: self.subscribers.len(),
            user_count: self.members.len(),
        }
    }
}

/// Up to [`LIST_BATCH`] occupied channel names after `after`, in order.
fn occupied_after(index: &Mutex<BTreeSet<String>>, after: Option<&str>) -> Vec<String> {
    let from = after.map_or(Bound::Unbounded, Bound::Excluded);
    lock(index)
        .range::<str, _>((from, Bound::Unbounded))
        .take(LIST_BATCH)
        .cloned()
        .collect()
}

/// The index holds no invariant a panicking holder could break half-way, so a poisoned lock is
/// used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryAdapter {
    pub fn new() -> Self {
        Self::default()
    }

    fn app(&self, app: &str) -> Arc<AppState> {
        if let Some(state) = self.apps.get(app) {
            return state.clone();
        }
        self.apps.entry(app.to_string()).or_default().clone()
    }
}

#[async_trait]
impl Adapter for MemoryAdapter {
    async fn add_socket(
        &self,
        app: &str,
        socket: &Outbox,
        max: Option<usize>,
    ) -> Result<(), Refusal> {
        let state = self.app(app);
        let before = state.connections.fetch_add(1, Ordering::SeqCst);
        if max.is_some_and(|max| before >= max) {
            state.connections.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::OverQuota);
        }
        state
            .sockets
            .insert(socket.socket_id().into(), socket.clone());
        Ok(())
    }

    async fn remove_socket(&self, app: &str, socket_id: &str) {
        let state = self.app(app);
        if state.sockets.remove(socket_id).is_some() {
            state.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn subscribe(
        &self,
        app: &str,
        channel: &str,
        sub: Subscriber<'_>,
        first_frames: FirstFrames<'_>,
    ) -> Result<Joined, JoinError> {
        let state = self.app(app);
        let mut entry = state.channels.entry(channel.to_string()).or_default();
        let ch = entry.value_mut();
        if let Some(member) = &sub.member {
            if !ch.members.contains_key(&member.user_id) && ch.members.len() >= sub.max_members {
                let disposable = ch.is_disposable();
                drop(entry);
                if disposable {
                    state.channels.remove_if(channel, |_, c| c.is_disposable());
                }
                return Err(JoinError::PresenceFull);
            }
        }
        let occupied = ch.subscribers.is_empty();
        if occupied {
            lock(&state.occupied).insert(channel.to_string());
        }
        let mut member_added = false;
        let user_id = sub.member.as_ref().map(|m| m.user_id.clone());
        if let Some(member) = sub.member {
            let slot = ch.members.entry(member.user_id).or_insert(MemberEntry {
                info: member.user_info,
                connections: 0,
            });
            member_added = slot.connections == 0;
            slot.connections += 1;
        }
        ch.subscribers.insert(
            sub.socket.socket_id().into(),
            Subscription {
                outbox: sub.socket.clone(),
                user_id: user_id.clone(),
            },
        );
        let cached = ch.live_cache().map(|c| c.frame.clone());
        let first_cache_miss = cached.is_none() && !ch.miss_reported;
        if first_cache_miss {
            ch.miss_reported = true;
        }
        let joined = Joined {
            member_added,
            occupied,
            occupied_webhook: occupied,
            member_added_webhook: member_added,
            members: if user_id.is_some() {
                ch.sorted_members()
            } else {
                Vec::new()
            },
            cached,
            first_cache_miss,
        };
        // Queued while the channel is still locked, so no publish can overtake them.
        for frame in first_frames(&joined) {
            sub.socket.send(frame);
        }
        Ok(joined)
    }

    async fn unsubscribe(&self, app: &str, channel: &str, socket_id: &str) -> Left {
        let state = self.app(app);
        let Some(mut ch) = state.channels.get_mut(channel) else {
            return Left::default();
        };
        let Some(sub) = ch.subscribers.remove(socket_id) else {
            return Left::default();
        };
        let mut left = Left {
            vacated: ch.subscribers.is_empty(),
            member_removed: None,
        };
        if left.vacated {
            lock(&state.occupied).remove(channel);
        }
        if let Some(user_id) = sub.user_id {
            if let Some(member) = ch.members.get_mut(&user_id) {
                member.connections -= 1;
                if member.connections == 0 {
                    ch.members.remove(&user_id);
                    left.member_removed = Some(user_id);
                }
            }
        }
        let disposable = ch.is_disposable();
        drop(ch);
        if disposable {
            state.channels.remove_if(channel, |_, c| c.is_disposable());
        }
        left
    }

    async fn publish(
        &self,
        app: &str,
        channel: &str,
        frame: Frame,
        except: Option<&str>,
        cache: Option<CacheEntry<'_>>,
    ) -> HubResult<()> {
        let state = self.app(app);
        match cache {
            Some(cache) => {
                // Stored and delivered under one lock so a concurrent subscriber gets the event
                // either as its cache replay or live, never both.
                let mut ch = state.channels.entry(channel.to_string()).or_default();
                ch.cache = Some(Cache {
                    frame: frame.clone(),
                    data: cache.data.to_string(),
                    expires: Instant::now() + Duration::from_secs(cache.ttl_seconds),
                });
                ch.miss_reported = false;
                ch.deliver(&frame, except);
                drop(ch);
                if state.cache_publishes.fetch_add(1, Ordering::Relaxed) % CACHE_SWEEP_EVERY
                    == CACHE_SWEEP_EVERY - 1
                {
                    state.channels.retain(|_, c| !c.is_disposable());
                }
            }
            None => {
                if let Some(ch) = state.channels.get(channel) {
                    ch.deliver(&frame, except);
                }
            }
        }
        Ok(())
    }

    fn close_app(&self, app: &str, reason: crate::error::CloseError) -> usize {
        let Some(state) = self.apps.get(app).map(|s| s.clone()) else {
            return 0;
        };
        for outbox in state.sockets.iter() {
            outbox.close(reason.clone());
        }
        state.sockets.len()
    }

    fn local_channels(&self) -> Vec<(String, usize)> {
        self.apps
            .iter()
            .map(|app| (app.key().clone(), lock(&app.occupied).len()))
            .collect()
    }

    async fn clear_caches(&self) {
        for app in self.apps.iter() {
            app.channels.alter_all(|_, mut c| {
                c.cache = None;
                c.miss_reported = false;
                c
            });
            app.channels.retain(|_, c| !c.is_disposable());
        }
    }

    async fn publish_subscription_count(&self, app: &str, channel: &str) -> HubResult<usize> {
        let state = self.app(app);
        let Some(ch) = state.channels.get(channel) else {
            return Ok(0);
        };
        let count = ch.subscribers.len();
        ch.deliver(&frame::subscription_count(channel, count), None);
        Ok(count)
    }

    async fn channels(&self, app: &str) -> HubResult<Vec<(String, ChannelStats)>> {
        let state = self.app(app);
        let mut list = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = occupied_after(&state.occupied, after.as_deref());
            let Some(last) = batch.last() else {
                return Ok(list);
            };
            after = Some(last.clone());
            for name in batch {
                // A channel vacated since its name was copied is left out, as it would have been
                // had the listing come a moment later.
                let stats = match state.channels.get(&name) {
                    Some(ch) if !ch.subscribers.is_empty() => ch.stats(),
                    _ => continue,
                };
                list.push((name, stats));
            }
            tokio::task::yield_now().await;
        }
    }

    async fn channel_stats(&self, app: &str, channel: &str) -> HubResult<ChannelStats> {
        Ok(self
            .app(app)
            .channels
            .get(channel)
            .map(|c| c.stats())
            .unwrap_or_default())
    }

    async fn cached_event(&self, app: &str, channel: &str) -> HubResult<Option<CachedEvent>> {
        let state = self.app(app);
        let Some(ch) = state.channels.get(channel) else {
            return Ok(None);
        };
        let Some(cache) = ch.live_cache() else {
            return Ok(None);
        };
        Ok(Some(CachedEvent {
            data: cache.data.clone(),
            ttl_seconds: cache
                .expires
                .saturating_duration_since(Instant::now())
                .as_secs(),
        }))
    }

    async fn members(&self, app: &str, channel: &str) -> HubResult<Vec<Member>> {
        Ok(self
            .app(app)
            .channels
            .get(channel)
            .map(|c| c.sorted_members())
            .unwrap_or_default())
    }

    async fn add_user(&self, app: &str, user_id: &str, socket: &Outbox) -> HubResult<bool> {
        let state = self.app(app);
        let mut sockets = state.users.entry(user_id.to_string()).or_default();
        let first = sockets.is_empty();
        sockets.insert(socket.socket_id().into(), socket.clone());
        Ok(first)
    }

    async fn remove_user(&self, app: &str, user_id: &str, socket_id: &str) -> bool {
        let state = self.app(app);
        let Some(mut sockets) = state.users.get_mut(user_id) else {
            return false;
        };
        let removed = sockets.remove(socket_id).is_some();
        let last = removed && sockets.is_empty();
        drop(sockets);
        if last {
            state.users.remove_if(user_id, |_, s| s.is_empty());
        }
        last
    }

    async fn publish_to_user(
        &self,
        app: &str,
        user_id: &str,
        frame: Frame,
        except: Option<&str>,
    ) -> HubResult<()> {
        if let Some(sockets) = self.app(app).users.get(user_id) {
            for (id, outbox) in sockets.iter() {
                if except != Some(&**id) {
                    outbox.send(frame.clone());
                }
            }
        }
        Ok(())
    }

    async fn terminate_user(&self, app: &str, user_id: &str) -> HubResult<()> {
        if let Some(sockets) = self.app(app).users.get(user_id) {
            for outbox in sockets.values() {
                outbox.close(crate::error::CloseError::Terminated);
            }
        }
        Ok(())
    }

    async fn online_users(&self, app: &str, user_ids: &[String]) -> HubResult<Vec<String>> {
        let state = self.app(app);
        Ok(user_ids
            .iter()
            .filter(|id| state.users.get(*id).is_some_and(|s| !s.is_empty()))
            .cloned()
            .collect())
    }

    async fn watch(&self, app: &str, socket: &Outbox, user_ids: &[String]) -> HubResult<()> {
        let state = self.app(app);
        for id in user_ids {
            state
                .watchers
                .entry(id.clone())
                .or_default()
                .insert(socket.socket_id().into(), socket.clone());
        }
        Ok(())
    }

    async fn unwatch(&self, app: &str, socket_id: &str, user_ids: &[String]) {
        let state = self.app(app);
        for id in user_ids {
            if let Some(mut watchers) = state.watchers.get_mut(id) {
                watchers.remove(socket_id);
                let empty = watchers.is_empty();
                drop(watchers);
                if empty {
                    state.watchers.remove_if(id, |_, w| w.is_empty());
                }
            }
        }
    }

    async fn publish_to_watchers(&self, app: &str, user_id: &str, frame: Frame) -> HubResult<()> {
        if let Some(watchers) = self.app(app).watchers.get(user_id) {
            for outbox in watchers.values() {
                outbox.send(frame.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Bounds, Queue};

    fn socket(id: &str) -> (Outbox, Queue) {
        let bounds = Bounds {
            frames: 16,
            bytes: 1 << 20,
        };
        Outbox::new(id.into(), bounds)
    }

    fn member(id: &str) -> Option<Member> {
        Some(Member {
            user_id: id.into(),
            user_info: None,
        })
    }

    fn drain(rx: &mut Queue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = rx.try_recv() {
            out.push(f.to_string());
        }
        out
    }

    /// Publishes `ev` with data `d` to a cache channel of app `a`.
    async fn publish_cached(hub: &MemoryAdapter, channel: &str, ttl_seconds: u64) {
        let entry = CacheEntry {
            data: "d",
            ttl_seconds,
        };
        hub.publish("a", channel, Frame::from("ev"), None, Some(entry))
            .await
            .unwrap();
    }

    async fn join(
        hub: &MemoryAdapter,
        ch: &str,
        s: &Outbox,
        m: Option<Member>,
        max: usize,
    ) -> Result<Joined, JoinError> {
        let sub = Subscriber {
            socket: s,
            member: m,
            max_members: max,
        };
        hub.subscribe("a", ch, sub, &|_| vec![Frame::from("first")])
            .await
    }

    /// A listing of thousands of channels copies a batch of names at a time and lets other tasks
    /// run between batches: on this single-threaded runtime the other task gets a turn only when
    /// the listing yields, so the turns it got count the pauses. What it did in them (a channel
    /// vacated, channels occupied) shows in the listing as it would a moment later.
    #[tokio::test]
    async fn a_long_listing_gives_way_between_batches_and_sees_changes_made_meanwhile() {
        let hub = Arc::new(MemoryAdapter::new());
        let (s, _r) = socket("1.1");
        let total = 10 * LIST_BATCH;
        for i in 0..total {
            join(&hub, &format!("c-{i:05}"), &s, None, 100)
                .await
                .unwrap();
        }
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let turns = {
            let (hub, s, done) = (hub.clone(), s.clone(), done.clone());
            tokio::spawn(async move {
                let mut turns = 0;
                while !done.load(Ordering::SeqCst) {
                    if turns == 0 {
                        hub.unsubscribe("a", &format!("c-{:05}", total - 1), "1.1")
                            .await;
                    }
                    join(&hub, &format!("z-{turns}"), &s, None, 100)
                        .await
                        .unwrap();
                    turns += 1;
                    tokio::task::yield_now().await;
                }
                turns
            })
        };
        tokio::task::yield_now().await;
        let list = hub.channels("a").await.unwrap();
        done.store(true, Ordering::SeqCst);
        let turns = turns.await.unwrap();

        assert!(
            turns >= total / LIST_BATCH,
            "{turns} turns during the listing"
        );
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        let listed_c = names.iter().filter(|n| n.starts_with("c-")).count();
        assert_eq!(listed_c, total - 1, "the vacated channel is left out");
        assert!(!names.contains(&format!("c-{:05}", total - 1).as_str()));
        assert!(
            names.contains(&"z-0"),
            "a channel occupied mid-listing is listed"
        );
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(list.iter().all(|(_, st)| st.subscription_count == 1));
        assert_eq!(
            hub.local_channels(),
            vec![("a".to_string(), total - 1 + turns)]
        );
    }

    #[tokio::test]
    async fn presence_membership_is_per_user_not_per_connection() {
        let hub = MemoryAdapter::new();
        let (s1, _r1) = socket("1.1");
        let (s2, _r2) = socket("1.2");
        let (s3, _r3) = socket("1.3");
        let j1 = join(&hub, "presence-x", &s1, member("u"), 100)
            .await
            .unwrap();
        assert!(j1.occupied_webhook && j1.member_added);
        let j2 = join(&hub, "presence-x", &s2, member("u"), 100)
            .await
            .unwrap();
        assert!(!j2.occupied_webhook && !j2.member_added);
        assert_eq!(j2.members.len(), 1);
        join(&hub, "presence-x", &s3, member("v"), 100)
            .await
            .unwrap();
        assert_eq!(
            hub.channel_stats("a", "presence-x").await.unwrap(),
            ChannelStats {
                subscription_count: 3,
                user_count: 2
            }
        );
        assert_eq!(
            hub.unsubscribe("a", "presence-x", "1.1").await,
            Left {
                vacated: false,
                member_removed: None
            }
        );
        assert_eq!(
            hub.unsubscribe("a", "presence-x", "1.2").await,
            Left {
                vacated: false,
                member_removed: Some("u".into())
            }
        );
        assert_eq!(
            hub.unsubscribe("a", "presence-x", "1.3").await,
            Left {
                vacated: true,
                member_removed: Some("v".into())
            }
        );
        assert!(hub.channels("a").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_presence_channel_still_admits_existing_users() {
        let hub = MemoryAdapter::new();
        let (s1, _r1) = socket("1.1");
        let (s2, _r2) = socket("1.2");
        let (s3, _r3) = socket("1.3");
        join(&hub, "presence-x", &s1, member("u"), 1).await.unwrap();
        assert_eq!(
            join(&hub, "presence-x", &s2, member("v"), 1)
                .await
                .unwrap_err(),
            JoinError::PresenceFull
        );
        assert!(join(&hub, "presence-x", &s3, member("u"), 1).await.is_ok());
    }

    #[tokio::test]
    async fn publish_skips_the_excluded_socket_and_other_apps() {
        let hub = MemoryAdapter::new();
        let (s1, mut r1) = socket("1.1");
        let (s2, mut r2) = socket("1.2");
        let (s3, mut r3) = socket("1.3");
        join(&hub, "c", &s1, None, 100).await.unwrap();
        join(&hub, "c", &s2, None, 100).await.unwrap();
        hub.subscribe(
            "b",
            "c",
            Subscriber {
                socket: &s3,
                member: None,
                max_members: 1,
            },
            &|_| vec![],
        )
        .await
        .unwrap();
        hub.publish("a", "c", Frame::from("hello"), Some("1.2"), None)
            .await
            .unwrap();
        assert_eq!(drain(&mut r1), ["first", "hello"]);
        assert_eq!(drain(&mut r2), ["first"]);
        assert!(drain(&mut r3).is_empty());
    }

    #[tokio::test]
    async fn cache_survives_an_empty_channel_and_is_replayed() {
        let hub = MemoryAdapter::new();
        publish_cached(&hub, "cache-x", 60).await;
        assert!(hub.channels("a").await.unwrap().is_empty());
        assert_eq!(
            hub.cached_event("a", "cache-x")
                .await
                .unwrap()
                .map(|c| c.data),
            Some("d".to_string())
        );
        let (s1, _r1) = socket("1.1");
        let joined = join(&hub, "cache-x", &s1, None, 100).await.unwrap();
        assert_eq!(joined.cached.as_deref(), Some("ev"));
    }

    #[tokio::test]
    async fn a_cache_miss_is_reported_once_until_the_cache_fills() {
        let hub = MemoryAdapter::new();
        let (s1, _r1) = socket("1.1");
        let (s2, _r2) = socket("1.2");
        let (s3, _r3) = socket("1.3");
        assert!(
            join(&hub, "cache-x", &s1, None, 100)
                .await
                .unwrap()
                .first_cache_miss
        );
        assert!(
            !join(&hub, "cache-x", &s2, None, 100)
                .await
                .unwrap()
                .first_cache_miss
        );
        publish_cached(&hub, "cache-x", 0).await;
        // Expired at once: empty again, so the next subscriber's miss is news.
        assert!(
            join(&hub, "cache-x", &s3, None, 100)
                .await
                .unwrap()
                .first_cache_miss
        );
    }

    #[tokio::test]
    async fn expired_cache_channels_without_subscribers_are_swept() {
        let hub = MemoryAdapter::new();
        for i in 0..CACHE_SWEEP_EVERY {
            publish_cached(&hub, &format!("cache-{i}"), 0).await;
        }
        assert_eq!(hub.app("a").channels.len(), 0);
    }

    #[tokio::test]
    async fn users_come_online_with_their_first_connection_and_go_with_their_last() {
        let hub = MemoryAdapter::new();
        let (s1, mut r1) = socket("1.1");
        let (s2, mut r2) = socket("1.2");
        assert!(hub.add_user("a", "u", &s1).await.unwrap());
        assert!(!hub.add_user("a", "u", &s2).await.unwrap());
        assert_eq!(
            hub.online_users("a", &["u".into(), "v".into()])
                .await
                .unwrap(),
            ["u"]
        );
        hub.publish_to_user("a", "u", Frame::from("hi"), Some("1.2"))
            .await
            .unwrap();
        assert_eq!(drain(&mut r1), ["hi"]);
        assert!(drain(&mut r2).is_empty());
        assert!(!hub.remove_user("a", "u", "1.1").await);
        assert!(hub.remove_user("a", "u", "1.2").await);
        assert!(hub
            .online_users("a", &["u".into()])
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn connection_quota_is_enforced_and_released() {
        let hub = MemoryAdapter::new();
        let (s1, _r1) = socket("1.1");
        let (s2, _r2) = socket("1.2");
        assert!(hub.add_socket("a", &s1, Some(1)).await.is_ok());
        assert!(hub.add_socket("a", &s2, Some(1)).await.is_err());
        assert_eq!(hub.app("a").connections.load(Ordering::SeqCst), 1);
        hub.remove_socket("a", "1.1").await;
        assert!(hub.add_socket("a", &s2, Some(1)).await.is_ok());
    }
}

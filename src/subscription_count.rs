//! Subscription counts (protocol §3.13): `pusher_internal:subscription_count` to a channel's
//! subscribers and the `subscription_count` webhook, after subscribes and unsubscribes, for apps
//! that enable it.
//!
//! Concurrent joins finish in any order, so a count captured at join time can be overtaken by a
//! later one. Instead each channel has one lock under which the current count is read and
//! published: updates go out in the order they are read, and the last one always carries the
//! count after the last change. Channels over 100 subscribers get at most one update per 5 s;
//! the deferred update reads the count when it is sent.

use std::{sync::Arc, time::Duration};

use dashmap::DashMap;
use tokio::{sync::Mutex, time::Instant};

use crate::{
    channel::{Access, ChannelKind},
    config::AppConfig,
    state::ServerState,
    webhook::WebhookEvent,
};

const LARGE_CHANNEL: usize = 100;
const LARGE_CHANNEL_INTERVAL: Duration = Duration::from_secs(5);

type Key = (String, String);

#[derive(Default)]
pub struct SubscriptionCounts {
    channels: DashMap<Key, Arc<Mutex<Throttle>>>,
}

#[derive(Default)]
struct Throttle {
    last_sent: Option<Instant>,
    last_count: usize,
    deferred: bool,
}

fn counted(app: &AppConfig, channel: &str) -> bool {
    app.subscription_count
        && !matches!(
            ChannelKind::of(channel).access,
            Access::Presence | Access::Reserved
        )
}

/// Called after each subscribe or unsubscribe.
pub async fn changed(state: &Arc<ServerState>, app: &Arc<AppConfig>, channel: &str) {
    if !counted(app, channel) {
        return;
    }
    let key: Key = (app.id.clone(), channel.to_string());
    let lock = state
        .subscription_counts
        .channels
        .entry(key.clone())
        .or_default()
        .clone();
    update(state, app, channel, &lock).await;
    drop(lock);
    state.subscription_counts.forget_if_idle(&key);
}

async fn update(
    state: &Arc<ServerState>,
    app: &Arc<AppConfig>,
    channel: &str,
    lock: &Arc<Mutex<Throttle>>,
) {
    let mut throttle = lock.lock().await;
    if throttle.deferred {
        return;
    }
    let Some(count) = current(state, app, channel).await else {
        return;
    };
    // Sent even when unchanged (one left as another joined): the joiner has not had it yet.
    if let Some(at) = throttle.last_sent {
        let since = at.elapsed();
        if count > LARGE_CHANNEL && since < LARGE_CHANNEL_INTERVAL {
            throttle.deferred = true;
            let (state, app, channel) = (state.clone(), app.clone(), channel.to_string());
            let lock = lock.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LARGE_CHANNEL_INTERVAL - since).await;
                let mut throttle = lock.lock().await;
                throttle.deferred = false;
                send(&state, &app, &channel, &mut throttle).await;
                drop(throttle);
                drop(lock);
                state
                    .subscription_counts
                    .forget_if_idle(&(app.id.clone(), channel));
            });
            return;
        }
    }
    send(state, app, channel, &mut throttle).await;
}

impl SubscriptionCounts {
    /// Drops a channel's entry once its last count was 0 and nobody holds its lock. Checked
    /// under the map's shard lock, through which anyone must pass to get the lock: a
    /// concurrent change either got it before (and is counted) or creates a fresh entry after,
    /// so two changes never hold different locks for one channel.
    fn forget_if_idle(&self, key: &Key) {
        self.channels.remove_if(key, |_, lock| {
            Arc::strong_count(lock) == 1
                && lock
                    .try_lock()
                    .is_ok_and(|t| t.last_count == 0 && !t.deferred)
        });
    }

    /// Channels whose counts are being ordered or throttled.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.channels.len()
    }
}

/// The count now; `None` (nothing is sent) when the hub cannot say.
async fn current(state: &ServerState, app: &AppConfig, channel: &str) -> Option<usize> {
    match state.adapter.channel_stats(&app.id, channel).await {
        Ok(stats) => Some(stats.subscription_count),
        Err(e) => {
            tracing::debug!(app = %app.id, channel, "subscription count not sent: {e}");
            None
        }
    }
}

async fn send(state: &ServerState, app: &Arc<AppConfig>, channel: &str, throttle: &mut Throttle) {
    throttle.last_sent = Some(Instant::now());
    let count = match state
        .adapter
        .publish_subscription_count(&app.id, channel)
        .await
    {
        Ok(count) => count,
        Err(e) => {
            tracing::debug!(app = %app.id, channel, "subscription count not sent: {e}");
            return;
        }
    };
    throttle.last_count = count;
    state.webhooks.emit(
        app,
        WebhookEvent::SubscriptionCount {
            channel: channel.to_string(),
            subscription_count: count,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        frame::Frame,
        hub::{memory::MemoryAdapter, Subscriber},
        socket::{Bounds, Outbox, Queue},
    };

    const CHANNEL: &str = "crowd";

    fn server() -> (Arc<ServerState>, Arc<AppConfig>) {
        let mut config = Config::default();
        config.apps[0].subscription_count = true;
        let state = Arc::new(ServerState::new(config, Arc::new(MemoryAdapter::new())));
        let app = state.apps.by_id("app_id").unwrap().clone();
        (state, app)
    }

    fn socket(n: usize) -> (Outbox, Queue) {
        let bounds = Bounds {
            frames: 10_000,
            bytes: 1 << 24,
        };
        Outbox::new(format!("1.{n}"), bounds)
    }

    async fn join(state: &Arc<ServerState>, app: &Arc<AppConfig>, socket: &Outbox) {
        let sub = Subscriber {
            socket,
            member: None,
            max_members: 100,
        };
        state
            .adapter
            .subscribe(&app.id, CHANNEL, sub, &|_| Vec::<Frame>::new())
            .await
            .unwrap();
        changed(state, app, CHANNEL).await;
    }

    async fn leave(state: &Arc<ServerState>, app: &Arc<AppConfig>, socket: &Outbox) {
        state
            .adapter
            .unsubscribe(&app.id, CHANNEL, socket.socket_id())
            .await;
        changed(state, app, CHANNEL).await;
    }

    fn count(n: usize) -> String {
        crate::frame::subscription_count(CHANNEL, n).to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn over_100_subscribers_updates_are_throttled_to_one_per_5_seconds() {
        let (state, app) = server();
        let (first, mut rx) = socket(0);
        join(&state, &app, &first).await;
        assert_eq!(rx.try_recv().unwrap().to_string(), count(1));
        let mut others = Vec::new();
        for n in 2..=105 {
            let (outbox, queue) = socket(n);
            join(&state, &app, &outbox).await;
            others.push((outbox, queue));
            if n <= 100 {
                assert_eq!(rx.try_recv().unwrap().to_string(), count(n), "at once");
            }
        }
        assert!(rx.try_recv().is_none(), "101..105 are deferred");
        let deferred_at = Instant::now();
        // 101..105 came within 5 s of the last update: one update with the final count.
        assert_eq!(rx.recv().await.unwrap().to_string(), count(105));
        assert_eq!(deferred_at.elapsed(), LARGE_CHANNEL_INTERVAL);
        let extra = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
        assert!(extra.is_err(), "no further update: {extra:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_emptied_channel_leaves_nothing_behind_even_after_a_deferred_update() {
        let (state, app) = server();
        let sockets: Vec<_> = (0..150).map(socket).collect();
        for (outbox, _) in &sockets {
            join(&state, &app, outbox).await;
        }
        for (outbox, _) in &sockets {
            leave(&state, &app, outbox).await;
        }
        assert_eq!(
            state.subscription_counts.tracked(),
            1,
            "a deferred update is due"
        );
        tokio::time::sleep(LARGE_CHANNEL_INTERVAL * 2).await;
        assert_eq!(state.subscription_counts.tracked(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_churn_ends_on_the_true_count_and_forgets_the_channel() {
        let (state, app) = server();
        let (observer, mut rx) = socket(0);
        join(&state, &app, &observer).await;
        let tasks: Vec<_> = (1..=20)
            .map(|n| {
                let (state, app) = (state.clone(), app.clone());
                tokio::spawn(async move {
                    let (outbox, _queue) = socket(n);
                    for _ in 0..50 {
                        join(&state, &app, &outbox).await;
                        leave(&state, &app, &outbox).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let mut last = None;
        while let Some(frame) = rx.try_recv() {
            last = Some(frame.to_string());
        }
        assert_eq!(
            last,
            Some(count(1)),
            "the last update carries the final count"
        );
        leave(&state, &app, &observer).await;
        assert_eq!(state.subscription_counts.tracked(), 0);
    }
}

//! Subscription counts (protocol §3.13): `pusher_internal:subscription_count` to a channel's
//! subscribers and the `subscription_count` webhook, after subscribes and unsubscribes, for apps
//! that enable it.
//!
//! Concurrent joins finish in any order, so a count captured at join time can be overtaken by a
//! later one. Instead each channel has one lock under which the current count is read and
//! published: updates go out in the order they are read, and the last one always carries the
//! count after the last change. Channels over 100 subscribers get at most one update per 5 s;
//! the deferred update reads the count when it is sent.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;
use tokio::sync::Mutex;

use crate::{
    channel::{Access, ChannelKind},
    config::AppConfig,
    frame,
    server::ServerState,
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
    let mut throttle = lock.lock().await;
    if throttle.deferred {
        return;
    }
    let count = current(state, app, channel).await;
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
                let count = current(&state, &app, &channel).await;
                send(&state, &app, &channel, count, &mut throttle).await;
            });
            return;
        }
    }
    send(state, app, channel, count, &mut throttle).await;
    if count == 0 {
        drop(throttle);
        // Nothing left to order; a later subscriber starts afresh.
        state.subscription_counts.channels.remove(&key);
    }
}

async fn current(state: &ServerState, app: &AppConfig, channel: &str) -> usize {
    state
        .adapter
        .channel_stats(&app.id, channel)
        .await
        .subscription_count
}

async fn send(
    state: &ServerState,
    app: &Arc<AppConfig>,
    channel: &str,
    count: usize,
    throttle: &mut Throttle,
) {
    throttle.last_sent = Some(Instant::now());
    state
        .adapter
        .publish(
            &app.id,
            channel,
            frame::subscription_count(channel, count),
            None,
            None,
        )
        .await;
    state.webhooks.emit(
        app,
        WebhookEvent::SubscriptionCount {
            channel: channel.to_string(),
            subscription_count: count,
        },
    );
}

//! Subscription counts (protocol §3.13): `pusher_internal:subscription_count` to a channel's
//! subscribers and the `subscription_count` webhook, on every subscribe and unsubscribe for apps
//! that enable it. Channels over 100 subscribers get at most one update per 5 s, and the last
//! change is never lost: a deferred update sends the count as it is then.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dashmap::DashMap;

use crate::{
    channel::{Access, ChannelKind},
    config::AppConfig,
    frame,
    server::ServerState,
    webhook::WebhookEvent,
};

const LARGE_CHANNEL: usize = 100;
const LARGE_CHANNEL_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct SubscriptionCounts {
    throttles: DashMap<(String, String), Throttle>,
}

struct Throttle {
    last_sent: Instant,
    deferred: bool,
}

fn counted(app: &AppConfig, channel: &str) -> bool {
    app.subscription_count
        && !matches!(
            ChannelKind::of(channel).access,
            Access::Presence | Access::Reserved
        )
}

/// Called after each subscribe or unsubscribe with the channel's new count.
pub async fn changed(state: &Arc<ServerState>, app: &Arc<AppConfig>, channel: &str, count: usize) {
    if !counted(app, channel) {
        return;
    }
    let key = (app.id.clone(), channel.to_string());
    let now = Instant::now();
    let wait = {
        let mut throttle = state
            .subscription_counts
            .throttles
            .entry(key.clone())
            .or_insert(Throttle {
                last_sent: now - LARGE_CHANNEL_INTERVAL,
                deferred: false,
            });
        if throttle.deferred {
            return;
        }
        let since = now.duration_since(throttle.last_sent);
        if count <= LARGE_CHANNEL || since >= LARGE_CHANNEL_INTERVAL {
            throttle.last_sent = now;
            None
        } else {
            throttle.deferred = true;
            Some(LARGE_CHANNEL_INTERVAL - since)
        }
    };
    match wait {
        None => {
            send(state, app, channel, count).await;
            if count == 0 {
                state.subscription_counts.throttles.remove(&key);
            }
        }
        Some(wait) => {
            let (state, app, channel) = (state.clone(), app.clone(), channel.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if let Some(mut throttle) = state.subscription_counts.throttles.get_mut(&key) {
                    throttle.last_sent = Instant::now();
                    throttle.deferred = false;
                }
                let count = state
                    .adapter
                    .channel_stats(&app.id, &channel)
                    .await
                    .subscription_count;
                send(&state, &app, &channel, count).await;
            });
        }
    }
}

async fn send(state: &ServerState, app: &Arc<AppConfig>, channel: &str, count: usize) {
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

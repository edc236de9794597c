//! Webhooks (protocol §13): the events, and the handle the rest of the server emits them
//! through. Emitting never waits: events go into a bounded queue that the dispatcher drains
//! (`dispatcher.rs`: grace period, batching) and delivers (`delivery.rs`: signing, retries).

mod delivery;
mod dispatcher;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{AppConfig, WebhookDelivery};

/// One entry of a webhook body's `events` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        /// The client's data as a string: a string as sent, anything else as its JSON text.
        data: String,
        socket_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    CacheMiss {
        channel: String,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: usize,
    },
}

impl WebhookEvent {
    pub fn name(&self) -> &'static str {
        match self {
            WebhookEvent::ChannelOccupied { .. } => "channel_occupied",
            WebhookEvent::ChannelVacated { .. } => "channel_vacated",
            WebhookEvent::MemberAdded { .. } => "member_added",
            WebhookEvent::MemberRemoved { .. } => "member_removed",
            WebhookEvent::ClientEvent { .. } => "client_event",
            WebhookEvent::CacheMiss { .. } => "cache_miss",
            WebhookEvent::SubscriptionCount { .. } => "subscription_count",
        }
    }
}

/// Counters for what happened to emitted events.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events refused because the queue was full.
    pub dropped: AtomicU64,
    /// Requests answered with 2xx.
    pub delivered: AtomicU64,
    /// Requests given up after the retry window (or refused for lack of capacity).
    pub failed: AtomicU64,
}

/// The emitting side, cheap to call from any connection or handler.
#[derive(Debug, Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<(Arc<AppConfig>, WebhookEvent)>,
    stats: Arc<WebhookStats>,
}

impl Webhooks {
    /// Starts the dispatcher task.
    pub fn start(settings: WebhookDelivery) -> Webhooks {
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let stats = Arc::new(WebhookStats::default());
        tokio::spawn(dispatcher::run(settings, rx, stats.clone()));
        Webhooks { tx, stats }
    }

    /// Queues an event for the app's webhook targets. Never blocks; a full queue drops the
    /// event, logs it and counts it.
    pub fn emit(&self, app: &Arc<AppConfig>, event: WebhookEvent) {
        if !app.webhooks.iter().any(|t| t.wants(event.name())) {
            return;
        }
        if let Err(e) = self.tx.try_send((app.clone(), event)) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            let (_, event) = e.into_inner();
            tracing::warn!(app = %app.id, event = event.name(), "webhook queue full: event dropped");
        }
    }

    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }
}

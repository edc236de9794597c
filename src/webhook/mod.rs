//! Webhooks (protocol §13): the events, and the handle the rest of the server emits them
//! through. Emitting never waits: events go into a bounded queue that the dispatcher drains
//! (`dispatcher.rs`: grace period, batching) and delivers (`delivery.rs`: signing, retries).

mod delivery;
mod dispatcher;

pub use delivery::{Journal, Request};

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use dashmap::DashMap;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    config::{AppConfig, WebhookDelivery},
    happenings::{Happening, Happenings},
    log_limit::Throttle,
};

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
    /// Events refused because the queue, or the app's share of it, was full.
    pub dropped: AtomicU64,
    /// Requests answered with 2xx.
    pub delivered: AtomicU64,
    /// Requests given up: refused by the receiver (4xx), or still failing when the retry
    /// window closed.
    pub failed: AtomicU64,
}

/// One app's share of the pipeline: events emitted and not yet delivered, given up or
/// cancelled. An app whose receiver is slow or down fills its own share, not the others'.
#[derive(Debug)]
pub struct AppShare {
    pending: AtomicUsize,
    /// Drops are logged at most once per 10 s per app, with their count.
    drops: Throttle,
}

impl Default for AppShare {
    fn default() -> Self {
        AppShare {
            pending: AtomicUsize::new(0),
            drops: Throttle::new(10),
        }
    }
}

/// Releases `n` events of an app's share when the last request carrying them is done.
#[derive(Debug)]
pub struct Pending {
    share: Arc<AppShare>,
    n: usize,
}

impl Pending {
    pub fn new(share: Arc<AppShare>, n: usize) -> Self {
        Pending { share, n }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.share.pending.fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// What the dispatcher receives for each emitted event.
pub struct Emitted {
    pub app: Arc<AppConfig>,
    pub event: WebhookEvent,
    /// Subject to the dispatcher's grace period (held, or cancelling a held opposite).
    pub pair: bool,
    /// Emitted before the last reset (of the test double) when older than the current one.
    pub generation: u64,
    /// This one event's hold on its app's share.
    pub pending: Pending,
}

/// The emitting side, cheap to call from any connection or handler.
#[derive(Debug, Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<Emitted>,
    deliverer: Arc<delivery::Deliverer>,
    happenings: Happenings,
    generation: Arc<AtomicU64>,
    stats: Arc<WebhookStats>,
    shares: Arc<DashMap<String, Arc<AppShare>>>,
    app_capacity: usize,
}

impl Webhooks {
    /// Starts the dispatcher task. With a `journal`, requests being delivered are written
    /// down in it until they are done.
    pub fn start(
        settings: WebhookDelivery,
        journal: Option<Arc<dyn Journal>>,
        happenings: Happenings,
    ) -> Webhooks {
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let stats = Arc::new(WebhookStats::default());
        let app_capacity = settings.app_queue_capacity.max(1);
        let deliverer =
            delivery::Deliverer::new(settings.clone(), stats.clone(), journal, happenings.clone());
        let generation = Arc::new(AtomicU64::new(0));
        tokio::spawn(dispatcher::run(
            settings,
            rx,
            deliverer.clone(),
            happenings.clone(),
            generation.clone(),
        ));
        Webhooks {
            tx,
            deliverer,
            happenings,
            generation,
            stats,
            shares: Arc::default(),
            app_capacity,
        }
    }

    /// Queues an event for the app's webhook targets. Never blocks; a full queue (or app
    /// share) drops the event and counts it.
    pub fn emit(&self, app: &Arc<AppConfig>, event: WebhookEvent) {
        self.queue(app, event, true)
    }

    /// Queues an event whose grace period the hub has already applied: it is sent as it is,
    /// never held or paired.
    pub fn emit_settled(&self, app: &Arc<AppConfig>, event: WebhookEvent) {
        self.queue(app, event, false)
    }

    fn queue(&self, app: &Arc<AppConfig>, event: WebhookEvent, pair: bool) {
        // Recorded by an observer even when no receiver wants it.
        if !app.webhooks.iter().any(|t| t.wants(event.name()))
            && !self.happenings.unwanted_webhooks_watched()
        {
            return;
        }
        let share = match self.shares.get(&app.id) {
            Some(share) => share.clone(),
            None => self.shares.entry(app.id.clone()).or_default().clone(),
        };
        if share.pending.fetch_add(1, Ordering::Relaxed) >= self.app_capacity {
            share.pending.fetch_sub(1, Ordering::Relaxed);
            return self.dropped(app, &share);
        }
        let emitted = Emitted {
            app: app.clone(),
            event,
            pair,
            generation: self.generation.load(Ordering::Acquire),
            pending: Pending::new(share.clone(), 1),
        };
        if self.tx.try_send(emitted).is_err() {
            self.dropped(app, &share);
        }
    }

    fn dropped(&self, app: &AppConfig, share: &AppShare) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        self.happenings.emit(|| Happening::WebhookDropped {
            app: app.id.clone(),
        });
        share.drops.log(|left_out| {
            tracing::warn!(
                app = %app.id,
                dropped = left_out + 1,
                "webhook queue full: events dropped (logged at most every 10 s)"
            );
        });
    }

    /// Forgets every event not yet sent (held for the grace period or batching) and stops the
    /// deliveries under way: the test double's reset.
    pub fn reset(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.deliverer.cancel_all();
    }

    /// Goes on delivering a request that a dead node had started.
    pub fn adopt(&self, request: Request, deadline_ms: u64) {
        self.deliverer.adopt(request, deadline_ms);
    }

    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }

    /// Events emitted and not yet delivered, given up or cancelled, all apps together.
    pub fn queue_depth(&self) -> usize {
        self.shares
            .iter()
            .map(|share| share.pending.load(Ordering::Relaxed))
            .sum()
    }
}

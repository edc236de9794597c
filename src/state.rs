//! The state every part of the server shares, below all of them: settings, apps, the hub,
//! webhooks, and the shutdown signal with the tracker of every connection task.

use std::sync::Arc;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    apps::Apps,
    client_ip::ConnectionRates,
    config::Config,
    console::Console,
    happenings::{Happenings, Observe},
    hub::Adapter,
    inspect::Inspector,
    metrics::Metrics,
    record::Recorder,
    session::TokenBucket,
    socket::{Bounds, SocketIds},
    subscription_count::SubscriptionCounts,
    webhook::Webhooks,
};

/// Everything a handler or connection needs, passed explicitly.
pub struct ServerState {
    pub config: Config,
    pub apps: Apps,
    pub adapter: Arc<dyn Adapter>,
    /// Cancelled when a graceful shutdown starts.
    pub shutdown: CancellationToken,
    /// HTTP and WebSocket connection tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
    pub webhooks: Webhooks,
    pub subscription_counts: SubscriptionCounts,
    /// What happens, for whoever observes it.
    pub happenings: Happenings,
    /// The inspection records, with `inspect` on.
    pub inspector: Option<Arc<Inspector>>,
    /// The transcript recorder, with `record` set.
    pub recorder: Option<Arc<Recorder>>,
    pub socket_ids: SocketIds,
    pub rest_limits: RestLimits,
    pub connection_rates: ConnectionRates,
    /// With metrics on.
    pub metrics: Option<Arc<Metrics>>,
    /// The open web consoles, with `console` on.
    pub console: Option<Arc<Console>>,
    /// The HTTP fallback transports' open sessions.
    pub xhr_sessions: crate::xhr::Sessions,
}

/// Each app's REST budget (`rest_rate`), one token bucket per app.
#[derive(Default)]
pub struct RestLimits {
    buckets: dashmap::DashMap<String, std::sync::Mutex<TokenBucket>>,
}

impl RestLimits {
    pub fn admit(&self, app: &crate::config::AppConfig) -> Result<(), crate::error::ApiError> {
        let Some(rate) = app.rest_rate else {
            return Ok(());
        };
        let bucket = self
            .buckets
            .entry(app.id.clone())
            .or_insert_with(|| std::sync::Mutex::new(TokenBucket::new(rate as usize, rate)));
        let admitted = bucket
            .lock()
            .expect("not poisoned")
            .take(tokio::time::Instant::now());
        if admitted {
            Ok(())
        } else {
            Err(crate::error::ApiError::RateLimited(rate))
        }
    }
}

impl ServerState {
    pub fn new(config: Config, adapter: Arc<dyn Adapter>) -> Self {
        let inspector = config
            .inspect
            .then(|| Arc::new(Inspector::new(config.inspect_capacity)));
        let recorder = config
            .record
            .clone()
            .zip(config.apps.first().cloned())
            .map(|(dir, app)| Arc::new(Recorder::new(dir, app)));
        let mut observers: Vec<Arc<dyn Observe>> = Vec::new();
        if let Some(i) = &inspector {
            observers.push(i.clone());
        }
        if let Some(r) = &recorder {
            observers.push(r.clone());
        }
        let metrics = config.metrics.as_ref().map(|_| {
            let ids: Vec<String> = config.apps.iter().map(|a| a.id.clone()).collect();
            Arc::new(Metrics::new(&ids))
        });
        if let Some(m) = &metrics {
            observers.push(m.clone());
        }
        let console = config.console.then(|| Arc::new(Console::default()));
        if let Some(c) = &console {
            observers.push(c.clone());
        }
        let happenings = Happenings::new(observers);
        ServerState {
            apps: Apps::new(&config.apps),
            webhooks: Webhooks::start(
                config.webhook_delivery.clone(),
                adapter.webhook_journal(),
                happenings.clone(),
            ),
            happenings,
            inspector,
            recorder,
            socket_ids: SocketIds::new(config.socket_id_seed),
            rest_limits: RestLimits::default(),
            connection_rates: ConnectionRates::default(),
            metrics,
            console,
            xhr_sessions: Default::default(),
            config,
            adapter,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            subscription_counts: SubscriptionCounts::default(),
        }
    }

    pub fn outbox_bounds(&self) -> Bounds {
        Bounds {
            frames: self.config.outbox_capacity,
            bytes: self.config.outbox_bytes,
        }
    }
}

//! Prometheus metrics: what the server counts, read on a listener of its own (`serve.rs`).
//!
//! Most counters observe the [happenings](crate::happenings) stream like every other observer.
//! Two kinds do not, because no happening exists for them: per-frame tallies (frames and bytes
//! each connection writes and reads), which the connection adds through its app's
//! [`AppMeters`] once per batch, and gauges of state (occupied channels, the webhook queue),
//! read when Prometheus scrapes.

mod process;
mod serve;

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::{
    happenings::{Happening, Observe},
    state::ServerState,
};

pub use serve::serve;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct App {
    app_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppCode {
    app_id: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppSource {
    app_id: String,
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppEndpoint {
    app_id: String,
    endpoint: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppOutcome {
    app_id: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppKind {
    app_id: String,
    kind: &'static str,
}

/// The limits whose refusals are counted in `poxide_rate_limited_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `rest_rate`: a 429 on the REST API.
    Rest,
    /// `connection_rate_per_ip`: a 429 instead of the WebSocket upgrade.
    Connection,
    /// `client_event_rate`.
    ClientEvent,
    /// `subscription_rate`.
    Subscription,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Rest => "rest",
            Limit::Connection => "connection",
            Limit::ClientEvent => "client_event",
            Limit::Subscription => "subscription",
        }
    }
}

type DurationFamily = Family<Endpoint, Histogram, fn() -> Histogram>;

/// Every metric, and the registry that writes them out.
pub struct Metrics {
    registry: Registry,
    connections: Family<App, Gauge>,
    opened: Family<App, Counter>,
    closed: Family<AppCode, Counter>,
    channels: Family<App, Gauge>,
    received: Family<AppSource, Counter>,
    sent: Family<App, Counter>,
    bytes_sent: Family<App, Counter>,
    bytes_received: Family<App, Counter>,
    api_requests: Family<AppEndpoint, Counter>,
    api_duration: DurationFamily,
    webhooks: Family<AppOutcome, Counter>,
    webhook_queue: Gauge,
    rate_limited: Family<AppKind, Counter>,
    apps_store_reads: Family<Outcome, Counter>,
    /// Each app's tallies, made once: a new connection takes a reference.
    meters: dashmap::DashMap<String, Arc<AppMeters>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// One app's per-frame tallies, held by each of its connections: one atomic add per batch.
#[derive(Clone, Debug)]
pub struct AppMeters {
    sent: Counter,
    bytes_sent: Counter,
    received: Counter,
    bytes_received: Counter,
}

impl AppMeters {
    pub fn sent(&self, frames: u64, bytes: u64) {
        self.sent.inc_by(frames);
        self.bytes_sent.inc_by(bytes);
    }

    pub fn received(&self, bytes: u64) {
        self.received.inc();
        self.bytes_received.inc_by(bytes);
    }
}

fn api_histogram() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 15))
}

impl Metrics {
    /// Registers every metric; the configured apps start at zero so dashboards show them
    /// before their first connection.
    pub fn new(app_ids: &[String]) -> Self {
        let mut metrics = Metrics {
            connections: Family::default(),
            opened: Family::default(),
            closed: Family::default(),
            channels: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            bytes_sent: Family::default(),
            bytes_received: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(api_histogram),
            webhooks: Family::default(),
            webhook_queue: Gauge::default(),
            rate_limited: Family::default(),
            apps_store_reads: Family::default(),
            meters: dashmap::DashMap::new(),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.registry = registry;
        for id in app_ids {
            let app = App { app_id: id.clone() };
            let _ = metrics.connections.get_or_create(&app);
            let _ = metrics.opened.get_or_create(&app);
            let _ = metrics.channels.get_or_create(&app);
            let _ = metrics.meters(id);
        }
        metrics
    }

    /// Registers clones of the families (they share their values) and the process collector.
    fn register(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "poxide_connections",
            "Open WebSocket connections on this node",
            m.connections.clone(),
        );
        registry.register(
            "poxide_connections_opened",
            "WebSocket connections accepted",
            m.opened.clone(),
        );
        registry.register(
            "poxide_connections_closed",
            "WebSocket connections ended, by close code (client: closed by the client; gone: the socket failed; stalled: the client stopped reading)",
            m.closed.clone(),
        );
        registry.register(
            "poxide_channels",
            "Channels with a subscriber on this node",
            m.channels.clone(),
        );
        registry.register(
            "poxide_messages_received",
            "Messages received: text frames from clients (ws) and events published through the REST API, one per channel (api)",
            m.received.clone(),
        );
        registry.register(
            "poxide_messages_sent",
            "Frames written to clients",
            m.sent.clone(),
        );
        registry.register(
            "poxide_bytes_sent",
            "WebSocket bytes written to clients, frame headers included",
            m.bytes_sent.clone(),
        );
        registry.register(
            "poxide_bytes_received",
            "Bytes of the text messages clients sent",
            m.bytes_received.clone(),
        );
        registry.register(
            "poxide_api_requests",
            "REST API requests, by endpoint and status",
            m.api_requests.clone(),
        );
        registry.register(
            "poxide_api_request_duration_seconds",
            "Time to answer a REST API request",
            m.api_duration.clone(),
        );
        registry.register(
            "poxide_webhooks",
            "Webhook events: delivered, failed (refused, or retries exhausted) or dropped (queue full)",
            m.webhooks.clone(),
        );
        registry.register(
            "poxide_webhook_queue_depth",
            "Webhook events emitted and not yet delivered or given up",
            m.webhook_queue.clone(),
        );
        registry.register(
            "poxide_rate_limited",
            "Requests refused by a rate limit, by limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "poxide_apps_store_reads",
            "Reads of the apps database (revision checks and loads): ok or error",
            m.apps_store_reads.clone(),
        );
        registry.register_collector(Box::new(process::Process));
    }

    /// One read of the apps database.
    pub fn apps_store_read(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.apps_store_reads
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    /// The tallies a connection of `app` adds to (a pointer: connection futures stay small).
    pub fn meters(&self, app: &str) -> Arc<AppMeters> {
        if let Some(meters) = self.meters.get(app) {
            return meters.clone();
        }
        self.meters
            .entry(app.to_string())
            .or_insert_with(|| Arc::new(self.new_meters(app)))
            .clone()
    }

    fn new_meters(&self, app: &str) -> AppMeters {
        let label = App {
            app_id: app.to_string(),
        };
        let ws = AppSource {
            app_id: app.to_string(),
            source: "ws",
        };
        AppMeters {
            sent: self.sent.get_or_create(&label).clone(),
            bytes_sent: self.bytes_sent.get_or_create(&label).clone(),
            received: self.received.get_or_create(&ws).clone(),
            bytes_received: self.bytes_received.get_or_create(&label).clone(),
        }
    }

    fn api_request(&self, app: &str, endpoint: &'static str, status: u16, seconds: f64) {
        self.api_requests
            .get_or_create(&AppEndpoint {
                app_id: app.to_string(),
                endpoint,
                status,
            })
            .inc();
        self.api_duration
            .get_or_create(&Endpoint { endpoint })
            .observe(seconds);
    }

    /// The text exposition, with the gauges of state read now.
    pub fn render(&self, state: &ServerState) -> String {
        for app in state.apps.ids() {
            self.channels
                .get_or_create(&App {
                    app_id: app.to_string(),
                })
                .set(0);
        }
        for (app, count) in state.adapter.local_channels() {
            self.channels
                .get_or_create(&App { app_id: app })
                .set(count as i64);
        }
        self.webhook_queue.set(state.webhooks.queue_depth() as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Observe for Metrics {
    fn wants_published(&self) -> bool {
        false
    }

    fn observe(&self, happening: &Happening) {
        let app = |id: &str| App {
            app_id: id.to_string(),
        };
        match happening {
            Happening::Connected { app: id, .. } => {
                self.opened.get_or_create(&app(id)).inc();
                self.connections.get_or_create(&app(id)).inc();
            }
            Happening::Disconnected { app: id, .. } => {
                self.connections.get_or_create(&app(id)).dec();
            }
            Happening::Closed {
                app: id, code, end, ..
            } => {
                let code = match code {
                    Some(code) => code.to_string(),
                    None => end.to_string(),
                };
                self.closed
                    .get_or_create(&AppCode {
                        app_id: id.clone(),
                        code,
                    })
                    .inc();
            }
            Happening::ApiPublished { app: id, channels } => {
                self.received
                    .get_or_create(&AppSource {
                        app_id: id.clone(),
                        source: "api",
                    })
                    .inc_by(*channels as u64);
            }
            Happening::Delivery {
                app: id,
                ids,
                delivered,
                ..
            } => {
                let outcome = if *delivered { "delivered" } else { "failed" };
                self.webhook(id, outcome, ids.len() as u64);
            }
            Happening::WebhookDropped { app: id } => self.webhook(id, "dropped", 1),
            Happening::ApiAnswered {
                app: id,
                endpoint,
                status,
                seconds,
            } => self.api_request(id, endpoint, *status, *seconds),
            Happening::RateLimited { app: id, limit } => {
                self.rate_limited
                    .get_or_create(&AppKind {
                        app_id: id.clone(),
                        kind: limit.name(),
                    })
                    .inc();
            }
            _ => {}
        }
    }
}

impl Metrics {
    fn webhook(&self, app: &str, outcome: &'static str, n: u64) {
        self.webhooks
            .get_or_create(&AppOutcome {
                app_id: app.to_string(),
                outcome,
            })
            .inc_by(n);
    }
}

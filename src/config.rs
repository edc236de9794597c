//! Configuration: the built-in defaults (Poxa's), the TOML file, the environment and command-line
//! flags, merged in that order of precedence (flags > environment > file > defaults).

use std::{
    collections::HashSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration value that cannot be used. Printed as one line naming the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid value for {key}: {value:?} ({expected})")]
    Invalid {
        key: String,
        value: String,
        expected: &'static str,
    },
}

/// One Pusher application: credentials and per-app limits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub id: String,
    pub key: String,
    pub secret: String,
    /// A disabled app's connections are refused (and closed, when it is disabled while they are
    /// open) with 4003, and its REST calls with 403.
    pub enabled: bool,
    pub client_events: bool,
    /// Concurrent WebSocket connections; `None` is unlimited.
    pub max_connections: Option<usize>,
    pub max_presence_members: usize,
    pub max_user_info_bytes: usize,
    /// Largest event `data`, in bytes, for REST triggers and client events.
    pub payload_limit: usize,
    /// Hosted Pusher refuses names over 164 characters; SDKs only check 200.
    pub max_channel_name_length: usize,
    pub max_event_name_length: usize,
    /// Client events per second per connection.
    pub client_event_rate: u32,
    pub cache_ttl_seconds: u64,
    /// Where this app's webhooks go.
    pub webhooks: Vec<WebhookTarget>,
    /// Send `pusher_internal:subscription_count` and `subscription_count` webhooks.
    pub subscription_count: bool,
    /// Send `pusher_internal:watchlist_events` to signed-in users with a watchlist.
    pub watchlist_events: bool,
    /// Close connections that neither sign in nor subscribe to an authorized channel in time.
    pub authorized_connections: bool,
    pub authorization_timeout_ms: u64,
    /// Channels one connection may be subscribed to at once.
    pub max_channels_per_connection: usize,
    /// Subscribes and unsubscribes per second per connection, after a burst as large as
    /// `max_channels_per_connection` (a reconnecting client resubscribes everything at once).
    pub subscription_rate: u32,
    /// Browser origins whose WebSockets are accepted, `*` matching any run of characters
    /// (`https://*.example.com`); empty accepts any. A connection without an `Origin` header
    /// (not from a browser, which always sends one) is accepted: the header is the browser's
    /// promise, and anything else can write whatever it likes in it.
    pub allowed_origins: Vec<String>,
    /// Signed REST requests per second for this app, after a burst as large; over it: 429.
    /// `None`: unlimited.
    pub rest_rate: Option<u32>,
    /// New WebSocket connections per second per client address (after a burst as large);
    /// over it the upgrade is refused with 429. `None`: unlimited.
    pub connection_rate_per_ip: Option<u32>,
    /// The web console may watch this app (with the server's `console` on).
    pub console: bool,
}

/// One webhook receiver.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    /// Only these event names (`channel_occupied`, `member_added`, …); all when absent.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
}

/// The webhook event names a target may filter on.
pub const WEBHOOK_EVENT_TYPES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

impl WebhookTarget {
    pub fn new(url: impl Into<String>) -> Self {
        WebhookTarget {
            url: url.into(),
            event_types: None,
        }
    }

    pub fn wants(&self, event_name: &str) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == event_name))
    }
}

/// How webhooks are delivered, for every app.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookDelivery {
    /// `channel_vacated` and `member_removed` wait this long; a re-join within it cancels both.
    pub grace_ms: u64,
    /// Events that become ready within this window go out in one request.
    pub batch_ms: u64,
    pub request_timeout_ms: u64,
    /// First retry delay; it doubles up to a minute between tries.
    pub retry_initial_ms: u64,
    /// Retries stop this long after the first attempt.
    pub retry_window_ms: u64,
    /// Events waiting for the dispatcher, all apps together; beyond it new events are dropped
    /// (and counted).
    pub queue_capacity: usize,
    /// Events of one app emitted and not yet delivered or given up; beyond it that app's new
    /// events are dropped, so a slow receiver cannot take the other apps' share.
    pub app_queue_capacity: usize,
    /// Requests being sent to one receiver URL at once. Backoff sleeps hold no slot.
    pub max_in_flight: usize,
}

impl Default for WebhookDelivery {
    fn default() -> Self {
        WebhookDelivery {
            grace_ms: 3000,
            batch_ms: 50,
            request_timeout_ms: 10_000,
            retry_initial_ms: 1000,
            retry_window_ms: 300_000,
            queue_capacity: 10_000,
            app_queue_capacity: 2_000,
            max_in_flight: 16,
        }
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: "app_id".into(),
            key: "app_key".into(),
            secret: "secret".into(),
            enabled: true,
            client_events: true,
            max_connections: None,
            max_presence_members: 100,
            max_user_info_bytes: 1024,
            payload_limit: 10_240,
            max_channel_name_length: 164,
            max_event_name_length: 200,
            client_event_rate: 10,
            cache_ttl_seconds: 1800,
            webhooks: Vec::new(),
            subscription_count: false,
            watchlist_events: true,
            authorized_connections: false,
            authorization_timeout_ms: 30_000,
            max_channels_per_connection: 1000,
            subscription_rate: 50,
            allowed_origins: Vec::new(),
            rest_rate: None,
            connection_rate_per_ip: None,
            console: true,
        }
    }
}

/// The whole server's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// Advertised to clients; the server also pings after this much silence.
    pub activity_timeout: Duration,
    /// How long to wait for any frame after a server ping before closing with 4201.
    pub pong_timeout: Duration,
    /// Frames a connection may have queued before it is closed with 4100.
    pub outbox_capacity: usize,
    /// Bytes a connection may have queued before it is closed with 4100.
    pub outbox_bytes: usize,
    /// A connection with unwritten frames whose peer takes none of them for this long is
    /// dropped: it is not reading.
    pub write_timeout: Duration,
    /// Deadline for each HTTP request head, from the moment the server waits for it; it also
    /// ends idle keep-alive connections.
    pub http_header_timeout: Duration,
    /// Deadline for reading a REST request body.
    pub http_body_timeout: Duration,
    /// An HTTP-transport session with no receiving request for this long is closed.
    pub http_session_timeout: Duration,
    /// A receiving HTTP-transport response with nothing to say for this long sends `h`.
    pub http_heartbeat: Duration,
    /// HTTP-transport sessions open at once on this node.
    pub max_http_sessions: usize,
    /// Bytes after which an `xhr_streaming` response ends, so that proxies do not buffer it
    /// forever. pusher-js takes the end for a lost connection and reconnects; above 262 144 it
    /// reopens the stream on the same session by itself first, losing nothing.
    pub http_stream_bytes: usize,
    pub webhook_delivery: WebhookDelivery,
    /// Set: this node joins the cluster that shares this Redis.
    pub cluster: Option<ClusterConfig>,
    /// The web console: the page at `/` and the signed event stream at `/console`.
    pub console: bool,
    /// The test double's inspection API under `/_poxide/` (unsigned: for test machines only).
    pub inspect: bool,
    /// Records of each kind the inspection API keeps.
    pub inspect_capacity: usize,
    /// Socket ids from a sequence fixed by this seed instead of at random.
    pub socket_id_seed: Option<u64>,
    /// Write every exchange as conformance transcripts into this directory.
    pub record: Option<std::path::PathBuf>,
    /// Peers whose `X-Forwarded-For` names the client (load balancers in front).
    pub trusted_proxies: Vec<IpAddr>,
    /// Set: a TLS listener serves the WebSocket and the REST API too (or alone).
    pub tls: Option<TlsConfig>,
    /// Set: Prometheus metrics on a listener of their own.
    pub metrics: Option<MetricsConfig>,
    /// Set: the apps come from this database, not from `apps`.
    pub apps_store: Option<AppsStoreConfig>,
    pub apps: Vec<AppConfig>,
}

/// `[apps_store]`: a database that holds the apps, read again as it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppsStoreConfig {
    /// `sqlite:///path/to/apps.db` or `postgres://user:password@host:port/db`.
    pub url: String,
    /// How often the store is asked whether anything changed: the longest an app change
    /// takes to reach this node.
    pub refresh: Duration,
}

pub const DEFAULT_APPS_REFRESH: Duration = Duration::from_secs(2);

/// The TOML form of [`AppsStoreConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAppsStore {
    url: Option<String>,
    refresh_ms: Option<u64>,
}

/// `[tls]`: the certificate, and where the TLS listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM: the server's certificate, optionally followed by its chain.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: intermediate certificates sent after `cert` (Poxa's `SSL_CACERTFILE`).
    pub chain: Option<PathBuf>,
    pub port: u16,
    /// No plain listener: TLS only.
    pub only: bool,
}

/// Poxa's `SSL_PORT` default.
pub const DEFAULT_TLS_PORT: u16 = 8443;

/// `[metrics]`: where Prometheus scrapes `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub host: IpAddr,
    pub port: u16,
}

impl Default for MetricsConfig {
    /// Loopback: metrics name apps and rates, which are not for everyone to read.
    fn default() -> Self {
        MetricsConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 9601,
        }
    }
}

/// The TOML form of [`TlsConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    chain: Option<PathBuf>,
    port: Option<u16>,
    only: Option<bool>,
}

/// The TOML form of [`MetricsConfig`]; port 0 turns metrics off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    host: Option<IpAddr>,
    port: Option<u16>,
}

/// `[cluster]`: the Redis that several nodes share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub redis_url: String,
    /// Every key and pub/sub channel starts with it, so clusters can share one Redis.
    pub prefix: String,
    /// A node silent for this long is dead, and its connections are removed.
    pub node_timeout: Duration,
}

/// The TOML form of [`ClusterConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    redis_url: Option<String>,
    prefix: Option<String>,
    node_timeout_ms: Option<u64>,
}

const DEFAULT_PREFIX: &str = "poxide";
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            outbox_capacity: 1024,
            outbox_bytes: 1 << 20,
            write_timeout: Duration::from_secs(30),
            http_header_timeout: Duration::from_secs(30),
            http_body_timeout: Duration::from_secs(30),
            http_session_timeout: Duration::from_secs(5),
            // Under pusher-js's 30 s wait for an answer to its own ping.
            http_heartbeat: Duration::from_secs(25),
            max_http_sessions: 10_000,
            // SockJS's limit, which hosted Pusher's fallback has.
            http_stream_bytes: 128 * 1024,
            webhook_delivery: WebhookDelivery::default(),
            cluster: None,
            console: true,
            inspect: false,
            inspect_capacity: 10_000,
            socket_id_seed: None,
            record: None,
            trusted_proxies: Vec::new(),
            tls: None,
            metrics: Some(MetricsConfig::default()),
            apps_store: None,
            apps: vec![AppConfig::default()],
        }
    }
}

/// The shape of `poxide.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: Option<IpAddr>,
    port: Option<u16>,
    activity_timeout: Option<u64>,
    pong_timeout_ms: Option<u64>,
    outbox_capacity: Option<usize>,
    outbox_bytes: Option<usize>,
    write_timeout_ms: Option<u64>,
    http_header_timeout_ms: Option<u64>,
    http_body_timeout_ms: Option<u64>,
    http_session_timeout_ms: Option<u64>,
    http_heartbeat_ms: Option<u64>,
    max_http_sessions: Option<usize>,
    http_stream_bytes: Option<usize>,
    webhook_delivery: Option<WebhookDelivery>,
    cluster: Option<FileCluster>,
    console: Option<bool>,
    inspect: Option<bool>,
    inspect_capacity: Option<usize>,
    socket_id_seed: Option<u64>,
    record: Option<std::path::PathBuf>,
    trusted_proxies: Option<Vec<IpAddr>>,
    tls: Option<FileTls>,
    metrics: Option<FileMetrics>,
    apps_store: Option<FileAppsStore>,
    apps: Option<Vec<AppConfig>>,
}

/// Settings that can come from the environment or from flags; `None` leaves the lower layer's
/// value. The app settings apply to the first (default) app. As flags, each help line names the
/// default and the environment variables (poxide's, then Poxa's).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on, or localhost [default: 0.0.0.0] [env: POXIDE_HOST]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on, 0 for any free one [default: 8080] [env: PORT, POXIDE_PORT]
    #[arg(long)]
    pub port: Option<String>,
    /// Read the apps from this database instead: sqlite:///path/apps.db or
    /// postgres://user:password@host/db [env: POXIDE_APPS_DATABASE_URL]
    #[arg(long)]
    pub apps_database_url: Option<String>,
    /// Milliseconds between checks of the apps database for changes [default: 2000]
    /// [env: POXIDE_APPS_REFRESH_MS]
    #[arg(long)]
    pub apps_refresh_ms: Option<String>,
    /// Id of the default (first) app [default: app_id] [env: POXIDE_APP_ID, POXA_APP_ID]
    #[arg(long)]
    pub app_id: Option<String>,
    /// Key of the default app [default: app_key] [env: POXIDE_APP_KEY, POXA_APP_KEY]
    #[arg(long)]
    pub app_key: Option<String>,
    /// Secret of the default app [default: secret] [env: POXIDE_APP_SECRET, POXA_SECRET]
    #[arg(long)]
    pub app_secret: Option<String>,
    /// Largest event data in bytes [default: 10240] [env: POXIDE_PAYLOAD_LIMIT, PAYLOAD_LIMIT]
    #[arg(long)]
    pub payload_limit: Option<String>,
    /// Seconds of silence before the server pings a client [default: 120]
    /// [env: POXIDE_ACTIVITY_TIMEOUT, ACTIVITY_TIMEOUT]
    #[arg(long)]
    pub activity_timeout: Option<String>,
    /// Milliseconds to wait for an answer to a server ping before closing with 4201
    /// [default: 30000] [env: POXIDE_PONG_TIMEOUT_MS]
    #[arg(long)]
    pub pong_timeout_ms: Option<String>,
    /// Send the default app's webhooks (all events) to this http:// or https:// URL
    /// [env: POXIDE_WEBHOOK_URL, WEB_HOOK]
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Join the cluster of nodes that share this Redis (redis://host:6379/0)
    /// [env: POXIDE_REDIS_URL]
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel of the cluster [default: poxide]
    /// [env: POXIDE_REDIS_PREFIX]
    #[arg(long)]
    pub redis_prefix: Option<String>,
    /// Milliseconds of silence after which a node is dead [default: 10000]
    /// [env: POXIDE_NODE_TIMEOUT_MS]
    #[arg(long)]
    pub node_timeout_ms: Option<String>,
    /// Serve the web console at / and its event stream at /console [default: true]
    /// [env: POXIDE_CONSOLE]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub console: Option<String>,
    /// Serve the test double's inspection API under /_poxide/ (unsigned: test machines only)
    /// [env: POXIDE_INSPECT]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub inspect: Option<String>,
    /// Socket ids from a sequence fixed by this number [env: POXIDE_SOCKET_ID_SEED]
    #[arg(long)]
    pub socket_id_seed: Option<String>,
    /// Write every exchange of the default app as conformance transcripts into this directory
    /// [env: POXIDE_RECORD]
    #[arg(long)]
    pub record: Option<String>,
    /// Poxa's `POXA_SSL`: `true` needs a certificate, `false` turns TLS off.
    #[arg(skip)]
    pub tls: Option<String>,
    /// PEM certificate (with its chain): serve TLS too [env: POXIDE_TLS_CERT, SSL_CERTFILE]
    #[arg(long)]
    pub tls_cert: Option<String>,
    /// PEM private key of the certificate [env: POXIDE_TLS_KEY, SSL_KEYFILE]
    #[arg(long)]
    pub tls_key: Option<String>,
    /// PEM intermediate certificates sent after the certificate
    /// [env: POXIDE_TLS_CHAIN, SSL_CACERTFILE]
    #[arg(long)]
    pub tls_chain: Option<String>,
    /// Port of the TLS listener [default: 8443] [env: POXIDE_TLS_PORT, SSL_PORT]
    #[arg(long)]
    pub tls_port: Option<String>,
    /// Address of the metrics listener [default: 127.0.0.1] [env: POXIDE_METRICS_HOST]
    #[arg(long)]
    pub metrics_host: Option<String>,
    /// Port of the Prometheus metrics listener (/metrics), 0 for none [default: 9601]
    /// [env: POXIDE_METRICS_PORT]
    #[arg(long)]
    pub metrics_port: Option<String>,
}

impl Overrides {
    /// Reads poxide's variables, falling back to Poxa's names so a Poxa deployment switches
    /// without edits.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> (Self, Vec<&'static str>) {
        let mut used = Vec::new();
        let mut pick = |names: &[&'static str]| {
            names.iter().find_map(|name| {
                get(name)
                    .filter(|v| !v.is_empty())
                    .inspect(|_| used.push(*name))
            })
        };
        let o = Overrides {
            host: pick(&["POXIDE_HOST"]),
            port: pick(&["PORT", "POXIDE_PORT"]),
            app_id: pick(&["POXIDE_APP_ID", "POXA_APP_ID"]),
            app_key: pick(&["POXIDE_APP_KEY", "POXA_APP_KEY"]),
            app_secret: pick(&["POXIDE_APP_SECRET", "POXA_SECRET"]),
            payload_limit: pick(&["POXIDE_PAYLOAD_LIMIT", "PAYLOAD_LIMIT"]),
            activity_timeout: pick(&["POXIDE_ACTIVITY_TIMEOUT", "ACTIVITY_TIMEOUT"]),
            pong_timeout_ms: pick(&["POXIDE_PONG_TIMEOUT_MS"]),
            webhook_url: pick(&["POXIDE_WEBHOOK_URL", "WEB_HOOK"]),
            redis_url: pick(&["POXIDE_REDIS_URL"]),
            apps_database_url: pick(&["POXIDE_APPS_DATABASE_URL"]),
            apps_refresh_ms: pick(&["POXIDE_APPS_REFRESH_MS"]),
            redis_prefix: pick(&["POXIDE_REDIS_PREFIX"]),
            node_timeout_ms: pick(&["POXIDE_NODE_TIMEOUT_MS"]),
            console: pick(&["POXIDE_CONSOLE"]),
            inspect: pick(&["POXIDE_INSPECT"]),
            socket_id_seed: pick(&["POXIDE_SOCKET_ID_SEED"]),
            record: pick(&["POXIDE_RECORD"]),
            tls: pick(&["POXA_SSL"]),
            tls_cert: pick(&["POXIDE_TLS_CERT", "SSL_CERTFILE"]),
            tls_key: pick(&["POXIDE_TLS_KEY", "SSL_KEYFILE"]),
            tls_chain: pick(&["POXIDE_TLS_CHAIN", "SSL_CACERTFILE"]),
            tls_port: pick(&["POXIDE_TLS_PORT", "SSL_PORT"]),
            metrics_host: pick(&["POXIDE_METRICS_HOST"]),
            metrics_port: pick(&["POXIDE_METRICS_PORT"]),
        };
        (o, used)
    }

    fn apply(&self, config: &mut Config, source: &str) -> Result<(), ConfigError> {
        let key = |name: &str| format!("{name} ({source})");
        if let Some(v) = &self.host {
            config.host = parse_host(v, &key("host"))?;
        }
        if let Some(v) = &self.port {
            config.port = parse_port(v, &key("port"))?;
        }
        if let Some(v) = &self.activity_timeout {
            config.activity_timeout =
                Duration::from_secs(parse_number(v, &key("activity_timeout"))?);
        }
        if let Some(v) = &self.pong_timeout_ms {
            config.pong_timeout = Duration::from_millis(parse_number(v, &key("pong_timeout_ms"))?);
        }
        if let Some(v) = &self.console {
            config.console = parse_bool(v, &key("console"))?;
        }
        if let Some(v) = &self.inspect {
            config.inspect = parse_bool(v, &key("inspect"))?;
        }
        self.apply_tls(config, &key)?;
        if let Some(v) = &self.metrics_port {
            match parse_port(v, &key("metrics_port"))? {
                0 => config.metrics = None,
                port => {
                    config
                        .metrics
                        .get_or_insert_with(MetricsConfig::default)
                        .port = port
                }
            }
        }
        if let (Some(v), Some(metrics)) = (&self.metrics_host, &mut config.metrics) {
            metrics.host = parse_host(v, &key("metrics_host"))?;
        }
        if let Some(dir) = &self.record {
            config.record = Some(dir.into());
        }
        if let Some(v) = &self.socket_id_seed {
            config.socket_id_seed = Some(parse_number(v, &key("socket_id_seed"))?);
        }
        if let Some(url) = &self.redis_url {
            let cluster = config.cluster.get_or_insert_with(|| ClusterConfig {
                redis_url: String::new(),
                prefix: DEFAULT_PREFIX.into(),
                node_timeout: DEFAULT_NODE_TIMEOUT,
            });
            cluster.redis_url = url.clone();
        }
        if let Some(url) = &self.apps_database_url {
            config
                .apps_store
                .get_or_insert_with(|| AppsStoreConfig {
                    url: String::new(),
                    refresh: DEFAULT_APPS_REFRESH,
                })
                .url = url.clone();
        }
        if let (Some(v), Some(store)) = (&self.apps_refresh_ms, &mut config.apps_store) {
            store.refresh = Duration::from_millis(parse_number(v, &key("apps_refresh_ms"))?);
        }
        if let Some(cluster) = &mut config.cluster {
            if let Some(prefix) = &self.redis_prefix {
                cluster.prefix = prefix.clone();
            }
            if let Some(v) = &self.node_timeout_ms {
                cluster.node_timeout =
                    Duration::from_millis(parse_number(v, &key("node_timeout_ms"))?);
            }
        }
        let app = config
            .apps
            .first_mut()
            .expect("config always has a default app");
        if let Some(v) = &self.app_id {
            app.id = v.clone();
        }
        if let Some(v) = &self.app_key {
            app.key = v.clone();
        }
        if let Some(v) = &self.app_secret {
            app.secret = v.clone();
        }
        if let Some(v) = &self.payload_limit {
            app.payload_limit = parse_number(v, &key("payload_limit"))?;
        }
        if let Some(url) = &self.webhook_url {
            if !app.webhooks.iter().any(|w| &w.url == url) {
                app.webhooks.push(WebhookTarget::new(url.clone()));
            }
        }
        Ok(())
    }
}

impl Overrides {
    /// A certificate turns TLS on; Poxa's `POXA_SSL=true` insists on one, `false` turns TLS off.
    /// A port alone changes an existing TLS listener only (Poxa ignores `SSL_PORT` without
    /// `POXA_SSL` too).
    fn apply_tls(
        &self,
        config: &mut Config,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        let switch = self
            .tls
            .as_deref()
            .map(|v| parse_bool(v, &key("POXA_SSL")))
            .transpose()?;
        if switch == Some(false) {
            config.tls = None;
            return Ok(());
        }
        if self.tls_cert.is_some() || self.tls_key.is_some() || switch == Some(true) {
            let tls = config.tls.get_or_insert_with(|| TlsConfig {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                chain: None,
                port: DEFAULT_TLS_PORT,
                only: false,
            });
            if let Some(cert) = &self.tls_cert {
                tls.cert = cert.into();
            }
            if let Some(k) = &self.tls_key {
                tls.key = k.into();
            }
        }
        if let Some(tls) = &mut config.tls {
            if let Some(chain) = &self.tls_chain {
                tls.chain = Some(chain.into());
            }
            if let Some(v) = &self.tls_port {
                tls.port = parse_port(v, &key("tls_port"))?;
            }
        }
        Ok(())
    }
}

fn parse_bool(value: &str, key: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            expected: "true or false",
        }),
    }
}

fn parse_host(value: &str, key: &str) -> Result<IpAddr, ConfigError> {
    let address = if value.eq_ignore_ascii_case("localhost") {
        "127.0.0.1"
    } else {
        value
    };
    address.parse().map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: "an IP address such as 0.0.0.0, or localhost",
    })
}

fn parse_port(value: &str, key: &str) -> Result<u16, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: "a port from 0 to 65535",
    })
}

fn parse_number<T: std::str::FromStr>(value: &str, key: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: "a non-negative integer",
    })
}

/// A setting that differs from its default, and the layer that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    /// Secrets and passwords shown as `***`.
    pub value: String,
    /// `file`, `environment` or `flag`.
    pub source: &'static str,
}

impl Config {
    /// Merges the layers: defaults, then the file (if any), then the environment, then flags.
    pub fn load(
        file: Option<&Path>,
        env: &Overrides,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        Self::load_explained(file, env, flags).map(|(config, _)| config)
    }

    /// [`Config::load`], with every setting that is not at its default and where it came from.
    pub fn load_explained(
        file: Option<&Path>,
        env: &Overrides,
        flags: &Overrides,
    ) -> Result<(Config, Vec<Setting>), ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|e| match e {
                    ConfigError::Parse { message, .. } => ConfigError::Parse {
                        path: path.display().to_string(),
                        message,
                    },
                    other => other,
                })?
            }
            None => Config::default(),
        };
        let from_file = config.describe();
        env.apply(&mut config, "environment")?;
        let from_env = config.describe();
        flags.apply(&mut config, "flag")?;
        config.validate()?;
        let defaults: std::collections::HashMap<String, String> =
            Config::default().describe().into_iter().collect();
        let (from_file, from_env): (
            std::collections::HashMap<_, _>,
            std::collections::HashMap<_, _>,
        ) = (
            from_file.into_iter().collect(),
            from_env.into_iter().collect(),
        );
        let settings = config
            .describe()
            .into_iter()
            .filter(|(key, value)| defaults.get(key) != Some(value))
            .map(|(key, value)| {
                let source = if from_env.get(&key) != Some(&value) {
                    "flag"
                } else if from_file.get(&key) != Some(&value) {
                    "environment"
                } else {
                    "file"
                };
                // Compared in full, shown hidden.
                let value = if key.ends_with(".secret") {
                    "***".to_string()
                } else if key == "cluster.redis_url" || key == "apps_store.url" {
                    hide_password(&value)
                } else {
                    value
                };
                Setting { key, value, source }
            })
            .collect();
        Ok((config, settings))
    }

    /// Every setting as `key = value`, in a stable order (secrets included: see the caller).
    fn describe(&self) -> Vec<(String, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        let mut out: Vec<(String, String)> = vec![
            ("host".into(), self.host.to_string()),
            ("port".into(), self.port.to_string()),
            (
                "activity_timeout".into(),
                self.activity_timeout.as_secs().to_string(),
            ),
            ("pong_timeout_ms".into(), ms(self.pong_timeout)),
            ("outbox_capacity".into(), self.outbox_capacity.to_string()),
            ("outbox_bytes".into(), self.outbox_bytes.to_string()),
            ("write_timeout_ms".into(), ms(self.write_timeout)),
            (
                "http_header_timeout_ms".into(),
                ms(self.http_header_timeout),
            ),
            ("http_body_timeout_ms".into(), ms(self.http_body_timeout)),
            (
                "http_session_timeout_ms".into(),
                ms(self.http_session_timeout),
            ),
            ("http_heartbeat_ms".into(), ms(self.http_heartbeat)),
            (
                "max_http_sessions".into(),
                self.max_http_sessions.to_string(),
            ),
            (
                "http_stream_bytes".into(),
                self.http_stream_bytes.to_string(),
            ),
            ("console".into(), self.console.to_string()),
            ("inspect".into(), self.inspect.to_string()),
            ("inspect_capacity".into(), self.inspect_capacity.to_string()),
            (
                "socket_id_seed".into(),
                format!("{:?}", self.socket_id_seed),
            ),
            ("record".into(), format!("{:?}", self.record)),
            (
                "trusted_proxies".into(),
                format!("{:?}", self.trusted_proxies),
            ),
            (
                "metrics".into(),
                match &self.metrics {
                    Some(m) => format!("{}:{}", m.host, m.port),
                    None => "off".into(),
                },
            ),
        ];
        let mut fields = |prefix: &str, value: serde_json::Value| {
            if let serde_json::Value::Object(map) = value {
                for (k, v) in map {
                    out.push((format!("{prefix}.{k}"), v.to_string()));
                }
            }
        };
        fields(
            "webhook_delivery",
            serde_json::to_value(&self.webhook_delivery).unwrap_or_default(),
        );
        for (i, app) in self.apps.iter().enumerate() {
            fields(
                &format!("apps[{i}]"),
                serde_json::to_value(app).unwrap_or_default(),
            );
        }
        if let Some(a) = &self.apps_store {
            out.push(("apps_store.url".into(), a.url.clone()));
            out.push(("apps_store.refresh_ms".into(), ms(a.refresh)));
        }
        if let Some(c) = &self.cluster {
            out.push(("cluster.redis_url".into(), c.redis_url.clone()));
            out.push(("cluster.prefix".into(), c.prefix.clone()));
            out.push(("cluster.node_timeout_ms".into(), ms(c.node_timeout)));
        }
        if let Some(t) = &self.tls {
            out.push(("tls.cert".into(), t.cert.display().to_string()));
            out.push(("tls.key".into(), t.key.display().to_string()));
            if let Some(chain) = &t.chain {
                out.push(("tls.chain".into(), chain.display().to_string()));
            }
            out.push(("tls.port".into(), t.port.to_string()));
            if t.only {
                out.push(("tls.only".into(), "true".into()));
            }
        }
        out
    }

    /// Parses a TOML document; unset keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: String::new(),
            message: one_line(&e.to_string()),
        })?;
        // Serde fills a missing field with the default app's secret; in a file that would be a
        // silent, public secret, so its absence is an error here.
        if let Ok(raw) = toml::from_str::<toml::Table>(text) {
            let apps = raw.get("apps").and_then(toml::Value::as_array);
            for (i, app) in apps.into_iter().flatten().enumerate() {
                if app.get("secret").is_none() {
                    return Err(ConfigError::Invalid {
                        key: format!("apps[{i}].secret"),
                        value: String::new(),
                        expected: "a secret of the app's own: there is no default",
                    });
                }
            }
        }
        let mut config = Config::default();
        if let Some(host) = file.host {
            config.host = host;
        }
        if let Some(port) = file.port {
            config.port = port;
        }
        if let Some(secs) = file.activity_timeout {
            config.activity_timeout = Duration::from_secs(secs);
        }
        if let Some(ms) = file.pong_timeout_ms {
            config.pong_timeout = Duration::from_millis(ms);
        }
        if let Some(capacity) = file.outbox_capacity {
            config.outbox_capacity = capacity;
        }
        if let Some(bytes) = file.outbox_bytes {
            config.outbox_bytes = bytes;
        }
        for (value, setting) in [
            (file.write_timeout_ms, &mut config.write_timeout),
            (file.http_header_timeout_ms, &mut config.http_header_timeout),
            (file.http_body_timeout_ms, &mut config.http_body_timeout),
            (
                file.http_session_timeout_ms,
                &mut config.http_session_timeout,
            ),
            (file.http_heartbeat_ms, &mut config.http_heartbeat),
        ] {
            if let Some(ms) = value {
                *setting = Duration::from_millis(ms);
            }
        }
        if let Some(n) = file.max_http_sessions {
            config.max_http_sessions = n;
        }
        if let Some(n) = file.http_stream_bytes {
            config.http_stream_bytes = n;
        }
        if let Some(delivery) = file.webhook_delivery {
            config.webhook_delivery = delivery;
        }
        if let Some(console) = file.console {
            config.console = console;
        }
        if let Some(inspect) = file.inspect {
            config.inspect = inspect;
        }
        if let Some(capacity) = file.inspect_capacity {
            config.inspect_capacity = capacity;
        }
        config.socket_id_seed = file.socket_id_seed.or(config.socket_id_seed);
        config.record = file.record.or(config.record);
        if let Some(proxies) = file.trusted_proxies {
            config.trusted_proxies = proxies;
        }
        if let Some(FileCluster {
            redis_url: Some(redis_url),
            prefix,
            node_timeout_ms,
        }) = file.cluster
        {
            config.cluster = Some(ClusterConfig {
                redis_url,
                prefix: prefix.unwrap_or_else(|| DEFAULT_PREFIX.into()),
                node_timeout: node_timeout_ms.map_or(DEFAULT_NODE_TIMEOUT, Duration::from_millis),
            });
        }
        if let Some(FileAppsStore {
            url: Some(url),
            refresh_ms,
        }) = file.apps_store
        {
            config.apps_store = Some(AppsStoreConfig {
                url,
                refresh: refresh_ms.map_or(DEFAULT_APPS_REFRESH, Duration::from_millis),
            });
        }
        if let Some(t) = file.tls {
            config.tls = Some(TlsConfig {
                cert: t.cert.unwrap_or_default(),
                key: t.key.unwrap_or_default(),
                chain: t.chain,
                port: t.port.unwrap_or(DEFAULT_TLS_PORT),
                only: t.only.unwrap_or(false),
            });
        }
        if let Some(m) = file.metrics {
            let defaults = MetricsConfig::default();
            config.metrics = match m.port {
                Some(0) => None,
                port => Some(MetricsConfig {
                    host: m.host.unwrap_or(defaults.host),
                    port: port.unwrap_or(defaults.port),
                }),
            };
        }
        if let Some(apps) = file.apps {
            config.apps = apps;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: non-empty credentials, unique ids and keys, positive limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, value: String, expected| {
            Err(ConfigError::Invalid {
                key,
                value,
                expected,
            })
        };
        if self.apps.is_empty() && self.apps_store.is_none() {
            return invalid("apps".into(), "[]".into(), "at least one app");
        }
        if self.activity_timeout.as_secs() == 0 {
            return invalid(
                "activity_timeout".into(),
                "0".into(),
                "at least 1 second: pusher-js refuses a zero activity timeout",
            );
        }
        let d = &self.webhook_delivery;
        let mut durations: Vec<(String, u128)> = vec![
            ("activity_timeout".into(), self.activity_timeout.as_millis()),
            ("pong_timeout_ms".into(), self.pong_timeout.as_millis()),
            ("write_timeout_ms".into(), self.write_timeout.as_millis()),
            (
                "http_header_timeout_ms".into(),
                self.http_header_timeout.as_millis(),
            ),
            (
                "http_body_timeout_ms".into(),
                self.http_body_timeout.as_millis(),
            ),
            (
                "http_session_timeout_ms".into(),
                self.http_session_timeout.as_millis(),
            ),
            ("http_heartbeat_ms".into(), self.http_heartbeat.as_millis()),
            ("webhook_delivery.grace_ms".into(), d.grace_ms.into()),
            ("webhook_delivery.batch_ms".into(), d.batch_ms.into()),
            (
                "webhook_delivery.request_timeout_ms".into(),
                d.request_timeout_ms.into(),
            ),
            (
                "webhook_delivery.retry_initial_ms".into(),
                d.retry_initial_ms.into(),
            ),
            (
                "webhook_delivery.retry_window_ms".into(),
                d.retry_window_ms.into(),
            ),
        ];
        if let Some(store) = &self.apps_store {
            durations.push(("apps_store.refresh_ms".into(), store.refresh.as_millis()));
        }
        for (key, ms) in durations {
            if ms > DAY_MS {
                return invalid(key, format!("{ms} ms"), "at most one day");
            }
        }
        for (key, value) in [
            ("outbox_capacity", self.outbox_capacity),
            ("outbox_bytes", self.outbox_bytes),
            ("write_timeout_ms", self.write_timeout.as_millis() as usize),
            (
                "http_header_timeout_ms",
                self.http_header_timeout.as_millis() as usize,
            ),
            (
                "http_body_timeout_ms",
                self.http_body_timeout.as_millis() as usize,
            ),
            (
                "http_session_timeout_ms",
                self.http_session_timeout.as_millis() as usize,
            ),
            (
                "http_heartbeat_ms",
                self.http_heartbeat.as_millis() as usize,
            ),
            ("max_http_sessions", self.max_http_sessions),
            ("http_stream_bytes", self.http_stream_bytes),
        ] {
            if value == 0 {
                return invalid(key.into(), "0".into(), "a positive integer");
            }
        }
        if self.apps_store.is_none() {
            validate_apps(&self.apps)?;
        }
        if let Some(store) = &self.apps_store {
            if crate::apps::StoreUrl::parse(&store.url).is_err() {
                return invalid(
                    "apps_store.url".into(),
                    hide_password(&store.url),
                    "sqlite:///path/to/apps.db or postgres://user:password@host:port/db",
                );
            }
            if store.refresh.is_zero() {
                return invalid(
                    "apps_store.refresh_ms".into(),
                    "0".into(),
                    "a positive integer",
                );
            }
        }
        if let Some(tls) = &self.tls {
            for (name, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if path.as_os_str().is_empty() {
                    return invalid(
                        name.into(),
                        String::new(),
                        "a PEM file: TLS needs a certificate and its key (POXIDE_TLS_CERT and POXIDE_TLS_KEY, or Poxa's SSL_CERTFILE and SSL_KEYFILE)",
                    );
                }
            }
            if !tls.only && tls.port == self.port && tls.port != 0 {
                return invalid(
                    "tls.port".into(),
                    tls.port.to_string(),
                    "a port other than the plain listener's (or tls.only = true)",
                );
            }
        }
        if let Some(cluster) = &self.cluster {
            let url = &cluster.redis_url;
            if !(url.starts_with("redis://") || url.starts_with("rediss://"))
                || redis::Client::open(url.as_str()).is_err()
            {
                return invalid(
                    "cluster.redis_url".into(),
                    url.clone(),
                    "a redis:// or rediss:// (TLS) URL such as redis://:password@127.0.0.1:6379/0",
                );
            }
            if cluster.prefix.is_empty() || cluster.prefix.contains(['{', '}']) {
                return invalid(
                    "cluster.prefix".into(),
                    cluster.prefix.clone(),
                    "a non-empty prefix without { or }",
                );
            }
            if cluster.node_timeout < Duration::from_millis(500) {
                return invalid(
                    "cluster.node_timeout_ms".into(),
                    cluster.node_timeout.as_millis().to_string(),
                    "at least 500",
                );
            }
        }
        Ok(())
    }
}

/// The longest duration any setting may have: larger values would overflow the clock
/// arithmetic, and are mistakes anyway.
const DAY_MS: u128 = 86_400_000;

/// Checks what serde cannot in a list of apps, wherever they come from: non-empty credentials,
/// unique ids and keys, positive limits, sane durations, webhook URLs and event names.
pub fn validate_apps(apps: &[AppConfig]) -> Result<(), ConfigError> {
    let invalid = |key: String, value: String, expected| {
        Err(ConfigError::Invalid {
            key,
            value,
            expected,
        })
    };
    for (i, app) in apps.iter().enumerate() {
        for (name, ms) in [
            (
                "authorization_timeout_ms",
                app.authorization_timeout_ms.into(),
            ),
            (
                "cache_ttl_seconds",
                u128::from(app.cache_ttl_seconds) * 1000,
            ),
        ] {
            if ms > DAY_MS {
                return invalid(
                    format!("apps[{i}].{name}"),
                    format!("{ms} ms"),
                    "at most one day",
                );
            }
        }
    }
    let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
    for (i, app) in apps.iter().enumerate() {
        let key = |name: &str| format!("apps[{i}].{name}");
        for (name, value) in [("id", &app.id), ("key", &app.key), ("secret", &app.secret)] {
            if value.is_empty() {
                return invalid(key(name), value.clone(), "a non-empty string");
            }
        }
        if !ids.insert(app.id.as_str()) {
            return invalid(key("id"), app.id.clone(), "an id no other app uses");
        }
        if !keys.insert(app.key.as_str()) {
            return invalid(key("key"), app.key.clone(), "a key no other app uses");
        }
        for (j, hook) in app.webhooks.iter().enumerate() {
            let hook_key = |name: &str| key(&format!("webhooks[{j}].{name}"));
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return invalid(
                    hook_key("url"),
                    hook.url.clone(),
                    "an http:// or https:// URL",
                );
            }
            for t in hook.event_types.iter().flatten() {
                if !WEBHOOK_EVENT_TYPES.contains(&t.as_str()) {
                    return invalid(
                            hook_key("event_types"),
                            t.clone(),
                            "one of channel_occupied, channel_vacated, member_added, member_removed, client_event, cache_miss, subscription_count",
                        );
                }
            }
        }
        for (name, value) in [
            ("payload_limit", app.payload_limit),
            ("max_channel_name_length", app.max_channel_name_length),
            ("max_event_name_length", app.max_event_name_length),
            ("client_event_rate", app.client_event_rate as usize),
            (
                "max_channels_per_connection",
                app.max_channels_per_connection,
            ),
            ("subscription_rate", app.subscription_rate as usize),
        ] {
            if value == 0 {
                return invalid(key(name), "0".into(), "a positive integer");
            }
        }
    }
    Ok(())
}

/// `redis://:password@host` → `redis://:***@host`.
pub fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            let hidden = if credentials.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{}{hidden}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_poxas() {
        let c = Config::default();
        assert_eq!(c.port, 8080);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.activity_timeout, Duration::from_secs(120));
        let app = &c.apps[0];
        assert_eq!(
            (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
            ("app_id", "app_key", "secret")
        );
        assert_eq!(app.payload_limit, 10_240);
        assert!(app.client_events);
    }

    #[test]
    fn file_defines_several_apps_with_their_own_limits() {
        let c = Config::from_toml(
            r#"
            port = 9000
            activity_timeout = 30
            [[apps]]
            id = "1"
            key = "k1"
            secret = "s1"
            [[apps]]
            id = "2"
            key = "k2"
            secret = "s2"
            client_events = false
            max_connections = 5
            max_presence_members = 7
            max_user_info_bytes = 99
            payload_limit = 2048
            "#,
        )
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.activity_timeout, Duration::from_secs(30));
        assert_eq!(c.apps.len(), 2);
        assert!(c.apps[0].client_events);
        let second = &c.apps[1];
        assert!(!second.client_events);
        assert_eq!(second.max_connections, Some(5));
        assert_eq!(second.max_presence_members, 7);
        assert_eq!(second.max_user_info_bytes, 99);
        assert_eq!(second.payload_limit, 2048);
    }

    #[test]
    fn flags_override_environment_which_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("poxide-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("poxide.toml");
        std::fs::write(
            &path,
            "port = 1000\n[[apps]]\nid='f'\nkey='fk'\nsecret='fs'\n",
        )
        .unwrap();
        let env = Overrides {
            port: Some("2000".into()),
            app_key: Some("ek".into()),
            ..Default::default()
        };
        let flags = Overrides {
            port: Some("3000".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&path), &env, &flags).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.apps[0].id, "f");
        assert_eq!(c.apps[0].key, "ek");
        assert_eq!(c.apps[0].secret, "fs");
    }

    #[test]
    fn poxa_variable_names_are_aliases() {
        let vars = [
            ("POXA_APP_ID", "pid"),
            ("POXA_APP_KEY", "pkey"),
            ("POXA_SECRET", "psecret"),
            ("PAYLOAD_LIMIT", "5000"),
            ("ACTIVITY_TIMEOUT", "60"),
            ("PORT", "4000"),
        ];
        let (env, used) = Overrides::from_env(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(used.len(), 6);
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(c.port, 4000);
        assert_eq!(c.activity_timeout, Duration::from_secs(60));
        let app = &c.apps[0];
        assert_eq!(
            (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
            ("pid", "pkey", "psecret")
        );
        assert_eq!(app.payload_limit, 5000);
    }

    #[test]
    fn webhooks_come_from_the_file_and_from_poxas_variable() {
        let c = Config::from_toml(
            r#"
            [webhook_delivery]
            grace_ms = 100
            [[apps]]
            id = "a"
            key = "k"
            secret = "s"
            [[apps.webhooks]]
            url = "http://127.0.0.1:9/all"
            [[apps.webhooks]]
            url = "http://127.0.0.1:9/members"
            event_types = ["member_added", "member_removed"]
            "#,
        )
        .unwrap();
        assert_eq!(c.webhook_delivery.grace_ms, 100);
        assert_eq!(c.webhook_delivery.batch_ms, 50);
        let hooks = &c.apps[0].webhooks;
        assert_eq!(hooks.len(), 2);
        assert!(hooks[0].wants("client_event"));
        assert!(hooks[1].wants("member_added"));
        assert!(!hooks[1].wants("channel_occupied"));

        let vars = [("WEB_HOOK", "http://127.0.0.1:9/poxa")];
        let (env, _) = Overrides::from_env(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(
            c.apps[0].webhooks,
            [WebhookTarget::new("http://127.0.0.1:9/poxa")]
        );

        let err = Config::from_toml(
            "[[apps]]\nid='a'\nkey='k'\nsecret='s'\n[[apps.webhooks]]\nurl='http://x'\nevent_types=['channel_ocupied']\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid value for apps[0].webhooks[0].event_types: \"channel_ocupied\""
            ),
            "{err}"
        );
    }

    #[test]
    fn the_double_and_the_cluster_are_set_from_the_environment_or_the_file() {
        let vars = [
            ("POXIDE_INSPECT", "true"),
            ("POXIDE_SOCKET_ID_SEED", "7"),
            ("POXIDE_RECORD", "/tmp/rec"),
            ("POXIDE_REDIS_URL", "redis://:pw@db:6379/2"),
            ("POXIDE_REDIS_PREFIX", "blue"),
            ("POXIDE_NODE_TIMEOUT_MS", "2500"),
        ];
        let (env, _) = Overrides::from_env(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        let c = Config::load(None, &env, &Overrides::default()).unwrap();
        assert!(c.inspect);
        assert_eq!(c.socket_id_seed, Some(7));
        assert_eq!(c.record.as_deref(), Some(Path::new("/tmp/rec")));
        assert_eq!(
            c.cluster,
            Some(ClusterConfig {
                redis_url: "redis://:pw@db:6379/2".into(),
                prefix: "blue".into(),
                node_timeout: Duration::from_millis(2500),
            })
        );
        let file = Config::from_toml(
            "inspect = true\ninspect_capacity = 5\n[cluster]\nredis_url = \"rediss://h:6380\"\n",
        )
        .unwrap();
        assert!(file.inspect);
        assert_eq!(file.inspect_capacity, 5);
        assert_eq!(file.cluster.unwrap().prefix, "poxide");
        let bad = |k: &'static str, v: &'static str| {
            let (env, _) = Overrides::from_env(|name| (name == k).then(|| v.to_string()));
            Config::load(None, &env, &Overrides::default())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad("POXIDE_INSPECT", "maybe"),
            "invalid value for inspect (environment): \"maybe\" (true or false)"
        );
        assert_eq!(
            bad("POXIDE_REDIS_URL", "http://db"),
            "invalid value for cluster.redis_url: \"http://db\" (a redis:// or rediss:// (TLS) URL such as redis://:password@127.0.0.1:6379/0)"
        );
    }

    #[test]
    fn an_app_without_a_secret_is_an_error_and_localhost_is_an_address() {
        let err = Config::from_toml("[[apps]]\nid = \"a\"\nkey = \"k\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for apps[0].secret: \"\" (a secret of the app's own: there is no default)"
        );
        let flags = Overrides {
            host: Some("localhost".into()),
            ..Overrides::default()
        };
        let c = Config::load(None, &Overrides::default(), &flags).unwrap();
        assert_eq!(c.host, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn poxide_names_win_over_poxa_names() {
        let vars = [("POXIDE_APP_KEY", "new"), ("POXA_APP_KEY", "old")];
        let (env, _) = Overrides::from_env(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(env.app_key.as_deref(), Some("new"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let env = Overrides {
            port: Some("eighty".into()),
            ..Default::default()
        };
        let err = Config::load(None, &env, &Overrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for port (environment): \"eighty\" (a port from 0 to 65535)"
        );

        let err = Config::from_toml("[[apps]]\nid='a'\nkey='k'\nsecret=''\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for apps[0].secret: \"\" (a non-empty string)"
        );

        let err = Config::from_toml("activity_timeout = 18446744073709551615").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for activity_timeout: \"18446744073709551615000 ms\" (at most one day)"
        );

        let err = Config::from_toml("prot = 1").unwrap_err().to_string();
        assert!(err.contains("unknown field `prot`"), "{err}");
        assert!(!err.contains('\n'));

        let err = Config::from_toml(
            "[[apps]]\nid='a'\nkey='k'\nsecret='s'\n[[apps]]\nid='a'\nkey='k2'\nsecret='s'\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for apps[1].id: \"a\" (an id no other app uses)"
        );
    }

    fn env(vars: &[(&str, &str)]) -> Overrides {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Overrides::from_env(|name| vars.get(name).cloned()).0
    }

    #[test]
    fn poxas_ssl_variables_start_a_tls_listener() {
        let c = Config::load(
            None,
            &env(&[
                ("POXA_SSL", "true"),
                ("SSL_PORT", "9443"),
                ("SSL_CERTFILE", "/c.pem"),
                ("SSL_KEYFILE", "/k.pem"),
                ("SSL_CACERTFILE", "/chain.pem"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsConfig {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
                chain: Some("/chain.pem".into()),
                port: 9443,
                only: false,
            })
        );
        // poxide's own names win over Poxa's; a certificate alone turns TLS on.
        let c = Config::load(
            None,
            &env(&[
                ("POXIDE_TLS_CERT", "/mine.pem"),
                ("SSL_CERTFILE", "/poxa.pem"),
                ("POXIDE_TLS_KEY", "/k.pem"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!((tls.cert.to_str(), tls.port), (Some("/mine.pem"), 8443));
        // POXA_SSL=false wins over files, as in Poxa; SSL_PORT alone changes nothing.
        for vars in [
            vec![
                ("POXA_SSL", "false"),
                ("SSL_CERTFILE", "/c.pem"),
                ("SSL_KEYFILE", "/k.pem"),
            ],
            vec![("SSL_PORT", "9443")],
        ] {
            let c = Config::load(None, &env(&vars), &Overrides::default()).unwrap();
            assert_eq!(c.tls, None, "{vars:?}");
        }
        let err = Config::load(
            None,
            &env(&[("POXA_SSL", "yes please")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for POXA_SSL (environment): \"yes please\" (true or false)"
        );
    }

    #[test]
    fn tls_and_metrics_from_the_file() {
        let c = Config::from_toml(
            "port = 80\n[tls]\ncert = 'c.pem'\nkey = 'k.pem'\nport = 443\n[metrics]\nhost = '0.0.0.0'\n",
        )
        .unwrap();
        assert_eq!(c.tls.as_ref().map(|t| t.port), Some(443));
        assert_eq!(
            c.metrics,
            Some(MetricsConfig {
                host: [0, 0, 0, 0].into(),
                port: 9601
            })
        );
        assert_eq!(
            Config::from_toml("[metrics]\nport = 0\n").unwrap().metrics,
            None
        );
        let err = Config::from_toml("[tls]\ncert = 'c.pem'\n").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid value for tls.key"),
            "{err}"
        );
        let err = Config::from_toml("port = 8443\n[tls]\ncert = 'c'\nkey = 'k'\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for tls.port: \"8443\" (a port other than the plain listener's (or tls.only = true))"
        );
        let off = Config::load(
            None,
            &env(&[("POXIDE_METRICS_PORT", "0")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(off.metrics, None);
    }

    #[test]
    fn settings_not_at_their_default_name_their_source_and_hide_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poxide.toml");
        std::fs::write(
            &path,
            "port = 1000\noutbox_capacity = 7\n[cluster]\nredis_url = 'redis://:hunter2@db:6379'\n[[apps]]\nid='f'\nkey='fk'\nsecret='fs'\n",
        )
        .unwrap();
        let env = Overrides {
            port: Some("2000".into()),
            app_secret: Some("from-env".into()),
            ..Default::default()
        };
        let flags = Overrides {
            activity_timeout: Some("60".into()),
            ..Default::default()
        };
        let (_, settings) = Config::load_explained(Some(&path), &env, &flags).unwrap();
        let shown: Vec<String> = settings
            .iter()
            .map(|s| format!("{} = {} ({})", s.key, s.value, s.source))
            .collect();
        assert_eq!(
            shown,
            vec![
                "port = 2000 (environment)",
                "activity_timeout = 60 (flag)",
                "outbox_capacity = 7 (file)",
                "apps[0].id = \"f\" (file)",
                "apps[0].key = \"fk\" (file)",
                "apps[0].secret = *** (environment)",
                "cluster.redis_url = redis://:***@db:6379 (file)",
                "cluster.prefix = poxide (file)",
                "cluster.node_timeout_ms = 10000 (file)",
            ]
        );
        let (_, none) =
            Config::load_explained(None, &Overrides::default(), &Overrides::default()).unwrap();
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(hide_password("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(hide_password("rediss://user:pw@h"), "rediss://user:***@h");
        assert_eq!(hide_password("redis://token@h"), "redis://***@h");
        assert_eq!(hide_password("redis://h:6379"), "redis://h:6379");
    }
}

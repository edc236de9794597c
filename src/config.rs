//! Configuration: the built-in defaults (Poxa's), the TOML file, the environment and command-line
//! flags, merged in that order of precedence (flags > environment > file > defaults).

use std::{collections::HashSet, net::IpAddr, path::Path, time::Duration};

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
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
    pub webhook_delivery: WebhookDelivery,
    /// Set: this node joins the cluster that shares this Redis.
    pub cluster: Option<ClusterConfig>,
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
    pub apps: Vec<AppConfig>,
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
            webhook_delivery: WebhookDelivery::default(),
            cluster: None,
            inspect: false,
            inspect_capacity: 10_000,
            socket_id_seed: None,
            record: None,
            trusted_proxies: Vec::new(),
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
    webhook_delivery: Option<WebhookDelivery>,
    cluster: Option<FileCluster>,
    inspect: Option<bool>,
    inspect_capacity: Option<usize>,
    socket_id_seed: Option<u64>,
    record: Option<std::path::PathBuf>,
    trusted_proxies: Option<Vec<IpAddr>>,
    apps: Option<Vec<AppConfig>>,
}

/// Settings that can come from the environment or from flags; `None` leaves the lower layer's
/// value. The app settings apply to the first (default) app.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<String>,
    pub app_id: Option<String>,
    pub app_key: Option<String>,
    pub app_secret: Option<String>,
    pub payload_limit: Option<String>,
    pub activity_timeout: Option<String>,
    pub pong_timeout_ms: Option<String>,
    /// Adds a webhook receiver (all events) to the default app.
    pub webhook_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    pub node_timeout_ms: Option<String>,
    pub inspect: Option<String>,
    pub socket_id_seed: Option<String>,
    pub record: Option<String>,
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
            redis_prefix: pick(&["POXIDE_REDIS_PREFIX"]),
            node_timeout_ms: pick(&["POXIDE_NODE_TIMEOUT_MS"]),
            inspect: pick(&["POXIDE_INSPECT"]),
            socket_id_seed: pick(&["POXIDE_SOCKET_ID_SEED"]),
            record: pick(&["POXIDE_RECORD"]),
        };
        (o, used)
    }

    fn apply(&self, config: &mut Config, source: &str) -> Result<(), ConfigError> {
        let key = |name: &str| format!("{name} ({source})");
        if let Some(v) = &self.host {
            let address = if v.eq_ignore_ascii_case("localhost") {
                "127.0.0.1"
            } else {
                v.as_str()
            };
            config.host = address.parse().map_err(|_| ConfigError::Invalid {
                key: key("host"),
                value: v.clone(),
                expected: "an IP address such as 0.0.0.0, or localhost",
            })?;
        }
        if let Some(v) = &self.port {
            config.port = parse_number(v, &key("port"))?;
        }
        if let Some(v) = &self.activity_timeout {
            config.activity_timeout =
                Duration::from_secs(parse_number(v, &key("activity_timeout"))?);
        }
        if let Some(v) = &self.pong_timeout_ms {
            config.pong_timeout = Duration::from_millis(parse_number(v, &key("pong_timeout_ms"))?);
        }
        if let Some(v) = &self.inspect {
            config.inspect = match v.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: key("inspect"),
                        value: v.clone(),
                        expected: "true or false",
                    })
                }
            };
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

fn parse_number<T: std::str::FromStr>(value: &str, key: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: "a non-negative integer",
    })
}

impl Config {
    /// Merges the layers: defaults, then the file (if any), then the environment, then flags.
    pub fn load(
        file: Option<&Path>,
        env: &Overrides,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
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
        env.apply(&mut config, "environment")?;
        flags.apply(&mut config, "flag")?;
        config.validate()?;
        Ok(config)
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
        ] {
            if let Some(ms) = value {
                *setting = Duration::from_millis(ms);
            }
        }
        if let Some(delivery) = file.webhook_delivery {
            config.webhook_delivery = delivery;
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
        if self.apps.is_empty() {
            return invalid("apps".into(), "[]".into(), "at least one app");
        }
        if self.activity_timeout.as_secs() == 0 {
            return invalid(
                "activity_timeout".into(),
                "0".into(),
                "at least 1 second: pusher-js refuses a zero activity timeout",
            );
        }
        // Larger values would overflow the clock arithmetic, and are mistakes anyway.
        const DAY_MS: u128 = 86_400_000;
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
        for (i, app) in self.apps.iter().enumerate() {
            durations.push((
                format!("apps[{i}].authorization_timeout_ms"),
                app.authorization_timeout_ms.into(),
            ));
            durations.push((
                format!("apps[{i}].cache_ttl_seconds"),
                u128::from(app.cache_ttl_seconds) * 1000,
            ));
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
        ] {
            if value == 0 {
                return invalid(key.into(), "0".into(), "a positive integer");
            }
        }
        let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
        for (i, app) in self.apps.iter().enumerate() {
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
                if hook.url.starts_with("https://") {
                    return invalid(
                        hook_key("url"),
                        hook.url.clone(),
                        "an http:// URL: this build sends webhooks without TLS",
                    );
                }
                if !hook.url.starts_with("http://") {
                    return invalid(hook_key("url"), hook.url.clone(), "an http:// URL");
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
            "invalid value for port (environment): \"eighty\" (a non-negative integer)"
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
}

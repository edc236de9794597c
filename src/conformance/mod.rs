//! The conformance suite: transcripts of protocol exchanges (`conformance/transcripts/`) and
//! the runner that replays them against poxide in-process or grades any server by URL
//! (`grade.rs`), and the reverse harness that grades client libraries (`clients/`).

pub mod cli;
pub mod clients;
pub mod grade;
pub mod runner;
pub mod template;
pub mod transcript;

use std::time::Duration;

use crate::{AppConfig, Config, Server};
use runner::{Credentials, Mode, Report, Target};
use transcript::{AppOverrides, Transcript};

/// The features the report groups scenarios by: the `## ` headings of `conformance/BEHAVIOUR.md`,
/// in its order.
pub fn features() -> Vec<&'static str> {
    include_str!("../../conformance/BEHAVIOUR.md")
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect()
}

/// The in-process server's second app, for isolation scenarios.
pub fn second_app() -> AppConfig {
    AppConfig {
        id: "app2".into(),
        key: "app2_key".into(),
        secret: "secret2".into(),
        ..AppConfig::default()
    }
}

/// The configuration a scenario asks for: defaults, its overrides, both apps, any free port on
/// loopback.
pub fn config_for(transcript: &Transcript) -> Config {
    let mut config = Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        apps: vec![AppConfig::default(), second_app()],
        metrics: None,
        ..Config::default()
    };
    let o: AppOverrides = transcript.header.app.clone().unwrap_or_default();
    if let Some(secs) = o.activity_timeout {
        config.activity_timeout = Duration::from_secs(secs);
    }
    if let Some(ms) = o.pong_timeout_ms {
        config.pong_timeout = Duration::from_millis(ms);
    }
    // The app settings are merged into the default app as the config file would set them, so
    // a misspelt or unknown key fails the same way.
    let mut app = serde_json::to_value(&config.apps[0]).expect("app config serializes");
    app.as_object_mut()
        .expect("app config is an object")
        .extend(o.app);
    config.apps[0] = serde_json::from_value(app)
        .unwrap_or_else(|e| panic!("{}: bad app settings: {e}", transcript.header.name));
    config
}

fn credentials(app: &AppConfig) -> Credentials {
    Credentials {
        id: app.id.clone(),
        key: app.key.clone(),
        secret: app.secret.clone(),
    }
}

/// Starts a server configured for the scenario, replays it, and stops the server.
pub async fn run_in_process(transcript: &Transcript) -> Report {
    let config = config_for(transcript);
    let target_apps = (credentials(&config.apps[0]), credentials(&config.apps[1]));
    let server = Server::new(config)
        .start()
        .await
        .expect("in-process server starts");
    let target = Target {
        ws_urls: vec![server.ws_url()],
        http_url: server.http_url(),
        default_app: target_apps.0,
        second_app: Some(target_apps.1),
    };
    let report = runner::run(transcript, &target, &Mode::strict()).await;
    let _ = server.shutdown().await;
    report
}

/// Nodes of the in-process cluster: each client of a scenario on another node, REST on the
/// last one.
const CLUSTER_NODES: usize = 3;

/// Like [`run_in_process`], on three nodes sharing the Redis at `redis_url` under `prefix`
/// (one per scenario, so scenarios run side by side without seeing each other).
pub async fn run_in_cluster(transcript: &Transcript, redis_url: &str, prefix: &str) -> Report {
    let mut config = config_for(transcript);
    config.cluster = Some(crate::config::ClusterConfig {
        redis_url: redis_url.to_string(),
        prefix: prefix.to_string(),
        node_timeout: Duration::from_secs(10),
    });
    let target_apps = (credentials(&config.apps[0]), credentials(&config.apps[1]));
    let mut nodes = Vec::new();
    for _ in 0..CLUSTER_NODES {
        let node = Server::new(config.clone())
            .start()
            .await
            .expect("in-process node starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !node.is_ready() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node joins the cluster"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        nodes.push(node);
    }
    let target = Target {
        ws_urls: nodes.iter().map(|n| n.ws_url()).collect(),
        http_url: nodes.last().expect("nodes").http_url(),
        default_app: target_apps.0,
        second_app: Some(target_apps.1),
    };
    let report = runner::run(transcript, &target, &Mode::strict()).await;
    for node in nodes {
        let _ = node.shutdown().await;
    }
    report
}

//! Prometheus metrics on their own listener: known traffic, then the exact values read back.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{connect, disconnect, next_text, send, test_config, Api};
use futures_util::future::join_all;
use poxide::{
    config::{MetricsConfig, WebhookTarget},
    AppConfig, Config, RunningServer, Server,
};
use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

/// `name{labels}` → value, from the text exposition.
async fn scrape(server: &RunningServer) -> HashMap<String, f64> {
    let addr = server.metrics_addr().expect("metrics are on");
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn value(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}

/// Scrapes until `key` has `wanted` (what the server does after a client's last frame, it does
/// a moment later).
async fn wait_for(server: &RunningServer, key: &str, wanted: f64) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = scrape(server).await;
        if value(&metrics, key) == wanted {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} is {}, not {wanted}",
            value(&metrics, key)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bytes a server text frame of this payload takes on the wire.
fn wire_len(text: &str) -> usize {
    let header = match text.len() {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    header + text.len()
}

/// What one client saw and sent.
#[derive(Default)]
struct Tally {
    frames_in: usize,
    bytes_in: usize,
    frames_out: usize,
    bytes_out: usize,
}

impl Tally {
    async fn read(&mut self, ws: &mut common::Ws) -> String {
        let text = next_text(ws).await;
        self.frames_in += 1;
        self.bytes_in += wire_len(&text);
        text
    }

    async fn send(&mut self, ws: &mut common::Ws, frame: serde_json::Value) {
        self.frames_out += 1;
        self.bytes_out += frame.to_string().len();
        send(ws, frame).await;
    }
}

#[tokio::test]
async fn counters_match_the_traffic_that_happened() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let mut config = Config {
        metrics: Some(MetricsConfig {
            host: [127, 0, 0, 1].into(),
            port: 0,
        }),
        ..test_config()
    };
    config.apps[0].webhooks = vec![WebhookTarget::new(format!("{}/hook", receiver.uri()))];
    config.apps.push(AppConfig {
        id: "limited".into(),
        key: "limited-key".into(),
        secret: "limited-secret".into(),
        rest_rate: Some(1),
        ..AppConfig::default()
    });
    let server = Server::new(config).start().await.unwrap();
    let before = scrape(&server).await;
    assert_eq!(
        value(&before, r#"poxide_connections{app_id="app_id"}"#),
        0.0
    );
    assert_eq!(
        value(&before, r#"poxide_connections{app_id="limited"}"#),
        0.0
    );
    assert!(value(&before, "process_resident_memory_bytes") > 0.0);
    assert!(value(&before, "process_open_fds") > 0.0);

    let (mut alice, mut a) = (connect(&server.ws_url()).await.0, Tally::default());
    let (mut bob, mut b) = (connect(&server.ws_url()).await.0, Tally::default());
    let (carol, _) = connect(&server.ws_url()).await;
    for (ws, tally, channels) in [
        (&mut alice, &mut a, vec!["metered", "other"]),
        (&mut bob, &mut b, vec!["metered"]),
    ] {
        for channel in channels {
            tally
                .send(
                    ws,
                    json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
                )
                .await;
            let reply = tally.read(ws).await;
            assert!(reply.contains("subscription_succeeded"), "{reply}");
        }
    }
    a.send(&mut alice, json!({"event": "pusher:ping", "data": {}}))
        .await;
    assert_eq!(
        a.read(&mut alice).await,
        r#"{"event":"pusher:pong","data":{}}"#
    );

    let api = Api::new(&server.http_url());
    for n in 0..3 {
        let (status, _) = api
            .call(
                "POST",
                "/apps/app_id/events",
                Some(&json!({"name": "tick", "channels": ["metered"], "data": n.to_string()})),
            )
            .await;
        assert_eq!(status, 200);
        a.read(&mut alice).await;
        b.read(&mut bob).await;
    }
    let (status, _) = api.call("GET", "/apps/app_id/channels", None).await;
    assert_eq!(status, 200);

    // The limited app allows one request a second: of ten at once, the rest get 429.
    let limited = Api::with_credentials(&server.http_url(), "limited-key", "limited-secret");
    let event = json!({"name": "x", "channels": ["nobody"], "data": "1"});
    let statuses: Vec<u16> =
        join_all((0..10).map(|_| limited.call("POST", "/apps/limited/events", Some(&event))))
            .await
            .into_iter()
            .map(|(status, _)| status)
            .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count() as f64;
    let refused = statuses.iter().filter(|s| **s == 429).count() as f64;
    assert_eq!(ok + refused, 10.0, "{statuses:?}");
    assert!(refused >= 1.0, "{statuses:?}");

    disconnect(bob).await;
    drop(carol);
    wait_for(&server, r#"poxide_connections{app_id="app_id"}"#, 1.0).await;
    // channel_occupied for `metered` and `other`.
    let m = wait_for(
        &server,
        r#"poxide_webhooks_total{app_id="app_id",outcome="delivered"}"#,
        2.0,
    )
    .await;

    let get = |key: &str| value(&m, key);
    assert_eq!(
        get(r#"poxide_connections_opened_total{app_id="app_id"}"#),
        3.0
    );
    assert_eq!(
        get(r#"poxide_connections_closed_total{app_id="app_id",code="client"}"#),
        1.0
    );
    assert_eq!(
        get(r#"poxide_connections_closed_total{app_id="app_id",code="gone"}"#),
        1.0
    );
    assert_eq!(get(r#"poxide_channels{app_id="app_id"}"#), 2.0);
    assert_eq!(
        get(r#"poxide_messages_received_total{app_id="app_id",source="api"}"#),
        3.0
    );
    assert_eq!(
        get(r#"poxide_messages_received_total{app_id="limited",source="api"}"#),
        ok
    );
    assert_eq!(
        get(r#"poxide_messages_received_total{app_id="app_id",source="ws"}"#),
        (a.frames_out + b.frames_out) as f64
    );
    assert_eq!(
        get(r#"poxide_bytes_received_total{app_id="app_id"}"#),
        (a.bytes_out + b.bytes_out) as f64
    );
    // Three connection_established frames, whose length depends on the socket ids: every other
    // frame is counted by the clients.
    let sent = get(r#"poxide_messages_sent_total{app_id="app_id"}"#);
    assert_eq!(sent, (a.frames_in + b.frames_in + 3) as f64);
    let bytes = get(r#"poxide_bytes_sent_total{app_id="app_id"}"#);
    let established_bytes = bytes - (a.bytes_in + b.bytes_in) as f64;
    // {"event":"pusher:connection_established","data":"{\"socket_id\":\"N.N\",\"activity_timeout\":120}"}
    // is 86 bytes plus the socket id, which has 3 to 41 characters, plus a 2-byte header.
    assert!(
        (3.0 * 91.0..=3.0 * 129.0).contains(&established_bytes),
        "{established_bytes}"
    );
    assert_eq!(
        get(r#"poxide_api_requests_total{app_id="app_id",endpoint="events",status="200"}"#),
        3.0
    );
    assert_eq!(
        get(r#"poxide_api_requests_total{app_id="app_id",endpoint="channels",status="200"}"#),
        1.0
    );
    assert_eq!(
        get(r#"poxide_api_requests_total{app_id="limited",endpoint="events",status="429"}"#),
        refused
    );
    assert_eq!(
        get(r#"poxide_api_request_duration_seconds_count{endpoint="events"}"#),
        3.0 + 10.0
    );
    assert_eq!(
        get(r#"poxide_rate_limited_total{app_id="limited",kind="rest"}"#),
        refused
    );
    assert_eq!(get("poxide_webhook_queue_depth"), 0.0);
    assert_eq!(
        get(r#"poxide_webhooks_total{app_id="app_id",outcome="failed"}"#),
        0.0
    );

    // Every series the Grafana dashboard queries exists, now that each kind has happened.
    let names: std::collections::HashSet<&str> =
        m.keys().map(|k| k.split('{').next().unwrap()).collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/poxide.json"),
    )
    .unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let queried = regex::Regex::new(r"\b(poxide|process)_[a-z_]+").unwrap();
    let mut checked = 0;
    for name in queried.find_iter(&dashboard).map(|m| m.as_str()) {
        assert!(
            names.contains(name),
            "the dashboard queries {name}, which is not served"
        );
        checked += 1;
    }
    assert!(checked > 15, "{checked}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_strangers_app_id_is_not_a_label() {
    let config = Config {
        metrics: Some(MetricsConfig {
            host: [127, 0, 0, 1].into(),
            port: 0,
        }),
        ..test_config()
    };
    let server = Server::new(config).start().await.unwrap();
    for id in ["a1", "a2", "a3"] {
        let response = reqwest::Client::new()
            .post(format!("{}/apps/{id}/events", server.http_url()))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let m = scrape(&server).await;
    assert_eq!(
        value(
            &m,
            r#"poxide_api_requests_total{app_id="unknown",endpoint="events",status="404"}"#
        ),
        3.0
    );
    assert!(!m.keys().any(|k| k.contains("a1")), "{m:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_metrics_listener_serves_sixteen_connections_at_once() {
    use tokio::io::AsyncReadExt;
    let config = Config {
        metrics: Some(MetricsConfig {
            host: [127, 0, 0, 1].into(),
            port: 0,
        }),
        ..test_config()
    };
    let server = Server::new(config).start().await.unwrap();
    let addr = server.metrics_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The seventeenth is accepted and closed at once.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), extra.read(&mut buf))
        .await
        .expect("the extra connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Once the idle ones go, scrapes are served again.
    drop(idle);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let scraped = reqwest::get(format!("http://{addr}/metrics")).await;
        if scraped.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no scrape after the idle ones left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.unwrap();
}

//! The test double's inspection API (`--inspect`): records of what was published and which
//! webhooks were emitted, waits, connections, reset, unsigned publishing, and its bounds.

mod common;

use std::time::Duration;

use common::{connect, next_json, send, subscribe, subscribe_presence, test_config, Api};
use poxide::{Config, RunningServer, Server};
use serde_json::{json, Value};

async fn start(config: Config) -> RunningServer {
    Server::new(config).start().await.unwrap()
}

fn inspecting() -> Config {
    Config {
        inspect: true,
        ..test_config()
    }
}

async fn get(server: &RunningServer, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{}{path}", server.http_url()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(server: &RunningServer, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.http_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The records without their times, which no test can know.
fn timeless(records: &Value) -> Value {
    let mut records = records.clone();
    for r in records.as_array_mut().unwrap() {
        assert!(r["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
        r.as_object_mut().unwrap().remove("time_ms");
    }
    records
}

#[tokio::test]
async fn every_published_event_is_recorded_with_its_source() {
    let server = start(inspecting()).await;
    let api = Api::new(&server.http_url());
    let (mut ws, socket_id) = connect(&server.ws_url()).await;
    subscribe_presence(&mut ws, &socket_id, "presence-room", "u1").await;
    let multi =
        json!({"name": "greet", "channels": ["a", "b"], "data": "hi", "socket_id": socket_id});
    assert_eq!(
        api.call("POST", "/apps/app_id/events", Some(&multi))
            .await
            .0,
        200
    );
    let batch = json!({"batch": [{"name": "one", "channel": "c", "data": "{\"n\":1}"}]});
    assert_eq!(
        api.call("POST", "/apps/app_id/batch_events", Some(&batch))
            .await
            .0,
        200
    );
    send(
        &mut ws,
        json!({"event": "client-typing", "channel": "presence-room", "data": {"on": true}}),
    )
    .await;
    let to_user = json!({"name": "note", "channel": "#server-to-user-u1", "data": "x"});
    assert_eq!(
        api.call("POST", "/apps/app_id/events", Some(&to_user))
            .await
            .0,
        200
    );
    let (status, body) = get(&server, "/_poxide/events/wait?source=user").await;
    assert_eq!(status, 200, "{body}");

    let (_, body) = get(&server, "/_poxide/events").await;
    assert_eq!(
        timeless(&body["events"]),
        json!([
            {"seq": 1, "app_id": "app_id", "channel": "a", "event": "greet", "data": "hi", "source": "api", "socket_id": socket_id, "user_id": null},
            {"seq": 2, "app_id": "app_id", "channel": "b", "event": "greet", "data": "hi", "source": "api", "socket_id": socket_id, "user_id": null},
            {"seq": 3, "app_id": "app_id", "channel": "c", "event": "one", "data": "{\"n\":1}", "source": "api", "socket_id": null, "user_id": null},
            {"seq": 4, "app_id": "app_id", "channel": "presence-room", "event": "client-typing", "data": "{\"on\":true}", "source": "client", "socket_id": socket_id, "user_id": "u1"},
            {"seq": 5, "app_id": "app_id", "channel": "#server-to-user-u1", "event": "note", "data": "x", "source": "user", "socket_id": null, "user_id": "u1"},
        ])
    );
    let (_, body) = get(&server, "/_poxide/events?channel=b").await;
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    let (_, body) = get(&server, "/_poxide/events?after=3&source=client").await;
    assert_eq!(body["events"][0]["seq"], 4);
    let (_, body) = get(&server, "/_poxide/events?app_id=app2").await;
    assert_eq!(body["events"], json!([]));
    let (status, body) = get(&server, "/_poxide/events?after=soon").await;
    assert_eq!(
        (status, &body["error"]),
        (
            400,
            &json!("after must be a non-negative integer, got \"soon\"")
        )
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wait_returns_an_event_published_after_it_began_or_408() {
    let server = start(inspecting()).await;
    let url = format!(
        "{}/_poxide/events/wait?channel=later&event=done&timeout_ms=10000",
        server.http_url()
    );
    let waiting = tokio::spawn(async move { reqwest::get(url).await.unwrap() });
    // Not there yet: the wait is still pending after a first, unrelated event.
    let api = Api::new(&server.http_url());
    let other = json!({"name": "done", "channel": "elsewhere", "data": "1"});
    api.call("POST", "/apps/app_id/events", Some(&other)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    let wanted = json!({"name": "done", "channel": "later", "data": "2"});
    api.call("POST", "/apps/app_id/events", Some(&wanted)).await;
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["event"]["seq"].clone(), body["event"]["data"].clone()),
        (json!(2), json!("2"))
    );

    let (status, body) = get(&server, "/_poxide/events/wait?channel=never&timeout_ms=50").await;
    assert_eq!(
        (status, body),
        (408, json!({"error": "no matching event within 50 ms"}))
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn webhooks_are_recorded_with_or_without_a_receiver_and_with_their_deliveries() {
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let mut config = inspecting();
    config.apps[0].webhooks = vec![poxide::config::WebhookTarget {
        event_types: Some(vec!["member_added".into()]),
        ..poxide::config::WebhookTarget::new(format!("{}/hook", receiver.uri()))
    }];
    let server = start(config).await;
    let (mut ws, socket_id) = connect(&server.ws_url()).await;
    subscribe_presence(&mut ws, &socket_id, "presence-x", "7").await;
    let (status, body) = get(&server, "/_poxide/webhooks/wait?name=member_added").await;
    assert_eq!(status, 200);
    assert_eq!(body["webhook"]["user_id"], "7");
    // Delivered to the one receiver that wants it: wait for the outcome.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let webhooks = loop {
        let (_, body) = get(&server, "/_poxide/webhooks").await;
        let delivered = body["webhooks"][1]["deliveries"][0]["status"] == "delivered";
        if delivered || std::time::Instant::now() > deadline {
            break body["webhooks"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let hook = format!("{}/hook", receiver.uri());
    assert_eq!(
        timeless(&webhooks),
        json!([
            {"seq": 1, "app_id": "app_id", "name": "channel_occupied", "channel": "presence-x", "deliveries": []},
            {"seq": 2, "app_id": "app_id", "name": "member_added", "channel": "presence-x", "user_id": "7",
             "deliveries": [{"url": hook, "status": "delivered", "attempts": 1}]},
        ])
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_and_waiting_for_subscribers() {
    let server = start(inspecting()).await;
    let url = format!(
        "{}/_poxide/channels/wait?app_id=app_id&channel=orders&subscribers=2&timeout_ms=10000",
        server.http_url()
    );
    let waiting = tokio::spawn(async move { reqwest::get(url).await.unwrap() });
    let (mut one, one_id) = connect(&server.ws_url()).await;
    subscribe(&mut one, json!({"channel": "orders"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "one subscriber is not two");
    let (mut two, two_id) = connect(&server.ws_url()).await;
    subscribe(&mut two, json!({"channel": "orders"})).await;
    subscribe(&mut two, json!({"channel": "news"})).await;
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"channel": "orders", "subscription_count": 2}));

    let (_, body) = get(&server, "/_poxide/connections").await;
    let mut expected = vec![
        json!({"socket_id": one_id, "app_id": "app_id", "channels": ["orders"], "user_id": null}),
        json!({"socket_id": two_id, "app_id": "app_id", "channels": ["news", "orders"], "user_id": null}),
    ];
    expected.sort_by_key(|c| c["socket_id"].as_str().unwrap().to_string());
    assert_eq!(body["connections"], json!(expected));
    let (status, body) = get(
        &server,
        "/_poxide/channels/wait?app_id=app_id&channel=none&timeout_ms=20",
    )
    .await;
    assert_eq!(
        (status, body),
        (
            408,
            json!({"error": "no 1 subscribers on none within 20 ms"})
        )
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn reset_closes_connections_with_4200_and_forgets_records_and_caches() {
    let mut config = inspecting();
    // Short, so the vacancy the reset causes would be sent during the test if it were kept.
    config.webhook_delivery.grace_ms = 100;
    let server = start(config).await;
    let (status, _) = post(
        &server,
        "/_poxide/apps/app_id/events",
        json!({"name": "price", "channel": "cache-x", "data": "9"}),
    )
    .await;
    assert_eq!(status, 200);
    let (mut ws, _) = connect(&server.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "orders"})).await;
    let (status, body) = post(&server, "/_poxide/reset", json!({})).await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(
        common::close_code(&mut ws).await,
        (4200, "Reset by the test harness, please reconnect".into())
    );
    let (_, body) = get(&server, "/_poxide/events").await;
    assert_eq!(body["events"], json!([]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, body) = get(&server, "/_poxide/webhooks").await;
    assert_eq!(
        body["webhooks"],
        json!([]),
        "not even the vacancy the reset caused"
    );
    let (_, body) = get(&server, "/_poxide/connections").await;
    assert_eq!(body["connections"], json!([]));
    // The cache is gone; sequence numbers go on.
    let (mut ws, _) = connect(&server.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "cache-x"})).await;
    assert_eq!(next_json(&mut ws).await["event"], "pusher:cache_miss");
    let (status, _) = post(
        &server,
        "/_poxide/apps/app_id/batch_events",
        json!({"batch": [{"name": "n", "channel": "c", "data": "1"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = get(&server, "/_poxide/events").await;
    assert_eq!(body["events"][0]["seq"], 2);
    let (status, _) = post(
        &server,
        "/_poxide/apps/nope/events",
        json!({"name": "n", "channel": "c", "data": "1"}),
    )
    .await;
    assert_eq!(status, 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn records_are_bounded_and_the_api_is_404_unless_enabled() {
    let mut config = inspecting();
    config.inspect_capacity = 3;
    let server = start(config).await;
    for n in 1..=5 {
        post(
            &server,
            "/_poxide/apps/app_id/events",
            json!({"name": "e", "channel": "c", "data": n.to_string()}),
        )
        .await;
    }
    let (_, body) = get(&server, "/_poxide/events").await;
    let seqs: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    server.shutdown().await.unwrap();

    let plain = start(test_config()).await;
    for path in [
        "/_poxide/events",
        "/_poxide/connections",
        "/_poxide/webhooks/wait",
    ] {
        assert_eq!(get(&plain, path).await.0, 404, "{path}");
    }
    assert_eq!(post(&plain, "/_poxide/reset", json!({})).await.0, 404);
    plain.shutdown().await.unwrap();
}

/// Starts the binary with `args` and `env`, waits for its ready file and returns it parsed,
/// with the process.
async fn spawn_with_ready_file(
    env: &[(&str, &str)],
) -> (Value, tokio::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_poxide"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--inspect",
            "--ready-file",
        ])
        .arg(&ready)
        .env_remove("PORT")
        .env_remove("POXIDE_SOCKET_ID_SEED")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no ready file");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (serde_json::from_str(&text).unwrap(), child, dir)
}

#[tokio::test]
async fn the_ready_file_says_where_the_server_is_and_a_seed_fixes_the_socket_ids() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (ready, child, _dir) = spawn_with_ready_file(&[("POXIDE_SOCKET_ID_SEED", "42")]).await;
        let port = ready["port"].as_u64().unwrap();
        assert!(port > 0);
        assert_eq!(
            ready,
            json!({
                "ws_url": format!("ws://127.0.0.1:{port}"),
                "http_url": format!("http://127.0.0.1:{port}"),
                "host": "127.0.0.1",
                "port": port,
                "apps": [{"id": "app_id", "key": "app_key", "secret": "secret"}],
            })
        );
        let ws_url = ready["ws_url"].as_str().unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let (ws, id) = connect(ws_url).await;
            ids.push(id);
            drop(ws);
        }
        runs.push(ids);
        drop(child);
    }
    assert_eq!(runs[0], runs[1], "the same seed, the same socket ids");
    let (_, mut child, _dir) = spawn_with_ready_file(&[]).await;
    child.start_kill().unwrap();
    let log = child.wait_with_output().await.unwrap().stderr;
    let warnings: Vec<String> = String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("inspection API on"))
        .map(String::from)
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning line says inspection is on: {warnings:?}"
    );
    assert_ne!(runs[0][0], runs[0][1]);
    let (ready, _child, _dir) = spawn_with_ready_file(&[("POXIDE_SOCKET_ID_SEED", "43")]).await;
    let (_, other) = connect(ready["ws_url"].as_str().unwrap()).await;
    assert_ne!(other, runs[0][0], "another seed, other ids");
}

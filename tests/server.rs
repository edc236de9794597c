//! Behaviour that transcripts cannot show: graceful shutdown, slow consumers, the command line.

mod common;

use std::process::Command;

use common::{close_code, connect, next_text, test_config, Api};
use poxide::Server;

#[tokio::test]
async fn shutdown_closes_every_connection_with_4200() {
    let server = Server::new(test_config()).start().await.unwrap();
    let (mut a, _) = connect(&server.ws_url()).await;
    let (mut b, _) = connect(&server.ws_url()).await;
    let stopping = tokio::spawn(server.shutdown());
    for ws in [&mut a, &mut b] {
        let error = next_text(ws).await;
        assert_eq!(
            error,
            r#"{"event":"pusher:error","data":{"message":"Server is shutting down, please reconnect","code":4200}}"#
        );
        assert_eq!(
            close_code(ws).await,
            (4200, "Server is shutting down, please reconnect".into())
        );
    }
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_4100() {
    let mut config = test_config();
    config.outbox_capacity = 8;
    config.apps[0].payload_limit = 100_000;
    let server = Server::new(config).start().await.unwrap();
    let (mut slow, _) = connect(&server.ws_url()).await;
    common::subscribe(&mut slow, serde_json::json!({"channel": "firehose"})).await;

    // Publish, reading nothing, until the server gives up on the client: it leaves the channel
    // the moment it decides, before it tries to say goodbye.
    let payload = "x".repeat(100_000);
    let api = Api::new(&server.http_url());
    let body = serde_json::json!({"name": "e", "channel": "firehose", "data": payload});
    let info = "/apps/app_id/channels/firehose";
    let mut published = 0;
    loop {
        assert_eq!(
            api.call("POST", "/apps/app_id/events", Some(&body)).await.0,
            200
        );
        published += 1;
        let (_, channel) = api.call("GET", info, None).await;
        if channel == r#"{"occupied":false}"# {
            break;
        }
        assert!(published < 5000, "the slow client was never dropped");
    }
    // Far more than the queue of 8 went out: the socket buffers took the rest.
    assert!(published > 8, "closed after {published} events");
    // Reading now: whatever fitted in the buffers arrives, then the 4100 close.
    assert_eq!(close_code(&mut slow).await.0, 4100);
    server.shutdown().await.unwrap();
}

#[test]
fn a_bad_setting_is_one_line_naming_the_key_and_exits_non_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .env("PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "poxide: invalid value for port (environment): \"eighty\" (a port from 0 to 65535)"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .args(["--port", "70000"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "poxide: invalid value for port (flag): \"70000\" (a port from 0 to 65535)"
    );

    let dir = std::env::temp_dir().join(format!("poxide-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\npayload_limit = 0\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "poxide: invalid value for apps[0].payload_limit: \"0\" (a positive integer)"
    );
}

#[test]
fn the_binary_starts_with_defaults_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    assert!(line.contains("poxide listening on 127.0.0.1:"), "{line}");
    assert!(line.contains("app_id (key app_key)"), "{line}");
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn logs_are_json_lines_when_asked() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env_remove("RUST_LOG")
        .env("POXIDE_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(entry["level"], "INFO");
    assert!(entry["fields"]["message"]
        .as_str()
        .unwrap()
        .starts_with("poxide listening on 127.0.0.1:"));
    assert_eq!(entry["fields"]["apps"], "app_id (key app_key)");
}

#[test]
fn the_default_credentials_on_a_public_address_are_one_warning() {
    use std::io::{BufRead, BufReader};
    let warnings = |host: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_poxide"))
            .args(["--host", host, "--port", "0"])
            .env_remove("RUST_LOG")
            .env_remove("PORT")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let listening = lines.next().unwrap().unwrap();
        assert!(listening.contains("poxide listening on"), "{listening}");
        Command::new("kill")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        child.wait().unwrap();
        rest.into_iter()
            .filter(|l| l.contains("WARN") && l.contains("public credentials"))
            .count()
    };
    assert_eq!(warnings("0.0.0.0"), 1);
    assert_eq!(warnings("127.0.0.1"), 0);
}

#[tokio::test]
async fn health_checks_answer_for_balancers_and_probes() {
    let server = Server::new(test_config()).start().await.unwrap();
    let http = reqwest::Client::new();
    for (path, body) in [("/ping", "Pong!"), ("/up", "OK")] {
        let response = http
            .get(format!("{}{path}", server.http_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(response.text().await.unwrap(), body, "{path}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_conformance_command_says_what_a_skipped_scenario_needs_and_refuses_an_empty_selection()
{
    let server = Server::new(test_config()).start().await.unwrap();
    let url = server.ws_url();
    let run = |filter: &'static str, extra: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_poxide"))
                .args(["conformance", "--url", &url, "--filter", filter])
                .args(extra)
                .output()
                .unwrap()
        })
    };
    // A poxide-level scenario: graded only with --strict, and then skipped for its settings.
    let output = run("authorized-connections-off-no-timeout", &[])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "",
            "protocol: 0 passed, 0 failed, 0 skipped",
            "poxide: 1 scenario not graded (pass --strict)",
        ]
    );
    let output = run("authorized-connections-off-no-timeout", &["--strict"])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "",
            "## Authorized connections",
            "SKIP [poxide] authorized-connections-off-no-timeout: needs these settings on the server's default app (then pass --assume-configured): {\"authorization_timeout_ms\":300}",
            "Authorized connections: protocol 0 passed, 0 failed, 0 skipped; poxide 0 passed, 0 failed, 1 skipped",
            "",
            "protocol: 0 passed, 0 failed, 0 skipped",
            "poxide: 0 passed, 0 failed, 1 skipped",
        ]
    );
    // The same as JSON, alone on stdout.
    let output = run(
        "authorized-connections-off-no-timeout",
        &["--strict", "--json", "-"],
    )
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({
            "strict": true,
            "protocol": {"passed": 0, "failed": 0, "skipped": 0},
            "poxide": {"passed": 0, "failed": 0, "skipped": 1},
            "not_graded": 0,
            "features": [{
                "feature": "Authorized connections",
                "protocol": {"passed": 0, "failed": 0, "skipped": 0},
                "poxide": {"passed": 0, "failed": 0, "skipped": 1},
                "scenarios": [{
                    "name": "authorized-connections-off-no-timeout",
                    "feature": "Authorized connections",
                    "level": "poxide",
                    "poxide": {
                        "outcome": "skipped",
                        "why": "needs these settings on the server's default app (then pass --assume-configured): {\"authorization_timeout_ms\":300}"
                    }
                }]
            }]
        })
    );
    let output = run("no-scenario-is-called-this", &[]).await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "poxide conformance: no scenario matches the selection"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn browsers_from_origins_the_app_does_not_allow_are_closed_with_4009() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut config = test_config();
    config.apps[0].allowed_origins = vec![
        "https://*.example.com".into(),
        "http://localhost:3000".into(),
    ];
    let server = Server::new(config).start().await.unwrap();
    let open = |origin: Option<&'static str>| {
        let url = format!("{}/app/app_key?protocol=7", server.ws_url());
        async move {
            let mut request = url.into_client_request().unwrap();
            if let Some(origin) = origin {
                request
                    .headers_mut()
                    .insert("Origin", origin.parse().unwrap());
            }
            tokio_tungstenite::connect_async(request).await.unwrap().0
        }
    };
    for allowed in [
        Some("https://app.example.com"),
        Some("http://localhost:3000"),
        None,
    ] {
        let mut ws = open(allowed).await;
        let first: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(
            first["event"], "pusher:connection_established",
            "{allowed:?}"
        );
    }
    let mut ws = open(Some("https://evil.example.org")).await;
    let error: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(
        error,
        serde_json::json!({"event": "pusher:error", "data": {"message": "Origin not allowed: https://evil.example.org", "code": 4009}})
    );
    assert_eq!(
        close_code(&mut ws).await,
        (
            4009,
            "Origin not allowed: https://evil.example.org".to_string()
        )
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_app_over_its_rest_rate_gets_429_with_retry_after() {
    let mut config = test_config();
    config.apps[0].rest_rate = Some(1);
    let server = Server::new(config).start().await.unwrap();
    let api = Api::new(&server.http_url());
    assert_eq!(api.call("GET", "/apps/app_id/channels", None).await.0, 200);
    // One a second after a burst of one: the next ones soon meet the limit.
    let query = || {
        let params = poxide::signature::sign_rest_request(
            "app_key",
            "secret",
            "GET",
            "/apps/app_id/channels",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            b"",
            &[],
        );
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish()
    };
    let http = reqwest::Client::new();
    let mut refused = None;
    for _ in 0..50 {
        let response = http
            .get(format!(
                "{}/apps/app_id/channels?{}",
                server.http_url(),
                query()
            ))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("a 429 within 50 requests at 1/s");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["content-type"], "application/json");
    assert_eq!(
        refused.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"error": "Too many requests: this app may make 1 REST requests per second"})
    );
    // A request that is not the app's own does not spend its budget, and is refused as before.
    let (status, _) = Api::new(&server.http_url())
        .call("GET", "/apps/nope/channels", None)
        .await;
    assert_eq!(status, 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn new_connections_are_limited_per_client_address_behind_trusted_proxies() {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Error};
    let mut config = test_config();
    config.apps[0].connection_rate_per_ip = Some(1);
    config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let server = Server::new(config).start().await.unwrap();
    let url = format!("{}/app/app_key?protocol=7", server.ws_url());
    let open = |forwarded_for: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut request = url.into_client_request().unwrap();
            if let Some(address) = forwarded_for {
                request
                    .headers_mut()
                    .insert("X-Forwarded-For", address.parse().unwrap());
            }
            tokio_tungstenite::connect_async(request).await
        }
    };
    let mut kept = vec![open(None).await.expect("the first connection")];
    // One a second after a burst of one: the next attempts from this address soon meet it.
    let mut refused = None;
    for _ in 0..50 {
        match open(None).await {
            Ok(ws) => kept.push(ws),
            Err(Error::Http(response)) => {
                refused = Some(response);
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let refused = refused.expect("a 429 within 50 attempts at 1/s");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value =
        serde_json::from_slice(refused.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "Too many connections: at most 1 new connections per second from 127.0.0.1"})
    );
    // Behind the trusted proxy, another client has a budget of its own.
    let (mut other, _) = open(Some("198.51.100.1"))
        .await
        .expect("another client's first");
    let first: serde_json::Value = serde_json::from_str(&next_text(&mut other).await).unwrap();
    assert_eq!(first["event"], "pusher:connection_established");
    drop(kept);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn failed_signatures_and_refused_connections_are_warnings_naming_who() {
    use common::binary::{listening_addr, spawn, wait_line};
    let (_child, lines) = spawn(&[]);
    let addr = listening_addr(&lines);
    let api = common::Api::with_credentials(&format!("http://{addr}"), "app_key", "not-the-secret");
    let (status, _) = api
        .call(
            "POST",
            "/apps/app_id/events",
            Some(&serde_json::json!({"name": "e", "channels": ["c"], "data": "1"})),
        )
        .await;
    assert_eq!(status, 401);
    let line = wait_line(&lines, "signature failed");
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("signature failed: POST /apps/app_id/events: "),
        "{line}"
    );
    assert!(line.contains("app=\"app_id\""), "{line}");
    assert!(line.contains("from=127.0.0.1:"), "{line}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/app/no-such-key"))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await.0, 4001);
    let line = wait_line(&lines, "connection refused");
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("(4001)"), "{line}");
}

#[test]
fn start_up_names_each_changed_setting_and_where_it_came_from() {
    use common::binary::{spawn, wait_line};
    let (_child, lines) = spawn(&[("POXIDE_APP_SECRET", "s3cr3t"), ("POXA_APP_KEY", "k")]);
    let listening = wait_line(&lines, "listening on");
    assert!(listening.contains("apps=app_id (key k)"), "{listening}");
    assert!(!listening.contains("s3cr3t"), "{listening}");
    wait_line(
        &lines,
        "environment variables read: POXA_APP_KEY, POXIDE_APP_SECRET",
    );
    wait_line(&lines, "setting host = 127.0.0.1 (from the flag)");
    wait_line(&lines, "setting port = 0 (from the flag)");
    wait_line(&lines, "setting metrics = off (from the flag)");
    wait_line(&lines, "setting apps[0].key = \"k\" (from the environment)");
    wait_line(
        &lines,
        "setting apps[0].secret = *** (from the environment)",
    );
}

#[tokio::test]
async fn a_slow_consumer_closed_with_4100_is_a_warning() {
    use common::binary::{listening_addr, spawn_with, wait_line};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("poxide.toml");
    std::fs::write(
        &config,
        "outbox_capacity = 8\n[[apps]]\nid = 'app_id'\nkey = 'app_key'\nsecret = 'secret'\npayload_limit = 100000\n",
    )
    .unwrap();
    let (_child, lines) = spawn_with(&["--config", config.to_str().unwrap()], &[]);
    let addr = listening_addr(&lines);
    let (mut slow, socket_id) = connect(&format!("ws://{addr}")).await;
    common::subscribe(&mut slow, serde_json::json!({"channel": "firehose"})).await;
    let api = Api::new(&format!("http://{addr}"));
    let body = serde_json::json!({"name": "e", "channel": "firehose", "data": "x".repeat(100_000)});
    for published in 0.. {
        assert_eq!(
            api.call("POST", "/apps/app_id/events", Some(&body)).await.0,
            200
        );
        let (_, channel) = api
            .call("GET", "/apps/app_id/channels/firehose", None)
            .await;
        if channel == r#"{"occupied":false}"# {
            break;
        }
        assert!(published < 5000, "the slow client was never dropped");
    }
    let line = wait_line(&lines, "slow consumer closed with 4100");
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("app=app_id"), "{line}");
    assert!(line.contains(&format!("socket=\"{socket_id}\"")), "{line}");
}

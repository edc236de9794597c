//! Behaviour that transcripts cannot show: graceful shutdown, slow consumers, the command line.

use std::{process::Command, time::Duration};

use futures_util::{SinkExt, StreamExt};
use poxide::{signature, Config, Server};
use tokio_tungstenite::tungstenite::Message;

fn test_config() -> Config {
    Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        ..Config::default()
    }
}

async fn connect(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}/app/app_key?protocol=7"))
        .await
        .expect("connects");
    ws
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn close_code<S>(ws: &mut S) -> (u16, String)
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (frame.code.into(), frame.reason.to_string())
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_4200() {
    let server = Server::new(test_config()).start().await.unwrap();
    let mut a = connect(&server.ws_url()).await;
    let mut b = connect(&server.ws_url()).await;
    next_text(&mut a).await;
    next_text(&mut b).await;
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
    let server = Server::new(config).start().await.unwrap();
    let mut slow = connect(&server.ws_url()).await;
    next_text(&mut slow).await;
    slow.send(Message::text(
        r#"{"event":"pusher:subscribe","data":{"channel":"firehose"}}"#,
    ))
    .await
    .unwrap();
    next_text(&mut slow).await;

    // Publish far more than the socket buffers and the queue can hold while the client reads
    // nothing.
    let payload = "x".repeat(10_000);
    let body = serde_json::json!({"name": "e", "channel": "firehose", "data": payload}).to_string();
    let http = reqwest::Client::new();
    let mut status = Vec::new();
    for _ in 0..3000 {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let params = signature::sign_rest_request(
            "app_key",
            "secret",
            "POST",
            "/apps/app_id/events",
            timestamp,
            body.as_bytes(),
            &[],
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let response = http
            .post(format!("{}/apps/app_id/events?{query}", server.http_url()))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        status.push(response.status().as_u16());
    }
    assert!(
        status.iter().all(|s| *s == 200),
        "every publish is accepted"
    );
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
        "poxide: invalid value for port (environment): \"eighty\" (a non-negative integer)"
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

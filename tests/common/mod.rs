//! Helpers shared by the integration tests: a WebSocket client, signed REST calls.
#![allow(dead_code)]

pub mod binary;
pub mod postgres;
pub mod redis;
pub mod tls;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use poxide::{signature, Config};
use serde_json::Value;
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

pub fn test_config() -> Config {
    Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        metrics: None,
        ..Config::default()
    }
}

/// Connects to the default app and returns the socket with its socket id.
pub async fn connect(url: &str) -> (Ws, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}/app/app_key?protocol=7"))
        .await
        .expect("connects");
    let established: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_string();
    (ws, socket_id)
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub async fn next_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&next_text(ws).await).unwrap()
}

pub async fn close_code(ws: &mut Ws) -> (u16, String) {
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

/// Closes from the client side and waits until the server has finished with the connection.
pub async fn disconnect(mut ws: Ws) {
    ws.close(None).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Subscribes and waits for `pusher_internal:subscription_succeeded`.
pub async fn subscribe(ws: &mut Ws, data: Value) -> Value {
    send(
        ws,
        serde_json::json!({"event": "pusher:subscribe", "data": data}),
    )
    .await;
    next_json(ws).await
}

pub async fn subscribe_presence(
    ws: &mut Ws,
    socket_id: &str,
    channel: &str,
    user_id: &str,
) -> Value {
    let channel_data = serde_json::json!({"user_id": user_id}).to_string();
    let auth =
        signature::channel_auth("app_key", "secret", socket_id, channel, Some(&channel_data));
    subscribe(
        ws,
        serde_json::json!({"channel": channel, "auth": auth, "channel_data": channel_data}),
    )
    .await
}

/// Signed REST calls to the default app over one keep-alive client.
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    secret: String,
}

impl Api {
    pub fn new(http_url: &str) -> Self {
        Self::with_client(http_url, reqwest::Client::new())
    }

    pub fn with_client(http_url: &str, http: reqwest::Client) -> Self {
        Api {
            http,
            base: http_url.to_string(),
            key: "app_key".into(),
            secret: "secret".into(),
        }
    }

    /// Signs with another app's key and secret.
    pub fn with_credentials(http_url: &str, key: &str, secret: &str) -> Self {
        Api {
            key: key.into(),
            secret: secret.into(),
            ..Self::new(http_url)
        }
    }

    /// Returns status and body. A query string in `path` is signed with the rest.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let (path, extra): (&str, Vec<(String, String)>) = match path.split_once('?') {
            Some((path, query)) => (
                path,
                form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect(),
            ),
            None => (path, Vec::new()),
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let params = signature::sign_rest_request(
            &self.key,
            &self.secret,
            method,
            path,
            timestamp,
            body.as_bytes(),
            &extra,
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let url = format!("{}{path}?{query}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

//! The HTTP fallback transports at the HTTP level: the lines of streaming and polling
//! responses, `xhr_send`, heartbeats, the end of a long stream, session expiry (with what a
//! disconnect means for presence), unknown sessions, a second receiving request, CORS, refusals
//! and the bounds.

mod common;

use std::time::Duration;

use common::{next_json, subscribe_presence, test_config, Api};
use poxide::{signature, Config, RunningServer, Server};
use serde_json::{json, Value};

const BASE: &str = "/pusher/app/app_key";

/// A receiving response read line by line.
struct Lines {
    response: reqwest::Response,
    buffer: Vec<u8>,
    read: usize,
}

impl Lines {
    async fn open(server: &RunningServer, session: &str, kind: &str) -> Lines {
        Self::open_with(server, session, kind, &[]).await
    }

    async fn open_with(
        server: &RunningServer,
        session: &str,
        kind: &str,
        headers: &[(&str, &str)],
    ) -> Lines {
        let mut request = reqwest::Client::new().post(format!(
            "{}{BASE}/{session}/{kind}?protocol=7&client=js&version=8.6.0&t=1&n=1",
            server.http_url()
        ));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Lines {
            response,
            buffer: Vec::new(),
            read: 0,
        }
    }

    /// The next line, or `None` at the end of the response.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                self.read += line.len();
                return Some(String::from_utf8(line[..line.len() - 1].to_vec()).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a line within 10 s")
                .unwrap();
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => {
                    assert!(self.buffer.is_empty(), "a partial line at the end");
                    return None;
                }
            }
        }
    }

    /// The Pusher frames of the next `a` line.
    async fn frames(&mut self) -> Vec<Value> {
        let line = self.next().await.expect("a line");
        let texts: Vec<String> =
            serde_json::from_str(line.strip_prefix('a').unwrap_or_else(|| panic!("{line}")))
                .unwrap();
        texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect()
    }
}

async fn send(server: &RunningServer, session: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}{BASE}/{session}/xhr_send?t=2&n=2",
            server.http_url()
        ))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn send_frame(server: &RunningServer, session: &str, frame: Value) {
    let body = serde_json::to_string(&[frame.to_string()]).unwrap();
    assert_eq!(send(server, session, &body).await, (204, String::new()));
}

fn socket_id(established: &Value) -> String {
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    data["socket_id"].as_str().unwrap().to_string()
}

async fn start(configure: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = test_config();
    configure(&mut config);
    Server::new(config).start().await.unwrap()
}

#[tokio::test]
async fn a_streaming_session_carries_the_protocol() {
    let server = start(|_| {}).await;
    let mut stream = Lines::open(&server, "1/abcdefgh", "xhr_streaming").await;
    assert_eq!(stream.next().await.as_deref(), Some("o"));
    let established = stream.frames().await;
    assert_eq!(established[0]["event"], "pusher:connection_established");
    let id = socket_id(&established[0]);
    assert_eq!(
        serde_json::from_str::<Value>(established[0]["data"].as_str().unwrap()).unwrap(),
        json!({"socket_id": id, "activity_timeout": 120})
    );

    send_frame(
        &server,
        "1/abcdefgh",
        json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
    )
    .await;
    assert_eq!(
        stream.frames().await,
        vec![
            json!({"event": "pusher_internal:subscription_succeeded", "channel": "news", "data": "{}"})
        ]
    );
    let (status, _) = Api::new(&server.http_url())
        .call(
            "POST",
            "/apps/app_id/events",
            Some(&json!({"name": "greet", "channels": ["news"], "data": "{\"n\":1}"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        stream.frames().await,
        vec![json!({"event": "greet", "channel": "news", "data": "{\"n\":1}"})]
    );
    // `[]` is a heartbeat: accepted, nothing said back.
    assert_eq!(
        send(&server, "1/abcdefgh", "[]").await,
        (204, String::new())
    );
    send_frame(
        &server,
        "1/abcdefgh",
        json!({"event": "pusher:ping", "data": {}}),
    )
    .await;
    assert_eq!(
        stream.frames().await,
        vec![json!({"event": "pusher:pong", "data": {}})]
    );
}

#[tokio::test]
async fn polling_answers_as_soon_as_there_is_something_to_say() {
    let server = start(|c| c.http_heartbeat = Duration::from_millis(300)).await;
    let mut first = Lines::open(&server, "7/pollpoll", "xhr").await;
    assert_eq!(first.next().await.as_deref(), Some("o"));
    assert_eq!(first.next().await, None);
    let mut second = Lines::open(&server, "7/pollpoll", "xhr").await;
    assert_eq!(
        second.frames().await[0]["event"],
        "pusher:connection_established"
    );
    assert_eq!(second.next().await, None);
    // Nothing to say: a heartbeat ends the poll.
    let mut third = Lines::open(&server, "7/pollpoll", "xhr").await;
    assert_eq!(third.next().await.as_deref(), Some("h"));
    assert_eq!(third.next().await, None);
    send_frame(
        &server,
        "7/pollpoll",
        json!({"event": "pusher:subscribe", "data": {"channel": "a"}}),
    )
    .await;
    let mut fourth = Lines::open(&server, "7/pollpoll", "xhr").await;
    assert_eq!(
        fourth.frames().await[0]["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(fourth.next().await, None);
}

#[tokio::test]
async fn an_idle_stream_sends_heartbeats() {
    let server = start(|c| c.http_heartbeat = Duration::from_millis(200)).await;
    let mut stream = Lines::open(&server, "2/heartbea", "xhr_streaming").await;
    assert_eq!(stream.next().await.as_deref(), Some("o"));
    stream.frames().await;
    for _ in 0..3 {
        assert_eq!(stream.next().await.as_deref(), Some("h"));
    }
}

#[tokio::test]
async fn a_stream_ends_after_128_kib_and_the_session_goes_on() {
    let server = start(|_| {}).await;
    let mut stream = Lines::open(&server, "3/longlong", "xhr_streaming").await;
    assert_eq!(stream.next().await.as_deref(), Some("o"));
    stream.frames().await;
    send_frame(
        &server,
        "3/longlong",
        json!({"event": "pusher:subscribe", "data": {"channel": "bulk"}}),
    )
    .await;
    stream.frames().await;
    let api = Api::new(&server.http_url());
    let data = "x".repeat(9000);
    let mut events = 0;
    loop {
        api.call(
            "POST",
            "/apps/app_id/events",
            Some(&json!({"name": "big", "channels": ["bulk"], "data": data})),
        )
        .await;
        match stream.next().await {
            Some(line) => {
                assert!(line.starts_with("a[") && line.contains("big"), "{line}");
                events += 1;
            }
            None => break,
        }
        assert!(events < 100, "the stream did not end");
    }
    // It ends at the first line boundary after 128 KiB.
    assert!(
        stream.read >= 128 * 1024 && stream.read < 128 * 1024 + 10_000,
        "{} bytes",
        stream.read
    );
    // The same session on a new request: no `o`, and nothing lost: the event published after
    // the end comes first, then the next.
    let mut next = Lines::open(&server, "3/longlong", "xhr_streaming").await;
    api.call(
        "POST",
        "/apps/app_id/events",
        Some(&json!({"name": "after", "channels": ["bulk"], "data": "1"})),
    )
    .await;
    let mut names = Vec::new();
    while names.len() < 2 {
        names.extend(next.frames().await.into_iter().map(|f| f["event"].clone()));
    }
    assert_eq!(names, vec![json!("big"), json!("after")]);
}

#[tokio::test]
async fn a_session_without_a_receiving_request_ends_like_a_dropped_socket() {
    let server = start(|c| c.http_session_timeout = Duration::from_millis(300)).await;
    let (mut member, member_id) = common::connect(&server.ws_url()).await;
    subscribe_presence(&mut member, &member_id, "presence-room", "ws-user").await;

    let mut stream = Lines::open(&server, "4/goneaway", "xhr_streaming").await;
    stream.next().await;
    let id = socket_id(&stream.frames().await[0]);
    let channel_data = json!({"user_id": "http-user"}).to_string();
    let auth = signature::channel_auth(
        "app_key",
        "secret",
        &id,
        "presence-room",
        Some(&channel_data),
    );
    send_frame(
        &server,
        "4/goneaway",
        json!({"event": "pusher:subscribe", "data": {"channel": "presence-room", "auth": auth, "channel_data": channel_data}}),
    )
    .await;
    assert_eq!(
        stream.frames().await[0]["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        next_json(&mut member).await,
        json!({"event": "pusher_internal:member_added", "channel": "presence-room", "data": "{\"user_id\":\"http-user\"}"})
    );
    drop(stream);
    assert_eq!(
        next_json(&mut member).await,
        json!({"event": "pusher_internal:member_removed", "channel": "presence-room", "data": "{\"user_id\":\"http-user\"}"})
    );
    // The session is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while send(&server, "4/goneaway", "[]").await.0 != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        send(&server, "4/goneaway", "[]").await,
        (404, "Session not found".into())
    );
}

#[tokio::test]
async fn one_receiving_request_at_a_time_and_unknown_sessions() {
    let server = start(|_| {}).await;
    let mut stream = Lines::open(&server, "5/onlyone1", "xhr_streaming").await;
    stream.next().await;
    let mut second = Lines::open(&server, "5/onlyone1", "xhr").await;
    assert_eq!(
        second.next().await.as_deref(),
        Some("c[2010,\"Another connection still open\"]")
    );
    assert_eq!(second.next().await, None);
    assert_eq!(
        send(&server, "5/nosuchse", "[]").await,
        (404, "Session not found".into())
    );
    // Ids pusher-js would never make name nothing.
    let bad = reqwest::Client::new()
        .post(format!("{}{BASE}/1000/abcdefgh/xhr", server.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
    let kind = reqwest::Client::new()
        .post(format!(
            "{}{BASE}/1/abcdefgh/eventsource",
            server.http_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(kind.status(), 404);
}

#[tokio::test]
async fn bad_bodies_are_refused_and_the_session_keeps_going() {
    let server = start(|_| {}).await;
    let mut stream = Lines::open(&server, "6/badbody1", "xhr_streaming").await;
    stream.next().await;
    stream.frames().await;
    assert_eq!(
        send(&server, "6/badbody1", "").await,
        (400, "Payload expected.".into())
    );
    assert_eq!(
        send(&server, "6/badbody1", "{\"event\":\"x\"}").await,
        (
            400,
            "Broken JSON encoding: expected an array of strings.".into()
        )
    );
    assert_eq!(send(&server, "6/badbody1", "not json").await.0, 400);
    // A frame the protocol refuses gets the same pusher:error as on a WebSocket.
    assert_eq!(
        send(&server, "6/badbody1", "[\"not a frame\"]").await.0,
        204
    );
    assert_eq!(stream.frames().await[0]["event"], "pusher:error");
    send_frame(
        &server,
        "6/badbody1",
        json!({"event": "pusher:ping", "data": {}}),
    )
    .await;
    assert_eq!(stream.frames().await[0]["event"], "pusher:pong");
    // A message over the cap closes with 1009, as a WebSocket would.
    let huge = serde_json::to_string(&["x".repeat(25_000)]).unwrap();
    assert_eq!(send(&server, "6/badbody1", &huge).await.0, 204);
    let close = stream.next().await.unwrap();
    assert!(close.starts_with("c[1009,"), "{close}");
    assert_eq!(stream.next().await, None);
    // More than a few messages' worth in one body: 413, before it is read whole.
    let mut fresh = Lines::open(&server, "6/freshone", "xhr_streaming").await;
    fresh.next().await;
    let body = serde_json::to_string(&vec!["x".repeat(20_000); 10]).unwrap();
    assert_eq!(send(&server, "6/freshone", &body).await.0, 413);
}

#[tokio::test]
async fn cors_preflights_and_headers() {
    let server = start(|_| {}).await;
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}{BASE}/1/abcdefgh/xhr_send", server.http_url()),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "OPTIONS, POST");
    assert_eq!(h["access-control-allow-headers"], "content-type");
    assert_eq!(
        h["cache-control"],
        "no-store, no-cache, no-transform, must-revalidate, max-age=0"
    );

    let stream = Lines::open_with(
        &server,
        "1/corscors",
        "xhr_streaming",
        &[("origin", "https://app.example")],
    )
    .await;
    let h = stream.response.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["content-type"], "application/javascript; charset=UTF-8");
    assert_eq!(
        h["cache-control"],
        "no-store, no-cache, no-transform, must-revalidate, max-age=0"
    );
    // `httpPath: ''` puts the same endpoints at the root.
    let root = reqwest::Client::new()
        .post(format!("{}/app/app_key/1/rootroot/xhr", server.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(root.text().await.unwrap(), "o\n");
}

#[tokio::test]
async fn refusals_are_said_in_the_session_as_on_a_websocket() {
    let server = start(|c| {
        c.apps[0].allowed_origins = vec!["https://ok.example".into()];
        c.apps[0].max_connections = Some(1);
    })
    .await;
    let unknown = reqwest::Client::new()
        .post(format!(
            "{}/pusher/app/nokey/1/abcdefgh/xhr_streaming",
            server.http_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.text().await.unwrap(),
        concat!(
            "o\n",
            r#"a["{\"event\":\"pusher:error\",\"data\":{\"message\":\"Application does not exist\",\"code\":4001}}"]"#,
            "\n",
            r#"c[4001,"Application does not exist"]"#,
            "\n"
        )
    );
    let mut evil = Lines::open_with(
        &server,
        "1/evilevil",
        "xhr_streaming",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(evil.next().await.as_deref(), Some("o"));
    assert_eq!(evil.frames().await[0]["data"]["code"], 4009);
    assert_eq!(
        evil.next().await.as_deref(),
        Some("c[4009,\"Origin not allowed: https://evil.example\"]")
    );
    // Over the app's connection quota: the session says so and closes with 4004.
    let mut first = Lines::open(&server, "1/firstone", "xhr_streaming").await;
    first.next().await;
    first.frames().await;
    let mut over = Lines::open(&server, "1/secondon", "xhr_streaming").await;
    assert_eq!(over.next().await.as_deref(), Some("o"));
    assert_eq!(over.frames().await[0]["data"]["code"], 4004);
    assert!(over.next().await.unwrap().starts_with("c[4004,"));
}

#[tokio::test]
async fn sessions_are_bounded_per_node() {
    let server = start(|c| c.max_http_sessions = 2).await;
    let mut a = Lines::open(&server, "1/sessiona", "xhr_streaming").await;
    a.next().await;
    let mut b = Lines::open(&server, "1/sessionb", "xhr_streaming").await;
    b.next().await;
    let third = reqwest::Client::new()
        .post(format!(
            "{}{BASE}/1/sessionc/xhr_streaming",
            server.http_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(
        third.text().await.unwrap(),
        "Too many HTTP sessions: at most 2 at once on this node"
    );
}

#[tokio::test]
async fn shutdown_closes_sessions_with_4200() {
    let server = start(|_| {}).await;
    let mut stream = Lines::open(&server, "8/shutdown", "xhr_streaming").await;
    stream.next().await;
    stream.frames().await;
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(
        stream.frames().await,
        vec![
            json!({"event": "pusher:error", "data": {"message": "Server is shutting down, please reconnect", "code": 4200}})
        ]
    );
    assert_eq!(
        stream.next().await.as_deref(),
        Some("c[4200,\"Server is shutting down, please reconnect\"]")
    );
    assert_eq!(stream.next().await, None);
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_stream_limit_is_a_setting() {
    let server = start(|c| c.http_stream_bytes = 4096).await;
    let mut stream = Lines::open(&server, "9/settable", "xhr_streaming").await;
    stream.next().await;
    stream.frames().await;
    send_frame(
        &server,
        "9/settable",
        json!({"event": "pusher:subscribe", "data": {"channel": "s"}}),
    )
    .await;
    stream.frames().await;
    let api = Api::new(&server.http_url());
    let data = "y".repeat(1000);
    while stream.read < 4096 {
        api.call(
            "POST",
            "/apps/app_id/events",
            Some(&json!({"name": "e", "channels": ["s"], "data": data})),
        )
        .await;
        assert!(
            stream.next().await.is_some(),
            "ended at {} bytes",
            stream.read
        );
    }
    assert_eq!(stream.next().await, None);
}

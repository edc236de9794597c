//! The web console's event stream (`/console`, Poxa's frames) and its HTTP side: exact frames
//! for every event type, the signature cases, the scoping to one app, and the bounds.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    connect, disconnect, next_json, send, subscribe, subscribe_presence, test_config, Api, Ws,
};
use futures_util::{SinkExt, StreamExt};
use poxide::{signature, AppConfig, RunningServer, Server};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signed console URL (`path` is `/console` or one of its JSON endpoints).
fn signed(
    server: &RunningServer,
    scheme: &str,
    path: &str,
    key: &str,
    secret: &str,
    timestamp: u64,
    extra: &[(&str, &str)],
) -> String {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let params = signature::sign_rest_request(key, secret, "GET", path, timestamp, b"", &extra);
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    format!("{scheme}://{}{path}?{query}", server.local_addr())
}

/// A signed GET of a console endpoint with the default app's key and `secret`.
async fn console_get(
    server: &RunningServer,
    path: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    reqwest::get(signed(
        server,
        "http",
        path,
        "app_key",
        secret,
        now(),
        extra,
    ))
    .await
    .unwrap()
}

async fn open_console(server: &RunningServer, key: &str, secret: &str) -> Ws {
    let url = signed(server, "ws", "/console", key, secret, now(), &[]);
    let (ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("console opens");
    assert_eq!(response.status(), 101);
    ws
}

/// The refusal of a console upgrade: status and body.
async fn refused(url: String) -> (u16, String) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        other => panic!(
            "expected a refusal, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
}

/// The next console event, with its clock fields checked and removed.
async fn event(console: &mut Ws) -> Value {
    let mut v = next_json(console).await;
    let time = v["time"].as_str().expect("time").to_string();
    let digits: Vec<&str> = time.split(':').collect();
    assert!(
        digits.len() == 3
            && digits
                .iter()
                .all(|d| d.len() == 2 && d.parse::<u8>().is_ok()),
        "time {time:?} is HH:MM:SS"
    );
    let ms = v["timestamp_ms"].as_u64().expect("timestamp_ms");
    assert!(ms / 1000 + 5 >= now() && ms / 1000 <= now(), "{ms}");
    let o = v.as_object_mut().unwrap();
    o.remove("time");
    o.remove("timestamp_ms");
    v
}

async fn connect_with_origin(server: &RunningServer, origin: &str) -> (Ws, String) {
    let mut request = format!("{}/app/app_key?protocol=7", server.ws_url())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let established = next_json(&mut ws).await;
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    (ws, data["socket_id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn a_clients_life_in_poxa_frames() {
    let server = Server::new(test_config()).start().await.unwrap();
    let mut console = open_console(&server, "app_key", "secret").await;
    // What the page sends is ignored, as by Poxa.
    console.send(Message::text("hello?")).await.unwrap();

    let (mut ws, id) = connect_with_origin(&server, "http://example.test:3000").await;
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Connection", "socket": id, "app_id": "app_id",
            "details": "Origin: http://example.test:3000"})
    );

    subscribe(&mut ws, json!({"channel": "news"})).await;
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Subscribed", "socket": id, "app_id": "app_id",
            "details": "Channel: news", "channel": "news"})
    );
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Channel occupied", "socket": "", "app_id": "app_id",
            "details": "Channel: \"news\"", "channel": "news"})
    );

    let api = Api::new(&server.http_url());
    let (status, _) = api
        .call(
            "POST",
            "/apps/app_id/events",
            Some(&json!({"name": "greet", "channels": ["news", "other"], "data": "{\"n\":1}"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        event(&mut console).await,
        json!({"type": "API Message", "socket": "", "app_id": "app_id",
            "details": "Channels: [\"news\", \"other\"], Event: greet",
            "channels": ["news", "other"], "event": "greet", "data": "{\"n\":1}"})
    );
    next_json(&mut ws).await;

    subscribe_presence(&mut ws, &id, "presence-room", "u1").await;
    assert_eq!(event(&mut console).await["type"], "Subscribed");
    assert_eq!(event(&mut console).await["type"], "Channel occupied");
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Member added", "socket": "", "app_id": "app_id",
            "details": "Channel: \"presence-room\", UserId: \"u1\"",
            "channel": "presence-room", "user_id": "u1"})
    );

    send(
        &mut ws,
        json!({"event": "client-typing", "channel": "presence-room", "data": {"on": true}}),
    )
    .await;
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Client Event Message", "socket": id, "app_id": "app_id",
            "details": "Channels: [\"presence-room\"], Event: client-typing",
            "channel": "presence-room", "event": "client-typing", "data": "{\"on\":true}",
            "user_id": "u1"})
    );

    send(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}),
    )
    .await;
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Unsubscribed", "socket": id, "app_id": "app_id",
            "details": "Channel: news", "channel": "news"})
    );
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Channel vacated", "socket": "", "app_id": "app_id",
            "details": "Channel: \"news\"", "channel": "news"})
    );

    disconnect(ws).await;
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Member removed", "socket": "", "app_id": "app_id",
            "details": "Channel: \"presence-room\", UserId: \"u1\"",
            "channel": "presence-room", "user_id": "u1"})
    );
    assert_eq!(event(&mut console).await["type"], "Channel vacated");
    let mut gone = event(&mut console).await;
    let details = gone["details"].as_str().unwrap().to_string();
    let lifetime = details
        .strip_prefix("Channels: [\"presence-room\"], Lifetime: ")
        .and_then(|s| s.strip_suffix('s'))
        .unwrap_or_else(|| panic!("{details}"));
    assert!(lifetime.parse::<u64>().unwrap() < 30, "{details}");
    gone.as_object_mut().unwrap().remove("details");
    assert_eq!(
        gone,
        json!({"type": "Disconnection", "socket": id, "app_id": "app_id",
            "channels": ["presence-room"]})
    );
}

#[tokio::test]
async fn sign_in_server_to_user_cache_miss_refusals_and_close_codes() {
    let mut config = test_config();
    config.apps[0].allowed_origins = vec!["https://ok.test".into()];
    let server = Server::new(config).start().await.unwrap();
    let mut console = open_console(&server, "app_key", "secret").await;

    let (_refused, _) = tokio_tungstenite::connect_async({
        let mut r = format!("{}/app/app_key", server.ws_url())
            .into_client_request()
            .unwrap();
        r.headers_mut()
            .insert("origin", "https://evil.test".parse().unwrap());
        r
    })
    .await
    .unwrap();
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Connection refused", "socket": "", "app_id": "app_id",
            "details": "Code: 4009, Reason: Origin not allowed: https://evil.test", "code": 4009})
    );

    let (mut ws, id) = connect(&server.ws_url()).await;
    assert_eq!(
        event(&mut console).await["details"],
        "Origin: 127.0.0.1:".to_string() + &server.local_addr().port().to_string()
    );
    let user_data = json!({"id": "ann"}).to_string();
    let auth = signature::user_auth("app_key", "secret", &id, &user_data);
    send(
        &mut ws,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    )
    .await;
    next_json(&mut ws).await;
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Signed in", "socket": id, "app_id": "app_id",
            "details": "UserId: \"ann\"", "user_id": "ann"})
    );

    let api = Api::new(&server.http_url());
    api.call(
        "POST",
        "/apps/app_id/events",
        Some(&json!({"name": "note", "channels": ["#server-to-user-ann"], "data": "x"})),
    )
    .await;
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Server to user", "socket": "", "app_id": "app_id",
            "details": "UserId: \"ann\", Event: note", "event": "note", "data": "x",
            "user_id": "ann"})
    );

    subscribe(&mut ws, json!({"channel": "cache-prices"})).await;
    assert_eq!(event(&mut console).await["type"], "Subscribed");
    assert_eq!(event(&mut console).await["type"], "Channel occupied");
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Cache miss", "socket": "", "app_id": "app_id",
            "details": "Channel: \"cache-prices\"", "channel": "cache-prices"})
    );

    // A message over the size cap: the server closes with 1009, and the console says so.
    ws.send(Message::text("x".repeat(200_000))).await.unwrap();
    assert_eq!(event(&mut console).await["type"], "Channel vacated");
    let gone = event(&mut console).await;
    assert_eq!(gone["type"], "Disconnection");
    assert_eq!(gone["code"], 1009, "{gone}");
}

#[tokio::test]
async fn signatures_are_checked_before_the_upgrade() {
    let server = Server::new(test_config()).start().await.unwrap();
    let url =
        |key: &str, secret: &str, ts: u64| signed(&server, "ws", "/console", key, secret, ts, &[]);

    let (status, body) = refused(url("app_key", "wrong", now())).await;
    assert_eq!(status, 401);
    assert!(body.starts_with("Invalid signature: you should have sent HmacSHA256Hex(\"GET\\n/console\\nauth_key=app_key&auth_timestamp="), "{body}");

    let (status, body) = refused(url("app_key", "secret", now() - 601)).await;
    assert_eq!(status, 401);
    assert!(
        body.starts_with("Timestamp expired: Given timestamp ("),
        "{body}"
    );

    assert_eq!(
        refused(url("nobody", "secret", now())).await,
        (401, "Unknown auth_key: nobody".into())
    );
    assert_eq!(
        refused(format!("ws://{}/console", server.local_addr())).await,
        (401, "Missing parameter: auth_key".into())
    );
    // Signed for another path: not valid for this one.
    let other = signed(
        &server,
        "ws",
        "/console/app",
        "app_key",
        "secret",
        now(),
        &[],
    )
    .replace("/console/app?", "/console?");
    assert_eq!(refused(other).await.0, 401);
    // Within the window on either side.
    let (_ws, response) = tokio_tungstenite::connect_async(url("app_key", "secret", now() + 500))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
}

#[tokio::test]
async fn a_console_sees_only_the_app_that_signed_it() {
    let mut config = test_config();
    config.apps.push(AppConfig {
        id: "b".into(),
        key: "b-key".into(),
        secret: "b-secret".into(),
        ..AppConfig::default()
    });
    let server = Server::new(config).start().await.unwrap();
    let mut console_b = open_console(&server, "b-key", "b-secret").await;
    let mut console_a = open_console(&server, "app_key", "secret").await;
    // The other app's client first: if it leaked, it would be the first frame.
    let (a_ws, a_id) = connect(&server.ws_url()).await;
    let (mut b_ws, _) = tokio_tungstenite::connect_async(format!("{}/app/b-key", server.ws_url()))
        .await
        .unwrap();
    let established = next_json(&mut b_ws).await;
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let b_id = data["socket_id"].as_str().unwrap();

    let seen_b = event(&mut console_b).await;
    assert_eq!(
        (
            seen_b["type"].as_str(),
            seen_b["socket"].as_str(),
            seen_b["app_id"].as_str()
        ),
        (Some("Connection"), Some(b_id), Some("b"))
    );
    let seen_a = event(&mut console_a).await;
    assert_eq!(
        (seen_a["socket"].as_str(), seen_a["app_id"].as_str()),
        (Some(a_id.as_str()), Some("app_id"))
    );
    drop(a_ws);
    // A's departure reaches A's console; B's console's next event is B's own.
    assert_eq!(event(&mut console_a).await["type"], "Disconnection");
    drop(b_ws);
    let next_b = event(&mut console_b).await;
    assert_eq!(
        (next_b["type"].as_str(), next_b["socket"].as_str()),
        (Some("Disconnection"), Some(b_id))
    );
}

#[tokio::test]
async fn the_page_and_its_endpoints() {
    let server = Server::new(test_config()).start().await.unwrap();
    let http = reqwest::Client::new();
    let base = server.http_url();

    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>poxide console</title>"));
    assert!(html.contains(r#"<script type="module" src="/console/assets/console.mjs">"#));
    assert!(html.contains(r#"href="/console/assets/console.css""#));
    for (asset, kind) in [
        ("console.mjs", "text/javascript; charset=utf-8"),
        ("crypto.mjs", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ] {
        let r = http
            .get(format!("{base}/console/assets/{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(r.headers()["content-type"], kind);
        assert!(r.text().await.unwrap().len() > 1000, "{asset}");
    }
    assert_eq!(
        http.get(format!("{base}/console/assets/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let which = console_get(&server, "/console/app", "secret", &[]).await;
    assert_eq!(which.status(), 200);
    assert_eq!(
        which.json::<Value>().await.unwrap(),
        json!({"app_id": "app_id", "key": "app_key"})
    );
    let wrong = console_get(&server, "/console/app", "nope", &[]).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().starts_with("Invalid signature"));

    let apps = http
        .get(format!("{base}/console/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        apps.json::<Value>().await.unwrap(),
        json!({"apps": [{"app_id": "app_id", "key": "app_key", "secret": "secret"}]})
    );
    let proxied = http
        .get(format!("{base}/console/apps"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 403);
    assert_eq!(
        proxied.text().await.unwrap(),
        "The list of apps is shown only to a page opened on this machine (loopback, no proxy)"
    );

    let (mut ws, id) = connect(&server.ws_url()).await;
    let channel_data = json!({"user_id": "u7", "user_info": {"name": "Ada"}}).to_string();
    let auth = signature::channel_auth(
        "app_key",
        "secret",
        &id,
        "presence-lab",
        Some(&channel_data),
    );
    subscribe(
        &mut ws,
        json!({"channel": "presence-lab", "auth": auth, "channel_data": channel_data}),
    )
    .await;
    let members = console_get(
        &server,
        "/console/members",
        "secret",
        &[("channel", "presence-lab")],
    )
    .await;
    assert_eq!(
        members.json::<Value>().await.unwrap(),
        json!({"members": [{"user_id": "u7", "user_info": {"name": "Ada"}}]})
    );
    let not_presence = console_get(
        &server,
        "/console/members",
        "secret",
        &[("channel", "news")],
    )
    .await;
    assert_eq!(not_presence.status(), 400);
}

#[tokio::test]
async fn the_console_can_be_turned_off_for_all_or_for_one_app() {
    let mut config = test_config();
    config.console = false;
    let server = Server::new(config).start().await.unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{}/", server.http_url()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(format!("{}/console/assets/console.mjs", server.http_url()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Not a console: any other path's upgrade, closed with 4005 as pusher-js understands it.
    let (mut ws, _) = tokio_tungstenite::connect_async(signed(
        &server,
        "ws",
        "/console",
        "app_key",
        "secret",
        now(),
        &[],
    ))
    .await
    .unwrap();
    assert_eq!(common::close_code(&mut ws).await.0, 4005);

    let mut config = test_config();
    config.apps[0].console = false;
    let server = Server::new(config).start().await.unwrap();
    assert_eq!(
        refused(signed(
            &server,
            "ws",
            "/console",
            "app_key",
            "secret",
            now(),
            &[]
        ))
        .await,
        (403, "The console is turned off for this app".into())
    );
    let apps = http
        .get(format!("{}/console/apps", server.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(apps.json::<Value>().await.unwrap(), json!({"apps": []}));
}

#[tokio::test]
async fn consoles_are_bounded_and_give_their_seat_back() {
    let server = Server::new(test_config()).start().await.unwrap();
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(open_console(&server, "app_key", "secret").await);
    }
    let url = || signed(&server, "ws", "/console", "app_key", "secret", now(), &[]);
    assert_eq!(
        refused(url()).await,
        (503, "Too many consoles open: at most 16 at once".into())
    );
    let mut closing = open.pop().unwrap();
    closing.close(None).await.unwrap();
    while let Some(Ok(_)) = closing.next().await {}
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio_tungstenite::connect_async(url()).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the seat was not given back: {e}"),
        }
    }
}

#[tokio::test]
async fn a_console_that_falls_behind_is_told_what_it_missed() {
    let server = Server::new(test_config()).start().await.unwrap();
    let mut console = open_console(&server, "app_key", "secret").await;
    let api = Api::new(&server.http_url());
    // Far more than the queue, the write high-water mark and the socket buffers hold, while
    // the console reads nothing.
    let data = "x".repeat(9000);
    for _ in 0..1500 {
        let (status, _) = api
            .call(
                "POST",
                "/apps/app_id/events",
                Some(&json!({"name": "bulk", "channels": ["c"], "data": data})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (mut messages, mut dropped) = (0, None);
    while dropped.is_none() {
        let e = event(&mut console).await;
        messages += 1;
        if e["type"] == "Events dropped" {
            dropped = Some(e);
        }
    }
    let dropped = dropped.unwrap();
    let details = dropped["details"].as_str().unwrap();
    let count: u64 = details
        .strip_suffix(" events left out: this console fell behind")
        .unwrap_or_else(|| panic!("{details}"))
        .parse()
        .unwrap();
    assert!(
        count > 0 && messages + count as usize <= 1501,
        "{messages} + {count}"
    );
    // Nothing is lost after it: the stream goes on with the next event.
    assert_eq!(event(&mut console).await["type"], "API Message");
}

#[tokio::test]
async fn webhook_outcomes_and_rate_limits() {
    use wiremock::{matchers::path, Mock, MockServer, ResponseTemplate};
    let receiver = MockServer::start().await;
    Mock::given(path("/ok"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    Mock::given(path("/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&receiver)
        .await;
    let mut config = test_config();
    config.webhook_delivery.batch_ms = 0;
    config.apps[0].webhooks = vec![
        poxide::config::WebhookTarget {
            url: format!("{}/ok", receiver.uri()),
            event_types: Some(vec!["channel_occupied".into()]),
        },
        poxide::config::WebhookTarget {
            url: format!("{}/gone", receiver.uri()),
            event_types: Some(vec!["channel_occupied".into()]),
        },
    ];
    let server = Server::new(config).start().await.unwrap();
    let mut console = open_console(&server, "app_key", "secret").await;
    let (mut ws, id) = connect(&server.ws_url()).await;
    assert_eq!(event(&mut console).await["type"], "Connection");
    let auth = signature::channel_auth("app_key", "secret", &id, "private-hooks", None);
    subscribe(&mut ws, json!({"channel": "private-hooks", "auth": auth})).await;
    assert_eq!(event(&mut console).await["type"], "Subscribed");
    assert_eq!(event(&mut console).await["type"], "Channel occupied");
    // Both receivers' outcomes, in whichever order they finish.
    let mut outcomes = vec![event(&mut console).await, event(&mut console).await];
    outcomes.sort_by_key(|e| e["type"].as_str().unwrap().to_string());
    assert_eq!(
        outcomes,
        vec![
            json!({"type": "Webhook failed", "socket": "", "app_id": "app_id",
                "details": format!("URL: {}/gone, Events: 1, Attempts: 1", receiver.uri()),
                "url": format!("{}/gone", receiver.uri())}),
            json!({"type": "Webhook sent", "socket": "", "app_id": "app_id",
                "details": format!("URL: {}/ok, Events: 1, Attempts: 1", receiver.uri()),
                "url": format!("{}/ok", receiver.uri())}),
        ]
    );

    // Client events over the app's 10 a second: the eleventh is refused, and the console says
    // so. Written in one go, so the window that starts at the first holds them all.
    for n in 0..11 {
        let frame = json!({"event": "client-n", "channel": "private-hooks", "data": {"n": n}});
        ws.feed(Message::text(frame.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for _ in 0..10 {
        assert_eq!(event(&mut console).await["type"], "Client Event Message");
    }
    assert_eq!(
        event(&mut console).await,
        json!({"type": "Rate limited", "socket": "", "app_id": "app_id",
            "details": "Limit: client_event"})
    );
}

//! Webhooks against a real HTTP receiver (wiremock): exact bodies and headers, verified
//! signatures, the grace period, retries, batching, filters and the bounded queue.

mod common;

use std::time::Duration;

use common::{
    connect, disconnect, next_json, send, subscribe, subscribe_presence, test_config, Api,
};
use poxide::{config::WebhookTarget, signature, Config, RunningServer, Server};
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, ResponseTemplate,
};

/// Webhooks to `receiver`, with short delays so the tests run quickly.
fn config_with_hooks(receiver: &MockServer, event_types: Option<Vec<&str>>) -> Config {
    let mut config = test_config();
    config.webhook_delivery.grace_ms = 300;
    config.webhook_delivery.batch_ms = 50;
    config.webhook_delivery.retry_initial_ms = 100;
    config.apps[0].webhooks = vec![WebhookTarget {
        url: format!("{}/hook", receiver.uri()),
        event_types: event_types.map(|t| t.into_iter().map(String::from).collect()),
    }];
    config
}

async fn receiver() -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    receiver
}

/// Checks what every request must carry and returns its parsed body.
fn verified_body(request: &Request) -> Value {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-pusher-key"), "app_key");
    assert_eq!(
        header("x-pusher-signature"),
        signature::sign_bytes("secret", &request.body)
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let time_ms = body["time_ms"].as_u64().expect("time_ms is an integer");
    assert!(
        now_ms - time_ms < 60_000,
        "time_ms is in milliseconds: {time_ms}"
    );
    body
}

/// Waits until the receiver has seen `count` events (or the timeout), then returns them all.
async fn events(receiver: &MockServer, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let all: Vec<Value> = receiver
            .received_requests()
            .await
            .unwrap()
            .iter()
            .flat_map(|r| verified_body(r)["events"].as_array().unwrap().clone())
            .collect();
        if all.len() >= count || tokio::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits past the grace period and batch window so nothing more is on its way.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

async fn start(config: Config) -> (RunningServer, Api) {
    let server = Server::new(config).start().await.unwrap();
    let api = Api::new(&server.http_url());
    (server, api)
}

#[tokio::test]
async fn channel_occupied_and_vacated() {
    let receiver = receiver().await;
    let (server, _) = start(config_with_hooks(&receiver, None)).await;
    let (mut ws, _) = connect(&server.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "news"})).await;
    disconnect(ws).await;
    settle().await;
    assert_eq!(
        events(&receiver, 2).await,
        [
            json!({"name": "channel_occupied", "channel": "news"}),
            json!({"name": "channel_vacated", "channel": "news"})
        ]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn member_added_and_removed_once_per_user() {
    let receiver = receiver().await;
    let (server, _) = start(config_with_hooks(
        &receiver,
        Some(vec!["member_added", "member_removed"]),
    ))
    .await;
    let (mut a, a_id) = connect(&server.ws_url()).await;
    let (mut b, b_id) = connect(&server.ws_url()).await;
    subscribe_presence(&mut a, &a_id, "presence-room", "42").await;
    subscribe_presence(&mut b, &b_id, "presence-room", "42").await;
    disconnect(a).await;
    disconnect(b).await;
    settle().await;
    assert_eq!(
        events(&receiver, 2).await,
        [
            json!({"name": "member_added", "channel": "presence-room", "user_id": "42"}),
            json!({"name": "member_removed", "channel": "presence-room", "user_id": "42"})
        ]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_events_carry_the_sender_and_its_data_as_a_string() {
    let receiver = receiver().await;
    let (server, _) = start(config_with_hooks(&receiver, Some(vec!["client_event"]))).await;
    let (mut a, a_id) = connect(&server.ws_url()).await;
    subscribe_presence(&mut a, &a_id, "presence-chat", "7").await;
    send(
        &mut a,
        json!({"event": "client-typing", "channel": "presence-chat", "data": {"on": true}}),
    )
    .await;
    send(
        &mut a,
        json!({"event": "client-text", "channel": "presence-chat", "data": "hello"}),
    )
    .await;
    assert_eq!(
        events(&receiver, 2).await,
        [
            json!({"name": "client_event", "channel": "presence-chat", "event": "client-typing",
                   "data": "{\"on\":true}", "socket_id": a_id, "user_id": "7"}),
            json!({"name": "client_event", "channel": "presence-chat", "event": "client-text",
                   "data": "hello", "socket_id": a_id, "user_id": "7"})
        ]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn cache_miss_once_per_empty_cache_channel() {
    let receiver = receiver().await;
    let (server, api) = start(config_with_hooks(&receiver, Some(vec!["cache_miss"]))).await;
    let (mut a, _) = connect(&server.ws_url()).await;
    let (mut b, _) = connect(&server.ws_url()).await;
    for ws in [&mut a, &mut b] {
        subscribe(ws, json!({"channel": "cache-prices"})).await;
        assert_eq!(
            next_json(ws).await,
            json!({"event": "pusher:cache_miss", "channel": "cache-prices"})
        );
    }
    settle().await;
    assert_eq!(
        events(&receiver, 1).await,
        [json!({"name": "cache_miss", "channel": "cache-prices"})]
    );
    // Once an event is cached there is no miss, so no webhook either.
    let trigger = json!({"name": "price", "channel": "cache-prices", "data": "1"});
    assert_eq!(
        api.call("POST", "/apps/app_id/events", Some(&trigger))
            .await
            .0,
        200
    );
    let (mut c, _) = connect(&server.ws_url()).await;
    subscribe(&mut c, json!({"channel": "cache-prices"})).await;
    assert_eq!(next_json(&mut c).await["event"], "price");
    settle().await;
    assert_eq!(events(&receiver, 2).await.len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscription_count_when_the_app_enables_it() {
    let receiver = receiver().await;
    let mut config = config_with_hooks(&receiver, Some(vec!["subscription_count"]));
    config.apps[0].subscription_count = true;
    let (server, _) = start(config).await;
    let (mut a, _) = connect(&server.ws_url()).await;
    let (mut b, _) = connect(&server.ws_url()).await;
    subscribe(&mut a, json!({"channel": "room"})).await;
    let count = |n: usize| json!({"event": "pusher_internal:subscription_count", "channel": "room", "data": format!("{{\"subscription_count\":{n}}}")});
    assert_eq!(next_json(&mut a).await, count(1));
    subscribe(&mut b, json!({"channel": "room"})).await;
    assert_eq!(next_json(&mut a).await, count(2));
    assert_eq!(next_json(&mut b).await, count(2));
    disconnect(b).await;
    assert_eq!(next_json(&mut a).await, count(1));
    assert_eq!(
        events(&receiver, 3).await,
        [1, 2, 1].map(
            |n| json!({"name": "subscription_count", "channel": "room", "subscription_count": n})
        )
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_page_refresh_within_the_grace_period_sends_nothing() {
    let receiver = receiver().await;
    let (server, _) = start(config_with_hooks(&receiver, None)).await;
    let (mut a, a_id) = connect(&server.ws_url()).await;
    subscribe_presence(&mut a, &a_id, "presence-doc", "5").await;
    disconnect(a).await;
    // The same user comes back on a new connection before the grace period ends.
    let (mut again, again_id) = connect(&server.ws_url()).await;
    subscribe_presence(&mut again, &again_id, "presence-doc", "5").await;
    settle().await;
    assert_eq!(
        events(&receiver, 2).await,
        [
            json!({"name": "channel_occupied", "channel": "presence-doc"}),
            json!({"name": "member_added", "channel": "presence-doc", "user_id": "5"})
        ],
        "neither the removal nor the re-add is sent"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_request_is_retried_with_the_same_body() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let (server, _) = start(config_with_hooks(&receiver, Some(vec!["channel_occupied"]))).await;
    let (mut ws, _) = connect(&server.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "retry-me"})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "one failure, one retry");
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(
        verified_body(&requests[1])["events"],
        json!([{"name": "channel_occupied", "channel": "retry-me"}])
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_ready_together_go_in_one_request() {
    let receiver = receiver().await;
    let (server, _) = start(config_with_hooks(&receiver, None)).await;
    let (mut ws, _) = connect(&server.ws_url()).await;
    for channel in ["a", "b", "c"] {
        send(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": channel}}),
        )
        .await;
    }
    for _ in 0..3 {
        next_json(&mut ws).await;
    }
    settle().await;
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        verified_body(&requests[0])["events"],
        json!([
            {"name": "channel_occupied", "channel": "a"},
            {"name": "channel_occupied", "channel": "b"},
            {"name": "channel_occupied", "channel": "c"}
        ])
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_target_gets_only_the_event_types_it_asked_for() {
    let receiver = receiver().await;
    let (server, _) = start(config_with_hooks(&receiver, Some(vec!["channel_vacated"]))).await;
    let (mut ws, _) = connect(&server.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "filtered"})).await;
    disconnect(ws).await;
    settle().await;
    assert_eq!(
        events(&receiver, 1).await,
        [json!({"name": "channel_vacated", "channel": "filtered"})]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stalled_receiver_fills_the_bounded_queue_and_the_excess_is_dropped_and_counted() {
    log::install();
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&receiver)
        .await;
    let mut config = config_with_hooks(&receiver, Some(vec!["client_event"]));
    config.webhook_delivery.app_queue_capacity = 2;
    config.webhook_delivery.max_in_flight = 1;
    config.webhook_delivery.batch_ms = 0;
    config.apps[0].client_event_rate = 1000;
    let (server, _) = start(config).await;
    let (mut ws, socket_id) = connect(&server.ws_url()).await;
    let auth = signature::channel_auth("app_key", "secret", &socket_id, "private-flood", None);
    subscribe(&mut ws, json!({"channel": "private-flood", "auth": auth})).await;
    let started = std::time::Instant::now();
    for i in 0..100 {
        send(
            &mut ws,
            json!({"event": "client-n", "channel": "private-flood", "data": i}),
        )
        .await;
    }
    // A ping round trip proves every event was handled, and quickly: sending never waited.
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_json(&mut ws).await["event"], "pusher:pong");
    assert!(started.elapsed() < Duration::from_secs(2));
    let dropped = server
        .webhook_stats()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 90, "dropped {dropped} of 100");
    // One log line for the first drop; the rest are counted into the next line, due in 10 s.
    let lines: Vec<String> = log::lines()
        .into_iter()
        .filter(|l| l.contains("webhook queue full"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with("dropped=1"), "{lines:?}");
    server.shutdown().await.unwrap();
}

/// Every test of this file logs into one buffer, so a test can count what was logged.
mod log {
    use std::{
        io,
        sync::{Mutex, Once},
    };

    static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    struct Writer;

    impl io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            LOG.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            tracing_subscriber::fmt()
                .with_env_filter("poxide=warn")
                .with_writer(|| Writer)
                .with_ansi(false)
                .init();
        });
    }

    pub fn lines() -> Vec<String> {
        String::from_utf8_lossy(&LOG.lock().unwrap())
            .lines()
            .map(String::from)
            .collect()
    }
}

#[tokio::test]
async fn held_events_that_fall_due_together_keep_their_emission_order() {
    let receiver = receiver().await;
    let (server, _) = start(config_with_hooks(
        &receiver,
        Some(vec!["member_removed", "channel_vacated"]),
    ))
    .await;
    let mut sockets = Vec::new();
    for i in 0..5 {
        let (mut ws, id) = connect(&server.ws_url()).await;
        subscribe_presence(&mut ws, &id, &format!("presence-order-{i}"), &i.to_string()).await;
        sockets.push(ws);
    }
    // One close after another: each emits member_removed, then channel_vacated.
    for ws in sockets {
        disconnect(ws).await;
    }
    settle().await;
    let expected: Vec<Value> = (0..5)
        .flat_map(|i| {
            let channel = format!("presence-order-{i}");
            [
                json!({"name": "member_removed", "channel": channel, "user_id": i.to_string()}),
                json!({"name": "channel_vacated", "channel": channel}),
            ]
        })
        .collect();
    assert_eq!(events(&receiver, 10).await, expected);
    server.shutdown().await.unwrap();
}

/// A receiver that answers every request with `status`.
async fn answering(status: u16) -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&receiver)
        .await;
    receiver
}

/// Waits until `stat` reaches `n`, with a generous deadline.
async fn wait_for_stat(stat: &std::sync::atomic::AtomicU64, n: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = stat.load(std::sync::atomic::Ordering::Relaxed);
        if value >= n || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_4xx_answer_is_a_refusal_and_is_not_retried() {
    let receiver = answering(404).await;
    let (server, _) = start(config_with_hooks(&receiver, Some(vec!["channel_occupied"]))).await;
    let (mut ws, _) = connect(&server.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "news"})).await;
    assert_eq!(wait_for_stat(&server.webhook_stats().failed, 1).await, 1);
    // A retry would have come after 100 ms; wait well past it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_429_answer_is_retried() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (server, _) = start(config_with_hooks(&receiver, Some(vec!["channel_occupied"]))).await;
    let (mut ws, _) = connect(&server.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "news"})).await;
    assert_eq!(wait_for_stat(&server.webhook_stats().delivered, 1).await, 1);
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_delay_another_apps_webhooks() {
    let stalled = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&stalled)
        .await;
    let healthy = receiver().await;
    let mut config = config_with_hooks(&stalled, Some(vec!["client_event"]));
    config.webhook_delivery.max_in_flight = 4;
    config.webhook_delivery.batch_ms = 0;
    config.apps[0].client_event_rate = 1000;
    let mut second = poxide::AppConfig {
        id: "app2".into(),
        key: "app2_key".into(),
        secret: "secret2".into(),
        ..poxide::AppConfig::default()
    };
    second.webhooks = vec![WebhookTarget::new(format!("{}/hook", healthy.uri()))];
    config.apps.push(second);
    let (server, _) = start(config).await;

    // The first app's receiver takes every slot it is allowed and holds them.
    let (mut ws, socket_id) = connect(&server.ws_url()).await;
    let auth = signature::channel_auth("app_key", "secret", &socket_id, "private-flood", None);
    subscribe(&mut ws, json!({"channel": "private-flood", "auth": auth})).await;
    for i in 0..40 {
        send(
            &mut ws,
            json!({"event": "client-n", "channel": "private-flood", "data": i}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stalled.received_requests().await.unwrap().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled receiver got its requests"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (mut other, _) =
        tokio_tungstenite::connect_async(format!("{}/app/app2_key?protocol=7", server.ws_url()))
            .await
            .unwrap();
    next_json(&mut other).await;
    send(
        &mut other,
        json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let request = loop {
        if let Some(r) = healthy.received_requests().await.unwrap().pop() {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second app's webhook arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body["events"],
        json!([{"name": "channel_occupied", "channel": "news"}])
    );
    server.shutdown().await.unwrap();
}

//! Cluster mode against a real redis-server: several poxide processes, clients on different
//! nodes and REST calls to yet another, and none of them can tell there is more than one.

#[path = "../common/mod.rs"]
mod common;
mod harness;

use std::time::Duration;

use common::{connect, next_json, send, subscribe, subscribe_presence, Api, Ws};
use harness::{Cluster, Redis};
use serde_json::{json, Value};

fn event(name: &str, channel: &str, data: &str) -> Value {
    json!({"name": name, "channel": channel, "data": data})
}

/// The next frame, skipping the subscription counts and pings that may interleave.
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let frame = next_json(ws).await;
        if frame["event"] != "pusher_internal:subscription_count" {
            return frame;
        }
    }
}

/// Waits until `ws` receives `event` on `channel` (skipping anything else).
async fn expect_event(ws: &mut Ws, event: &str) -> Value {
    loop {
        let frame = next_event(ws).await;
        if frame["event"] == event {
            return frame;
        }
    }
}

/// Publishes a marker through `api` and asserts it is the next thing `ws` gets: nothing
/// (no duplicate) arrived before it.
async fn assert_nothing_more(api: &Api, ws: &mut Ws, channel: &str) {
    let (status, _) = api
        .call(
            "POST",
            "/apps/app_id/events",
            Some(&event("marker", channel, "end")),
        )
        .await;
    assert_eq!(status, 200);
    let frame = next_event(ws).await;
    assert_eq!(
        frame["event"], "marker",
        "unexpected frame before the marker: {frame}"
    );
}

#[tokio::test]
async fn every_subscriber_gets_each_event_once_whichever_node_it_is_on() {
    let redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "fanout");
    let nodes = [
        cluster.node().await,
        cluster.node().await,
        cluster.node().await,
    ];
    let mut clients = Vec::new();
    for node in &nodes[..2] {
        let (mut ws, id) = connect(&node.ws_url()).await;
        let ok = subscribe(&mut ws, json!({"channel": "chat"})).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        subscribe(&mut ws, json!({"channel": "news"})).await;
        clients.push((ws, id));
    }
    let api = Api::new(&nodes[2].http_url());
    let (status, body) = api
        .call(
            "POST",
            "/apps/app_id/events",
            Some(&event("hello", "chat", "{\"n\":1}")),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    for (ws, _) in &mut clients {
        let frame = next_event(ws).await;
        assert_eq!(
            frame,
            json!({"event": "hello", "channel": "chat", "data": "{\"n\":1}"})
        );
    }
    // Multi-channel: one per channel. socket_id exclusion: not to the excluded one.
    let except = clients[1].1.clone();
    let multi =
        json!({"name": "both", "channels": ["chat", "news"], "data": "x", "socket_id": except});
    assert_eq!(
        api.call("POST", "/apps/app_id/events", Some(&multi))
            .await
            .0,
        200
    );
    let (first, _) = &mut clients[0];
    let channels: Vec<Value> = vec![
        next_event(first).await["channel"].clone(),
        next_event(first).await["channel"].clone(),
    ];
    assert_eq!(channels, [json!("chat"), json!("news")]);
    let batch = json!({"batch": [event("b1", "chat", "1"), event("b2", "news", "2")]});
    assert_eq!(
        api.call("POST", "/apps/app_id/batch_events", Some(&batch))
            .await
            .0,
        200
    );
    for (ws, _) in &mut clients {
        assert_eq!(next_event(ws).await["event"], "b1");
        assert_eq!(next_event(ws).await["event"], "b2");
        assert_nothing_more(&api, ws, "chat").await;
    }
    // What the clients made Redis hold goes with them: of the app's keys only its event
    // counter stays (departures are popped once their grace period is over).
    for (ws, _) in clients {
        common::disconnect(ws).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let keys = redis
            .cli(&["--scan", "--pattern", "fanout:{app_id}:*"])
            .await;
        if keys == "fanout:{app_id}:seq" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "keys left behind: {keys}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn presence_members_and_rest_reads_cover_the_whole_cluster() {
    let redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "presence");
    let nodes = [
        cluster.node().await,
        cluster.node().await,
        cluster.node().await,
    ];
    let channel = "presence-room";
    let (mut alice, alice_id) = connect(&nodes[0].ws_url()).await;
    subscribe_presence(&mut alice, &alice_id, channel, "alice").await;
    // Bob twice, on two other nodes: one member.
    let (mut bob1, bob1_id) = connect(&nodes[1].ws_url()).await;
    let ok = subscribe_presence(&mut bob1, &bob1_id, channel, "bob").await;
    let presence: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(presence["presence"]["ids"], json!(["alice", "bob"]));
    assert_eq!(presence["presence"]["count"], 2);
    let added = expect_event(&mut alice, "pusher_internal:member_added").await;
    assert_eq!(added["data"], json!("{\"user_id\":\"bob\"}"));
    let (mut bob2, bob2_id) = connect(&nodes[2].ws_url()).await;
    subscribe_presence(&mut bob2, &bob2_id, channel, "bob").await;

    for node in &nodes {
        let api = Api::new(&node.http_url());
        let (status, body) = api
            .call("GET", "/apps/app_id/channels/presence-room/users", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"users": [{"id": "alice"}, {"id": "bob"}]})
        );
        let (_, body) = api
            .call(
                "GET",
                "/apps/app_id/channels/presence-room?info=user_count,subscription_count",
                None,
            )
            .await;
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"occupied": true, "user_count": 2, "subscription_count": 3})
        );
    }
    let api = Api::new(&nodes[0].http_url());
    // The second connection of bob added nobody: alice's next frame is the marker.
    assert_nothing_more(&api, &mut alice, channel).await;

    // Bob leaves one node: still a member. Then the other: removed, once.
    common::disconnect(bob1).await;
    assert_nothing_more(&api, &mut alice, channel).await;
    common::disconnect(bob2).await;
    let removed = expect_event(&mut alice, "pusher_internal:member_removed").await;
    assert_eq!(removed["data"], json!("{\"user_id\":\"bob\"}"));
    assert_nothing_more(&api, &mut alice, channel).await;
    let (_, body) = api
        .call(
            "GET",
            "/apps/app_id/channels?filter_by_prefix=presence-&info=user_count",
            None,
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"channels": {"presence-room": {"user_count": 1}}})
    );
}

#[tokio::test]
async fn client_events_cross_nodes_with_the_senders_user_id() {
    let redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "client");
    let a = cluster.node().await;
    let b = cluster.node().await;
    let channel = "presence-game";
    let (mut x, x_id) = connect(&a.ws_url()).await;
    subscribe_presence(&mut x, &x_id, channel, "x").await;
    let (mut y, y_id) = connect(&b.ws_url()).await;
    subscribe_presence(&mut y, &y_id, channel, "y").await;
    expect_event(&mut x, "pusher_internal:member_added").await;
    send(
        &mut y,
        json!({"event": "client-move", "channel": channel, "data": {"to": 3}}),
    )
    .await;
    let frame = expect_event(&mut x, "client-move").await;
    assert_eq!(
        frame,
        json!({"event": "client-move", "channel": channel, "data": {"to": 3}, "user_id": "y"})
    );
    // Not echoed to the sender.
    assert_nothing_more(&Api::new(&a.http_url()), &mut y, channel).await;
}

/// Every webhook event the receiver got so far, as `name channel [user_id]`.
async fn webhook_events(receiver: &wiremock::MockServer) -> Vec<String> {
    let mut out = Vec::new();
    for request in receiver.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        for e in body["events"].as_array().unwrap() {
            let mut line = format!(
                "{} {}",
                e["name"].as_str().unwrap(),
                e["channel"].as_str().unwrap()
            );
            if let Some(user) = e["user_id"].as_str() {
                line.push(' ');
                line.push_str(user);
            }
            out.push(line);
        }
    }
    out
}

/// Waits (generously) until the receiver has `n` events.
async fn wait_for_webhooks(receiver: &wiremock::MockServer, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = webhook_events(receiver).await;
        if events.len() >= n || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn webhook_receiver() -> wiremock::MockServer {
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    receiver
}

#[tokio::test]
async fn webhooks_are_sent_once_per_cluster_and_a_reload_onto_another_node_sends_none() {
    let redis = Redis::start().await;
    let receiver = webhook_receiver().await;
    let mut cluster = Cluster::new(&redis, "hooks");
    cluster.grace_ms = 1000;
    cluster.app_toml = format!("webhooks = [{{ url = \"{}/hook\" }}]", receiver.uri());
    let nodes = [
        cluster.node().await,
        cluster.node().await,
        cluster.node().await,
    ];
    let channel = "presence-lobby";
    let (mut a, a_id) = connect(&nodes[0].ws_url()).await;
    subscribe_presence(&mut a, &a_id, channel, "ann").await;
    let (mut b, b_id) = connect(&nodes[1].ws_url()).await;
    subscribe_presence(&mut b, &b_id, channel, "ben").await;
    assert_eq!(
        wait_for_webhooks(&receiver, 3).await,
        [
            "channel_occupied presence-lobby",
            "member_added presence-lobby ann",
            "member_added presence-lobby ben"
        ]
    );
    // Ben's page reloads onto the third node inside the grace period.
    common::disconnect(b).await;
    let (mut b, b_id) = connect(&nodes[2].ws_url()).await;
    subscribe_presence(&mut b, &b_id, channel, "ben").await;
    // Then everyone leaves for good; the vacancy is due after the reload's grace period.
    common::disconnect(b).await;
    common::disconnect(a).await;
    let events = wait_for_webhooks(&receiver, 6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events_later = webhook_events(&receiver).await;
    assert_eq!(events, events_later, "nothing after the vacancy");
    let mut tail = events[3..].to_vec();
    tail.sort();
    assert_eq!(
        tail,
        [
            "channel_vacated presence-lobby",
            "member_removed presence-lobby ann",
            "member_removed presence-lobby ben"
        ]
    );
}

#[tokio::test]
async fn a_killed_node_has_its_members_removed_with_frames_and_webhooks() {
    let redis = Redis::start().await;
    let receiver = webhook_receiver().await;
    let mut cluster = Cluster::new(&redis, "kill");
    cluster.grace_ms = 200;
    cluster.app_toml = format!("webhooks = [{{ url = \"{}/hook\" }}]", receiver.uri());
    let doomed = cluster.node().await;
    let survivor = cluster.node().await;
    let channel = "presence-ops";
    let (mut ghost, ghost_id) = connect(&doomed.ws_url()).await;
    subscribe_presence(&mut ghost, &ghost_id, channel, "ghost").await;
    let (mut watcher, watcher_id) = connect(&survivor.ws_url()).await;
    subscribe_presence(&mut watcher, &watcher_id, channel, "watcher").await;
    doomed.kill().await;
    let removed = tokio::time::timeout(
        Duration::from_secs(15),
        expect_event(&mut watcher, "pusher_internal:member_removed"),
    )
    .await
    .expect("the dead node's member is removed");
    assert_eq!(removed["data"], json!("{\"user_id\":\"ghost\"}"));
    let api = Api::new(&survivor.http_url());
    let (_, users) = api
        .call("GET", "/apps/app_id/channels/presence-ops/users", None)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&users).unwrap(),
        json!({"users": [{"id": "watcher"}]})
    );
    let events = wait_for_webhooks(&receiver, 4).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("member_removed"))
            .collect::<Vec<_>>(),
        ["member_removed presence-ops ghost"]
    );
    drop(ghost);
}

#[tokio::test]
async fn a_paused_node_delays_no_rest_call_and_finds_its_connections_closed_when_it_wakes() {
    let redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "pause");
    let sleeper = cluster.node().await;
    let awake = cluster.node().await;
    let (mut dozing, dozing_id) = connect(&sleeper.ws_url()).await;
    subscribe_presence(&mut dozing, &dozing_id, "presence-nap", "dozer").await;
    sleeper.pause();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let api = Api::with_client(&awake.http_url(), client);
    let (status, body) = api
        .call("GET", "/apps/app_id/channels/presence-nap/users", None)
        .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"users\":[{\"id\":\"dozer\"}]}")
    );
    // Past the node timeout the others sweep it...
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = api
            .call("GET", "/apps/app_id/channels/presence-nap/users", None)
            .await;
        if body == "{\"users\":[]}" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never swept: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and when it wakes, its connection's state is gone, so the client is told to reconnect.
    sleeper.resume();
    assert_eq!(common::close_code(&mut dozing).await.0, 4200);
}

#[tokio::test]
async fn a_node_that_joins_late_knows_the_cluster_at_once() {
    let redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "late");
    let first = cluster.node().await;
    let (mut early, early_id) = connect(&first.ws_url()).await;
    subscribe_presence(&mut early, &early_id, "presence-x", "early").await;
    let late = cluster.node().await;
    let (_, body) = Api::new(&late.http_url())
        .call("GET", "/apps/app_id/channels?info=subscription_count", None)
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"channels": {"presence-x": {"subscription_count": 1}}})
    );
    let (mut newcomer, newcomer_id) = connect(&late.ws_url()).await;
    let ok = subscribe_presence(&mut newcomer, &newcomer_id, "presence-x", "late").await;
    let data: Value = serde_json::from_str(ok["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["ids"], json!(["early", "late"]));
}

#[tokio::test]
async fn a_node_stopped_with_sigterm_removes_its_state_at_once() {
    let redis = Redis::start().await;
    let mut cluster = Cluster::new(&redis, "term");
    // Far longer than the test waits: only the node's own cleanup can explain the removal.
    cluster.node_timeout_ms = 60_000;
    let leaving = cluster.node().await;
    let staying = cluster.node().await;
    let (mut goner, goner_id) = connect(&leaving.ws_url()).await;
    subscribe_presence(&mut goner, &goner_id, "presence-t", "goner").await;
    let (mut stayer, stayer_id) = connect(&staying.ws_url()).await;
    subscribe_presence(&mut stayer, &stayer_id, "presence-t", "stayer").await;
    leaving.terminate().await;
    assert_eq!(common::close_code(&mut goner).await.0, 4200);
    let removed = expect_event(&mut stayer, "pusher_internal:member_removed").await;
    assert_eq!(removed["data"], json!("{\"user_id\":\"goner\"}"));
    let registered = redis.cli(&["ZCARD", "term:nodes"]).await;
    assert_eq!(registered, "1", "the stopped node deregistered");
}

#[tokio::test]
async fn a_redis_restart_closes_connections_with_4200_and_delivery_resumes() {
    let mut redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "restart");
    let a = cluster.node().await;
    let b = cluster.node().await;
    let (mut x, _) = connect(&a.ws_url()).await;
    subscribe(&mut x, json!({"channel": "feed"})).await;
    let (mut y, _) = connect(&b.ws_url()).await;
    subscribe(&mut y, json!({"channel": "feed"})).await;

    redis.stop().await;
    assert_eq!(common::close_code(&mut x).await.0, 4200);
    assert_eq!(common::close_code(&mut y).await.0, 4200);
    let (status, _) = Api::new(&a.http_url())
        .call("GET", "/apps/app_id/channels", None)
        .await;
    assert_eq!(status, 503, "no partial answer while Redis is away");
    assert_eq!(a.ready_status().await, Some(503));

    redis.restart().await;
    a.wait_ready().await;
    b.wait_ready().await;
    let (mut x, _) = connect(&a.ws_url()).await;
    subscribe(&mut x, json!({"channel": "feed"})).await;
    let (mut y, _) = connect(&b.ws_url()).await;
    subscribe(&mut y, json!({"channel": "feed"})).await;
    let api = Api::new(&b.http_url());
    assert_eq!(
        api.call(
            "POST",
            "/apps/app_id/events",
            Some(&event("back", "feed", "1"))
        )
        .await
        .0,
        200
    );
    assert_eq!(next_event(&mut x).await["event"], "back");
    assert_eq!(next_event(&mut y).await["event"], "back");
}

#[tokio::test]
async fn cache_channels_replay_on_any_node_what_any_node_cached() {
    let redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "cache");
    let a = cluster.node().await;
    let b = cluster.node().await;
    let api = Api::new(&a.http_url());
    assert_eq!(
        api.call(
            "POST",
            "/apps/app_id/events",
            Some(&event("price", "cache-btc", "42"))
        )
        .await
        .0,
        200
    );
    let (mut ws, _) = connect(&b.ws_url()).await;
    let ok = subscribe(&mut ws, json!({"channel": "cache-btc"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        next_event(&mut ws).await,
        json!({"event": "price", "channel": "cache-btc", "data": "42"})
    );
    let ok = subscribe(&mut ws, json!({"channel": "cache-empty"})).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(next_event(&mut ws).await["event"], "pusher:cache_miss");
}

#[tokio::test]
async fn users_are_reached_terminated_and_watched_across_nodes() {
    let redis = Redis::start().await;
    let mut cluster = Cluster::new(&redis, "users");
    cluster.app_toml = "watchlist_events = true".into();
    let nodes = [
        cluster.node().await,
        cluster.node().await,
        cluster.node().await,
    ];
    let signin = |ws_id: &str, user_data: &str| {
        let auth = poxide::signature::user_auth("app_key", "secret", ws_id, user_data);
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})
    };
    let (mut watcher, watcher_id) = connect(&nodes[0].ws_url()).await;
    send(
        &mut watcher,
        signin(&watcher_id, r#"{"id":"w","watchlist":["star"]}"#),
    )
    .await;
    assert_eq!(
        next_event(&mut watcher).await["event"],
        "pusher:signin_success"
    );
    let initial = next_event(&mut watcher).await;
    assert_eq!(initial["event"], "pusher_internal:watchlist_events");
    let (mut star, star_id) = connect(&nodes[1].ws_url()).await;
    send(&mut star, signin(&star_id, r#"{"id":"star"}"#)).await;
    assert_eq!(
        next_event(&mut star).await["event"],
        "pusher:signin_success"
    );
    let online = next_event(&mut watcher).await;
    assert_eq!(
        online["data"],
        json!("{\"events\":[{\"name\":\"online\",\"user_ids\":[\"star\"]}]}")
    );

    let api = Api::new(&nodes[2].http_url());
    let to_user = event("note", "#server-to-user-star", "hi");
    assert_eq!(
        api.call("POST", "/apps/app_id/events", Some(&to_user))
            .await
            .0,
        200
    );
    assert_eq!(next_event(&mut star).await["event"], "note");
    let (status, _) = api
        .call(
            "POST",
            "/apps/app_id/users/star/terminate_connections",
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(common::close_code(&mut star).await.0, 4009);
    let offline = next_event(&mut watcher).await;
    assert_eq!(
        offline["data"],
        json!("{\"events\":[{\"name\":\"offline\",\"user_ids\":[\"star\"]}]}")
    );
}

#[tokio::test]
async fn connection_and_presence_limits_count_the_whole_cluster() {
    let redis = Redis::start().await;
    let mut cluster = Cluster::new(&redis, "limits");
    cluster.app_toml = "max_connections = 2\nmax_presence_members = 1".into();
    let a = cluster.node().await;
    let b = cluster.node().await;
    let (mut one, one_id) = connect(&a.ws_url()).await;
    subscribe_presence(&mut one, &one_id, "presence-solo", "first").await;
    let (mut two, two_id) = connect(&b.ws_url()).await;
    let refused = subscribe_presence(&mut two, &two_id, "presence-solo", "second").await;
    assert_eq!(refused["event"], "pusher:error");
    let (mut third, _) =
        tokio_tungstenite::connect_async(format!("{}/app/app_key?protocol=7", b.ws_url()))
            .await
            .unwrap();
    assert_eq!(common::close_code(&mut third).await.0, 4004);
    common::disconnect(one).await;
    // A slot is free again, wherever it was taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("{}/app/app_key?protocol=7", b.ws_url()))
                .await
                .unwrap();
        let first = common::next_json(&mut ws).await;
        if first["event"] == "pusher:connection_established" {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_started_before_its_redis_waits_for_it_and_then_serves() {
    let mut redis = Redis::start().await;
    redis.stop().await;
    let cluster = Cluster::new(&redis, "early");
    let node = cluster.node_unready().await;
    // It serves HTTP, says it is not ready, refuses WebSockets with 4100 (back off), REST 503.
    assert_eq!(node.ready_status().await, Some(503));
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}/app/app_key?protocol=7", node.ws_url()))
            .await
            .unwrap();
    let (code, reason) = common::close_code(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (4100, "Cluster state unavailable, please retry later")
    );
    let (status, _) = Api::new(&node.http_url())
        .call("GET", "/apps/app_id/channels", None)
        .await;
    assert_eq!(status, 503);
    redis.restart().await;
    node.wait_ready().await;
    let (mut ws, _) = connect(&node.ws_url()).await;
    assert_eq!(
        subscribe(&mut ws, json!({"channel": "now"})).await["event"],
        "pusher_internal:subscription_succeeded"
    );
}

#[tokio::test]
async fn subscription_counts_are_the_clusters_and_each_change_is_one_webhook() {
    let redis = Redis::start().await;
    let receiver = webhook_receiver().await;
    let mut cluster = Cluster::new(&redis, "counts");
    cluster.app_toml = format!(
        "subscription_count = true\nwebhooks = [{{ url = \"{}/hook\", event_types = [\"subscription_count\"] }}]",
        receiver.uri()
    );
    let a = cluster.node().await;
    let b = cluster.node().await;
    let (mut x, _) = connect(&a.ws_url()).await;
    subscribe(&mut x, json!({"channel": "crowd"})).await;
    // The first change has its own webhook before the second subscriber joins.
    assert_eq!(
        wait_for_webhooks(&receiver, 1).await,
        ["subscription_count crowd"]
    );
    let (mut y, _) = connect(&b.ws_url()).await;
    subscribe(&mut y, json!({"channel": "crowd"})).await;
    // Both subscribers see the count of the whole cluster.
    for ws in [&mut x, &mut y] {
        loop {
            let frame = next_json(ws).await;
            if frame["event"] == "pusher_internal:subscription_count"
                && frame["data"] == json!("{\"subscription_count\":2}")
            {
                break;
            }
        }
    }
    let counts = wait_for_webhooks(&receiver, 2).await;
    assert_eq!(
        counts,
        ["subscription_count crowd", "subscription_count crowd"]
    );
    let mut seen = Vec::new();
    for request in receiver.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        for e in body["events"].as_array().unwrap() {
            seen.push(e["subscription_count"].as_u64().unwrap());
        }
    }
    // Each node sends its own change, the first before the second subscriber existed.
    assert_eq!(seen, [1, 2]);
}

#[tokio::test]
async fn a_webhook_being_retried_by_a_node_that_dies_is_finished_by_another() {
    let redis = Redis::start().await;
    let receiver = wiremock::MockServer::start().await;
    let failing = wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(500));
    receiver.register(failing).await;
    let mut cluster = Cluster::new(&redis, "adopt");
    cluster.delivery_toml = "retry_initial_ms = 300".into();
    cluster.app_toml = format!(
        "webhooks = [{{ url = \"{}/hook\", event_types = [\"channel_occupied\"] }}]",
        receiver.uri()
    );
    let doomed = cluster.node().await;
    let _survivor = cluster.node().await;
    let (mut ws, _) = connect(&doomed.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "orders"})).await;
    assert_eq!(
        wait_for_webhooks(&receiver, 1).await,
        ["channel_occupied orders"]
    );
    doomed.kill().await;
    // The receiver recovers; only the surviving node can still be trying.
    receiver.reset().await;
    receiver
        .register(
            wiremock::Mock::given(wiremock::matchers::method("POST"))
                .respond_with(wiremock::ResponseTemplate::new(200)),
        )
        .await;
    assert_eq!(
        wait_for_webhooks(&receiver, 1).await,
        ["channel_occupied orders"]
    );
    // Delivered: nothing is left in any node's journal.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !redis
        .cli(&["--scan", "--pattern", "adopt:node:*:webhooks"])
        .await
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the journal keeps a delivered request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nodes_reach_a_redis_over_tls_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    let openssl = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("openssl")
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    // A private CA, and a certificate for 127.0.0.1 that it signs.
    openssl(words(&format!(
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=poxide-test-ca -keyout {} -out {ca}",
        path("ca-key.pem")
    )))
    .await;
    openssl(words(&format!(
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {}",
        path("req.pem")
    )))
    .await;
    std::fs::write(path("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(words(&format!(
        "x509 -req -in {} -CA {ca} -CAkey {} -CAcreateserial -days 1 -extfile {} -out {cert}",
        path("req.pem"),
        path("ca-key.pem"),
        path("ext.cnf")
    )))
    .await;
    let port = harness::free_port();
    let _redis = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .args([
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
            "--save",
            "",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut cluster = Cluster {
        redis_url: format!("rediss://:s3cret@127.0.0.1:{port}"),
        prefix: "tls".into(),
        node_timeout_ms: 1500,
        app_toml: String::new(),
        grace_ms: 3000,
        delivery_toml: String::new(),
        env: Vec::new(),
    };
    // The certificate is trusted the way an operator would add a private CA.
    cluster.env.push(("SSL_CERT_FILE".into(), ca.clone()));
    let a = cluster.node().await;
    let b = cluster.node().await;
    let (mut ws, _) = connect(&a.ws_url()).await;
    subscribe(&mut ws, json!({"channel": "secure"})).await;
    let api = Api::new(&b.http_url());
    assert_eq!(
        api.call(
            "POST",
            "/apps/app_id/events",
            Some(&event("sealed", "secure", "1"))
        )
        .await
        .0,
        200
    );
    assert_eq!(next_event(&mut ws).await["event"], "sealed");

    // A wrong password is a node that never becomes ready, not a crash.
    cluster.redis_url = format!("rediss://:wrong@127.0.0.1:{port}");
    let refused = cluster.node_unready().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(refused.ready_status().await, Some(503));
}

#[tokio::test]
async fn a_node_subscribes_only_to_the_channels_its_connections_are_in() {
    let redis = Redis::start().await;
    let receiver = webhook_receiver().await;
    let mut cluster = Cluster::new(&redis, "interest");
    cluster.app_toml = format!(
        "webhooks = [{{ url = \"{}/hook\", event_types = [\"cache_miss\"] }}]",
        receiver.uri()
    );
    let a = cluster.node().await;
    let b = cluster.node().await;
    let numsub = |channel: &str| {
        let topic = format!("interest:t:app_id:{channel}");
        let redis = &redis;
        async move {
            let out = redis.cli(&["PUBSUB", "NUMSUB", &topic]).await;
            out.lines().nth(1).unwrap_or("").trim().to_string()
        }
    };
    let (mut x, _) = connect(&a.ws_url()).await;
    subscribe(&mut x, json!({"channel": "cache-alpha"})).await;
    assert_eq!(next_event(&mut x).await["event"], "pusher:cache_miss");
    let (mut y, _) = connect(&b.ws_url()).await;
    subscribe(&mut y, json!({"channel": "cache-alpha"})).await;
    assert_eq!(next_event(&mut y).await["event"], "pusher:cache_miss");
    subscribe(&mut y, json!({"channel": "beta"})).await;
    assert_eq!(
        numsub("cache-alpha").await,
        "2",
        "both nodes have subscribers there"
    );
    assert_eq!(numsub("beta").await, "1", "only the node with a subscriber");
    send(
        &mut y,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "beta"}}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while numsub("beta").await != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "the topic is released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two subscribers met the empty cache, on two nodes: one cache_miss webhook.
    assert_eq!(
        wait_for_webhooks(&receiver, 1).await,
        ["cache_miss cache-alpha"]
    );
    let api = Api::new(&a.http_url());
    assert_nothing_more(&api, &mut x, "cache-alpha").await;
    assert_eq!(webhook_events(&receiver).await.len(), 1);
}

#[tokio::test]
async fn a_channel_listing_reads_a_large_set_from_redis_in_bounded_steps() {
    let redis = Redis::start().await;
    let cluster = Cluster::new(&redis, "listing");
    let node = cluster.node().await;
    let mut sockets = Vec::new();
    for part in 0..2 {
        let (mut ws, _) = connect(&node.ws_url()).await;
        for i in 0..600 {
            subscribe(&mut ws, json!({"channel": format!("c-{part}-{i:03}")})).await;
        }
        sockets.push(ws);
    }
    redis.cli(&["CONFIG", "RESETSTAT"]).await;

    let api = Api::new(&node.http_url());
    let (status, body) = api.call("GET", "/apps/app_id/channels", None).await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<&String> = reply["channels"].as_object().unwrap().keys().collect();
    assert_eq!(listed.len(), 1200);
    assert!(listed.contains(&&"c-1-599".to_string()));

    // The set is read with SSCAN a few hundred at a time, never in one SMEMBERS.
    let stats = redis.cli(&["INFO", "commandstats"]).await;
    let calls = |cmd: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(calls("sscan") >= 2, "{stats}");
}

#[tokio::test]
async fn nodes_sharing_an_apps_database_serve_an_app_added_while_they_run() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("apps.db").display());
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_poxide"))
            .args(["apps", "--database-url", &url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["list"]);
    let mut cluster = Cluster::new(&redis, "store");
    cluster.env = vec![
        ("POXIDE_APPS_DATABASE_URL".into(), url.clone()),
        ("POXIDE_APPS_REFRESH_MS".into(), "100".into()),
    ];
    let (a, b) = (cluster.node().await, cluster.node().await);
    cli(&["add", "--id", "n", "--key", "kn", "--secret", "sn"]);

    let connect_new = |node: &harness::Node| {
        let url = format!("{}/app/kn?protocol=7", node.ws_url());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                let first = next_event(&mut ws).await;
                if first["event"] == "pusher:connection_established" {
                    let data: Value =
                        serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
                    return (ws, data["socket_id"].as_str().unwrap().to_string());
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the new app is served"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (mut on_a, a_id) = connect_new(&a).await;
    let (mut on_b, _) = connect_new(&b).await;
    subscribe(&mut on_b, json!({"channel": "room"})).await;
    let auth = poxide::signature::user_auth("kn", "sn", &a_id, r#"{"id":"u"}"#);
    send(
        &mut on_a,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": "{\"id\":\"u\"}"}}),
    )
    .await;
    assert_eq!(
        next_event(&mut on_a).await["event"],
        "pusher:signin_success"
    );

    // A's user and B's channel, each reached through the other node.
    let api = Api::with_credentials(&b.http_url(), "kn", "sn");
    let to_user = event("note", "#server-to-user-u", "hi");
    assert_eq!(
        api.call("POST", "/apps/n/events", Some(&to_user)).await.0,
        200
    );
    assert_eq!(next_event(&mut on_a).await["event"], "note");
    let api_a = Api::with_credentials(&a.http_url(), "kn", "sn");
    let to_room = event("said", "room", "x");
    assert_eq!(
        api_a.call("POST", "/apps/n/events", Some(&to_room)).await.0,
        200
    );
    assert_eq!(next_event(&mut on_b).await["event"], "said");

    // Disabled: every node closes its connections of the app.
    cli(&["set", "n", "enabled=false"]);
    assert_eq!(common::close_code(&mut on_a).await.0, 4003);
    assert_eq!(common::close_code(&mut on_b).await.0, 4003);
}

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

//! Throws thousands of generated frames, valid and not, at one live connection: the server must
//! answer each with protocol frames only, never drop the connection, and still answer a ping.

mod common;

use std::time::Duration;

use common::{connect, next_json, send, test_config};
use futures_util::{SinkExt, StreamExt};
use poxide::Server;
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner},
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            proptest::collection::btree_map(".{0,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn channel() -> impl Strategy<Value = String> {
    prop_oneof![
        "(private-|presence-|private-encrypted-|cache-|presence-cache-|#server-to-user-)?[a-z0-9;=@,._-]{0,12}",
        ".{0,20}",
    ]
}

/// A frame a client could send: well-formed envelopes with arbitrary contents, and garbage.
fn frame() -> impl Strategy<Value = Message> {
    let event = prop_oneof![
        Just("pusher:subscribe".to_string()),
        Just("pusher:unsubscribe".to_string()),
        Just("pusher:signin".to_string()),
        Just("pusher:ping".to_string()),
        "client-[a-z]{0,6}",
        "pusher(_internal)?:[a-z_]{0,10}",
        ".{0,12}",
    ];
    let envelope = (event, channel(), json_value(), json_value(), json_value(), json_value()).prop_map(
        |(event, channel, auth, channel_data, user_data, data)| {
            let data = json!({"channel": channel, "auth": auth, "channel_data": channel_data, "user_data": user_data, "x": data});
            Message::text(json!({"event": event, "channel": channel, "data": data}).to_string())
        },
    );
    prop_oneof![
        6 => envelope,
        1 => ".{0,200}".prop_map(Message::text),
        1 => proptest::collection::vec(any::<u8>(), 0..100).prop_map(Message::binary),
        1 => json_value().prop_map(|v| Message::text(v.to_string())),
    ]
}

#[tokio::test]
async fn generated_frames_never_break_a_connection() {
    let mut config = test_config();
    config.apps[0].client_event_rate = 1_000_000;
    let server = Server::new(config).start().await.unwrap();
    let (mut ws, _) = connect(&server.ws_url()).await;

    // A fixed seed: the same 3000 frames every run.
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = frame();
    let (mut sent, mut replies) = (0usize, 0usize);
    for _ in 0..3000 {
        let message = strategy.new_tree(&mut runner).unwrap().current();
        ws.send(message).await.expect("the server keeps reading");
        sent += 1;
        // Whatever comes back must be a protocol frame: JSON with an event name.
        while let Ok(Some(reply)) = tokio::time::timeout(Duration::from_millis(1), ws.next()).await
        {
            match reply.expect("the connection stays up") {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).expect("replies are JSON");
                    assert!(value["event"].is_string(), "reply without an event: {text}");
                    replies += 1;
                }
                Message::Close(frame) => panic!("closed after {sent} frames: {frame:?}"),
                _ => {}
            }
        }
    }
    // Drain, then prove the connection is healthy.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {}
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"event": "pusher:pong", "data": {}})
    );
    assert!(
        replies > 1000,
        "the server answered the frames ({replies} replies to {sent})"
    );
    server.shutdown().await.unwrap();
}

//! Subscription counts on a large channel: every change up to 100 subscribers, then at most one
//! update per 5 s carrying the count as it is then.

mod common;

use std::time::{Duration, Instant};

use common::{connect, next_json, subscribe, test_config};
use poxide::Server;
use serde_json::json;

fn count_frame(n: usize) -> serde_json::Value {
    json!({
        "event": "pusher_internal:subscription_count",
        "channel": "crowd",
        "data": format!("{{\"subscription_count\":{n}}}")
    })
}

#[tokio::test]
async fn over_100_subscribers_updates_are_throttled_to_one_per_5_seconds() {
    let mut config = test_config();
    config.apps[0].subscription_count = true;
    let server = Server::new(config).start().await.unwrap();

    let (mut first, _) = connect(&server.ws_url()).await;
    subscribe(&mut first, json!({"channel": "crowd"})).await;
    assert_eq!(next_json(&mut first).await, count_frame(1));

    let mut others = Vec::new();
    for n in 2..=105 {
        let (mut ws, _) = connect(&server.ws_url()).await;
        subscribe(&mut ws, json!({"channel": "crowd"})).await;
        others.push(ws);
        if n <= 100 {
            assert_eq!(
                next_json(&mut first).await,
                count_frame(n),
                "sent at once up to 100"
            );
        }
    }
    let joined_all = Instant::now();
    // 101..105 arrive within the same 5 s: one deferred update with the final count.
    assert_eq!(next_json(&mut first).await, count_frame(105));
    let waited = joined_all.elapsed();
    assert!(
        waited > Duration::from_secs(3),
        "the update was deferred, not sent at once ({waited:?})"
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), next_json(&mut first)).await;
    assert!(extra.is_err(), "no further update: {extra:?}");
    server.shutdown().await.unwrap();
}

//! The node registry: heartbeats into a sorted set, the sweep of nodes that stopped beating
//! (one node takes a lock and removes the dead node's connections through the same scripts a
//! disconnect uses), the sweep of what this node itself left behind when Redis was away, and
//! the webhook departures that have waited out their grace period.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use super::{journal, now_ms, scripts, Inner};
use crate::{
    error::CloseError,
    hub::{HubEvent, HubResult},
    webhook::WebhookEvent,
};

/// Departures popped per app per tick.
const DEPARTURES_PER_TICK: usize = 500;

fn tick(inner: &Inner) -> Duration {
    (inner.node_timeout / 5).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

pub async fn maintain(inner: Arc<Inner>) {
    let mut interval = tokio::time::interval(tick(&inner));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = inner.stop.cancelled() => return,
        }
        if !inner.ready.load(Ordering::Acquire) {
            continue;
        }
        beat(&inner).await;
        if inner.needs_sweep.load(Ordering::Acquire) && sweep_own(&inner).await.is_ok() {
            inner.needs_sweep.store(false, Ordering::Release);
        }
        let _ = sweep_dead(&inner).await;
        let _ = pop_departures(&inner).await;
    }
}

/// Records that this node is alive. A node that finds itself missing was declared dead (it
/// was paused or cut off for longer than the timeout) or Redis lost its data: its
/// connections' state is gone, so they are closed with 4200 and come back through the front
/// door.
pub async fn beat(inner: &Inner) {
    let (nodes, node) = (inner.keys.nodes(), &inner.node);
    let previous: HubResult<(Option<f64>,)> = inner
        .pipe(
            redis::pipe()
                .zscore(&nodes, node)
                .zadd(&nodes, node, now_ms())
                .ignore(),
        )
        .await;
    if let Ok((None,)) = previous {
        let closed = inner.local.close_all(CloseError::ClusterLost);
        if closed > 0 {
            tracing::warn!(
                closed,
                "this node was missing from the cluster registry (declared dead, or Redis lost its data): connections closed with 4200"
            );
        }
    }
}

/// Removes the connections of nodes that stopped beating.
async fn sweep_dead(inner: &Inner) -> HubResult<()> {
    let nodes = inner.keys.nodes();
    let deadline = now_ms().saturating_sub(inner.node_timeout.as_millis() as u64);
    let dead: Vec<String> = inner
        .cmd(
            redis::cmd("ZRANGEBYSCORE")
                .arg(&nodes)
                .arg("-inf")
                .arg(deadline),
        )
        .await?;
    for node in dead.into_iter().filter(|n| *n != inner.node) {
        let lock = inner.keys.sweep_lock(&node);
        let took: Option<String> = inner
            .cmd(
                redis::cmd("SET")
                    .arg(&lock)
                    .arg(&inner.node)
                    .arg("NX")
                    .arg("PX")
                    .arg(60_000),
            )
            .await?;
        if took.is_none() {
            continue;
        }
        let swept = sweep_node(inner, &node, |_| true).await?;
        let adopted = journal::adopt(inner, &node).await?;
        inner
            .cmd::<()>(redis::cmd("ZREM").arg(inner.keys.nodes()).arg(&node))
            .await?;
        tracing::warn!(
            node,
            swept,
            adopted,
            "node stopped beating: its connections were removed, its webhooks taken over"
        );
    }
    Ok(())
}

/// Removes what this node left in Redis for connections it no longer has.
pub async fn sweep_own(inner: &Inner) -> HubResult<usize> {
    let swept = sweep_node(inner, &inner.node, |socket_id| {
        !inner.local.has_socket(socket_id)
    })
    .await?;
    if swept > 0 {
        tracing::info!(
            swept,
            "removed the state of connections closed while Redis was away"
        );
    }
    Ok(swept)
}

/// Sweeps the connections `node` registered for which `gone` holds.
async fn sweep_node(inner: &Inner, node: &str, gone: impl Fn(&str) -> bool) -> HubResult<usize> {
    let key = inner.keys.node_sockets(node);
    let members: Vec<String> = inner.cmd(redis::cmd("SMEMBERS").arg(&key)).await?;
    let mut swept = 0;
    for member in members {
        let Some((app, socket_id)) = member.split_once('\n') else {
            continue;
        };
        if gone(socket_id) {
            inner.sweep_socket(app, socket_id, node).await?;
            swept += 1;
        }
    }
    Ok(swept)
}

/// Sends the departures (vacated channels, removed members) whose grace period is over, each
/// popped by exactly one node.
async fn pop_departures(inner: &Inner) -> HubResult<()> {
    let now = now_ms().to_string();
    let most = DEPARTURES_PER_TICK.to_string();
    for app in inner.apps().iter() {
        let base = inner.keys.app(app);
        let due = inner
            .script(&scripts::POP_DEPARTURES, &[&base, &now, &most])
            .await?;
        for entry in due {
            let mut parts = entry.splitn(3, '\n');
            let event = match (parts.next(), parts.next(), parts.next()) {
                (Some("v"), Some(channel), None) => WebhookEvent::ChannelVacated {
                    channel: channel.to_string(),
                },
                (Some("m"), Some(channel), Some(user_id)) => WebhookEvent::MemberRemoved {
                    channel: channel.to_string(),
                    user_id: user_id.to_string(),
                },
                _ => continue,
            };
            let _ = inner
                .events
                .send(HubEvent::Webhook(app.clone(), event))
                .await;
        }
    }
    Ok(())
}

/// A graceful stop: the node's connections are closed; remove what is left and the node.
/// Departures are in Redis, so the other nodes send them when they fall due; webhook requests
/// still being retried are left for them too: the node marks itself dead, and the next sweep
/// takes them over.
pub async fn leave_cluster(inner: &Inner) {
    inner.ready.store(false, Ordering::Release);
    let _ = sweep_own(inner).await;
    let nodes = inner.keys.nodes();
    let node = inner.node.clone();
    let sockets = inner.keys.node_sockets(&inner.node);
    let webhooks = inner.keys.node_webhooks(&inner.node);
    let _ = inner
        .call(|mut conn| async move {
            let (pending,): (usize,) = redis::pipe()
                .hlen(&webhooks)
                .del(&sockets)
                .ignore()
                .query_async(&mut conn)
                .await?;
            let mut update = redis::cmd(if pending > 0 { "ZADD" } else { "ZREM" });
            update.arg(&nodes);
            if pending > 0 {
                update.arg(0);
            }
            update.arg(&node).query_async::<()>(&mut conn).await
        })
        .await;
}

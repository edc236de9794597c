//! The node's subscriber connection: subscribes to the topics its connections need (in the
//! order the registry asks), delivers what arrives, and reconnects with backoff when Redis
//! goes away. Losing it means events may have been missed, so every connection of the node is
//! closed with 4200 and the node refuses new ones until it is subscribed again.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::{local::user_key, nodes, Inner, OP_TIMEOUT};
use crate::{error::CloseError, frame::Frame};

pub enum Command {
    /// Subscribe, then set the flag.
    Subscribe(String, watch::Sender<bool>),
    Unsubscribe(String),
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub async fn run(inner: Arc<Inner>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut backoff = MIN_BACKOFF;
    let mut failures: u64 = 0;
    let mut was_connected = false;
    loop {
        if inner.stop.is_cancelled() {
            return;
        }
        let connected = tokio::time::timeout(OP_TIMEOUT, inner.client.get_async_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            other => {
                failures += 1;
                // One line when it starts failing, then one every ~30 attempts.
                if failures == 1 || failures.is_multiple_of(30) {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    tracing::warn!(failures, "cannot reach Redis, retrying: {why}");
                }
                // Commands that came meanwhile fail: their joins answer "unavailable".
                while commands.try_recv().is_ok() {}
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = inner.stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        inner.reachable.store(true, Ordering::Release);
        let topics = inner.local.topics();
        let subscribed = async {
            if !topics.is_empty() {
                sink.subscribe(&topics).await?;
            }
            sink.psubscribe(inner.keys.user_topics_pattern()).await
        };
        if subscribed.await.is_err() {
            inner.reachable.store(false, Ordering::Release);
            continue;
        }
        if was_connected || failures > 0 {
            // Whatever this node had in Redis may be stale or gone: sweep it before
            // admitting anyone.
            if nodes::sweep_own(&inner).await.is_err() {
                inner.reachable.store(false, Ordering::Release);
                continue;
            }
            tracing::info!(failures, "Redis reachable again: accepting connections");
        }
        nodes::beat(&inner).await;
        failures = 0;
        backoff = MIN_BACKOFF;
        was_connected = true;
        inner.ready.store(true, Ordering::Release);

        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Subscribe(topic, done)) => {
                        match tokio::time::timeout(OP_TIMEOUT, sink.subscribe(&topic)).await {
                            Ok(Ok(())) => { let _ = done.send(true); }
                            _ => break,
                        }
                    }
                    Some(Command::Unsubscribe(topic)) => {
                        if tokio::time::timeout(OP_TIMEOUT, sink.unsubscribe(&topic)).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
                message = stream.next() => match message {
                    Some(message) => deliver(&inner, &message),
                    None => break,
                },
                _ = inner.stop.cancelled() => return,
            }
        }
        lost(&inner);
    }
}

/// The subscriber connection broke: events may have been missed.
fn lost(inner: &Inner) {
    inner.ready.store(false, Ordering::Release);
    inner.reachable.store(false, Ordering::Release);
    inner.needs_sweep.store(true, Ordering::Release);
    let closed = inner.local.close_all(CloseError::ClusterLost);
    tracing::warn!(
        closed,
        "lost the Redis subscription: connections closed with 4200 so they resubscribe"
    );
}

fn deliver(inner: &Inner, message: &redis::Msg) {
    let topic = message.get_channel_name();
    let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) else {
        return;
    };
    if let Some(app) = inner.keys.app_of_user_topic(topic) {
        return deliver_user_message(inner, app, payload);
    }
    // `sequence\nexcept\nframe`
    let mut parts = payload.splitn(3, '\n');
    let (Some(seq), Some(except), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return;
    };
    inner.local.deliver(topic, seq, except, &Frame::from(text));
}

/// What a user topic carries.
#[derive(Debug, PartialEq, Eq)]
pub enum UserMessage<'a> {
    /// A `#server-to-user` event for the user's connections but `except`.
    ToUser {
        user_id: &'a str,
        except: &'a str,
        frame: &'a str,
    },
    Terminate {
        user_id: &'a str,
    },
    ToWatchers {
        user_id: &'a str,
        frame: &'a str,
    },
}

impl UserMessage<'_> {
    /// `kind\nuser id length\nexcept\n` then the user id and the frame, back to back: a user
    /// id may hold any character, a newline included, so it is measured, not delimited.
    pub fn encode(&self) -> String {
        let (kind, user_id, except, frame) = match self {
            UserMessage::ToUser {
                user_id,
                except,
                frame,
            } => ("u", user_id, *except, *frame),
            UserMessage::Terminate { user_id } => ("t", user_id, "", ""),
            UserMessage::ToWatchers { user_id, frame } => ("w", user_id, "", *frame),
        };
        format!("{kind}\n{}\n{except}\n{user_id}{frame}", user_id.len())
    }

    pub fn decode(payload: &str) -> Option<UserMessage<'_>> {
        let mut parts = payload.splitn(4, '\n');
        let (kind, len, except, rest) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let len: usize = len.parse().ok()?;
        let user_id = rest.get(..len)?;
        let frame = rest.get(len..)?;
        match kind {
            "u" => Some(UserMessage::ToUser {
                user_id,
                except,
                frame,
            }),
            "t" => Some(UserMessage::Terminate { user_id }),
            "w" => Some(UserMessage::ToWatchers { user_id, frame }),
            _ => None,
        }
    }
}

fn deliver_user_message(inner: &Inner, app: &str, payload: &str) {
    match UserMessage::decode(payload) {
        Some(UserMessage::ToUser {
            user_id,
            except,
            frame,
        }) => inner
            .local
            .deliver_to_user(&user_key(app, user_id), except, &Frame::from(frame)),
        Some(UserMessage::Terminate { user_id }) => {
            inner.local.terminate_user(&user_key(app, user_id))
        }
        Some(UserMessage::ToWatchers { user_id, frame }) => inner
            .local
            .deliver_to_watchers(&user_key(app, user_id), &Frame::from(frame)),
        None => tracing::debug!("malformed user message ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::UserMessage;

    #[test]
    fn user_messages_survive_any_user_id() {
        let messages = [
            UserMessage::ToUser {
                user_id: "bob\nalice",
                except: "1.2",
                frame: "{\"event\":\"x\"}",
            },
            UserMessage::Terminate { user_id: "\n" },
            UserMessage::ToWatchers {
                user_id: "é",
                frame: "{}",
            },
        ];
        for message in &messages {
            assert_eq!(
                UserMessage::decode(&message.encode()).as_ref(),
                Some(message)
            );
        }
        assert_eq!(UserMessage::decode("u\n99\n\nshort"), None);
    }
}

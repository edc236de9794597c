//! The node-local registry: which of this node's connections want what. Redis knows the
//! cluster's state; this knows where to put the frames that arrive for it.
//!
//! A connection joining a channel is first *pending*: the node subscribes to the channel's
//! topic, then runs the join script, which returns the sequence number of the last event
//! published before the join. Events that arrive meanwhile are buffered; those numbered after
//! the join are queued behind the `subscription_succeeded`, the others dropped. So a joiner
//! gets each event exactly once, and after its first frames.

use std::{collections::HashMap, sync::Arc};

use dashmap::DashMap;
use tokio::sync::{mpsc::UnboundedSender, watch};

use super::pubsub::Command;
use crate::{error::CloseError, frame::Frame, socket::Outbox};

/// Events buffered for one pending joiner; more closes it as too slow (the join round trip
/// took far longer than it should).
const PENDING_CAP: usize = 4096;

#[derive(Default)]
pub struct Local {
    /// By topic.
    channels: DashMap<String, LocalChannel>,
    /// By `app\nuser id`.
    users: DashMap<String, HashMap<Arc<str>, Outbox>>,
    /// By `app\nwatched user id`.
    watchers: DashMap<String, HashMap<Arc<str>, Outbox>>,
    /// The node's connections, with their app.
    sockets: DashMap<Arc<str>, (String, Outbox)>,
}

struct LocalChannel {
    live: HashMap<Arc<str>, Outbox>,
    pending: HashMap<Arc<str>, Pending>,
    /// True once the node's subscription to the topic is confirmed.
    subscribed: watch::Receiver<bool>,
}

#[derive(Default)]
struct Pending {
    frames: Vec<(u64, Frame)>,
    overflowed: bool,
}

impl Local {
    /// Topics starting with `prefix` that have a live subscriber here.
    pub fn live_channels(&self, prefix: &str) -> usize {
        self.channels
            .iter()
            .filter(|c| c.key().starts_with(prefix) && !c.live.is_empty())
            .count()
    }
}

pub fn user_key(app: &str, user_id: &str) -> String {
    format!("{app}\n{user_id}")
}

impl Local {
    pub fn add_socket(&self, app: &str, outbox: &Outbox) {
        self.sockets
            .insert(outbox.socket_id().into(), (app.to_string(), outbox.clone()));
    }

    pub fn remove_socket(&self, socket_id: &str) {
        self.sockets.remove(socket_id);
    }

    pub fn has_socket(&self, socket_id: &str) -> bool {
        self.sockets.contains_key(socket_id)
    }

    /// Closes every connection of this node (its Redis state is gone or unknown).
    pub fn close_all(&self, reason: CloseError) -> usize {
        for entry in self.sockets.iter() {
            entry.1.close(reason.clone());
        }
        self.sockets.len()
    }

    /// Closes this node's connections of one app.
    pub fn close_app(&self, app: &str, reason: CloseError) -> usize {
        let mut closed = 0;
        for entry in self.sockets.iter().filter(|e| e.0 == app) {
            entry.1.close(reason.clone());
            closed += 1;
        }
        closed
    }

    /// Every topic the node must be subscribed to for its channels.
    pub fn topics(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.key().clone()).collect()
    }

    /// Starts a join: the connection is pending on `topic`. The returned receiver turns true
    /// once the node is subscribed to it.
    pub fn enter(
        &self,
        topic: &str,
        outbox: &Outbox,
        commands: &UnboundedSender<Command>,
    ) -> watch::Receiver<bool> {
        let mut channel = self.channels.entry(topic.to_string()).or_insert_with(|| {
            let (tx, rx) = watch::channel(false);
            // Sent under the entry's lock, so it is ordered after any unsubscribe of an
            // earlier entry for the same topic.
            let _ = commands.send(Command::Subscribe(topic.to_string(), tx));
            LocalChannel {
                live: HashMap::new(),
                pending: HashMap::new(),
                subscribed: rx,
            }
        });
        channel
            .pending
            .insert(outbox.socket_id().into(), Pending::default());
        channel.subscribed.clone()
    }

    /// Ends a join that succeeded: queues `first` and the buffered events numbered after
    /// `seq`, then delivers live.
    pub fn admit(&self, topic: &str, outbox: &Outbox, first: Vec<Frame>, seq: u64) {
        let Some(mut channel) = self.channels.get_mut(topic) else {
            return;
        };
        let pending = channel
            .pending
            .remove(outbox.socket_id())
            .unwrap_or_default();
        for frame in first {
            outbox.send(frame);
        }
        if pending.overflowed {
            outbox.close(CloseError::OverCapacity);
        }
        for (n, frame) in pending.frames {
            if n > seq {
                outbox.send(frame);
            }
        }
        channel
            .live
            .insert(outbox.socket_id().into(), outbox.clone());
    }

    /// Ends a join that failed, or a membership: the connection no longer wants `topic`.
    pub fn leave(&self, topic: &str, socket_id: &str, commands: &UnboundedSender<Command>) {
        let emptied = self.channels.remove_if_mut(topic, |_, channel| {
            channel.live.remove(socket_id);
            channel.pending.remove(socket_id);
            channel.live.is_empty() && channel.pending.is_empty()
        });
        if emptied.is_some() {
            // After the removal, so a new entry's subscribe is queued after this.
            let _ = commands.send(Command::Unsubscribe(topic.to_string()));
        }
    }

    /// An event published on `topic`, numbered `seq`.
    pub fn deliver(&self, topic: &str, seq: u64, except: &str, frame: &Frame) {
        let Some(mut channel) = self.channels.get_mut(topic) else {
            return;
        };
        for (id, outbox) in &channel.live {
            if **id != *except {
                outbox.send(frame.clone());
            }
        }
        for (id, pending) in channel.pending.iter_mut() {
            if **id == *except {
                continue;
            }
            if pending.frames.len() < PENDING_CAP {
                pending.frames.push((seq, frame.clone()));
            } else {
                pending.overflowed = true;
            }
        }
    }

    pub fn add_user(&self, app: &str, user_id: &str, outbox: &Outbox) {
        self.users
            .entry(user_key(app, user_id))
            .or_default()
            .insert(outbox.socket_id().into(), outbox.clone());
    }

    pub fn remove_user(&self, app: &str, user_id: &str, socket_id: &str) {
        remove_from(&self.users, &user_key(app, user_id), socket_id);
    }

    pub fn deliver_to_user(&self, key: &str, except: &str, frame: &Frame) {
        if let Some(sockets) = self.users.get(key) {
            for (id, outbox) in sockets.iter() {
                if **id != *except {
                    outbox.send(frame.clone());
                }
            }
        }
    }

    pub fn terminate_user(&self, key: &str) {
        if let Some(sockets) = self.users.get(key) {
            for outbox in sockets.values() {
                outbox.close(CloseError::Terminated);
            }
        }
    }

    pub fn watch(&self, app: &str, user_ids: &[String], outbox: &Outbox) {
        for id in user_ids {
            self.watchers
                .entry(user_key(app, id))
                .or_default()
                .insert(outbox.socket_id().into(), outbox.clone());
        }
    }

    pub fn unwatch(&self, app: &str, user_ids: &[String], socket_id: &str) {
        for id in user_ids {
            remove_from(&self.watchers, &user_key(app, id), socket_id);
        }
    }

    pub fn deliver_to_watchers(&self, key: &str, frame: &Frame) {
        if let Some(sockets) = self.watchers.get(key) {
            for outbox in sockets.values() {
                outbox.send(frame.clone());
            }
        }
    }
}

fn remove_from(map: &DashMap<String, HashMap<Arc<str>, Outbox>>, key: &str, socket_id: &str) {
    map.remove_if_mut(key, |_, sockets| {
        sockets.remove(socket_id);
        sockets.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::socket::{Bounds, Queue};

    fn socket(id: &str) -> (Outbox, Queue) {
        Outbox::new(
            id.into(),
            Bounds {
                frames: 64,
                bytes: 1 << 20,
            },
        )
    }

    fn drain(queue: &mut Queue) -> Vec<String> {
        std::iter::from_fn(|| queue.try_recv())
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn a_joiner_gets_what_was_published_after_its_join_once_and_after_its_first_frames() {
        let local = Local::default();
        let (tx, mut commands) = mpsc::unbounded_channel();
        let (s1, mut q1) = socket("1.1");
        let _ready = local.enter("t", &s1, &tx);
        assert!(matches!(commands.try_recv(), Ok(Command::Subscribe(t, _)) if t == "t"));
        local.deliver("t", 4, "", &Frame::from("before"));
        local.deliver("t", 6, "", &Frame::from("after"));
        local.deliver("t", 7, "1.1", &Frame::from("own"));
        local.admit("t", &s1, vec![Frame::from("first")], 5);
        local.deliver("t", 8, "", &Frame::from("live"));
        assert_eq!(drain(&mut q1), ["first", "after", "live"]);
        local.leave("t", "1.1", &tx);
        assert!(matches!(commands.try_recv(), Ok(Command::Unsubscribe(t)) if t == "t"));
        assert!(local.topics().is_empty());
    }

    #[test]
    fn a_joiner_that_misses_more_than_the_pending_cap_is_closed_as_too_slow() {
        let local = Local::default();
        let (tx, _commands) = mpsc::unbounded_channel();
        let (s1, _q1) = socket("1.1");
        let _ready = local.enter("t", &s1, &tx);
        for n in 0..PENDING_CAP as u64 + 1 {
            local.deliver("t", n + 1, "", &Frame::from("e"));
        }
        let buffered = local.channels.get("t").unwrap().pending["1.1"].frames.len();
        assert_eq!(buffered, PENDING_CAP, "the buffer stops at its cap");
        local.admit("t", &s1, vec![], 0);
        assert_eq!(s1.close_reason(), Some(CloseError::OverCapacity));
    }

    #[test]
    fn the_topic_is_subscribed_once_and_released_with_its_last_connection() {
        let local = Local::default();
        let (tx, mut commands) = mpsc::unbounded_channel();
        let (s1, _q1) = socket("1.1");
        let (s2, _q2) = socket("1.2");
        let _ = local.enter("t", &s1, &tx);
        let _ = local.enter("t", &s2, &tx);
        local.admit("t", &s1, vec![], 0);
        local.admit("t", &s2, vec![], 0);
        assert!(matches!(commands.try_recv(), Ok(Command::Subscribe(..))));
        assert!(commands.try_recv().is_err());
        local.leave("t", "1.1", &tx);
        assert!(commands.try_recv().is_err());
        local.leave("t", "1.2", &tx);
        assert!(matches!(commands.try_recv(), Ok(Command::Unsubscribe(_))));
    }
}

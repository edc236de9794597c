//! One stream of what happens in the server: connections, subscriptions, published events and
//! webhooks. Every observer (today the inspection records of the test double; the console and
//! metrics are meant to follow) reads this one stream instead of hooks of its own in each
//! module. With no observer, emitting is a check of an empty list: the hot path pays nothing.

use std::sync::Arc;

use crate::{socket::Outbox, webhook::WebhookEvent};

/// Where a published event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The REST API (single, multi-channel, batch).
    Api,
    /// A client event.
    Client,
    /// A server-to-user event (`#server-to-user-{id}` through the REST API).
    User,
}

/// An event delivered to a channel (or a user).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    #[serde(rename = "app_id")]
    pub app: String,
    pub channel: String,
    pub event: String,
    /// The event's data as subscribers get it: a string as sent, anything else as its JSON.
    pub data: String,
    pub source: Source,
    /// The excluded socket (REST) or the sender (client events).
    pub socket_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Happening {
    Connected {
        app: String,
        socket: Outbox,
    },
    Disconnected {
        socket_id: String,
    },
    Subscribed {
        socket_id: String,
        channel: String,
    },
    Unsubscribed {
        socket_id: String,
        channel: String,
    },
    SignedIn {
        socket_id: String,
        user_id: String,
    },
    Published(Published),
    /// A webhook event left the grace period and batching: `targets` are the receivers that
    /// want it (possibly none), `id` names it in later [`Happening::Delivery`]s.
    Webhook {
        id: u64,
        app: String,
        event: WebhookEvent,
        targets: Vec<String>,
    },
    /// A text frame a client sent.
    FrameIn {
        socket_id: String,
        text: String,
    },
    /// A binary frame a client sent (refused: the protocol is text).
    BinaryIn {
        socket_id: String,
    },
    /// A text frame written to a client.
    FrameOut {
        socket_id: String,
        text: String,
    },
    /// A connection ended: closed by the server with `code`, or by the client (`None`).
    Closed {
        socket_id: String,
        code: Option<u16>,
    },
    /// A REST API call, before it is handled (so it precedes what it causes).
    RestCall {
        id: u64,
        method: String,
        path: String,
        query: Vec<(String, String)>,
        body: String,
    },
    /// The answer to the REST call `id`.
    RestAnswer {
        id: u64,
        status: u16,
        response: String,
    },
    /// A webhook request to `url` carrying the events `ids` ended.
    Delivery {
        ids: Vec<u64>,
        url: String,
        delivered: bool,
        attempts: u32,
    },
}

/// Something that wants to see every happening. Called inline: it must be quick and must not
/// block.
pub trait Observe: Send + Sync + 'static {
    fn observe(&self, happening: &Happening);

    /// Whether it wants the wire itself (frames, closes, REST calls), which costs a copy per
    /// frame: only observers that say so get them, through [`Happenings::emit_wire`].
    fn wants_wire(&self) -> bool {
        false
    }
}

#[derive(Clone, Default)]
pub struct Happenings {
    observers: Arc<Vec<Arc<dyn Observe>>>,
    /// The observers that want the wire.
    wire: Arc<Vec<Arc<dyn Observe>>>,
}

impl std::fmt::Debug for Happenings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Happenings({} observers)", self.observers.len())
    }
}

impl Happenings {
    pub fn new(observers: Vec<Arc<dyn Observe>>) -> Self {
        let wire = observers
            .iter()
            .filter(|o| o.wants_wire())
            .cloned()
            .collect();
        Happenings {
            observers: Arc::new(observers),
            wire: Arc::new(wire),
        }
    }

    /// Whether anyone is watching, so callers can skip building a happening.
    pub fn watched(&self) -> bool {
        !self.observers.is_empty()
    }

    /// Builds the happening only when someone watches.
    pub fn emit(&self, happening: impl FnOnce() -> Happening) {
        dispatch(&self.observers, happening);
    }

    /// The same for the wire (frames, closes, REST calls): built only for the observers that
    /// want it, so inspection alone adds nothing per frame.
    pub fn emit_wire(&self, happening: impl FnOnce() -> Happening) {
        dispatch(&self.wire, happening);
    }

    /// Whether an observer wants the wire (the REST middleware is installed only then).
    pub fn wire_watched(&self) -> bool {
        !self.wire.is_empty()
    }
}

fn dispatch(observers: &[Arc<dyn Observe>], happening: impl FnOnce() -> Happening) {
    if observers.is_empty() {
        return;
    }
    let happening = happening();
    for observer in observers {
        observer.observe(&happening);
    }
}

//! One stream of what happens in the server: connections, subscriptions, published events,
//! webhooks and refusals. Every observer (the inspection records of the test double, the
//! transcript recorder, the metrics, the live console) reads this one stream instead of hooks
//! of its own in each module. With no observer, emitting is a check of an empty list: the hot path pays nothing.

use std::sync::Arc;

use crate::{metrics::Limit, socket::Outbox, webhook::WebhookEvent};

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
        /// The browser's `Origin` header, or the URI the client asked for.
        origin: String,
    },
    /// A connection ended and everything it held is released.
    Disconnected {
        app: String,
        socket_id: String,
        /// The channels it was subscribed to when it ended.
        channels: Vec<String>,
        lifetime_secs: u64,
        /// The close code the server sent, if it closed the connection.
        code: Option<u16>,
    },
    /// A connection was refused before it was served (unknown origin, over quota), with the
    /// close code it got. Unknown app keys have no app to report to.
    Refused {
        app: String,
        code: u16,
        reason: String,
    },
    Subscribed {
        app: String,
        socket_id: String,
        channel: String,
    },
    /// A `pusher:unsubscribe` (leaving on disconnect is part of [`Happening::Disconnected`]).
    Unsubscribed {
        app: String,
        socket_id: String,
        channel: String,
    },
    SignedIn {
        app: String,
        socket_id: String,
        user_id: String,
    },
    /// A channel's membership changed, when it happened (webhooks report the same later, after
    /// their grace period and batching, and only to receivers that asked).
    Membership {
        app: String,
        channel: String,
        change: Change,
    },
    /// See [`Happenings::emit_published`].
    Published(Published),
    /// A REST event, once for all its channels, with its data: see
    /// [`Happenings::emit_published`]. Server-to-user channels are reported as
    /// [`Happening::Published`] only.
    ApiMessage {
        app: String,
        event: String,
        channels: Vec<String>,
        data: String,
        socket_id: Option<String>,
    },
    /// A REST event was published to `channels` channels (data left out).
    ApiPublished { app: String, channels: usize },
    /// A webhook event left the grace period and batching: `targets` are the receivers that
    /// want it (possibly none), `id` names it in later [`Happening::Delivery`]s.
    Webhook {
        id: u64,
        app: String,
        event: WebhookEvent,
        targets: Vec<String>,
    },
    /// A text frame a client sent.
    FrameIn { socket_id: String, text: String },
    /// A binary frame a client sent (refused: the protocol is text).
    BinaryIn { socket_id: String },
    /// A text frame written to a client.
    FrameOut { socket_id: String, text: String },
    /// A connection ended: closed by the server with `code`, or (`None`) as `end` says:
    /// `client` (its close frame), `gone` (the socket failed), `stalled` (it stopped reading).
    Closed {
        app: String,
        socket_id: String,
        code: Option<u16>,
        end: &'static str,
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
    /// A webhook request to `url` carrying the events `ids` of `app` ended.
    Delivery {
        app: String,
        ids: Vec<u64>,
        url: String,
        delivered: bool,
        attempts: u32,
    },
    /// A REST API call was answered (for metrics: no bodies).
    ApiAnswered {
        /// A configured app's id, or `unknown`.
        app: String,
        endpoint: &'static str,
        status: u16,
        seconds: f64,
    },
    /// A webhook event was dropped: the queue, or the app's share of it, was full.
    WebhookDropped { app: String },
    /// A rate limit refused something.
    RateLimited { app: String, limit: Limit },
}

/// What [`Happening::Membership`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Occupied,
    Vacated,
    MemberAdded {
        user_id: String,
    },
    MemberRemoved {
        user_id: String,
    },
    /// A subscriber of a cache channel found nothing cached.
    CacheMiss,
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

    /// Whether it wants each published event with its data ([`Happening::Published`], a copy
    /// per channel, and [`Happening::ApiMessage`]); those that do not see
    /// [`Happening::ApiPublished`] only.
    fn wants_published(&self) -> bool {
        true
    }

    /// Whether it wants them right now: asked at each event, so an observer that has nobody
    /// to show them to (a console with no page open) costs one call, not a copy.
    fn watching_published(&self) -> bool {
        true
    }

    /// Whether it wants every webhook event, also those no receiver of the app asked for
    /// (which then go through the dispatcher just to be seen).
    fn wants_unwanted_webhooks(&self) -> bool {
        false
    }
}

#[derive(Clone, Default)]
pub struct Happenings {
    observers: Arc<Vec<Arc<dyn Observe>>>,
    /// The observers that want the wire.
    wire: Arc<Vec<Arc<dyn Observe>>>,
    /// The observers that want published events with their data.
    published: Arc<Vec<Arc<dyn Observe>>>,
    unwanted_webhooks: bool,
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
        let published = observers
            .iter()
            .filter(|o| o.wants_published())
            .cloned()
            .collect();
        Happenings {
            published: Arc::new(published),
            unwanted_webhooks: observers.iter().any(|o| o.wants_unwanted_webhooks()),
            observers: Arc::new(observers),
            wire: Arc::new(wire),
        }
    }

    /// Whether an observer wants webhook events that no receiver asked for.
    pub fn unwanted_webhooks_watched(&self) -> bool {
        self.unwanted_webhooks
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

    /// A published event with its data, built only for the observers that want it now.
    pub fn emit_published(&self, published: impl FnOnce() -> Published) {
        self.emit_with_data(|| Happening::Published(published()));
    }

    /// A [`Happening::ApiMessage`] (or another happening that carries event data), built only
    /// for the observers that want published events now.
    pub fn emit_with_data(&self, happening: impl FnOnce() -> Happening) {
        if !self.published.iter().any(|o| o.watching_published()) {
            return;
        }
        let happening = happening();
        for observer in self.published.iter().filter(|o| o.watching_published()) {
            observer.observe(&happening);
        }
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

//! The channel hub: who is subscribed to what, presence membership, cache channels and fan-out.
//!
//! Everything goes through the [`Adapter`] trait so that the WebSocket and HTTP code never know
//! whether state lives in this process ([`memory::MemoryAdapter`]) or is shared between nodes
//! (`crate::cluster::ClusterAdapter`). What a transition means for other clients and webhooks
//! lives in `crate::transitions`, whichever adapter reported it.

pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    frame::{Frame, Member},
    socket::Outbox,
};

/// A connection joining a channel.
pub struct Subscriber<'a> {
    pub socket: &'a Outbox,
    /// Set on presence channels.
    pub member: Option<Member>,
    pub max_members: usize,
}

/// What a successful subscription changed, for the caller's follow-up frames and webhooks.
#[derive(Debug, Default)]
pub struct Joined {
    /// The channel went from 0 to 1 subscriber.
    pub occupied: bool,
    /// Presence: this user id had no other connection on the channel.
    pub member_added: bool,
    /// The channel went from 0 to 1 subscriber, and that is news for webhooks: not a return
    /// inside the grace period of a vacancy (adapters that leave the grace period to the
    /// webhook dispatcher report every occupation).
    pub occupied_webhook: bool,
    /// The same for `member_added`.
    pub member_added_webhook: bool,
    /// Presence: every member, the joiner included.
    pub members: Vec<Member>,
    /// Cache channels: the last cached event, if it has not expired.
    pub cached: Option<Frame>,
    /// Cache channels: nothing is cached and no earlier subscriber has been told so since the
    /// cache emptied, so this miss is worth one `cache_miss` webhook.
    pub first_cache_miss: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum JoinError {
    PresenceFull,
    Unavailable,
}

/// The shared state could not be read or changed in time (a cluster whose Redis is down or
/// slow). Callers answer with an error instead of a guess: 503 on REST, 4200 on a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cluster state is unavailable")]
pub struct Unavailable;

pub type HubResult<T> = Result<T, Unavailable>;

/// Why a connection was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    OverQuota,
    Unavailable,
}

/// What the hub reports by itself, not as the answer to a call (cluster mode): departures
/// whose grace period passed with nobody back, and the channels a dead node's connections left.
#[derive(Debug)]
pub enum HubEvent {
    /// A settled webhook event of app `.0`, found by whichever node popped it.
    Webhook(String, crate::webhook::WebhookEvent),
    /// A connection that is gone left `channel` of `app` (swept after its node died).
    Left {
        app: String,
        channel: String,
        left: Left,
    },
    /// A swept user went offline: watchers must hear it.
    Offline { app: String, user_id: String },
    /// A webhook request a dead node was delivering, to be finished here.
    Adopted {
        request: crate::webhook::Request,
        deadline_ms: u64,
    },
}

/// What an unsubscription (or a disconnect) changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// The channel has no subscribers left.
    pub vacated: bool,
    /// Presence: the user id whose last connection this was.
    pub member_removed: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStats {
    pub subscription_count: usize,
    /// Distinct presence users; 0 on other channels.
    pub user_count: usize,
}

/// A cache channel's last event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEvent {
    pub data: String,
    pub ttl_seconds: u64,
}

/// Builds the frames a subscriber must receive before anything else on the channel (the
/// `subscription_succeeded` and the cache replay), from what the join changed.
pub type FirstFrames<'a> = &'a (dyn Fn(&Joined) -> Vec<Frame> + Send + Sync);

/// The one interface for channel state and delivery.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// Registers a connection; fails when the app already has `max` connections.
    async fn add_socket(
        &self,
        app: &str,
        socket: &Outbox,
        max: Option<usize>,
    ) -> Result<(), Refusal>;

    /// Forgets a connection. Its channels must have been left first.
    async fn remove_socket(&self, app: &str, socket_id: &str);

    /// Adds `sub` to `channel`, then queues `first_frames` to it before any other frame of the
    /// channel can reach it. Fails only when a new presence member would exceed the limit.
    async fn subscribe(
        &self,
        app: &str,
        channel: &str,
        sub: Subscriber<'_>,
        first_frames: FirstFrames<'_>,
    ) -> Result<Joined, JoinError>;

    async fn unsubscribe(&self, app: &str, channel: &str, socket_id: &str) -> Left;

    /// Delivers `frame` to every subscriber of `channel` but `except`. With `cache`, the frame
    /// also becomes the channel's cached event for `ttl` seconds.
    async fn publish(
        &self,
        app: &str,
        channel: &str,
        frame: Frame,
        except: Option<&str>,
        cache: Option<CacheEntry<'_>>,
    ) -> HubResult<()>;

    /// Publishes the channel's current subscription count to its subscribers and returns it,
    /// read and sent in one step so that concurrent updates arrive in the order they were read.
    async fn publish_subscription_count(&self, app: &str, channel: &str) -> HubResult<usize>;

    /// Occupied channels of the app, with their counts.
    async fn channels(&self, app: &str) -> HubResult<Vec<(String, ChannelStats)>>;

    async fn channel_stats(&self, app: &str, channel: &str) -> HubResult<ChannelStats>;

    async fn cached_event(&self, app: &str, channel: &str) -> HubResult<Option<CachedEvent>>;

    /// Presence members, sorted by user id.
    async fn members(&self, app: &str, channel: &str) -> HubResult<Vec<Member>>;

    /// Records that `socket` is signed in as `user_id`; true when it is the user's first
    /// connection (the user came online).
    async fn add_user(&self, app: &str, user_id: &str, socket: &Outbox) -> HubResult<bool>;

    /// Forgets a signed-in connection; true when it was the user's last (the user went offline).
    async fn remove_user(&self, app: &str, user_id: &str, socket_id: &str) -> bool;

    /// Delivers to every connection signed in as `user_id` (`#server-to-user-{id}` events).
    async fn publish_to_user(
        &self,
        app: &str,
        user_id: &str,
        frame: Frame,
        except: Option<&str>,
    ) -> HubResult<()>;

    /// Closes every connection signed in as `user_id`.
    async fn terminate_user(&self, app: &str, user_id: &str) -> HubResult<()>;

    /// Which of `user_ids` have at least one signed-in connection.
    async fn online_users(&self, app: &str, user_ids: &[String]) -> HubResult<Vec<String>>;

    /// `socket` wants watchlist events about `user_ids`.
    async fn watch(&self, app: &str, socket: &Outbox, user_ids: &[String]) -> HubResult<()>;

    async fn unwatch(&self, app: &str, socket_id: &str, user_ids: &[String]);

    /// Delivers to every connection watching `user_id`.
    async fn publish_to_watchers(&self, app: &str, user_id: &str, frame: Frame) -> HubResult<()>;

    /// The events the hub reports by itself, taken once; `None` when the adapter has none (the
    /// in-process one leaves the grace period to the webhook dispatcher).
    fn events(&self) -> Option<tokio::sync::mpsc::Receiver<HubEvent>> {
        None
    }

    /// Where webhook requests being delivered are written down so that another node can
    /// finish them (cluster mode).
    fn webhook_journal(&self) -> Option<Arc<dyn crate::webhook::Journal>> {
        None
    }

    /// True when the adapter applies the webhook grace period itself: joins report whether
    /// they are news (`occupied_webhook`, `member_added_webhook`) and departures arrive through
    /// [`Adapter::events`] once the grace period has passed.
    fn settles_grace(&self) -> bool {
        false
    }

    /// Each app's channels with a subscriber on this node (apps with none may be left out).
    fn local_channels(&self) -> Vec<(String, usize)>;

    /// Forgets every cache channel's event (the test double's reset).
    async fn clear_caches(&self) {}

    /// The apps served are now these (an apps store changed): a cluster node looks after
    /// their shared state too.
    fn apps_changed(&self, _ids: Vec<String>) {}

    /// Closes every connection of `app` on this node (the app was disabled or removed); how
    /// many.
    fn close_app(&self, app: &str, reason: crate::error::CloseError) -> usize;

    /// Whether the adapter accepts connections now (a cluster node that cannot reach Redis
    /// does not).
    fn ready(&self) -> bool {
        true
    }

    /// Called once, when shutdown starts and the connections have closed: a cluster node
    /// removes what is left of its state.
    async fn shutdown(&self) {}
}

/// What to remember for a cache channel.
pub struct CacheEntry<'a> {
    pub data: &'a str,
    pub ttl_seconds: u64,
}

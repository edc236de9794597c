//! The channel hub: who is subscribed to what, presence membership, cache channels and fan-out.
//!
//! Everything goes through the [`Adapter`] trait so that the WebSocket and HTTP code never know
//! whether state lives in this process ([`memory::MemoryAdapter`]) or is shared between nodes.

pub mod memory;

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
    async fn add_socket(&self, app: &str, socket: &Outbox, max: Option<usize>) -> Result<(), ()>;

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
    );

    /// Occupied channels of the app, with their counts.
    async fn channels(&self, app: &str) -> Vec<(String, ChannelStats)>;

    async fn channel_stats(&self, app: &str, channel: &str) -> ChannelStats;

    async fn cached_event(&self, app: &str, channel: &str) -> Option<CachedEvent>;

    /// Presence members, sorted by user id.
    async fn members(&self, app: &str, channel: &str) -> Vec<Member>;

    /// Records that `socket` is signed in as `user_id`; true when it is the user's first
    /// connection (the user came online).
    async fn add_user(&self, app: &str, user_id: &str, socket: &Outbox) -> bool;

    /// Forgets a signed-in connection; true when it was the user's last (the user went offline).
    async fn remove_user(&self, app: &str, user_id: &str, socket_id: &str) -> bool;

    /// Delivers to every connection signed in as `user_id` (`#server-to-user-{id}` events).
    async fn publish_to_user(&self, app: &str, user_id: &str, frame: Frame, except: Option<&str>);

    /// Closes every connection signed in as `user_id`; returns how many.
    async fn terminate_user(&self, app: &str, user_id: &str) -> usize;

    /// Which of `user_ids` have at least one signed-in connection.
    async fn online_users(&self, app: &str, user_ids: &[String]) -> Vec<String>;

    /// `socket` wants watchlist events about `user_ids`.
    async fn watch(&self, app: &str, socket: &Outbox, user_ids: &[String]);

    async fn unwatch(&self, app: &str, socket_id: &str, user_ids: &[String]);

    /// Delivers to every connection watching `user_id`.
    async fn publish_to_watchers(&self, app: &str, user_id: &str, frame: Frame);
}

/// What to remember for a cache channel.
pub struct CacheEntry<'a> {
    pub data: &'a str,
    pub ttl_seconds: u64,
}

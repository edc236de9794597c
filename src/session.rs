//! Per-connection protocol state: the app, the subscriptions and the client-event rate window.
//! Commands in `cmd/` read and change it.

use std::{collections::HashMap, sync::Arc, time::Duration};

// tokio's clock, so the paused clock in tests drives the rate limits too.
use tokio::time::Instant;

use crate::{
    config::AppConfig,
    error::FrameError,
    frame::{self, Frame},
    socket::Outbox,
    state::ServerState,
};

pub struct Session {
    pub state: Arc<ServerState>,
    pub app: Arc<AppConfig>,
    pub outbox: Outbox,
    /// Channel name → presence user id (for presence channels).
    pub subscriptions: HashMap<String, Option<String>>,
    pub client_event_window: RateWindow,
    /// Subscribes and unsubscribes, so one connection cannot churn channels (and their
    /// occupied/vacated webhooks) without limit.
    pub subscription_bucket: TokenBucket,
    /// Set by a successful `pusher:signin`.
    pub user: Option<SignedIn>,
    /// Signed in or subscribed to a channel that needs authorization (authorized connections).
    pub authorized: bool,
}

pub struct SignedIn {
    pub id: String,
    /// Watched user ids (watchlist events enabled only).
    pub watching: Vec<String>,
}

impl Session {
    /// Counts a refusal by one of the connection's rate limits.
    pub fn rate_limited(&self, limit: crate::metrics::Limit) {
        self.state
            .happenings
            .emit(|| crate::happenings::Happening::RateLimited {
                app: self.app.id.clone(),
                limit,
            });
    }

    pub fn new(state: Arc<ServerState>, app: Arc<AppConfig>, outbox: Outbox) -> Self {
        let rate = app.client_event_rate;
        let subscription_bucket =
            TokenBucket::new(app.max_channels_per_connection, app.subscription_rate);
        Session {
            state,
            app,
            outbox,
            subscriptions: HashMap::new(),
            client_event_window: RateWindow::new(rate, Duration::from_secs(1)),
            subscription_bucket,
            user: None,
            authorized: false,
        }
    }

    pub fn socket_id(&self) -> &str {
        self.outbox.socket_id()
    }

    pub fn send(&self, frame: Frame) {
        self.outbox.send(frame);
    }

    /// Reports a rejected frame: `pusher:error`, plus the channel-scoped
    /// `pusher:subscription_error` when a subscription to `channel` failed.
    pub fn send_error(&self, error: &FrameError, channel: Option<&str>) {
        let message = error.to_string();
        self.send(frame::error(&message, error.code()));
        if let (Some(channel), Some((kind, status))) = (channel, error.subscription_error_kind()) {
            self.send(frame::subscription_error(channel, kind, &message, status));
        }
    }

    /// Leaves every channel and signs out, as on disconnect.
    pub async fn close(&mut self) {
        let channels: Vec<String> = self.subscriptions.keys().cloned().collect();
        for channel in channels {
            crate::cmd::unsubscribe::leave(self, &channel).await;
            // A connection with many channels must not hold its worker thread while the other
            // connections' pings wait.
            tokio::task::consume_budget().await;
        }
        crate::cmd::signin::sign_out(self).await;
    }
}

/// A fixed one-second window: at most `limit` events per window.
#[derive(Debug)]
pub struct RateWindow {
    limit: u32,
    length: Duration,
    /// Start of the current window: the first event after the previous window ended.
    started: Option<Instant>,
    count: u32,
}

impl RateWindow {
    pub fn new(limit: u32, length: Duration) -> Self {
        RateWindow {
            limit,
            length,
            started: None,
            count: 0,
        }
    }

    /// Counts one event at `now`; false when it is over the limit (and is not counted).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self
            .started
            .is_none_or(|started| now.duration_since(started) >= self.length)
        {
            self.started = Some(now);
            self.count = 0;
        }
        if self.count >= self.limit {
            return false;
        }
        self.count += 1;
        true
    }
}

/// A bucket of `capacity` tokens refilled at `per_second`: bursts up to the capacity, then the
/// rate.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Option<Instant>,
}

impl TokenBucket {
    pub fn new(capacity: usize, per_second: u32) -> Self {
        TokenBucket {
            capacity: capacity as f64,
            per_second: f64::from(per_second),
            tokens: capacity as f64,
            updated: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.updated {
            let earned = now.saturating_duration_since(at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + earned).min(self.capacity);
        }
        self.updated = Some(now);
    }

    /// Takes a token at `now`; false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Whether the bucket has refilled to its capacity by `now` (nothing spent lately).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }

    /// Takes a token if there is one, never refusing.
    pub fn spend(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    pub fn per_second(&self) -> u32 {
        self.per_second as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_allows_the_limit_then_resets() {
        let start = Instant::now();
        let mut w = RateWindow::new(10, Duration::from_secs(1));
        let allowed = (0..11).filter(|_| w.allow(start)).count();
        assert_eq!(allowed, 10);
        assert!(!w.allow(start + Duration::from_millis(999)));
        assert!(w.allow(start + Duration::from_millis(1000)));
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(5, 2);
        assert_eq!((0..10).filter(|_| b.take(start)).count(), 5);
        assert!(!b.take(start + Duration::from_millis(499)));
        // One second earns two tokens.
        let second = start + Duration::from_millis(1000);
        assert!(b.take(second));
        assert!(b.take(second));
        assert!(!b.take(second));
        b.spend(start + Duration::from_millis(1500));
        assert!(!b.take(start + Duration::from_millis(1500)));
        // Never more than the capacity, however long it waits.
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 5);
    }
}

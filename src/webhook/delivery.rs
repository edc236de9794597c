//! Sending webhook requests: the exact headers the server SDKs' validators check, one
//! semaphore of slots per receiver URL, and exponential backoff on errors, timeouts, 5xx, 408
//! and 429 until the retry window closes. In a cluster each request being delivered is written
//! down in a [`Journal`], so that another node finishes it if this one dies.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::WebhookStats;
use crate::{
    config::WebhookDelivery,
    happenings::{Happening, Happenings},
};
use tokio_util::sync::CancellationToken;

const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One signed request, as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub url: String,
    pub key: String,
    pub signature: String,
    pub body: String,
    /// The events in the body, as the happenings name them.
    #[serde(default)]
    pub ids: Vec<u64>,
    /// The app's id.
    #[serde(default)]
    pub app: String,
}

/// Where requests being delivered are written down, with the time their retry window closes
/// (ms since the epoch), until they are delivered or given up.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Returns the entry's id, or `None` if it could not be written (the request is still
    /// sent; only its survival of this node is lost).
    async fn record(&self, request: &Request, deadline_ms: u64) -> Option<String>;
    async fn done(&self, id: &str);
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a request needs to be sent, shared by the dispatcher and by adopted requests.
pub struct Deliverer {
    client: reqwest::Client,
    settings: WebhookDelivery,
    stats: Arc<WebhookStats>,
    /// One semaphore per receiver URL, so a receiver that never answers holds only its own
    /// slots.
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    journal: Option<Arc<dyn Journal>>,
    happenings: Happenings,
    /// Cancelled (and replaced) to stop every delivery under way.
    cancel: Mutex<CancellationToken>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("journal", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    pub fn new(
        settings: WebhookDelivery,
        stats: Arc<WebhookStats>,
        journal: Option<Arc<dyn Journal>>,
        happenings: Happenings,
    ) -> Arc<Deliverer> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .build()
            .expect("HTTP client");
        Arc::new(Deliverer {
            client,
            settings,
            stats,
            slots: Mutex::default(),
            journal,
            happenings,
            cancel: Mutex::default(),
        })
    }

    pub fn cancel_all(&self) {
        let mut cancel = self.cancel.lock().expect("not poisoned");
        cancel.cancel();
        *cancel = CancellationToken::new();
    }

    fn slots(&self, url: &str) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().expect("not poisoned");
        slots
            .entry(url.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_in_flight.max(1))))
            .clone()
    }

    /// Delivers a new request in its own task; `hold` is dropped when it is done.
    pub fn send<H: Send + 'static>(self: &Arc<Self>, request: Request, hold: H) {
        let deadline_ms = now_ms() + self.settings.retry_window_ms;
        self.spawn(request, deadline_ms, hold);
    }

    /// Goes on with a request another node started, until its retry window closes.
    pub fn adopt(self: &Arc<Self>, request: Request, deadline_ms: u64) {
        self.spawn(request, deadline_ms, ());
    }

    fn spawn<H: Send + 'static>(self: &Arc<Self>, request: Request, deadline_ms: u64, hold: H) {
        let this = self.clone();
        let cancelled = self.cancel.lock().expect("not poisoned").clone();
        tokio::spawn(async move {
            let entry = match &this.journal {
                Some(journal) => journal.record(&request, deadline_ms).await,
                None => None,
            };
            let outcome = tokio::select! {
                outcome = this.send_with_retries(&request, deadline_ms) => Some(outcome),
                _ = cancelled.cancelled() => None,
            };
            if let (Some(journal), Some(id)) = (&this.journal, entry) {
                journal.done(&id).await;
            }
            if let Some((delivered, attempts)) = outcome {
                this.happenings.emit(|| Happening::Delivery {
                    app: request.app.clone(),
                    ids: request.ids.clone(),
                    url: request.url.clone(),
                    delivered,
                    attempts,
                });
            }
            drop(hold);
        });
    }

    /// Whether it was delivered, and after how many attempts.
    async fn send_with_retries(&self, request: &Request, deadline_ms: u64) -> (bool, u32) {
        let slots = self.slots(&request.url);
        let stats = &self.stats;
        let mut delay = Duration::from_millis(self.settings.retry_initial_ms.max(1));
        let mut attempt = 1u32;
        loop {
            // Held for the request only, not through the backoff sleep.
            let slot = slots.acquire().await.expect("never closed");
            let outcome = self
                .client
                .post(&request.url)
                // Exactly this: pusher-http-node's validator rejects a charset suffix.
                .header("Content-Type", "application/json")
                .header("X-Pusher-Key", &request.key)
                .header("X-Pusher-Signature", &request.signature)
                .body(request.body.clone())
                .send()
                .await;
            drop(slot);
            let problem = match outcome {
                Ok(response) if response.status().is_success() => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return (true, attempt);
                }
                Ok(response) if !retry_after(response.status()) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(url = %request.url, attempt, status = %response.status(), "webhook refused by the receiver: not retried");
                    return (false, attempt);
                }
                Ok(response) => format!("status {}", response.status()),
                Err(e) => e.to_string(),
            };
            if now_ms() + delay.as_millis() as u64 > deadline_ms {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(url = %request.url, attempt, "webhook not delivered, giving up: {problem}");
                return (false, attempt);
            }
            tracing::warn!(url = %request.url, attempt, retry_in_ms = delay.as_millis() as u64, "webhook failed: {problem}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }
}

/// What an answer means for the next try. As hosted Pusher documents: a failure to deliver
/// and a 5xx are retried; so are 408 and 429, which say "later"; any other 4xx is the
/// receiver refusing the request, and retrying would only repeat it.
fn retry_after(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

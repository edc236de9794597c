//! Sending one webhook request: the exact headers the server SDKs' validators check, and
//! exponential backoff on errors, timeouts, 5xx, 408 and 429 until the retry window closes.

use std::{sync::atomic::Ordering, time::Duration};

use tokio::{sync::Semaphore, time::Instant};

use super::WebhookStats;
use crate::config::WebhookDelivery;

const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct Request {
    pub url: String,
    pub key: String,
    pub signature: String,
    pub body: Vec<u8>,
}

/// What an answer means for the next try. As hosted Pusher documents: a failure to deliver
/// and a 5xx are retried; so are 408 and 429, which say "later"; any other 4xx is the
/// receiver refusing the request, and retrying would only repeat it.
fn retry_after(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

pub async fn send_with_retries(
    client: &reqwest::Client,
    request: &Request,
    slots: &Semaphore,
    settings: &WebhookDelivery,
    stats: &WebhookStats,
) {
    let started = Instant::now();
    let window = Duration::from_millis(settings.retry_window_ms);
    let mut delay = Duration::from_millis(settings.retry_initial_ms.max(1));
    let mut attempt = 1u32;
    loop {
        // Held for the request only, not through the backoff sleep.
        let slot = slots.acquire().await.expect("never closed");
        let outcome = client
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
                return;
            }
            Ok(response) if !retry_after(response.status()) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %request.url, attempt, status = %response.status(), "webhook refused by the receiver: not retried");
                return;
            }
            Ok(response) => format!("status {}", response.status()),
            Err(e) => e.to_string(),
        };
        if started.elapsed() + delay > window {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(url = %request.url, attempt, "webhook not delivered, giving up: {problem}");
            return;
        }
        tracing::warn!(url = %request.url, attempt, retry_in_ms = delay.as_millis() as u64, "webhook failed: {problem}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

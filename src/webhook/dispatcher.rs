//! Turns emitted events into requests: holds `channel_vacated` and `member_removed` for the
//! grace period (a re-occupy or re-join inside it cancels both, so a page refresh sends
//! nothing), and batches what becomes ready together into one request per app and target.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::{
    sync::mpsc,
    time::{sleep_until, Instant},
};

use super::{
    delivery::{Deliverer, Request},
    Emitted, Pending, WebhookEvent,
};
use crate::{
    config::{AppConfig, WebhookDelivery},
    happenings::{Happening, Happenings},
};

/// What a held removal is waiting on: the same app, kind, channel and (for members) user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HeldKey {
    Vacated {
        app: String,
        channel: String,
    },
    Removed {
        app: String,
        channel: String,
        user_id: String,
    },
}

struct Held {
    due: Instant,
    /// Emission order, so held events that fall due together keep it.
    seq: u64,
    emitted: Emitted,
}

#[derive(Serialize)]
struct Body<'a> {
    time_ms: u128,
    events: Vec<&'a WebhookEvent>,
}

pub async fn run(
    settings: WebhookDelivery,
    mut rx: mpsc::Receiver<Emitted>,
    deliverer: Arc<Deliverer>,
    happenings: Happenings,
    generation: Arc<AtomicU64>,
) {
    let mut ids: u64 = 0;
    let grace = Duration::from_millis(settings.grace_ms);
    let batch = Duration::from_millis(settings.batch_ms);
    let mut held: HashMap<HeldKey, Held> = HashMap::new();
    let mut ready: Vec<Emitted> = Vec::new();
    let mut ready_since: Option<Instant> = None;
    let mut open = true;
    let mut seq: u64 = 0;

    while open || !held.is_empty() || !ready.is_empty() {
        let next_due = held.values().map(|h| h.due).min();
        let flush_at = ready_since.map(|t| t + batch);
        let wake = [next_due, flush_at].into_iter().flatten().min();
        tokio::select! {
            received = rx.recv(), if open => match received {
                Some(emitted) => {
                    seq += 1;
                    accept(&mut held, &mut ready, emitted, grace, seq);
                }
                // The server is going away: what was held is final now.
                None => {
                    open = false;
                    let mut rest: Vec<Held> = held.drain().map(|(_, h)| h).collect();
                    rest.sort_unstable_by_key(|h| h.seq);
                    ready.extend(rest.into_iter().map(|h| h.emitted));
                }
            },
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
        let now = Instant::now();
        let mut due: Vec<(u64, HeldKey)> = held
            .iter()
            .filter(|(_, h)| h.due <= now)
            .map(|(k, h)| (h.seq, k.clone()))
            .collect();
        due.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, key) in due {
            if let Some(h) = held.remove(&key) {
                ready.push(h.emitted);
            }
        }
        if ready.is_empty() {
            ready_since = None;
        } else {
            let since = *ready_since.get_or_insert(now);
            if now >= since + batch || !open {
                let current = generation.load(Ordering::Acquire);
                let batch = std::mem::take(&mut ready)
                    .into_iter()
                    .filter(|e| e.generation >= current)
                    .collect();
                flush(batch, &deliverer, &happenings, &mut ids);
                ready_since = None;
            }
        }
    }
}

/// How an event pairs with its opposite inside the grace period.
enum Pairing {
    /// Held for the grace period under this key.
    Removal(HeldKey),
    /// Cancels a removal held under this key (and is then not sent either).
    Addition(HeldKey),
    Unpaired,
}

fn pairing(app_id: &str, event: &WebhookEvent) -> Pairing {
    let vacated = |channel: &String| HeldKey::Vacated {
        app: app_id.to_string(),
        channel: channel.clone(),
    };
    let removed = |channel: &String, user_id: &String| HeldKey::Removed {
        app: app_id.to_string(),
        channel: channel.clone(),
        user_id: user_id.clone(),
    };
    match event {
        WebhookEvent::ChannelVacated { channel } => Pairing::Removal(vacated(channel)),
        WebhookEvent::ChannelOccupied { channel } => Pairing::Addition(vacated(channel)),
        WebhookEvent::MemberRemoved { channel, user_id } => {
            Pairing::Removal(removed(channel, user_id))
        }
        WebhookEvent::MemberAdded { channel, user_id } => {
            Pairing::Addition(removed(channel, user_id))
        }
        _ => Pairing::Unpaired,
    }
}

fn accept(
    held: &mut HashMap<HeldKey, Held>,
    ready: &mut Vec<Emitted>,
    emitted: Emitted,
    grace: Duration,
    seq: u64,
) {
    if !emitted.pair {
        return ready.push(emitted);
    }
    match pairing(&emitted.app.id, &emitted.event) {
        Pairing::Removal(key) => {
            let due = Instant::now() + grace;
            held.insert(key, Held { due, seq, emitted });
        }
        // Both are dropped, and with them their hold on the app's share.
        Pairing::Addition(key) if held.remove(&key).is_some() => {}
        Pairing::Addition(_) | Pairing::Unpaired => ready.push(emitted),
    }
}

/// One request per app and target with every ready event the target wants, in order. Never
/// waits: each request is its own task, which takes a slot of its receiver per attempt.
/// One app's ready events (each with its happening id) and their holds on the app's share.
type AppBatch = (Arc<AppConfig>, Vec<(u64, WebhookEvent)>, Vec<Pending>);

fn flush(ready: Vec<Emitted>, deliverer: &Arc<Deliverer>, happenings: &Happenings, ids: &mut u64) {
    let mut by_app: Vec<AppBatch> = Vec::new();
    for Emitted {
        app,
        event,
        pending,
        ..
    } in ready
    {
        *ids += 1;
        let id = *ids;
        happenings.emit(|| Happening::Webhook {
            id,
            app: app.id.clone(),
            event: event.clone(),
            targets: app
                .webhooks
                .iter()
                .filter(|t| t.wants(event.name()))
                .map(|t| t.url.clone())
                .collect(),
        });
        match by_app.iter_mut().find(|(a, _, _)| a.id == app.id) {
            Some((_, events, holds)) => {
                events.push((id, event));
                holds.push(pending);
            }
            None => by_app.push((app, vec![(id, event)], vec![pending])),
        }
    }
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    for (app, events, holds) in by_app {
        // The app's share is released when the last of its requests is done.
        let holds = Arc::new(holds);
        for target in &app.webhooks {
            let (ids, wanted): (Vec<u64>, Vec<&WebhookEvent>) = events
                .iter()
                .filter(|(_, e)| target.wants(e.name()))
                .map(|(id, e)| (*id, e))
                .unzip();
            if wanted.is_empty() {
                continue;
            }
            let body = serde_json::to_string(&Body {
                time_ms,
                events: wanted,
            })
            .expect("webhook body serializes");
            let request = Request {
                url: target.url.clone(),
                key: app.key.clone(),
                signature: crate::signature::sign_bytes(&app.secret, body.as_bytes()),
                body,
                ids,
                app: app.id.clone(),
            };
            deliverer.send(request, holds.clone());
        }
    }
}

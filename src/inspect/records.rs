//! The records and the waits on them.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::{
    error::CloseError,
    happenings::{Happening, Observe, Published, Source},
    socket::Outbox,
};

#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub seq: u64,
    pub time_ms: u64,
    /// `app_id`, `channel`, `event`, `data`, `source`, `socket_id`, `user_id`.
    #[serde(flatten)]
    pub event: Published,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: &'static str,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookRecord {
    #[serde(skip)]
    id: u64,
    pub seq: u64,
    pub time_ms: u64,
    pub app_id: String,
    /// The webhook body's fields for this event: `name`, `channel`, and `user_id`, `event`,
    /// `data`, `socket_id` or `subscription_count` where the event has them.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    pub socket_id: String,
    pub app_id: String,
    pub channels: BTreeSet<String>,
    pub user_id: Option<String>,
}

struct Connection {
    app: String,
    outbox: Outbox,
    channels: BTreeSet<String>,
    user_id: Option<String>,
}

#[derive(Default)]
struct Records {
    events: VecDeque<EventRecord>,
    webhooks: VecDeque<WebhookRecord>,
    connections: HashMap<String, Connection>,
    last_event: u64,
    last_webhook: u64,
}

pub struct Inspector {
    capacity: usize,
    records: Mutex<Records>,
    /// Bumped on every change, for the waits.
    changed: watch::Sender<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Filters of the list and wait endpoints; unset fields match anything.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    pub app_id: Option<String>,
    pub channel: Option<String>,
    pub event: Option<String>,
    pub name: Option<String>,
    pub source: Option<String>,
    pub after: Option<u64>,
}

impl Filter {
    fn event(&self, r: &EventRecord) -> bool {
        let (seq, r) = (r.seq, &r.event);
        let source = match r.source {
            Source::Api => "api",
            Source::Client => "client",
            Source::User => "user",
        };
        self.after.is_none_or(|after| seq > after)
            && self.app_id.as_ref().is_none_or(|a| *a == r.app)
            && self.channel.as_ref().is_none_or(|c| *c == r.channel)
            && self.event.as_ref().is_none_or(|e| *e == r.event)
            && self.source.as_ref().is_none_or(|s| s == source)
    }

    fn webhook(&self, r: &WebhookRecord) -> bool {
        let field = |name: &str| r.fields.get(name).and_then(Value::as_str);
        self.after.is_none_or(|after| r.seq > after)
            && self.app_id.as_ref().is_none_or(|a| *a == r.app_id)
            && self
                .channel
                .as_ref()
                .is_none_or(|c| Some(c.as_str()) == field("channel"))
            && self
                .name
                .as_ref()
                .is_none_or(|n| Some(n.as_str()) == field("name"))
    }
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, capacity: usize) {
    if list.len() >= capacity {
        list.pop_front();
    }
    list.push_back(item);
}

impl Inspector {
    pub fn new(capacity: usize) -> Self {
        Inspector {
            capacity: capacity.max(1),
            records: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().expect("not poisoned")
    }

    pub fn events(&self, filter: &Filter) -> Vec<EventRecord> {
        self.lock()
            .events
            .iter()
            .filter(|r| filter.event(r))
            .cloned()
            .collect()
    }

    pub fn webhooks(&self, filter: &Filter) -> Vec<WebhookRecord> {
        self.lock()
            .webhooks
            .iter()
            .filter(|r| filter.webhook(r))
            .cloned()
            .collect()
    }

    pub fn connections(&self) -> Vec<ConnectionRecord> {
        let mut list: Vec<ConnectionRecord> = self
            .lock()
            .connections
            .iter()
            .map(|(id, c)| ConnectionRecord {
                socket_id: id.clone(),
                app_id: c.app.clone(),
                channels: c.channels.clone(),
                user_id: c.user_id.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.socket_id.cmp(&b.socket_id));
        list
    }

    /// Waits until `found` returns something (checked now and after every change of the
    /// records), or `None` once `timeout` has passed.
    pub async fn wait<T, F: std::future::Future<Output = Option<T>>>(
        &self,
        timeout: std::time::Duration,
        mut found: impl FnMut() -> F,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if let Some(value) = found().await {
                return Some(value);
            }
            tokio::time::timeout_at(deadline, changed.changed())
                .await
                .ok()?
                .ok()?;
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Closes every connection (4200: clients reconnect) and returns how many were open.
    pub fn close_all(&self) -> usize {
        let records = self.lock();
        for c in records.connections.values() {
            c.outbox.close(CloseError::Reset);
        }
        records.connections.len()
    }

    pub fn connection_count(&self) -> usize {
        self.lock().connections.len()
    }

    /// Forgets the recorded events and webhooks; sequence numbers keep growing.
    pub fn clear(&self) {
        let mut records = self.lock();
        records.events.clear();
        records.webhooks.clear();
        drop(records);
        self.bump();
    }

    fn record_event(&self, p: &Published) {
        let mut records = self.lock();
        records.last_event += 1;
        let record = EventRecord {
            seq: records.last_event,
            time_ms: now_ms(),
            event: p.clone(),
        };
        push_bounded(&mut records.events, record, self.capacity);
    }
}

impl Observe for Inspector {
    /// The double shows every webhook event, also those of apps without a receiver.
    fn wants_unwanted_webhooks(&self) -> bool {
        true
    }

    fn observe(&self, happening: &Happening) {
        {
            let mut records = self.lock();
            match happening {
                Happening::Connected { app, socket, .. } => {
                    records.connections.insert(
                        socket.socket_id().to_string(),
                        Connection {
                            app: app.clone(),
                            outbox: socket.clone(),
                            channels: BTreeSet::new(),
                            user_id: None,
                        },
                    );
                }
                Happening::Disconnected { socket_id, .. } => {
                    records.connections.remove(socket_id);
                }
                Happening::Subscribed {
                    socket_id, channel, ..
                } => {
                    if let Some(c) = records.connections.get_mut(socket_id) {
                        c.channels.insert(channel.clone());
                    }
                }
                Happening::Unsubscribed {
                    socket_id, channel, ..
                } => {
                    if let Some(c) = records.connections.get_mut(socket_id) {
                        c.channels.remove(channel);
                    }
                }
                Happening::SignedIn {
                    socket_id, user_id, ..
                } => {
                    if let Some(c) = records.connections.get_mut(socket_id) {
                        c.user_id = Some(user_id.clone());
                    }
                }
                Happening::Published(p) => {
                    drop(records);
                    self.record_event(p);
                    return self.bump();
                }
                Happening::Webhook {
                    id,
                    app,
                    event,
                    targets,
                } => {
                    records.last_webhook += 1;
                    let fields = match serde_json::to_value(event) {
                        Ok(Value::Object(fields)) => fields,
                        _ => Map::new(),
                    };
                    let record = WebhookRecord {
                        id: *id,
                        seq: records.last_webhook,
                        time_ms: now_ms(),
                        app_id: app.clone(),
                        fields,
                        deliveries: targets
                            .iter()
                            .map(|url| Delivery {
                                url: url.clone(),
                                status: "pending",
                                attempts: 0,
                            })
                            .collect(),
                    };
                    push_bounded(&mut records.webhooks, record, self.capacity);
                }
                // The wire itself is the recorder's business.
                Happening::FrameIn { .. }
                | Happening::FrameOut { .. }
                | Happening::BinaryIn { .. }
                | Happening::Closed { .. }
                | Happening::RestCall { .. }
                | Happening::RestAnswer { .. }
                | Happening::WebhookDropped { .. }
                | Happening::ApiAnswered { .. }
                | Happening::ApiPublished { .. }
                | Happening::ApiMessage { .. }
                | Happening::Membership { .. }
                | Happening::Refused { .. }
                | Happening::RateLimited { .. } => return,
                Happening::Delivery {
                    ids,
                    url,
                    delivered,
                    attempts,
                    ..
                } => {
                    for record in records.webhooks.iter_mut().filter(|r| ids.contains(&r.id)) {
                        for d in record.deliveries.iter_mut().filter(|d| d.url == *url) {
                            d.status = if *delivered { "delivered" } else { "failed" };
                            d.attempts = *attempts;
                        }
                    }
                }
            }
        }
        self.bump();
    }
}

//! A console event: one JSON text frame per happening, with Poxa's four fields (`type`,
//! `socket`, `details`, `time`), Poxa's wording of `details`, and poxide's structured fields
//! beside them (`app_id`, `channel`, `event`, `data`, `user_id`, `code`, ...) so that a page can
//! filter without parsing `details`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::happenings::{Change, Happening, Published, Source};

#[derive(Serialize, Default)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    socket: &'a str,
    details: String,
    /// `HH:MM:SS`, UTC (the page shows `timestamp_ms` in the browser's time zone).
    time: String,
    timestamp_ms: u64,
    app_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    /// The socket a REST event left out (`socket_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    excluded: Option<&'a str>,
}

/// The app a happening belongs to, for those the console shows.
pub fn app_of(happening: &Happening) -> Option<&str> {
    match happening {
        Happening::Connected { app, .. }
        | Happening::Disconnected { app, .. }
        | Happening::Refused { app, .. }
        | Happening::Subscribed { app, .. }
        | Happening::Unsubscribed { app, .. }
        | Happening::SignedIn { app, .. }
        | Happening::Membership { app, .. }
        | Happening::ApiMessage { app, .. }
        | Happening::Delivery { app, .. }
        | Happening::RateLimited { app, .. } => Some(app),
        Happening::Published(p) if p.source != Source::Api => Some(&p.app),
        _ => None,
    }
}

/// The console's JSON line for a happening, if it shows it.
pub fn line(happening: &Happening) -> Option<String> {
    let app = app_of(happening)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let base = Event {
        app_id: app,
        time: clock(now.as_secs()),
        timestamp_ms: now.as_millis() as u64,
        ..Event::default()
    };
    let event = match happening {
        Happening::Connected { socket, origin, .. } => Event {
            kind: "Connection",
            socket: socket.socket_id(),
            details: format!("Origin: {origin}"),
            ..base
        },
        Happening::Disconnected {
            socket_id,
            channels,
            lifetime_secs,
            code,
            ..
        } => Event {
            kind: "Disconnection",
            socket: socket_id,
            details: format!(
                "Channels: {}, Lifetime: {lifetime_secs}s",
                quoted_list(channels)
            ),
            channels: Some(channels),
            code: *code,
            ..base
        },
        Happening::Refused { code, reason, .. } => Event {
            kind: "Connection refused",
            details: format!("Code: {code}, Reason: {reason}"),
            code: Some(*code),
            ..base
        },
        Happening::Subscribed {
            socket_id, channel, ..
        } => Event {
            kind: "Subscribed",
            socket: socket_id,
            details: format!("Channel: {channel}"),
            channel: Some(channel),
            ..base
        },
        Happening::Unsubscribed {
            socket_id, channel, ..
        } => Event {
            kind: "Unsubscribed",
            socket: socket_id,
            details: format!("Channel: {channel}"),
            channel: Some(channel),
            ..base
        },
        Happening::SignedIn {
            socket_id, user_id, ..
        } => Event {
            kind: "Signed in",
            socket: socket_id,
            details: format!("UserId: {}", quoted(user_id)),
            user_id: Some(user_id),
            ..base
        },
        Happening::Membership {
            channel, change, ..
        } => {
            let (kind, user_id) = match change {
                Change::Occupied => ("Channel occupied", None),
                Change::Vacated => ("Channel vacated", None),
                Change::CacheMiss => ("Cache miss", None),
                Change::MemberAdded { user_id } => ("Member added", Some(user_id.as_str())),
                Change::MemberRemoved { user_id } => ("Member removed", Some(user_id.as_str())),
            };
            let details = match user_id {
                Some(user) => format!("Channel: {}, UserId: {}", quoted(channel), quoted(user)),
                None => format!("Channel: {}", quoted(channel)),
            };
            Event {
                kind,
                details,
                channel: Some(channel),
                user_id,
                ..base
            }
        }
        Happening::ApiMessage {
            event,
            channels,
            data,
            socket_id,
            ..
        } => {
            if channels.is_empty() {
                // Only server-to-user channels: each is its own `Published`.
                return None;
            }
            Event {
                kind: "API Message",
                details: format!("Channels: {}, Event: {event}", quoted_list(channels)),
                channels: Some(channels),
                event: Some(event),
                data: Some(data),
                excluded: socket_id.as_deref(),
                ..base
            }
        }
        Happening::Published(p) => published(p, base),
        Happening::Delivery {
            ids,
            url,
            delivered,
            attempts,
            ..
        } => Event {
            kind: if *delivered {
                "Webhook sent"
            } else {
                "Webhook failed"
            },
            details: format!("URL: {url}, Events: {}, Attempts: {attempts}", ids.len()),
            url: Some(url),
            ..base
        },
        Happening::RateLimited { limit, .. } => Event {
            kind: "Rate limited",
            details: format!("Limit: {}", limit.name()),
            ..base
        },
        _ => return None,
    };
    serde_json::to_string(&event).ok()
}

fn published<'a>(p: &'a Published, base: Event<'a>) -> Event<'a> {
    match p.source {
        Source::Client => Event {
            kind: "Client Event Message",
            socket: p.socket_id.as_deref().unwrap_or(""),
            details: format!(
                "Channels: {}, Event: {}",
                quoted_list(std::slice::from_ref(&p.channel)),
                p.event
            ),
            channel: Some(&p.channel),
            event: Some(&p.event),
            data: Some(&p.data),
            user_id: p.user_id.as_deref(),
            ..base
        },
        // Server-to-user; REST channel events come once per request as `ApiMessage`.
        _ => Event {
            kind: "Server to user",
            details: format!(
                "UserId: {}, Event: {}",
                quoted(p.user_id.as_deref().unwrap_or("")),
                p.event
            ),
            event: Some(&p.event),
            data: Some(&p.data),
            user_id: p.user_id.as_deref(),
            ..base
        },
    }
}

/// A string as Elixir's `inspect` prints it (Poxa's wording), which is JSON's for these.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// `["a", "b"]`, as Elixir's `inspect` prints a list of strings.
fn quoted_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", items.join(", "))
}

/// `HH:MM:SS` of a Unix time, UTC.
fn clock(unix_secs: u64) -> String {
    let secs = unix_secs % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A dropped-events notice: the console fell behind and `count` events were left out.
pub fn dropped(app: &str, count: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    serde_json::to_string(&Event {
        kind: "Events dropped",
        details: format!("{count} events left out: this console fell behind"),
        time: clock(now.as_secs()),
        timestamp_ms: now.as_millis() as u64,
        app_id: app,
        ..Event::default()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn parsed(h: &Happening) -> Value {
        let mut v: Value = serde_json::from_str(&line(h).expect("shown")).unwrap();
        let time = v["time"].as_str().unwrap().to_string();
        assert_eq!(time.len(), 8, "{time}");
        assert!(v["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let o = v.as_object_mut().unwrap();
        o.remove("time");
        o.remove("timestamp_ms");
        v
    }

    #[test]
    fn poxa_wording_with_structured_fields() {
        assert_eq!(
            parsed(&Happening::Disconnected {
                app: "a".into(),
                socket_id: "1.2".into(),
                channels: vec!["x".into(), "presence-y".into()],
                lifetime_secs: 42,
                code: Some(4201),
            }),
            json!({"type": "Disconnection", "socket": "1.2", "app_id": "a",
                "details": "Channels: [\"x\", \"presence-y\"], Lifetime: 42s",
                "channels": ["x", "presence-y"], "code": 4201})
        );
        assert_eq!(
            parsed(&Happening::Membership {
                app: "a".into(),
                channel: "presence-y".into(),
                change: Change::MemberAdded {
                    user_id: "u1".into()
                },
            }),
            json!({"type": "Member added", "socket": "", "app_id": "a",
                "details": "Channel: \"presence-y\", UserId: \"u1\"",
                "channel": "presence-y", "user_id": "u1"})
        );
        assert_eq!(
            parsed(&Happening::ApiMessage {
                app: "a".into(),
                event: "my-event".into(),
                channels: vec!["a".into(), "b".into()],
                data: "{\"n\":1}".into(),
                socket_id: None,
            }),
            json!({"type": "API Message", "socket": "", "app_id": "a",
                "details": "Channels: [\"a\", \"b\"], Event: my-event",
                "channels": ["a", "b"], "event": "my-event", "data": "{\"n\":1}"})
        );
    }

    #[test]
    fn rest_events_for_users_only_are_not_api_messages() {
        let h = Happening::ApiMessage {
            app: "a".into(),
            event: "e".into(),
            channels: Vec::new(),
            data: "d".into(),
            socket_id: None,
        };
        assert_eq!(line(&h), None);
    }

    #[test]
    fn clock_is_zero_padded_utc() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(1_380_444_393), "08:46:33");
        assert_eq!(clock(86_399), "23:59:59");
    }
}

//! Publishing through the REST API: `POST /apps/{id}/events` and `/batch_events`.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::info_attributes;
use crate::{
    channel::{
        is_valid_socket_id, validate_channel_name, validate_event_name, Access, ChannelKind,
        SERVER_TO_USER_PREFIX,
    },
    config::AppConfig,
    error::ApiError,
    frame,
    hub::CacheEntry,
    server::ServerState,
};

const MAX_CHANNELS_PER_EVENT: usize = 100;
const MAX_EVENTS_PER_BATCH: usize = 10;
const TRIGGER_INFO: &[&str] = &["user_count", "subscription_count"];

/// One event to publish, validated.
struct Event {
    name: String,
    data: String,
    channels: BTreeSet<String>,
    socket_id: Option<String>,
    info: Vec<String>,
}

pub async fn trigger(state: &ServerState, app: &AppConfig, body: &[u8]) -> Result<Value, ApiError> {
    let object = parse_object(body)?;
    let event = Event::parse(&object, app, true)?;
    publish(state, app, &event).await;
    if event.info.is_empty() {
        return Ok(json!({}));
    }
    let mut channels = Map::new();
    for channel in &event.channels {
        channels.insert(
            channel.clone(),
            attributes(state, app, channel, &event.info).await,
        );
    }
    Ok(json!({ "channels": channels }))
}

pub async fn batch(state: &ServerState, app: &AppConfig, body: &[u8]) -> Result<Value, ApiError> {
    let object = parse_object(body)?;
    let items = match object.get("batch") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::InvalidBody("\"batch\" must be an array".into())),
        None => return Err(ApiError::MissingField("batch")),
    };
    if items.len() > MAX_EVENTS_PER_BATCH {
        return Err(ApiError::BatchTooLarge(items.len()));
    }
    // Every item is checked before any is published: a bad batch publishes nothing.
    let events = items
        .iter()
        .map(|item| match item {
            Value::Object(o) => Event::parse(o, app, false),
            _ => Err(ApiError::InvalidBody(
                "each batch item must be an object".into(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    for event in &events {
        publish(state, app, event).await;
    }
    if events.iter().all(|e| e.info.is_empty()) {
        return Ok(json!({}));
    }
    let mut results = Vec::with_capacity(events.len());
    for event in &events {
        let channel = event
            .channels
            .first()
            .expect("batch items have one channel");
        results.push(attributes(state, app, channel, &event.info).await);
    }
    Ok(json!({ "batch": results }))
}

async fn publish(state: &ServerState, app: &AppConfig, event: &Event) {
    for channel in &event.channels {
        // One serialization per channel, shared by every subscriber.
        let frame = frame::channel_event(&event.name, channel, &event.data);
        let except = event.socket_id.as_deref();
        if let Some(user_id) = channel.strip_prefix(SERVER_TO_USER_PREFIX) {
            state
                .adapter
                .publish_to_user(&app.id, user_id, frame, except)
                .await;
            continue;
        }
        let cache = ChannelKind::of(channel).cache.then_some(CacheEntry {
            data: &event.data,
            ttl_seconds: app.cache_ttl_seconds,
        });
        state
            .adapter
            .publish(&app.id, channel, frame, except, cache)
            .await;
    }
}

async fn attributes(state: &ServerState, app: &AppConfig, channel: &str, info: &[String]) -> Value {
    let stats = state.adapter.channel_stats(&app.id, channel).await;
    let mut out = Map::new();
    for attribute in info {
        match attribute.as_str() {
            "user_count" if ChannelKind::of(channel).is_presence() => {
                out.insert("user_count".into(), stats.user_count.into());
            }
            "subscription_count" => {
                out.insert("subscription_count".into(), stats.subscription_count.into());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::InvalidBody("expected a JSON object".into())),
        Err(e) => Err(ApiError::InvalidBody(e.to_string())),
    }
}

fn string_field(o: &Map<String, Value>, field: &'static str) -> Result<Option<String>, ApiError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::InvalidBody(format!(
            "\"{field}\" must be a string"
        ))),
    }
}

impl Event {
    fn parse(
        o: &Map<String, Value>,
        app: &AppConfig,
        multi_channel: bool,
    ) -> Result<Event, ApiError> {
        let name = string_field(o, "name")?.ok_or(ApiError::MissingField("name"))?;
        validate_event_name(&name, app.max_event_name_length)
            .map_err(ApiError::InvalidEventName)?;
        let data = match o.get("data") {
            None | Some(Value::Null) => return Err(ApiError::MissingField("data")),
            Some(Value::String(s)) => s.clone(),
            // Not what the SDKs send, but an object is unambiguous: publish its JSON text.
            Some(other) => other.to_string(),
        };
        if data.len() > app.payload_limit {
            return Err(ApiError::PayloadTooLarge {
                limit: app.payload_limit,
            });
        }

        let mut names = Vec::new();
        if let Some(channel) = string_field(o, "channel")? {
            names.push(channel);
        }
        if multi_channel {
            match o.get("channels") {
                None | Some(Value::Null) => {}
                Some(Value::Array(list)) => {
                    for v in list {
                        match v {
                            Value::String(s) => names.push(s.clone()),
                            _ => {
                                return Err(ApiError::InvalidBody(
                                    "\"channels\" must be an array of strings".into(),
                                ))
                            }
                        }
                    }
                }
                Some(_) => {
                    return Err(ApiError::InvalidBody(
                        "\"channels\" must be an array of strings".into(),
                    ))
                }
            }
        }
        if names.is_empty() {
            return Err(ApiError::MissingField(if multi_channel {
                "channels"
            } else {
                "channel"
            }));
        }
        if names.len() > MAX_CHANNELS_PER_EVENT {
            return Err(ApiError::TooManyChannels(names.len()));
        }
        for channel in &names {
            validate_channel_name(channel, app.max_channel_name_length).map_err(|reason| {
                ApiError::InvalidChannelName {
                    name: channel.clone(),
                    reason,
                }
            })?;
            if ChannelKind::of(channel).access == Access::Reserved
                && !channel.starts_with(SERVER_TO_USER_PREFIX)
            {
                return Err(ApiError::ReservedChannel(channel.clone()));
            }
        }

        let socket_id = string_field(o, "socket_id")?;
        if let Some(id) = &socket_id {
            if !is_valid_socket_id(id) {
                return Err(ApiError::InvalidSocketId(id.clone()));
            }
        }
        let info = string_field(o, "info")?;
        let info = info_attributes(info.as_deref(), TRIGGER_INFO)?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(Event {
            name,
            data,
            channels: names.into_iter().collect(),
            socket_id,
            info,
        })
    }
}

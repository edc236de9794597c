//! Publishing through the REST API: `POST /apps/{id}/events` and `/batch_events`.

use std::collections::BTreeSet;

use std::borrow::Cow;

use serde_json::{json, value::RawValue, Map, Value};

use super::{fields::Fields, info_attributes};
use crate::{
    channel::{
        is_valid_socket_id, validate_channel_name, validate_event_name, Access, ChannelKind,
        SERVER_TO_USER_PREFIX,
    },
    config::AppConfig,
    error::ApiError,
    frame,
    happenings::{Happening, Published, Source},
    hub::{CacheEntry, HubResult},
    state::ServerState,
};

const MAX_CHANNELS_PER_EVENT: usize = 100;
const MAX_EVENTS_PER_BATCH: usize = 10;
const TRIGGER_INFO: &[&str] = &["user_count", "subscription_count"];

/// One event to publish, validated; `data` borrows the request body where it can.
struct Event<'a> {
    name: String,
    /// The JSON string literal of `data`, as it will appear in the frame.
    data: Cow<'a, RawValue>,
    channels: BTreeSet<String>,
    socket_id: Option<String>,
    info: Vec<String>,
}

pub async fn trigger(state: &ServerState, app: &AppConfig, body: &[u8]) -> Result<Value, ApiError> {
    let object = Fields::parse(body)?;
    let event = Event::parse(&object, app, true)?;
    publish(state, app, &event).await?;
    if event.info.is_empty() {
        return Ok(json!({}));
    }
    let mut channels = Map::new();
    for channel in &event.channels {
        channels.insert(
            channel.clone(),
            attributes(state, app, channel, &event.info).await?,
        );
    }
    Ok(json!({ "channels": channels }))
}

pub async fn batch(state: &ServerState, app: &AppConfig, body: &[u8]) -> Result<Value, ApiError> {
    let object = Fields::parse(body)?;
    let items = object.batch()?;
    if items.len() > MAX_EVENTS_PER_BATCH {
        return Err(ApiError::BatchTooLarge(items.len()));
    }
    // Every item is checked before any is published: a bad batch publishes nothing.
    let items = items
        .iter()
        .map(|item| {
            Fields::parse(item.get().as_bytes())
                .map_err(|_| ApiError::InvalidBody("each batch item must be an object".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let events = items
        .iter()
        .map(|o| Event::parse(o, app, false))
        .collect::<Result<Vec<_>, _>>()?;
    for event in &events {
        publish(state, app, event).await?;
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
        results.push(attributes(state, app, channel, &event.info).await?);
    }
    Ok(json!({ "batch": results }))
}

async fn publish(state: &ServerState, app: &AppConfig, event: &Event<'_>) -> HubResult<()> {
    state.happenings.emit(|| Happening::ApiPublished {
        app: app.id.clone(),
        channels: event.channels.len(),
    });
    state.happenings.emit_with_data(|| Happening::ApiMessage {
        app: app.id.clone(),
        event: event.name.clone(),
        channels: event
            .channels
            .iter()
            .filter(|c| !c.starts_with(SERVER_TO_USER_PREFIX))
            .cloned()
            .collect(),
        data: decoded(&event.data),
        socket_id: event.socket_id.clone(),
    });
    for channel in &event.channels {
        // One frame per channel, shared by every subscriber; `data` goes in as sent.
        let frame = frame::channel_event_raw(&event.name, channel, &event.data);
        let except = event.socket_id.as_deref();
        let to_user = channel.strip_prefix(SERVER_TO_USER_PREFIX);
        tracing::debug!(app = %app.id, channel, event = %event.name, "published");
        state.happenings.emit_published(|| Published {
            app: app.id.clone(),
            channel: channel.clone(),
            event: event.name.to_string(),
            data: decoded(&event.data),
            source: if to_user.is_some() {
                Source::User
            } else {
                Source::Api
            },
            socket_id: event.socket_id.clone(),
            user_id: to_user.map(str::to_string),
        });
        if let Some(user_id) = to_user {
            state
                .adapter
                .publish_to_user(&app.id, user_id, frame, except)
                .await?;
            continue;
        }
        let cached_data;
        let cache = if ChannelKind::of(channel).cache {
            cached_data = decoded(&event.data);
            Some(CacheEntry {
                data: &cached_data,
                ttl_seconds: app.cache_ttl_seconds,
            })
        } else {
            None
        };
        state
            .adapter
            .publish(&app.id, channel, frame, except, cache)
            .await?;
    }
    Ok(())
}

/// The text of a JSON string literal.
fn decoded(literal: &RawValue) -> String {
    serde_json::from_str(literal.get()).expect("data is a validated string literal")
}

async fn attributes(
    state: &ServerState,
    app: &AppConfig,
    channel: &str,
    info: &[String],
) -> HubResult<Value> {
    let stats = state.adapter.channel_stats(&app.id, channel).await?;
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
    Ok(Value::Object(out))
}

impl<'a> Event<'a> {
    fn parse(o: &Fields<'a>, app: &AppConfig, multi_channel: bool) -> Result<Event<'a>, ApiError> {
        let name = o.string("name")?.ok_or(ApiError::MissingField("name"))?;
        validate_event_name(&name, app.max_event_name_length)
            .map_err(ApiError::InvalidEventName)?;
        let data: Cow<'a, RawValue> = match o.raw("data") {
            None => return Err(ApiError::MissingField("data")),
            Some(raw) if raw.get().starts_with('"') => Cow::Borrowed(raw),
            // Not what the SDKs send, but an object is unambiguous: publish its JSON text.
            Some(raw) => {
                let value: Value = serde_json::from_str(raw.get())
                    .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
                Cow::Owned(
                    serde_json::value::to_raw_value(&value.to_string())
                        .expect("a string serializes"),
                )
            }
        };
        // The escaped literal is never shorter than its text, so only a long one needs decoding.
        let literal_len = data.get().len() - 2;
        if literal_len > app.payload_limit && decoded(&data).len() > app.payload_limit {
            return Err(ApiError::PayloadTooLarge {
                limit: app.payload_limit,
            });
        }

        let mut names = Vec::new();
        if let Some(channel) = o.string("channel")? {
            names.push(channel);
        }
        if multi_channel {
            if let Some(raw) = o.raw("channels") {
                let list: Vec<String> = serde_json::from_str(raw.get()).map_err(|_| {
                    ApiError::InvalidBody("\"channels\" must be an array of strings".into())
                })?;
                names.extend(list);
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

        let socket_id = o.string("socket_id")?;
        if let Some(id) = &socket_id {
            if !is_valid_socket_id(id) {
                return Err(ApiError::InvalidSocketId(id.clone()));
            }
        }
        let info = o.string("info")?;
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

/// Validates a trigger body as `POST /events` would, publishing nothing; the number of
/// channels it names.
pub fn check_trigger_body(app: &AppConfig, body: &[u8]) -> Result<usize, ApiError> {
    let object = Fields::parse(body)?;
    Ok(Event::parse(&object, app, true)?.channels.len())
}

/// Validates a batch body as `POST /batch_events` would, publishing nothing; its event count.
pub fn check_batch_body(app: &AppConfig, body: &[u8]) -> Result<usize, ApiError> {
    let object = Fields::parse(body)?;
    let items = object.batch()?;
    for item in &items {
        let fields = Fields::parse(item.get().as_bytes())
            .map_err(|_| ApiError::InvalidBody("each batch item must be an object".into()))?;
        Event::parse(&fields, app, false)?;
    }
    Ok(items.len())
}

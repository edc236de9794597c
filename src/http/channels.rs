//! Reading channel state through the REST API: the occupied channels, one channel's counts and
//! cache, and a presence channel's users.

use serde_json::{json, Map, Value};

use super::{
    auth::{param, Params},
    info_attributes,
};
use crate::{
    channel::{validate_channel_name, ChannelKind},
    config::AppConfig,
    error::ApiError,
    state::ServerState,
};

const PRESENCE_ONLY: &str = "only available for presence channels";

pub async fn list(
    state: &ServerState,
    app: &AppConfig,
    params: &Params,
) -> Result<Value, ApiError> {
    let prefix = param(params, "filter_by_prefix").unwrap_or("");
    let info = info_attributes(param(params, "info"), &["user_count", "subscription_count"])?;
    if info.contains(&"user_count") && !prefix.starts_with("presence-") {
        return Err(ApiError::BadInfo {
            attribute: "user_count".into(),
            reason: PRESENCE_ONLY,
        });
    }
    let mut channels = Map::new();
    for (name, stats) in state.adapter.channels(&app.id).await? {
        if !name.starts_with(prefix) {
            continue;
        }
        let mut attrs = Map::new();
        if info.contains(&"user_count") {
            attrs.insert("user_count".into(), stats.user_count.into());
        }
        if info.contains(&"subscription_count") {
            attrs.insert("subscription_count".into(), stats.subscription_count.into());
        }
        channels.insert(name, Value::Object(attrs));
    }
    Ok(json!({ "channels": channels }))
}

pub async fn info(
    state: &ServerState,
    app: &AppConfig,
    channel: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    check_name(app, channel)?;
    let kind = ChannelKind::of(channel);
    let info = info_attributes(
        param(params, "info"),
        &["user_count", "subscription_count", "cache"],
    )?;
    if info.contains(&"user_count") && !kind.is_presence() {
        return Err(ApiError::BadInfo {
            attribute: "user_count".into(),
            reason: PRESENCE_ONLY,
        });
    }
    let stats = state.adapter.channel_stats(&app.id, channel).await?;
    let mut out = Map::new();
    out.insert("occupied".into(), (stats.subscription_count > 0).into());
    if info.contains(&"user_count") {
        out.insert("user_count".into(), stats.user_count.into());
    }
    if info.contains(&"subscription_count") {
        out.insert("subscription_count".into(), stats.subscription_count.into());
    }
    if info.contains(&"cache") && kind.cache {
        let cached = state.adapter.cached_event(&app.id, channel).await?;
        out.insert(
            "cache".into(),
            cached.map_or(
                Value::Null,
                |c| json!({ "data": c.data, "ttl": c.ttl_seconds }),
            ),
        );
    }
    Ok(Value::Object(out))
}

pub async fn users(state: &ServerState, app: &AppConfig, channel: &str) -> Result<Value, ApiError> {
    check_name(app, channel)?;
    if !ChannelKind::of(channel).is_presence() {
        return Err(ApiError::NotPresence(channel.to_string()));
    }
    let users: Vec<Value> = state
        .adapter
        .members(&app.id, channel)
        .await?
        .into_iter()
        .map(|m| json!({ "id": m.user_id }))
        .collect();
    Ok(json!({ "users": users }))
}

fn check_name(app: &AppConfig, channel: &str) -> Result<(), ApiError> {
    validate_channel_name(channel, app.max_channel_name_length).map_err(|reason| {
        ApiError::InvalidChannelName {
            name: channel.to_string(),
            reason,
        }
    })
}

//! `pusher:subscribe` (protocol §3.3, §5): name checks, authorization, presence membership and
//! cache replay, in the order the reference recommends.

use std::sync::Arc;

use tokio::time::Instant;

use serde_json::value::RawValue;

use crate::{
    channel::{validate_channel_name, Access, ChannelKind, SERVER_TO_USER_PREFIX},
    config::AppConfig,
    error::{AuthError, FrameError},
    frame::{self, Member, SubscribeRequest},
    happenings::Happening,
    hub::{JoinError, Joined, Subscriber},
    session::Session,
    signature, transitions,
};

/// Longest presence user id (protocol §4.2).
const MAX_USER_ID_CHARS: usize = 128;

pub async fn apply(session: &mut Session, request: SubscribeRequest) -> Result<(), FrameError> {
    let SubscribeRequest {
        channel,
        auth,
        channel_data,
    } = request;
    validate_channel_name(&channel, session.app.max_channel_name_length).map_err(|reason| {
        FrameError::InvalidChannelName {
            name: channel.clone(),
            reason,
        }
    })?;
    let kind = ChannelKind::of(&channel);
    if session.subscriptions.contains_key(&channel) {
        return Err(FrameError::ExistingSubscription(channel));
    }
    if session.subscriptions.len() >= session.app.max_channels_per_connection {
        return Err(FrameError::TooManyChannels {
            channel,
            limit: session.app.max_channels_per_connection,
        });
    }
    if !session.subscription_bucket.take(Instant::now()) {
        session.rate_limited(crate::metrics::Limit::Subscription);
        return Err(FrameError::SubscriptionRateLimited(
            session.subscription_bucket.per_second(),
        ));
    }
    if kind.access == Access::Reserved {
        return subscribe_server_to_user(session, channel);
    }

    let member = if kind.needs_auth() {
        if kind.is_presence() && channel_data.is_none() {
            return Err(FrameError::MissingParameter("data.channel_data"));
        }
        authorize(
            &session.app,
            session.socket_id(),
            &channel,
            auth.as_deref(),
            channel_data.as_deref(),
        )
        .inspect_err(|e| {
            crate::log_limit::signature_failed(
                &session.app.id,
                &session.socket_id(),
                &format_args!("subscription to {channel}: {e}"),
            )
        })?;
        match (kind.is_presence(), channel_data) {
            (true, Some(data)) => Some(parse_member(&data, session.app.max_user_info_bytes)?),
            _ => None,
        }
    } else {
        None
    };

    let user_id = member.as_ref().map(|m| m.user_id.clone());
    let first_frames = |joined: &Joined| {
        let mut frames = Vec::with_capacity(2);
        frames.push(if kind.is_presence() {
            frame::presence_subscription_succeeded(&channel, &joined.members)
        } else {
            frame::subscription_succeeded(&channel)
        });
        if kind.cache {
            frames.push(
                joined
                    .cached
                    .clone()
                    .unwrap_or_else(|| frame::cache_miss(&channel)),
            );
        }
        frames
    };
    let hub = session.state.adapter.clone();
    let subscriber = Subscriber {
        socket: &session.outbox,
        member: member.clone(),
        max_members: session.app.max_presence_members,
    };
    let joined = hub
        .subscribe(&session.app.id, &channel, subscriber, &first_frames)
        .await
        .map_err(|e| match e {
            JoinError::PresenceFull => FrameError::PresenceFull {
                channel: channel.clone(),
                limit: session.app.max_presence_members,
            },
            JoinError::Unavailable => FrameError::Unavailable,
        })?;
    session.subscriptions.insert(channel.clone(), user_id);
    if kind.needs_auth() {
        session.authorized = true;
    }
    let (state, app) = (session.state.clone(), session.app.clone());
    subscribed(session, &channel);
    transitions::joined(&state, &app, &channel, session.socket_id(), member, &joined).await?;
    Ok(())
}

fn subscribed(session: &Session, channel: &str) {
    tracing::debug!(app = %session.app.id, socket = session.socket_id(), channel, "subscribed");
    session.state.happenings.emit(|| Happening::Subscribed {
        app: session.app.id.clone(),
        socket_id: session.socket_id().to_string(),
        channel: channel.to_string(),
    });
}

/// `#server-to-user-{id}`: pusher-js subscribes to its own after signing in. Delivery goes by
/// signed-in user (see `publish_to_user`), so this only acknowledges; any other `#` name, or
/// another user's inbox, is refused.
fn subscribe_server_to_user(session: &mut Session, channel: String) -> Result<(), FrameError> {
    let Some(user_id) = channel.strip_prefix(SERVER_TO_USER_PREFIX) else {
        return Err(FrameError::ReservedChannel(channel));
    };
    if session.user.as_ref().map(|u| u.id.as_str()) != Some(user_id) {
        return Err(FrameError::NotThatUser {
            user_id: user_id.to_string(),
            channel,
        });
    }
    session.send(frame::subscription_succeeded(&channel));
    subscribed(session, &channel);
    session.subscriptions.insert(channel, None);
    Ok(())
}

fn authorize(
    app: &AppConfig,
    socket_id: &str,
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
) -> Result<(), AuthError> {
    let token = auth
        .filter(|a| !a.is_empty())
        .ok_or_else(|| AuthError::Missing(channel.to_string()))?;
    let string_to_sign = signature::channel_string_to_sign(socket_id, channel, channel_data);
    signature::verify_auth_token(&app.key, &app.secret, token, &string_to_sign)
}

/// Reads `user_id` and `user_info` from presence `channel_data`. Numeric ids become strings so
/// that one user is one member whichever form the app's auth endpoint used.
pub fn parse_member(channel_data: &str, max_user_info_bytes: usize) -> Result<Member, FrameError> {
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        user_id: Option<&'a RawValue>,
        #[serde(borrow)]
        user_info: Option<&'a RawValue>,
    }
    let invalid = |detail: &str| FrameError::InvalidChannelData(detail.to_string());
    let raw: &RawValue =
        serde_json::from_str(channel_data).map_err(|_| invalid("not valid JSON"))?;
    if !raw.get().starts_with('{') {
        return Err(invalid("must be a JSON object"));
    }
    let data: Data = serde_json::from_str(raw.get()).map_err(|_| invalid("not valid JSON"))?;
    let raw_id = data.user_id.ok_or_else(|| invalid("user_id is required"))?;
    let user_id = match serde_json::from_str::<serde_json::Value>(raw_id.get()) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(invalid("user_id must be a string or a number")),
    };
    if user_id.is_empty() {
        return Err(invalid("user_id must not be empty"));
    }
    if user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(invalid("user_id must be at most 128 characters"));
    }
    let user_info = match data.user_info {
        Some(info) if info.get().len() > max_user_info_bytes => {
            return Err(FrameError::InvalidChannelData(format!(
                "user_info exceeds {max_user_info_bytes} bytes"
            )))
        }
        Some(info) if info.get() != "null" => Some(Arc::<RawValue>::from(info.to_owned())),
        _ => None,
    };
    Ok(Member { user_id, user_info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_rules() {
        let m = parse_member(r#"{"user_id":10,"user_info":{"name":"A"}}"#, 1024).unwrap();
        assert_eq!(m.user_id, "10");
        assert_eq!(m.user_info.unwrap().get(), r#"{"name":"A"}"#);
        assert!(parse_member(r#"{"user_id":"x"}"#, 1024)
            .unwrap()
            .user_info
            .is_none());
        let err = |s: &str| parse_member(s, 10).unwrap_err().to_string();
        assert_eq!(err("nope"), "Invalid channel_data: not valid JSON");
        assert_eq!(err("[1]"), "Invalid channel_data: must be a JSON object");
        assert_eq!(err("{}"), "Invalid channel_data: user_id is required");
        assert_eq!(
            err(r#"{"user_id":true}"#),
            "Invalid channel_data: user_id must be a string or a number"
        );
        assert_eq!(
            err(r#"{"user_id":""}"#),
            "Invalid channel_data: user_id must not be empty"
        );
        assert_eq!(
            err(&format!(r#"{{"user_id":"{}"}}"#, "a".repeat(129))),
            "Invalid channel_data: user_id must be at most 128 characters"
        );
        assert!(parse_member(&format!(r#"{{"user_id":"{}"}}"#, "a".repeat(128)), 10).is_ok());
        assert_eq!(
            err(r#"{"user_id":"a","user_info":"12345678901"}"#),
            "Invalid channel_data: user_info exceeds 10 bytes"
        );
    }
}

//! `pusher:signin` (protocol §3.10, §6.2): user authentication, the user's presence for
//! server-to-user messages and `terminate_connections`, and watchlist events (§3.11).

use serde::Deserialize;

use crate::{
    error::FrameError,
    frame::{self, SigninRequest},
    happenings::Happening,
    session::{Session, SignedIn},
    signature, transitions,
};

/// Most watched user ids per user (protocol §4.2).
pub const MAX_WATCHLIST: usize = 100;

/// The parts of `user_data` the server reads; the rest is the app's business.
#[derive(Debug, PartialEq)]
pub struct UserData {
    pub id: String,
    pub watchlist: Vec<String>,
}

pub fn parse_user_data(user_data: &str) -> Result<UserData, FrameError> {
    #[derive(Deserialize)]
    struct Raw {
        id: Option<serde_json::Value>,
        watchlist: Option<serde_json::Value>,
    }
    let invalid = |detail: &str| FrameError::InvalidUserData(detail.to_string());
    let value: serde_json::Value =
        serde_json::from_str(user_data).map_err(|_| invalid("not valid JSON"))?;
    if !value.is_object() {
        return Err(invalid("must be a JSON object"));
    }
    let raw: Raw = serde_json::from_value(value).map_err(|_| invalid("must be a JSON object"))?;
    let id = match raw.id {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id,
        Some(serde_json::Value::String(_)) => return Err(invalid("id must not be empty")),
        Some(_) => return Err(invalid("id must be a string")),
        None => return Err(invalid("id is required")),
    };
    let watchlist = match raw.watchlist {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(invalid("watchlist must be an array of user id strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("watchlist must be an array of user id strings")),
    };
    Ok(UserData { id, watchlist })
}

pub async fn apply(session: &mut Session, request: SigninRequest) -> Result<(), FrameError> {
    let auth = request
        .auth
        .filter(|a| !a.is_empty())
        .ok_or(FrameError::MissingParameter("data.auth"))?;
    let user_data = request
        .user_data
        .ok_or(FrameError::MissingParameter("data.user_data"))?;
    let string_to_sign = signature::user_string_to_sign(session.socket_id(), &user_data);
    signature::verify_auth_token(
        &session.app.key,
        &session.app.secret,
        &auth,
        &string_to_sign,
    )
    .inspect_err(|e| {
        crate::log_limit::signature_failed(
            &session.app.id,
            &session.socket_id(),
            &format_args!("signin: {e}"),
        )
    })?;
    let UserData { id, mut watchlist } = parse_user_data(&user_data)?;

    if let Some(current) = &session.user {
        if current.id != id {
            return Err(FrameError::AlreadySignedIn(current.id.clone()));
        }
        // Signing in again as the same user changes nothing but is acknowledged.
        session.send(frame::signin_success(&user_data));
        return Ok(());
    }

    let hub = session.state.adapter.clone();
    let app = session.app.clone();
    let truncated = watchlist.len() > MAX_WATCHLIST;
    watchlist.truncate(MAX_WATCHLIST);
    if !app.watchlist_events {
        watchlist.clear();
    }
    let came_online = hub.add_user(&app.id, &id, &session.outbox).await?;
    session.user = Some(SignedIn {
        id: id.clone(),
        watching: watchlist.clone(),
    });
    session.authorized = true;
    session.state.happenings.emit(|| Happening::SignedIn {
        app: app.id.clone(),
        socket_id: session.socket_id().to_string(),
        user_id: id.clone(),
    });
    session.send(frame::signin_success(&user_data));
    if truncated {
        session.send_error(&FrameError::WatchlistTooLong(MAX_WATCHLIST), None);
    }
    if !watchlist.is_empty() {
        hub.watch(&app.id, &session.outbox, &watchlist).await?;
        let online = hub.online_users(&app.id, &watchlist).await?;
        let offline: Vec<String> = watchlist
            .iter()
            .filter(|w| !online.contains(w))
            .cloned()
            .collect();
        session.send(frame::watchlist_events(&online, &offline));
    }
    if came_online {
        transitions::presence_of_user(&session.state, &app, &id, true).await?;
    }
    Ok(())
}

/// Forgets the connection's user on disconnect; watchers hear when it was the last one.
pub async fn sign_out(session: &mut Session) {
    let Some(user) = session.user.take() else {
        return;
    };
    let hub = session.state.adapter.clone();
    let app = session.app.clone();
    if !user.watching.is_empty() {
        hub.unwatch(&app.id, session.socket_id(), &user.watching)
            .await;
    }
    let went_offline = hub
        .remove_user(&app.id, &user.id, session.socket_id())
        .await;
    if went_offline {
        if let Err(e) = transitions::presence_of_user(&session.state, &app, &user.id, false).await {
            tracing::debug!(app = %app.id, user_id = user.id, "offline not delivered: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_rules() {
        assert_eq!(
            parse_user_data(r#"{"id":"42","user_info":{"n":1},"watchlist":["7","9"]}"#).unwrap(),
            UserData {
                id: "42".into(),
                watchlist: vec!["7".into(), "9".into()]
            }
        );
        let err = |s: &str| parse_user_data(s).unwrap_err().to_string();
        assert_eq!(err("x"), "Invalid user_data: not valid JSON");
        assert_eq!(err("[]"), "Invalid user_data: must be a JSON object");
        assert_eq!(err("{}"), "Invalid user_data: id is required");
        assert_eq!(
            err(r#"{"id":""}"#),
            "Invalid user_data: id must not be empty"
        );
        assert_eq!(
            err(r#"{"id":42}"#),
            "Invalid user_data: id must be a string"
        );
        assert_eq!(
            err(r#"{"id":"1","watchlist":[1]}"#),
            "Invalid user_data: watchlist must be an array of user id strings"
        );
    }
}

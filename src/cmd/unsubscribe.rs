//! `pusher:unsubscribe` (protocol §3.6), also used for every channel on disconnect. No reply;
//! leaving a channel one is not in does nothing.

use crate::{
    channel::{Access, ChannelKind},
    happenings::Happening,
    session::Session,
    transitions,
};

/// The client's `pusher:unsubscribe`.
pub async fn apply(session: &mut Session, channel: &str) {
    if session.subscriptions.contains_key(channel) {
        session.state.happenings.emit(|| Happening::Unsubscribed {
            app: session.app.id.clone(),
            socket_id: session.socket_id().to_string(),
            channel: channel.to_string(),
        });
    }
    leave(session, channel).await;
}

/// Leaves `channel`, by request or on disconnect.
pub async fn leave(session: &mut Session, channel: &str) {
    if session.subscriptions.remove(channel).is_none() {
        return;
    }
    tracing::debug!(app = %session.app.id, socket = session.socket_id(), channel, "unsubscribed");
    if ChannelKind::of(channel).access == Access::Reserved {
        // `#server-to-user-*` subscriptions live only in the session.
        return;
    }
    let (state, app) = (session.state.clone(), session.app.clone());
    let left = state
        .adapter
        .unsubscribe(&app.id, channel, session.socket_id())
        .await;
    transitions::left(&state, &app, channel, left).await;
}

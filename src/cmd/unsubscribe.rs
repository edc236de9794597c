//! `pusher:unsubscribe` (protocol §3.6), also used for every channel on disconnect. No reply;
//! leaving a channel one is not in does nothing.

use crate::{frame, session::Session};

pub async fn leave(session: &mut Session, channel: &str) {
    if session.subscriptions.remove(channel).is_none() {
        return;
    }
    let hub = session.state.adapter.clone();
    let left = hub
        .unsubscribe(&session.app.id, channel, session.socket_id())
        .await;
    if let Some(user_id) = left.member_removed {
        hub.publish(
            &session.app.id,
            channel,
            frame::member_removed(channel, &user_id),
            None,
            None,
        )
        .await;
    }
}

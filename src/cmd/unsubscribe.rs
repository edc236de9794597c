//! `pusher:unsubscribe` (protocol §3.6), also used for every channel on disconnect. No reply;
//! leaving a channel one is not in does nothing.

use crate::{
    channel::{Access, ChannelKind},
    frame,
    session::Session,
    subscription_count,
    webhook::WebhookEvent,
};

pub async fn leave(session: &mut Session, channel: &str) {
    if session.subscriptions.remove(channel).is_none() {
        return;
    }
    if ChannelKind::of(channel).access == Access::Reserved {
        // `#server-to-user-*` subscriptions live only in the session.
        return;
    }
    let app = session.app.clone();
    let hub = session.state.adapter.clone();
    let left = hub.unsubscribe(&app.id, channel, session.socket_id()).await;
    let webhooks = &session.state.webhooks;
    if let Some(user_id) = left.member_removed {
        hub.publish(
            &app.id,
            channel,
            frame::member_removed(channel, &user_id),
            None,
            None,
        )
        .await;
        webhooks.emit(
            &app,
            WebhookEvent::MemberRemoved {
                channel: channel.to_string(),
                user_id,
            },
        );
    }
    if left.vacated {
        webhooks.emit(
            &app,
            WebhookEvent::ChannelVacated {
                channel: channel.to_string(),
            },
        );
    }
    subscription_count::changed(&session.state, &app, channel).await;
}

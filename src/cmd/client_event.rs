//! Client events (`client-*`, protocol §7): relayed to the channel's other subscribers after
//! every rule of the reference is checked.

use tokio::time::Instant;

use crate::{
    channel::{validate_event_name, Access, ChannelKind},
    error::FrameError,
    frame::{self, ClientEvent},
    happenings::{Published, Source},
    session::Session,
    webhook::WebhookEvent,
};

pub async fn apply(session: &mut Session, event: ClientEvent) -> Result<(), FrameError> {
    if !session.app.client_events {
        return Err(FrameError::ClientEventsDisabled);
    }
    let channel = event
        .channel
        .ok_or(FrameError::MissingParameter("channel"))?;
    validate_event_name(&event.event, session.app.max_event_name_length)
        .map_err(FrameError::InvalidEventName)?;
    let Some(user_id) = session.subscriptions.get(&channel) else {
        return Err(FrameError::ClientEventNotSubscribed(channel));
    };
    match ChannelKind::of(&channel).access {
        Access::Private | Access::Presence => {}
        Access::Encrypted => return Err(FrameError::ClientEventEncryptedChannel(channel)),
        Access::Public | Access::Reserved => {
            return Err(FrameError::ClientEventPublicChannel(channel))
        }
    }
    if event.data.get().len() > session.app.payload_limit {
        return Err(FrameError::ClientEventTooLarge {
            limit: session.app.payload_limit,
        });
    }
    let user_id = user_id.clone();
    if !session.client_event_window.allow(Instant::now()) {
        session.rate_limited(crate::metrics::Limit::ClientEvent);
        return Err(FrameError::ClientEventRateLimited);
    }
    let frame = frame::client_event(&event.event, &channel, &event.data, user_id.as_deref());
    session
        .state
        .adapter
        .publish(
            &session.app.id,
            &channel,
            frame,
            Some(session.socket_id()),
            None,
        )
        .await?;
    // The webhook carries data as a string: a string as sent, anything else as its JSON text.
    let data = match serde_json::from_str::<String>(event.data.get()) {
        Ok(text) => text,
        Err(_) => event.data.get().to_string(),
    };
    session.state.happenings.emit_published(|| Published {
        app: session.app.id.clone(),
        channel: channel.clone(),
        event: event.event.clone(),
        data: data.clone(),
        source: Source::Client,
        socket_id: Some(session.socket_id().to_string()),
        user_id: user_id.clone(),
    });
    session.state.webhooks.emit(
        &session.app,
        WebhookEvent::ClientEvent {
            channel,
            event: event.event,
            data,
            socket_id: session.socket_id().to_string(),
            user_id,
        },
    );
    Ok(())
}

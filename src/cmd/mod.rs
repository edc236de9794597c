//! One module per client-to-server event: each validates its frame and applies it to the
//! session and the hub.

pub mod client_event;
pub mod ping;
pub mod signin;
pub mod subscribe;
pub mod unsubscribe;

use std::time::Instant;

use crate::{error::FrameError, frame::ClientFrame, session::Session};

/// Applies one parsed frame; a rejection is reported to the client and the connection goes on.
pub async fn apply(session: &mut Session, frame: ClientFrame) {
    let result = match frame {
        ClientFrame::Ping => {
            ping::apply(session);
            Ok(())
        }
        // Any frame counts as activity; the connection loop has already noted it.
        ClientFrame::Pong => Ok(()),
        ClientFrame::Subscribe(request) => {
            let channel = request.channel.clone();
            let rate = session.subscription_bucket.per_second();
            if session.subscription_bucket.take(Instant::now()) {
                subscribe::apply(session, request).await
            } else {
                Err(FrameError::SubscriptionRateLimited(rate))
            }
            .map_err(|e| (Some(channel), e))
        }
        ClientFrame::Unsubscribe { channel } => {
            // Counted but never refused: leaving only frees resources.
            session.subscription_bucket.spend(Instant::now());
            unsubscribe::leave(session, &channel).await;
            Ok(())
        }
        ClientFrame::Signin(request) => {
            signin::apply(session, request).await.map_err(|e| (None, e))
        }
        ClientFrame::ClientEvent(event) => client_event::apply(session, event)
            .await
            .map_err(|e| (None, e)),
    };
    if let Err((channel, error)) = result {
        session.send_error(&error, channel.as_deref());
    }
}

//! One module per client-to-server event: each validates its frame and applies it to the
//! session and the hub.

pub mod client_event;
pub mod ping;
pub mod signin;
pub mod subscribe;
pub mod unsubscribe;

use tokio::time::Instant;

use crate::{
    error::{CloseError, FrameError},
    frame::ClientFrame,
    session::Session,
};

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
            subscribe::apply(session, request)
                .await
                .map_err(|e| (Some(channel), e))
        }
        ClientFrame::Unsubscribe { channel } => {
            // Counted but never refused: leaving only frees resources.
            session.subscription_bucket.spend(Instant::now());
            unsubscribe::apply(session, &channel).await;
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
        if error == FrameError::Unavailable {
            session.outbox.close(CloseError::ClusterLost);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        config::Config,
        frame::SubscribeRequest,
        hub::memory::MemoryAdapter,
        socket::{Bounds, Outbox, Queue},
        state::ServerState,
    };

    fn session(config: Config) -> (Session, Queue) {
        let state = Arc::new(ServerState::new(config, Arc::new(MemoryAdapter::new())));
        let app = state.apps.by_id("app_id").unwrap().clone();
        let bounds = Bounds {
            frames: 100,
            bytes: 1 << 20,
        };
        let (outbox, queue) = Outbox::new("1.1".into(), bounds);
        (Session::new(state, app, outbox), queue)
    }

    fn subscribe(channel: &str) -> ClientFrame {
        ClientFrame::Subscribe(SubscribeRequest {
            channel: channel.into(),
            auth: None,
            channel_data: None,
        })
    }

    fn events(queue: &mut Queue) -> Vec<String> {
        std::iter::from_fn(|| queue.try_recv())
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(f.text()).unwrap();
                v["event"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn subscription_churn_is_rate_limited_after_a_burst() {
        let mut config = Config::default();
        config.apps[0].max_channels_per_connection = 3;
        config.apps[0].subscription_rate = 2;
        let (mut session, mut queue) = session(config);
        for channel in ["a", "b", "c"] {
            apply(&mut session, subscribe(channel)).await;
        }
        let succeeded = "pusher_internal:subscription_succeeded";
        assert_eq!(events(&mut queue), [succeeded; 3]);
        apply(
            &mut session,
            ClientFrame::Unsubscribe {
                channel: "a".into(),
            },
        )
        .await;
        apply(&mut session, subscribe("a")).await;
        assert_eq!(
            events(&mut queue),
            ["pusher:error", "pusher:subscription_error"],
            "the burst of 3 is spent"
        );
        // Two tokens a second: half a second earns the next one.
        tokio::time::sleep(Duration::from_millis(500)).await;
        apply(&mut session, subscribe("a")).await;
        assert_eq!(events(&mut queue), [succeeded]);
    }
}

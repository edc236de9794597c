//! One WebSocket connection from handshake to close: the socket id, the outgoing queue, reading
//! and dispatching frames, liveness (server pings after `activity_timeout` of silence, 4201 when
//! no answer comes), and closing with the right code.

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use tokio::time::{sleep_until, Instant};

use crate::{
    cmd,
    config::AppConfig,
    error::{CloseError, FrameError},
    frame::{self, ClientFrame},
    server::ServerState,
    session::Session,
    socket::{new_socket_id, Outbox},
};

/// Bytes a text frame may carry beyond the payload limit, for the envelope around `data`.
const ENVELOPE_ALLOWANCE: usize = 1024;

/// Most frames written before one flush.
const WRITE_BATCH: usize = 64;

/// How long a closing connection may take to flush its last frames and see the peer's close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Closes a freshly upgraded socket at once: the handshake itself was refused.
pub async fn refuse(mut ws: WebSocketStream, reason: CloseError) {
    let _ = ws
        .send(Message::Text(
            frame::error(&reason.to_string(), Some(reason.code())).to_string(),
        ))
        .await;
    let _ = ws.send(close_message(&reason)).await;
    drain_until_closed(ws).await;
}

fn close_message(reason: &CloseError) -> Message {
    Message::Close(Some((CloseCode::from(reason.code()), reason.to_string())))
}

/// Reads until the peer acknowledges the close (or goes away), so the close frame is not lost to
/// a TCP reset.
async fn drain_until_closed<S>(mut stream: S)
where
    S: StreamExt<Item = std::io::Result<Message>> + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(msg)) = stream.next().await {
            if msg.is_close() {
                break;
            }
        }
    })
    .await;
}

pub async fn serve(ws: WebSocketStream, state: Arc<ServerState>, app: Arc<AppConfig>) {
    let _live = state.connection_guard();
    let (outbox, mut queue) = Outbox::new(new_socket_id(), state.config.outbox_capacity);
    if state
        .adapter
        .add_socket(&app.id, &outbox, app.max_connections)
        .await
        .is_err()
    {
        return refuse(ws, CloseError::OverConnectionQuota).await;
    }
    let activity_timeout = state.config.activity_timeout;
    let pong_timeout = state.config.pong_timeout;
    let frame_limit = app.payload_limit.saturating_add(ENVELOPE_ALLOWANCE);
    outbox.send(frame::connection_established(
        outbox.socket_id(),
        activity_timeout.as_secs(),
    ));

    let mut shutdown = state.shutdown.clone();
    let mut session = Session::new(state.clone(), app.clone(), outbox.clone());
    let (mut sink, mut stream) = ws.split();
    let mut deadline = Instant::now() + activity_timeout;
    let mut awaiting_pong = false;
    let authorization_deadline =
        Instant::now() + Duration::from_millis(app.authorization_timeout_ms);

    let reason: Option<CloseError> = loop {
        tokio::select! {
            biased;
            reason = outbox.close_signal().requested() => break Some(reason.clone()),
            _ = shutdown.wait() => break Some(CloseError::ShuttingDown),
            Some(out) = queue.recv() => {
                // Whatever else is already queued goes out in the same flush: one write for a
                // burst instead of one per frame.
                let write = async {
                    sink.feed(Message::Text(out.to_string())).await?;
                    for _ in 1..WRITE_BATCH {
                        match queue.try_recv() {
                            Ok(next) => sink.feed(Message::Text(next.to_string())).await?,
                            Err(_) => break,
                        }
                    }
                    sink.flush().await
                };
                // A client that stops reading blocks the write; its queue then fills and the
                // close signal must still win.
                tokio::select! {
                    biased;
                    reason = outbox.close_signal().requested() => break Some(reason.clone()),
                    written = write => if written.is_err() { break None },
                }
            }
            incoming = stream.next() => {
                let Some(Ok(message)) = incoming else { break None };
                deadline = Instant::now() + activity_timeout;
                awaiting_pong = false;
                match message {
                    Message::Text(text) if text.len() > frame_limit => session.send_error(
                        &FrameError::FrameTooLarge { size: text.len(), limit: frame_limit },
                        None,
                    ),
                    Message::Text(text) => match ClientFrame::parse(&text) {
                        Ok(parsed) => cmd::apply(&mut session, parsed).await,
                        Err(error) => session.send_error(&error, None),
                    },
                    Message::Binary(_) => session.send_error(&FrameError::BinaryFrame, None),
                    // tungstenite answers pings itself; both still count as activity.
                    Message::Ping(_) | Message::Pong(_) => {}
                    Message::Close(_) => break None,
                }
            }
            _ = sleep_until(authorization_deadline), if app.authorized_connections && !session.authorized => {
                break Some(CloseError::NotAuthorizedInTime);
            }
            _ = sleep_until(deadline) => {
                if awaiting_pong {
                    break Some(CloseError::PongNotReceived);
                }
                outbox.send(frame::ping());
                awaiting_pong = true;
                deadline = Instant::now() + pong_timeout;
            }
        }
    };

    session.close().await;
    state
        .adapter
        .remove_socket(&app.id, outbox.socket_id())
        .await;

    let Some(reason) = reason else {
        // The peer closed: complete its closing handshake.
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
        return;
    };
    // Bounded: the peer may not be reading at all.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if reason != CloseError::OverCapacity {
            // Whatever was queued before the decision still goes out first.
            while let Ok(out) = queue.try_recv() {
                sink.send(Message::Text(out.to_string())).await?;
            }
            let error = frame::error(&reason.to_string(), Some(reason.code()));
            sink.send(Message::Text(error.to_string())).await?;
        }
        sink.send(close_message(&reason)).await?;
        drain_until_closed(stream).await;
        Ok::<_, std::io::Error>(())
    })
    .await;
}

//! One client connection from handshake to close, whatever its transport: the socket id, the
//! outgoing queue, reading and dispatching frames, liveness (server pings after
//! `activity_timeout` of silence, 4201 when no answer comes), and closing with the right code.
//!
//! The outgoing side is a task of its own, the writer (`write`): a delivery wakes only it, never
//! the connection's reading, timers and session, and it writes whatever is queued in one go.
//! The connection task waits on reading, its two deadlines (liveness and authorization, one
//! timer), shutdown and the writer's end; the writer on the queue, the socket and its stall
//! timer. So a client that stops reading cannot stop the rest: its close signal, liveness and
//! authorization deadlines still fire while a write is blocked, and a write that makes no
//! progress for `write_timeout` ends the connection. When the connection ends, the writer hands
//! the queue and the transport back for the last frames and the close.

use std::{sync::Arc, time::Duration};

use tokio::time::{sleep_until, Instant};
use tokio_util::task::AbortOnDropHandle;

use crate::{
    cmd,
    config::AppConfig,
    error::{CloseError, FrameError},
    frame::{self, ClientFrame, Frame},
    happenings::Happening,
    hub::Refusal,
    metrics::AppMeters,
    session::Session,
    socket::{Next, Outbox, Queue},
    state::ServerState,
    transport::{flush, Received, Sink, Source},
};

/// Bytes a text frame may carry beyond the payload limit, for the envelope around `data`.
const ENVELOPE_ALLOWANCE: usize = 1024;

/// Most frames moved from the queue to the transport per wake-up.
const PULL_BATCH: usize = 64;

/// Frames stay in the bounded queue (where they count against the 4100 bound) while the
/// transport has this much unwritten.
const SINK_HIGH_WATER: usize = 64 * 1024;

/// How long a closing connection may take to flush its last frames and see the peer's close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Largest text frame handled as a Pusher message for an app with this payload limit; larger
/// ones get a `pusher:error`.
pub fn frame_limit(payload_limit: usize) -> usize {
    payload_limit.saturating_add(ENVELOPE_ALLOWANCE)
}

/// Largest message the transport assembles at all; beyond it the connection is closed with
/// 1009 before the message is buffered. Twice the frame limit, so a message a little too large
/// still gets the friendlier `pusher:error`.
pub fn message_cap(payload_limit: usize) -> usize {
    frame_limit(payload_limit).saturating_mul(2)
}

/// How a connection's loop ended.
#[derive(Debug)]
enum End {
    /// The server decided: send `pusher:error` (unless over capacity) and close with the code.
    Close(CloseError),
    /// The client sent its close frame.
    PeerClosed,
    /// The client broke the transport's rules.
    Violation(u16, &'static str),
    /// The socket failed.
    Gone,
    /// The peer took none of the unwritten bytes for `write_timeout`: it is not reading.
    Stalled,
}

/// Closes a new connection at once: the handshake itself was refused.
pub async fn refuse(source: impl Source, mut sink: impl Sink, reason: CloseError) {
    crate::log_limit::connection_refused(&format_args!("{} ({})", reason, reason.code()));
    sink.push(frame::error(&reason.to_string(), Some(reason.code())));
    sink.push_close(reason.code(), &reason.to_string());
    finish(source, sink).await;
}

/// Writes what is left and waits for the peer's close, so the close frame is not lost to a TCP
/// reset; bounded, since the peer may not be reading at all.
async fn finish(mut source: impl Source, mut sink: impl Sink) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if flush(&mut sink).await.is_ok() {
            loop {
                match source.recv().await {
                    Received::Closed(_) | Received::Gone | Received::Violation { .. } => break,
                    _ => {}
                }
            }
        }
    })
    .await;
}

pub async fn serve(
    mut source: impl Source,
    sink: impl Sink,
    state: Arc<ServerState>,
    app: Arc<AppConfig>,
    origin: String,
) {
    let (outbox, queue) = Outbox::new(state.socket_ids.next(), state.outbox_bounds());
    if let Err(refusal) = state
        .adapter
        .add_socket(&app.id, &outbox, app.max_connections)
        .await
    {
        let reason = match refusal {
            Refusal::OverQuota => CloseError::OverConnectionQuota,
            Refusal::Unavailable => CloseError::ClusterUnavailable,
        };
        state.happenings.emit(|| Happening::Refused {
            app: app.id.clone(),
            code: reason.code(),
            reason: reason.to_string(),
        });
        return refuse(source, sink, reason).await;
    }
    tracing::debug!(app = %app.id, socket = outbox.socket_id(), "connected");
    state.happenings.emit(|| Happening::Connected {
        app: app.id.clone(),
        socket: outbox.clone(),
        origin,
    });
    let activity_timeout = state.config.activity_timeout;
    let pong_timeout = state.config.pong_timeout;
    let write_timeout = state.config.write_timeout;
    // The apps store may change this app while the connection is open (disabling or removing
    // it closes the connection through the outbox). Checked at the first turn too: the app was
    // looked up before the connection was registered.
    let mut apps_seen = u64::MAX;
    outbox.send(frame::connection_established(
        outbox.socket_id(),
        activity_timeout.as_secs(),
    ));

    let mut session = Session::new(state.clone(), app.clone(), outbox.clone());
    let meters = state.metrics.as_ref().map(|m| m.meters(&app.id));
    let mut writer = AbortOnDropHandle::new(tokio::spawn(write(
        queue,
        sink,
        state.clone(),
        outbox.clone(),
        meters.clone(),
        write_timeout,
    )));
    // The writer's queue and transport, once it has handed them back.
    let mut handed_back = None;
    // The two deadlines share one timer, set to the earliest. They move only when they pass
    // (each checks the time of the last frame instead): a delivery touches no timer.
    let now = Instant::now();
    let connected_at = now;
    let mut last_heard = now;
    let mut ping_sent: Option<Instant> = None;
    let mut liveness_at = now + activity_timeout;
    let authorization_at = now + Duration::from_millis(app.authorization_timeout_ms);
    let timer = sleep_until(liveness_at);
    let shutdown = state.shutdown.cancelled();
    tokio::pin!(timer, shutdown);

    let end = loop {
        if let Err(reason) = refresh_app(&state, &mut session, &mut apps_seen) {
            break End::Close(reason);
        }
        let awaiting_authorization = session.app.authorized_connections && !session.authorized;
        let mut due = liveness_at;
        if awaiting_authorization {
            due = due.min(authorization_at);
        }
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        tokio::select! {
            biased;
            // Before reading: a client that floods frames and never reads must still see its
            // writer's end (a write stall, 4100).
            back = &mut writer => {
                let Ok((outgoing, queue, sink)) = back else {
                    break End::Gone;
                };
                handed_back = Some((queue, sink));
                break match outgoing {
                    Outgoing::Close(reason) => End::Close(reason),
                    Outgoing::Stalled => End::Stalled,
                    Outgoing::Gone | Outgoing::Stopped => End::Gone,
                };
            }
            _ = &mut shutdown => break End::Close(CloseError::ShuttingDown),
            _ = &mut timer => {
                let now = Instant::now();
                if awaiting_authorization && now >= authorization_at {
                    break End::Close(CloseError::NotAuthorizedInTime);
                }
                if now >= liveness_at {
                    liveness_at = match ping_sent {
                        // Any frame since the ping answers it.
                        Some(sent) if last_heard > sent => {
                            ping_sent = None;
                            last_heard + activity_timeout
                        }
                        Some(sent) if now >= sent + pong_timeout => {
                            break End::Close(CloseError::PongNotReceived);
                        }
                        Some(sent) => sent + pong_timeout,
                        None if now >= last_heard + activity_timeout => {
                            outbox.send(frame::ping());
                            ping_sent = Some(now);
                            now + pong_timeout
                        }
                        None => last_heard + activity_timeout,
                    };
                }
            }
            received = source.recv() => {
                let text = match received {
                    Received::Text(text) => text,
                    Received::Closed(_) => break End::PeerClosed,
                    Received::Violation { code, reason } => break End::Violation(code, reason),
                    Received::Gone => break End::Gone,
                    other => {
                        last_heard = Instant::now();
                        match other {
                            Received::Binary => {
                                state.happenings.emit_wire(|| Happening::BinaryIn {
                                    socket_id: outbox.socket_id().to_string(),
                                });
                                session.send_error(&FrameError::BinaryFrame, None)
                            }
                            Received::Ping(payload) => {
                                outbox.pong(payload);
                                // Answered before the next frame is read, as soon as is
                                // practical: the writer runs first even on one thread.
                                tokio::task::yield_now().await;
                            }
                            _ => {}
                        }
                        continue;
                    }
                };
                last_heard = Instant::now();
                // Deliveries do not pass the top of the loop: the app may have changed (a
                // rotated secret, a new limit) since it last did.
                if let Err(reason) = refresh_app(&state, &mut session, &mut apps_seen) {
                    break End::Close(reason);
                }
                let frame_limit = self::frame_limit(session.app.payload_limit);
                if let Some(meters) = &meters {
                    meters.received(text.len() as u64);
                }
                state.happenings.emit_wire(|| Happening::FrameIn {
                    socket_id: outbox.socket_id().to_string(),
                    text: text.to_string(),
                });
                if text.len() > frame_limit {
                    session.send_error(
                        &FrameError::FrameTooLarge { size: text.len(), limit: frame_limit },
                        None,
                    );
                    continue;
                }
                match ClientFrame::parse(&text) {
                    Ok(parsed) => {
                        outbox.hold();
                        cmd::apply(&mut session, parsed).await;
                        outbox.release();
                    }
                    Err(error) => session.send_error(&error, None),
                }
            }
        }
    };

    let mut transport = match handed_back {
        Some(back) => Some(back),
        None => {
            outbox.stop_writing();
            writer.await.ok().map(|(_, queue, sink)| (queue, sink))
        }
    };
    if let (End::Close(reason), Some((queue, sink))) = (&end, &mut transport) {
        if *reason != CloseError::OverCapacity {
            // Whatever was queued before the decision still goes out first.
            let mut bytes = 0;
            let frames = queue.drain(usize::MAX, |frame| {
                sent(&state, &outbox, &frame);
                bytes += frame.size();
                sink.push(frame);
            });
            let error = frame::error(&reason.to_string(), Some(reason.code()));
            sent(&state, &outbox, &error);
            let error_bytes = error.size();
            sink.push(error);
            if let Some(meters) = &meters {
                meters.sent(frames as u64 + 1, (bytes + error_bytes) as u64);
            }
        }
    }
    match &end {
        End::Stalled => tracing::warn!(
            app = %app.id,
            socket = outbox.socket_id(),
            "slow consumer dropped: it took none of its unwritten frames for {:?}",
            write_timeout
        ),
        End::Close(CloseError::OverCapacity) => tracing::warn!(
            app = %app.id,
            socket = outbox.socket_id(),
            "slow consumer closed with 4100: its queue of unwritten frames was full"
        ),
        _ => {}
    }
    tracing::debug!(app = %app.id, socket = outbox.socket_id(), end = ?end, "connection ended");
    let code = match &end {
        End::PeerClosed | End::Gone | End::Stalled => None,
        End::Violation(code, _) => Some(*code),
        End::Close(reason) => Some(reason.code()),
    };
    // Before the departure's effects on others (member_removed...), which it causes.
    state.happenings.emit(|| Happening::Closed {
        app: app.id.clone(),
        socket_id: outbox.socket_id().to_string(),
        code,
        end: match &end {
            End::PeerClosed => "client",
            End::Gone => "gone",
            End::Stalled => "stalled",
            End::Violation(..) | End::Close(_) => "server",
        },
    });
    let channels: Vec<String> = session.subscriptions.keys().cloned().collect();
    session.close().await;
    state
        .adapter
        .remove_socket(&app.id, outbox.socket_id())
        .await;

    // None if the writer failed: there is nothing left to close with.
    let closing = transport.map(|(_, sink)| sink);
    match (end, closing) {
        (_, None) | (End::Gone | End::Stalled, _) => {}
        (End::PeerClosed, Some(mut sink)) => {
            sink.push_close(1000, "");
            finish(source, sink).await;
        }
        (End::Violation(code, reason), Some(mut sink)) => {
            tracing::debug!(
                socket = outbox.socket_id(),
                code,
                reason,
                "protocol violation"
            );
            sink.push_close(code, reason);
            finish(source, sink).await;
        }
        (End::Close(reason), Some(mut sink)) => {
            sink.push_close(reason.code(), &reason.to_string());
            finish(source, sink).await;
        }
    }
    state.happenings.emit(|| Happening::Disconnected {
        app: app.id.clone(),
        socket_id: outbox.socket_id().to_string(),
        channels,
        lifetime_secs: connected_at.elapsed().as_secs(),
        code,
    });
}

/// Picks up what the apps store changed in the connection's app since `seen`: a disabled or
/// removed app ends the connection.
fn refresh_app(
    state: &ServerState,
    session: &mut Session,
    seen: &mut u64,
) -> Result<(), CloseError> {
    let generation = state.apps.generation();
    if generation == *seen {
        return Ok(());
    }
    *seen = generation;
    match state.apps.by_id(&session.app.id) {
        None => Err(CloseError::UnknownApp),
        Some(now) if !now.enabled => Err(CloseError::AppDisabled),
        Some(now) => {
            if !Arc::ptr_eq(&now, &session.app) {
                session.app = now;
            }
            Ok(())
        }
    }
}

/// Why the writer stopped.
enum Outgoing {
    Close(CloseError),
    /// The socket failed.
    Gone,
    /// The peer took none of the unwritten bytes for `write_timeout`: it is not reading.
    Stalled,
    /// The connection ended for another reason and asked for the transport back.
    Stopped,
}

/// The connection's outgoing side, as a task of its own: a delivery wakes only this small loop,
/// not the connection's reading, timers and session, whose state stays out of the cache.
/// Hands the queue and the transport back when it stops, for the connection's last frames.
async fn write<S: Sink>(
    mut queue: Queue,
    mut sink: S,
    state: Arc<ServerState>,
    outbox: Outbox,
    meters: Option<Arc<AppMeters>>,
    write_timeout: Duration,
) -> (Outgoing, Queue, S) {
    let outgoing = pump(
        &mut queue,
        &mut sink,
        &state,
        &outbox,
        meters.as_deref(),
        write_timeout,
    )
    .await;
    (outgoing, queue, sink)
}

/// Moves queued frames (and pongs) to the transport and writes them until the connection ends.
async fn pump(
    queue: &mut Queue,
    sink: &mut impl Sink,
    state: &ServerState,
    outbox: &Outbox,
    meters: Option<&AppMeters>,
    write_timeout: Duration,
) -> Outgoing {
    // The last time the peer took bytes, or the backlog was empty.
    let mut last_progress = Instant::now();
    // Armed only while bytes wait: an idle writer touches no timer.
    let stall = sleep_until(last_progress + write_timeout);
    tokio::pin!(stall);
    loop {
        let backlog = sink.backlog();
        if backlog > 0 && stall.deadline() != last_progress + write_timeout {
            stall.as_mut().reset(last_progress + write_timeout);
        }
        tokio::select! {
            biased;
            // First: a client that floods pings keeps the queue ready and must still be caught.
            _ = &mut stall, if backlog > 0 => {
                if last_progress.elapsed() >= write_timeout {
                    return Outgoing::Stalled;
                }
            }
            next = queue.next(backlog < SINK_HIGH_WATER) => {
                if backlog == 0 {
                    last_progress = Instant::now();
                }
                match next {
                    Next::Close(reason) => return Outgoing::Close(reason),
                    Next::Stop => return Outgoing::Stopped,
                    Next::Pong(payload) => sink.pong(payload),
                    Next::Frames => {
                        // Whatever is queued goes out in the same write.
                        let mut bytes = 0;
                        let frames = queue.drain(PULL_BATCH, |frame| {
                            sent(state, outbox, &frame);
                            bytes += frame.size();
                            sink.push(frame);
                        });
                        if let Some(meters) = meters {
                            meters.sent(frames as u64, bytes as u64);
                        }
                    }
                }
                if sink.try_write().is_err() {
                    return Outgoing::Gone;
                }
                // A queue that never empties must not keep other tasks from running.
                tokio::task::coop::consume_budget().await;
            }
            written = sink.write_some(), if backlog > 0 => match written {
                Ok(()) => last_progress = Instant::now(),
                Err(_) => return Outgoing::Gone,
            },
        }
    }
}

/// A frame is about to be written to the client.
fn sent(state: &ServerState, outbox: &Outbox, frame: &Frame) {
    state.happenings.emit_wire(|| Happening::FrameOut {
        socket_id: outbox.socket_id().to_string(),
        text: frame.text().to_string(),
    });
}

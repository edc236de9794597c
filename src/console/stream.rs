//! One console WebSocket: writes its app's events as they come, ignores what the page sends,
//! and ends when the page closes, stops reading, or the server shuts down.

use std::sync::Arc;

use tokio::time::{sleep_until, Instant};

use super::{event, Watch};
use crate::{
    frame::Frame,
    state::ServerState,
    transport::{flush, Received, Sink, Source},
};

/// Bytes written but not yet taken by the page, beyond which no more events are pulled from
/// the queue (which then fills, and counts what it leaves out).
const HIGH_WATER: usize = 64 * 1024;

pub async fn serve(
    mut source: impl Source,
    mut sink: impl Sink,
    state: Arc<ServerState>,
    mut watch: Watch,
) {
    let write_timeout = state.config.write_timeout;
    let mut last_progress = Instant::now();
    let stall = sleep_until(last_progress + write_timeout);
    let shutdown = state.shutdown.cancelled();
    tokio::pin!(stall, shutdown);
    tracing::debug!(app = %watch.app.id, "console opened");
    loop {
        let backlog = sink.backlog();
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                sink.push_close(1001, "server shutting down");
                break;
            }
            written = sink.write_some(), if backlog > 0 => match written {
                Ok(()) => last_progress = Instant::now(),
                Err(_) => return,
            },
            _ = &mut stall => {
                let now = Instant::now();
                if sink.backlog() == 0 {
                    last_progress = now;
                } else if now.duration_since(last_progress) >= write_timeout {
                    // Not reading: its seat goes to someone who is.
                    return;
                }
                stall.as_mut().reset(last_progress + write_timeout);
            }
            line = watch.lines.recv(), if backlog < HIGH_WATER => {
                let Some(line) = line else { break };
                let dropped = watch.take_dropped();
                if dropped > 0 {
                    sink.push(Frame::from(event::dropped(&watch.app.id, dropped).as_str()));
                }
                sink.push(Frame::from(&*line));
                if sink.try_write().is_err() {
                    return;
                }
            }
            received = source.recv() => match received {
                // Poxa's console ignores what the page sends; so does this one.
                Received::Text(_) | Received::Binary | Received::Pong => {}
                Received::Ping(payload) => sink.pong(payload),
                Received::Closed(_) => {
                    sink.push_close(1000, "");
                    break;
                }
                Received::Violation { code, reason } => {
                    sink.push_close(code, reason);
                    break;
                }
                Received::Gone => return,
            },
        }
    }
    drop(watch);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush(&mut sink)).await;
}

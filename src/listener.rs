//! Accepting TCP connections, on the plain listener or the TLS one. Each accepted socket gets
//! Nagle's algorithm off and its own tracked task. When accepting fails (every descriptor
//! taken, most often) the loop backs off instead of spinning, and says so once per interval
//! with a count, not once per failure.

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpListener, time::Instant};
use tokio_rustls::TlsAcceptor;

use crate::{service::Rest, state::ServerState};

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Accept failures are summarized in one log line per interval.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// `tls`: each connection's handshake first, in its own task.
pub async fn run(
    listener: TcpListener,
    state: Arc<ServerState>,
    rest: Rest,
    tls: Option<TlsAcceptor>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u64;
    let mut reported_at: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let error = match accepted {
            Ok((stream, peer)) => {
                backoff = FIRST_BACKOFF;
                // Pusher traffic is many small frames (a subscription reply, then a cached event
                // right behind it); with Nagle on, the second waits for the client's delayed
                // ACK, about 40 ms.
                let _ = stream.set_nodelay(true);
                let state2 = state.clone();
                let rest = rest.clone();
                match &tls {
                    None => state
                        .tasks
                        .spawn(crate::service::serve_plain(stream, peer, state2, rest)),
                    Some(acceptor) => state.tasks.spawn(crate::service::serve_tls(
                        stream,
                        peer,
                        state2,
                        rest,
                        acceptor.clone(),
                    )),
                };
                continue;
            }
            Err(e) => e,
        };
        failures += 1;
        if reported_at.is_none_or(|at| at.elapsed() >= REPORT_INTERVAL) {
            tracing::warn!(
                failures,
                backoff_ms = backoff.as_millis() as u64,
                "accept failed: {error}; backing off"
            );
            failures = 0;
            reported_at = Some(Instant::now());
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

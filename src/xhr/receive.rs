//! A receiving request's response body: the session's batches as lines, heartbeats while there
//! is nothing to say, and the end. A stream (`xhr_streaming`) ends after `http_stream_bytes`,
//! so that proxies do not buffer it forever; a poll (`xhr`) ends after its first line.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use super::{
    framing,
    session::{Attached, Chunk},
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Streaming,
    Polling,
}

struct Receiving {
    attached: Attached,
    mode: Mode,
    /// The `o` line still to write (a new session).
    opening: bool,
    heartbeat: Duration,
    /// Bytes after which a stream ends.
    limit: usize,
    written: usize,
    done: bool,
}

/// How a receiving response paces itself.
#[derive(Clone, Copy)]
pub struct Pace {
    pub heartbeat: Duration,
    pub stream_bytes: usize,
}

/// The body of a receiving request on `attached`; `opened` for the request that created it.
pub fn body(
    attached: Attached,
    mode: Mode,
    opened: bool,
    pace: Pace,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let start = Receiving {
        attached,
        mode,
        opening: opened,
        heartbeat: pace.heartbeat,
        limit: pace.stream_bytes,
        written: 0,
        done: false,
    };
    futures_util::stream::unfold(start, |mut r| async move {
        if r.done {
            // Dropping `r` detaches the request from the session.
            return None;
        }
        let line = next_line(&mut r).await;
        r.written += line.len();
        if r.mode == Mode::Polling || r.written >= r.limit {
            r.done = true;
        }
        Some((Ok(line), r))
    })
}

async fn next_line(r: &mut Receiving) -> Bytes {
    if r.opening {
        r.opening = false;
        return framing::open();
    }
    let heartbeat = r.heartbeat;
    let chunks = r.attached.chunks();
    let first = match tokio::time::timeout(heartbeat, chunks.recv()).await {
        Err(_) => return framing::heartbeat(),
        Ok(first) => first,
    };
    match first {
        Some(Chunk::Frames(mut frames)) => {
            // Whatever else is ready goes in the same line, up to a close.
            let mut close = None;
            while let Ok(chunk) = chunks.try_recv() {
                match chunk {
                    Chunk::Frames(more) => frames.extend(more),
                    Chunk::Close(code, reason) => {
                        close = Some((code, reason));
                        break;
                    }
                }
            }
            let mut line = framing::frames(&frames).to_vec();
            if let Some((code, reason)) = close {
                line.extend_from_slice(&framing::close(code, &reason));
                r.done = true;
            }
            line.into()
        }
        Some(Chunk::Close(code, reason)) => {
            r.done = true;
            framing::close(code, &reason)
        }
        None => {
            // The connection is gone without a close (it cannot be: it always sends one).
            r.done = true;
            framing::close(1006, "Session ended")
        }
    }
}

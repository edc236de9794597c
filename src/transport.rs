//! The seam between a connection's protocol logic (`connection.rs`) and the way its frames
//! travel. A transport is split in two halves so that the connection can wait on both at once:
//! a [`Source`] of what the client sent and a [`Sink`] that holds and writes what goes out.
//! The WebSocket transport is in `websocket/`; the HTTP fallback transports plug in here too.

use std::{future::Future, io};

use bytes::Bytes;

use crate::frame::Frame;

/// One thing a client sent, or why nothing more will come.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Text(String),
    Binary,
    /// A transport-level ping; the sink answers it.
    Ping(Bytes),
    /// Transport-level activity with no content (a WebSocket pong).
    Pong,
    /// The client closed, with its status code when it gave one.
    Closed(Option<u16>),
    /// The client broke the transport's rules; close with this code.
    Violation {
        code: u16,
        reason: &'static str,
    },
    /// The connection is gone (reset, end of stream, read error).
    Gone,
}

/// The incoming half.
pub trait Source: Send {
    /// The next message. Cancel-safe: dropping the future before it resolves loses nothing.
    fn recv(&mut self) -> impl Future<Output = Received> + Send;
}

/// The outgoing half: frames pushed here are written in order by [`Sink::write_some`].
/// Owned (`'static`): a connection's writer runs it as a task of its own.
pub trait Sink: Send + 'static {
    fn push(&mut self, frame: Frame);

    /// Answers a transport-level ping. Only the latest unanswered one is kept, so a client that
    /// floods pings and never reads holds one pong, not one per ping.
    fn pong(&mut self, payload: Bytes);

    /// Ends the stream with `code` after everything pushed so far; later pushes are dropped.
    fn push_close(&mut self, code: u16, reason: &str);

    /// Bytes accepted but not yet written.
    fn backlog(&self) -> usize;

    /// Writes part of the backlog, as much as one write takes. Cancel-safe.
    fn write_some(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Writes what the transport takes right now without waiting, so frames just pushed go out
    /// in the same wake-up.
    fn try_write(&mut self) -> io::Result<()>;
}

/// Writes the whole backlog.
pub async fn flush(sink: &mut impl Sink) -> io::Result<()> {
    while sink.backlog() > 0 {
        sink.write_some().await?;
    }
    Ok(())
}

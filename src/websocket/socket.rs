//! A WebSocket over a byte stream (TCP, or TLS over TCP), split into the two
//! [`crate::transport`] halves.
//!
//! Memory while idle is the point: on TCP the read buffer is allocated only once the socket is
//! readable and released when it is empty, and the write queue holds shared frames (no copies)
//! and is released when drained.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    io::IoSlice,
    pin::Pin,
    task::{ready, Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWrite},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
};
use tokio_rustls::server::TlsStream;

use super::codec::{self, Decoder, Message};
use crate::{
    frame::Frame,
    transport::{Received, Sink, Source},
};

/// Bytes asked of the kernel per read; larger messages grow the buffer as they arrive.
const READ_CHUNK: usize = 4096;

/// Most frames handed to one vectored write.
const MAX_SLICES: usize = 64;

/// A stream a WebSocket can run on, as a reading and a writing half.
pub trait Stream {
    type Read: ReadIo;
    type Write: WriteIo;
    fn halves(self) -> (Self::Read, Self::Write);
}

/// The reading half of a stream.
pub trait ReadIo: Send + 'static {
    /// Appends what the stream has to `buf`; 0 is the end of the stream. Cancel-safe.
    fn fill(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
}

/// The writing half of a stream.
pub trait WriteIo: Send + 'static {
    /// Polled rather than async so that a waiting write holds no slices in its future: the
    /// writer's state stays small.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Writes what the stream takes without waiting (`WouldBlock` when nothing).
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize>;

    /// The same for one slice, the usual case at moderate rates.
    fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(bytes)])
    }

    /// Whether written bytes are held below, not yet on the socket (TLS records).
    fn unflushed(&self) -> bool {
        false
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Flushes what the stream takes without waiting.
    fn try_flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn halves(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl ReadIo for OwnedReadHalf {
    /// Allocates the buffer only once the socket is readable, so an idle connection holds none.
    /// Waits through the stream's own reader slot rather than `readable()`, whose waiter is
    /// added to and removed from a shared list each time the connection's loop turns.
    async fn fill(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            std::future::poll_fn(|cx| self.as_ref().poll_read_ready(cx)).await?;
            buf.reserve(READ_CHUNK);
            match self.try_read_buf(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl WriteIo for OwnedWriteHalf {
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write_vectored(Pin::new(self), cx, slices)
    }

    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        OwnedWriteHalf::try_write_vectored(self, slices)
    }

    /// `send` rather than a one-element `writev`: the kernel's vectored path costs more per
    /// call (measured in the README's performance section).
    fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, bytes)
    }
}

type Tls = TlsStream<TcpStream>;

impl Stream for Tls {
    type Read = TlsRead;
    type Write = TlsWrite;
    fn halves(self) -> (TlsRead, TlsWrite) {
        let (read, write) = tokio::io::split(self);
        (
            TlsRead(read),
            TlsWrite {
                io: write,
                unflushed: false,
            },
        )
    }
}

/// Both halves run in the connection's one task, so the lock `tokio::io::split` puts between
/// them is never contended.
pub struct TlsRead(tokio::io::ReadHalf<Tls>);

pub struct TlsWrite {
    io: tokio::io::WriteHalf<Tls>,
    /// rustls may take plaintext and hold its records until the socket takes them.
    unflushed: bool,
}

impl ReadIo for TlsRead {
    /// rustls decrypts into its own buffer first; this one is reserved as the read starts.
    async fn fill(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(READ_CHUNK);
        self.0.read_buf(buf).await
    }
}

impl WriteIo for TlsWrite {
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, slices))?;
        self.unflushed = true;
        Poll::Ready(Ok(written))
    }

    /// Polls once with a waker that does nothing: the connection's writer polls `write_some` with
    /// its own waker whenever a backlog remains, so no wake-up is lost.
    fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.io).poll_write_vectored(&mut cx, slices) {
            Poll::Ready(Ok(written)) => {
                self.unflushed = true;
                Ok(written)
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn unflushed(&self) -> bool {
        self.unflushed
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn try_flush(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.io).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                Ok(())
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(()),
        }
    }
}

/// Splits an upgraded stream; `already_read` is what the HTTP layer read past the handshake.
pub fn split<S: Stream>(
    stream: S,
    already_read: Bytes,
    max_message: usize,
) -> (WsSource<S::Read>, WsSink<S::Write>) {
    let (read, write) = stream.halves();
    let source = WsSource {
        io: read,
        buf: BytesMut::from(&already_read[..]),
        decoder: Decoder::new(max_message),
        ended: false,
    };
    let sink = WsSink {
        io: write,
        queue: VecDeque::new(),
        offset: 0,
        backlog: 0,
        pong: None,
        pong_at_front: false,
        closing: false,
    };
    (source, sink)
}

pub struct WsSource<R> {
    io: R,
    buf: BytesMut,
    decoder: Decoder,
    ended: bool,
}

impl<R: ReadIo> Source for WsSource<R> {
    async fn recv(&mut self) -> Received {
        if self.ended {
            return Received::Gone;
        }
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(message)) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return match message {
                        Message::Text(text) => Received::Text(text),
                        Message::Binary => Received::Binary,
                        Message::Ping(payload) => Received::Ping(payload),
                        Message::Pong => Received::Pong,
                        Message::Close(code) => {
                            self.ended = true;
                            Received::Closed(code)
                        }
                    };
                }
                Ok(None) => {}
                Err(violation) => {
                    self.ended = true;
                    return Received::Violation {
                        code: violation.code,
                        reason: violation.reason,
                    };
                }
            }
            match self.io.fill(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    self.ended = true;
                    return Received::Gone;
                }
                Ok(_) => {}
            }
        }
    }
}

pub struct WsSink<W> {
    io: W,
    queue: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    offset: usize,
    backlog: usize,
    pong: Option<Bytes>,
    /// The front of `queue` is a pong none of which is written yet.
    pong_at_front: bool,
    closing: bool,
}

impl<W> WsSink<W> {
    fn enqueue(&mut self, bytes: Bytes) {
        if self.closing {
            return;
        }
        self.backlog += bytes.len();
        self.queue.push_back(bytes);
    }
}

impl<W: WriteIo> Sink for WsSink<W> {
    fn push(&mut self, frame: Frame) {
        self.enqueue(frame.into_wire());
    }

    fn pong(&mut self, payload: Bytes) {
        if self.closing {
            return;
        }
        let pong = codec::encode(codec::OP_PONG, &payload);
        self.backlog += pong.len();
        if let Some(old) = self.pong.replace(pong) {
            self.backlog -= old.len();
        }
    }

    fn push_close(&mut self, code: u16, reason: &str) {
        self.enqueue(codec::close(code, reason));
        self.closing = true;
    }

    /// Bytes held below (TLS records not yet on the socket) count as one, so the connection
    /// keeps writing until they are out.
    fn backlog(&self) -> usize {
        self.backlog + usize::from(self.io.unflushed())
    }

    async fn write_some(&mut self) -> io::Result<()> {
        self.pong_between_frames();
        std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = fill_slices(&self.queue, self.offset, &mut slices);
            if count == 0 {
                return self.io.poll_flush(cx);
            }
            let written = ready!(self.io.poll_write_vectored(cx, &slices[..count]))?;
            Poll::Ready(self.advance(written))
        })
        .await
    }

    fn try_write(&mut self) -> io::Result<()> {
        self.pong_between_frames();
        while self.backlog > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = fill_slices(&self.queue, self.offset, &mut slices);
            let written = match &slices[..count] {
                [one] => self.io.try_write(one),
                many => self.io.try_write_vectored(many),
            };
            match written {
                Ok(written) => self.advance(written)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if self.io.unflushed() {
            self.io.try_flush()?;
        }
        Ok(())
    }
}

impl<W> WsSink<W> {
    /// A pong may only go between frames, never inside one already half written. One not yet
    /// started is replaced by a newer one, so a blocked socket holds one pong, not one per ping.
    fn pong_between_frames(&mut self) {
        if self.offset == 0 {
            if let Some(pong) = self.pong.take() {
                if self.pong_at_front {
                    let older = self.queue.pop_front().expect("the front is the older pong");
                    self.backlog -= older.len();
                }
                self.queue.push_front(pong);
                self.pong_at_front = true;
            }
        }
    }

    /// Drops `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize) -> io::Result<()> {
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.backlog -= written;
        self.pong_at_front = false;
        while written > 0 {
            let front = self
                .queue
                .front()
                .expect("written bytes came from the queue");
            let remaining = front.len() - self.offset;
            if written >= remaining {
                written -= remaining;
                self.queue.pop_front();
                self.offset = 0;
            } else {
                self.offset += written;
                written = 0;
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > MAX_SLICES {
            self.queue = VecDeque::new();
        }
        Ok(())
    }
}

/// The unwritten parts of the first queued frames, for one vectored write.
fn fill_slices<'a>(queue: &'a VecDeque<Bytes>, offset: usize, out: &mut [IoSlice<'a>]) -> usize {
    let mut count = 0;
    for (i, bytes) in queue.iter().take(out.len()).enumerate() {
        let start = if i == 0 { offset } else { 0 };
        out[i] = IoSlice::new(&bytes[start..]);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that takes nothing: every write would block.
    struct Blocked;

    impl WriteIo for Blocked {
        fn poll_write_vectored(
            &mut self,
            _cx: &mut Context<'_>,
            _slices: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }

        fn try_write_vectored(&mut self, _slices: &[IoSlice<'_>]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    fn sink() -> WsSink<Blocked> {
        WsSink {
            io: Blocked,
            queue: VecDeque::new(),
            offset: 0,
            backlog: 0,
            pong: None,
            pong_at_front: false,
            closing: false,
        }
    }

    #[test]
    fn a_blocked_socket_holds_one_pong_however_many_pings() {
        let mut sink = sink();
        sink.push(Frame::from("{\"event\":\"e\"}"));
        let frame_bytes = sink.backlog();
        for n in 0..1000u16 {
            sink.pong(Bytes::copy_from_slice(&n.to_be_bytes()));
            sink.try_write().unwrap();
        }
        let pong = codec::encode(codec::OP_PONG, &999u16.to_be_bytes());
        assert_eq!(sink.queue.len(), 2, "the frame and one pong");
        assert_eq!(sink.queue[0], pong, "the latest ping is the one answered");
        assert_eq!(sink.backlog(), frame_bytes + pong.len());
    }
}

//! A WebSocket over a TCP stream, split into the two [`crate::transport`] halves.
//!
//! Memory while idle is the point: the read buffer is allocated only once the socket is
//! readable and released when it is empty, and the write queue holds shared frames (no copies)
//! and is released when drained.

use std::{collections::VecDeque, io, io::IoSlice};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::AsyncWriteExt,
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
};

use super::codec::{self, Decoder, Message};
use crate::{
    frame::Frame,
    transport::{Received, Sink, Source},
};

/// Bytes asked of the kernel per read; larger messages grow the buffer as they arrive.
const READ_CHUNK: usize = 4096;

/// Most frames handed to one vectored write.
const MAX_SLICES: usize = 64;

/// Splits an upgraded stream; `already_read` is what the HTTP layer read past the handshake.
pub fn split(stream: TcpStream, already_read: Bytes, max_message: usize) -> (WsSource, WsSink) {
    let (read, write) = stream.into_split();
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
        closing: false,
    };
    (source, sink)
}

pub struct WsSource {
    io: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
    ended: bool,
}

impl WsSource {
    /// Reads what the socket has, allocating the buffer only now that there is something.
    async fn fill(&mut self) -> io::Result<usize> {
        loop {
            self.io.as_ref().readable().await?;
            self.buf.reserve(READ_CHUNK);
            match self.io.try_read_buf(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Source for WsSource {
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
            match self.fill().await {
                Ok(0) | Err(_) => {
                    self.ended = true;
                    return Received::Gone;
                }
                Ok(_) => {}
            }
        }
    }
}

pub struct WsSink {
    io: OwnedWriteHalf,
    queue: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    offset: usize,
    backlog: usize,
    pong: Option<Bytes>,
    closing: bool,
}

impl WsSink {
    fn enqueue(&mut self, bytes: Bytes) {
        if self.closing {
            return;
        }
        self.backlog += bytes.len();
        self.queue.push_back(bytes);
    }
}

impl Sink for WsSink {
    fn push(&mut self, frame: &Frame) {
        self.enqueue(frame.wire().clone());
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

    fn backlog(&self) -> usize {
        self.backlog
    }

    async fn write_some(&mut self) -> io::Result<()> {
        self.pong_between_frames();
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let count = fill_slices(&self.queue, self.offset, &mut slices);
        if count == 0 {
            return Ok(());
        }
        let written = self.io.write_vectored(&slices[..count]).await?;
        self.advance(written)
    }

    fn try_write(&mut self) -> io::Result<()> {
        self.pong_between_frames();
        while self.backlog > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = fill_slices(&self.queue, self.offset, &mut slices);
            match self.io.try_write_vectored(&slices[..count]) {
                Ok(written) => self.advance(written)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl WsSink {
    /// A pong may only go between frames, never inside one already half written.
    fn pong_between_frames(&mut self) {
        if self.offset == 0 {
            if let Some(pong) = self.pong.take() {
                self.queue.push_front(pong);
            }
        }
    }

    /// Drops `written` bytes from the front of the queue.
    fn advance(&mut self, mut written: usize) -> io::Result<()> {
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.backlog -= written;
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

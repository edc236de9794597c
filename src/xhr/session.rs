//! One HTTP session and the [`crate::transport`] halves its connection runs on: `xhr_send`
//! requests feed the [`XhrSource`]; the [`XhrSink`] hands batches of frames to whichever
//! receiving request (a stream or a poll) is attached, one at a time; and a session with no
//! receiving request for the session timeout ends as a dropped WebSocket would.

use std::{
    collections::HashMap,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use tokio::{
    sync::{mpsc, watch},
    time::{sleep_until, Instant},
};

use crate::{
    frame::Frame,
    transport::{Received, Sink, Source},
};

/// Messages from `xhr_send` requests not yet read by the connection.
const INBOX: usize = 16;

/// Batches handed over but not yet taken by a receiving request.
const HANDOVER: usize = 2;

/// What a receiving request writes.
#[derive(Debug)]
pub enum Chunk {
    Frames(Vec<Frame>),
    Close(u16, String),
}

#[derive(Debug, Clone, Copy)]
struct Attachment {
    attached: bool,
    since: Instant,
}

/// A session as the HTTP handlers see it.
pub struct XhrSession {
    inbox: mpsc::Sender<Received>,
    /// The receiving end of the sink's batches, held by the attached request (else here).
    chunks: Mutex<Option<mpsc::Receiver<Chunk>>>,
    attachment: watch::Sender<Attachment>,
    /// Largest message the connection takes (see `connection::message_cap`).
    pub message_cap: usize,
}

/// A receiving request's hold on the session: the batches are its alone until it is dropped.
pub struct Attached {
    session: Arc<XhrSession>,
    chunks: Option<mpsc::Receiver<Chunk>>,
}

impl Attached {
    pub fn chunks(&mut self) -> &mut mpsc::Receiver<Chunk> {
        self.chunks.as_mut().expect("held until dropped")
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        *self.session.chunks.lock().expect("not poisoned") = self.chunks.take();
        self.session.attachment.send_replace(Attachment {
            attached: false,
            since: Instant::now(),
        });
    }
}

impl XhrSession {
    /// A new session and the two halves of its connection; `timeout` is how long it may go
    /// without a receiving request.
    pub fn new(message_cap: usize, timeout: Duration) -> (Arc<XhrSession>, XhrSource, XhrSink) {
        let (inbox, received) = mpsc::channel(INBOX);
        let (handover, chunks) = mpsc::channel(HANDOVER);
        let (attachment, watching) = watch::channel(Attachment {
            attached: false,
            since: Instant::now(),
        });
        let session = Arc::new(XhrSession {
            inbox,
            chunks: Mutex::new(Some(chunks)),
            attachment,
            message_cap,
        });
        let source = XhrSource {
            received,
            attachment: watching,
            timeout,
        };
        let sink = XhrSink {
            unsent: Unsent::default(),
            closing: false,
            handover,
        };
        (session, source, sink)
    }

    /// Attaches a receiving request; `None` while another one is attached.
    pub fn attach(self: &Arc<Self>) -> Option<Attached> {
        let chunks = self.chunks.lock().expect("not poisoned").take()?;
        self.attachment.send_replace(Attachment {
            attached: true,
            since: Instant::now(),
        });
        Some(Attached {
            session: self.clone(),
            chunks: Some(chunks),
        })
    }

    /// Hands one `xhr_send` request's messages to the connection in order, stopping after a
    /// violation (the connection closes on it). The request waits while the inbox is full, but
    /// for no longer than `wait` in all, so a connection that does not read holds no request.
    pub async fn hand_over(&self, messages: Vec<Received>, wait: Duration) -> Result<(), HandOver> {
        let deadline = Instant::now() + wait;
        for message in messages {
            let stop = matches!(message, Received::Violation { .. });
            match tokio::time::timeout_at(deadline, self.inbox.send(message)).await {
                Ok(Ok(())) if stop => break,
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(HandOver::Gone),
                Err(_) => return Err(HandOver::Busy),
            }
        }
        Ok(())
    }
}

/// Why an `xhr_send` request's messages were not all handed over.
#[derive(Debug, PartialEq, Eq)]
pub enum HandOver {
    /// The connection has ended.
    Gone,
    /// The inbox stayed full for the whole wait.
    Busy,
}

/// What the connection reads: `xhr_send` messages, or `Gone` once no receiving request has been
/// attached for the timeout.
pub struct XhrSource {
    received: mpsc::Receiver<Received>,
    attachment: watch::Receiver<Attachment>,
    timeout: Duration,
}

impl Source for XhrSource {
    async fn recv(&mut self) -> Received {
        loop {
            let now = *self.attachment.borrow_and_update();
            let expired = async {
                if now.attached {
                    std::future::pending::<()>().await
                } else {
                    sleep_until(now.since + self.timeout).await
                }
            };
            tokio::select! {
                biased;
                message = self.received.recv() => return message.unwrap_or(Received::Gone),
                changed = self.attachment.changed() => {
                    if changed.is_err() {
                        return Received::Gone;
                    }
                }
                _ = expired => return Received::Gone,
            }
        }
    }
}

/// What the connection writes to: frames gathered into one batch per hand-over.
pub struct XhrSink {
    unsent: Unsent,
    /// A close was pushed: later frames are dropped.
    closing: bool,
    handover: mpsc::Sender<Chunk>,
}

/// What the sink holds until a hand-over takes it.
#[derive(Default)]
struct Unsent {
    pending: Vec<Frame>,
    pending_bytes: usize,
    close: Option<(u16, String)>,
}

impl Unsent {
    fn bytes(&self) -> usize {
        self.pending_bytes + usize::from(self.close.is_some())
    }

    fn next_chunk(&mut self) -> Option<Chunk> {
        if !self.pending.is_empty() {
            self.pending_bytes = 0;
            return Some(Chunk::Frames(std::mem::take(&mut self.pending)));
        }
        self.close
            .take()
            .map(|(code, reason)| Chunk::Close(code, reason))
    }
}

impl Sink for XhrSink {
    fn push(&mut self, frame: Frame) {
        if self.closing {
            return;
        }
        self.unsent.pending_bytes += frame.text().len();
        self.unsent.pending.push(frame);
    }

    /// HTTP has no transport-level ping.
    fn pong(&mut self, _payload: Bytes) {}

    fn push_close(&mut self, code: u16, reason: &str) {
        if !self.closing {
            self.closing = true;
            self.unsent.close = Some((code, reason.to_string()));
        }
    }

    fn backlog(&self) -> usize {
        self.unsent.bytes()
    }

    async fn write_some(&mut self) -> io::Result<()> {
        let permit = self
            .handover
            .reserve()
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        if let Some(chunk) = self.unsent.next_chunk() {
            permit.send(chunk);
        }
        Ok(())
    }

    fn try_write(&mut self) -> io::Result<()> {
        while self.unsent.bytes() > 0 {
            match self.handover.try_reserve() {
                Ok(permit) => {
                    if let Some(chunk) = self.unsent.next_chunk() {
                        permit.send(chunk);
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => break,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe))
                }
            }
        }
        Ok(())
    }
}

/// The open sessions of this node, by `{app id}/{server}/{session}`.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Arc<XhrSession>>>,
}

impl Sessions {
    pub fn get(&self, id: &str) -> Option<Arc<XhrSession>> {
        self.lock().get(id).cloned()
    }

    /// Adds a session unless `cap` are open (or the id was taken meanwhile).
    pub fn insert(&self, id: String, session: Arc<XhrSession>, cap: usize) -> bool {
        let mut open = self.lock();
        if open.len() >= cap || open.contains_key(&id) {
            return false;
        }
        open.insert(id, session);
        true
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<XhrSession>>> {
        self.open.lock().expect("not poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_without_a_receiving_request_expires_after_the_timeout() {
        let (session, mut source, _sink) = XhrSession::new(1024, Duration::from_secs(5));
        let attached = session.attach().unwrap();
        // Attached: it does not expire, however long.
        let waited = tokio::time::timeout(Duration::from_secs(60), source.recv()).await;
        assert!(waited.is_err());
        drop(attached);
        let detached = Instant::now();
        assert_eq!(source.recv().await, Received::Gone);
        assert_eq!(detached.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_attaching_in_time_keeps_it() {
        let (session, mut source, _sink) = XhrSession::new(1024, Duration::from_secs(5));
        drop(session.attach().unwrap());
        tokio::time::sleep(Duration::from_secs(4)).await;
        let _again = session.attach().unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(30), source.recv()).await;
        assert!(waited.is_err(), "expired while attached");
        let wait = Duration::from_secs(1);
        let x = || vec![Received::Text("x".into())];
        assert_eq!(session.hand_over(x(), wait).await, Ok(()));
        assert_eq!(source.recv().await, Received::Text("x".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_does_not_read_holds_16_messages_and_then_no_request() {
        let (session, mut source, _sink) = XhrSession::new(1024, Duration::from_secs(5));
        let _attached = session.attach().unwrap();
        let wait = Duration::from_secs(3);
        let text = |i: usize| Received::Text(format!("m{i}"));
        let started = Instant::now();
        let first: Vec<Received> = (0..INBOX).map(text).collect();
        assert_eq!(session.hand_over(first, wait).await, Ok(()));
        assert_eq!(started.elapsed(), Duration::ZERO, "16 fit at once");
        // The 17th waits the whole `wait` and no longer, then the request gives up.
        let more: Vec<Received> = (INBOX..INBOX + 3).map(text).collect();
        assert_eq!(session.hand_over(more, wait).await, Err(HandOver::Busy));
        assert_eq!(started.elapsed(), wait);
        // What was queued is read in order; a freed slot takes the next request.
        assert_eq!(source.recv().await, text(0));
        assert_eq!(session.hand_over(vec![text(99)], wait).await, Ok(()));
        for i in 1..INBOX {
            assert_eq!(source.recv().await, text(i));
        }
        assert_eq!(source.recv().await, text(99));
        // A violation ends the hand-over: what follows it is not queued.
        let violation = || Received::Violation {
            code: 1009,
            reason: "message too big",
        };
        let after = vec![text(1), violation(), text(2)];
        assert_eq!(session.hand_over(after, wait).await, Ok(()));
        assert_eq!(source.recv().await, text(1));
        assert_eq!(source.recv().await, violation());
        drop(source);
        assert_eq!(
            session.hand_over(vec![text(3)], wait).await,
            Err(HandOver::Gone)
        );
    }

    #[tokio::test]
    async fn one_receiving_request_at_a_time() {
        let (session, _source, mut sink) = XhrSession::new(1024, Duration::from_secs(5));
        let mut first = session.attach().unwrap();
        assert!(session.attach().is_none());
        sink.push(Frame::from("{\"event\":\"a\"}"));
        sink.push(Frame::from("{\"event\":\"b\"}"));
        sink.push_close(4200, "bye");
        sink.push(Frame::from("{\"event\":\"dropped\"}"));
        sink.try_write().unwrap();
        assert_eq!(sink.backlog(), 0);
        match first.chunks().recv().await.unwrap() {
            Chunk::Frames(frames) => assert_eq!(frames.len(), 2),
            other => panic!("{other:?}"),
        }
        match first.chunks().recv().await.unwrap() {
            Chunk::Close(code, reason) => assert_eq!((code, reason.as_str()), (4200, "bye")),
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(session.attach().is_some());
    }
}

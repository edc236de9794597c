//! The handle through which anything in the server reaches one connection: a queue of outgoing
//! frames bounded by count and by bytes, and a close signal. A connection whose queue is full
//! is closed with 4100 rather than buffering without limit, so a slow consumer costs at most
//! its byte bound whatever the size of the events.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, OnceLock,
};

use rand::Rng;
use tokio::sync::{mpsc, Notify};

use crate::{error::CloseError, frame::Frame};

/// `digits.digits`, random so that one client cannot guess another's id and reuse its
/// signatures.
pub fn new_socket_id() -> String {
    socket_id_from(&mut rand::rng())
}

fn socket_id_from(rng: &mut impl Rng) -> String {
    format!(
        "{}.{}",
        rng.random_range(1..=u32::MAX),
        rng.random_range(1..=u32::MAX)
    )
}

/// Where socket ids come from: random, or with `POXIDE_SOCKET_ID_SEED` a sequence fixed by the
/// seed, so that a test's recorded output is the same on every run.
pub struct SocketIds {
    seeded: Option<std::sync::Mutex<rand::rngs::StdRng>>,
}

impl SocketIds {
    pub fn new(seed: Option<u64>) -> Self {
        SocketIds {
            seeded: seed.map(|s| std::sync::Mutex::new(rand::SeedableRng::seed_from_u64(s))),
        }
    }

    pub fn next(&self) -> String {
        match &self.seeded {
            Some(rng) => socket_id_from(&mut *rng.lock().expect("not poisoned")),
            None => new_socket_id(),
        }
    }
}

/// How much one connection may have queued.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub frames: usize,
    pub bytes: usize,
}

/// A cloneable handle to one connection's outgoing side.
#[derive(Clone, Debug)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket_id: Arc<str>,
    tx: mpsc::Sender<Frame>,
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    close: CloseSignal,
}

/// The receiving end, drained by the connection task.
#[derive(Debug)]
pub struct Queue {
    rx: mpsc::Receiver<Frame>,
    inner: Arc<Inner>,
}

impl Queue {
    pub async fn recv(&mut self) -> Option<Frame> {
        let frame = self.rx.recv().await?;
        self.release(std::slice::from_ref(&frame));
        Some(frame)
    }

    pub fn try_recv(&mut self) -> Option<Frame> {
        let frame = self.rx.try_recv().ok()?;
        self.release(std::slice::from_ref(&frame));
        Some(frame)
    }

    fn release(&self, frames: &[Frame]) {
        let bytes: usize = frames.iter().map(Frame::size).sum();
        self.inner.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Set once by whoever decides the connection must end; the connection task waits on it.
#[derive(Debug, Default)]
pub struct CloseSignal {
    reason: OnceLock<CloseError>,
    notify: Notify,
}

impl CloseSignal {
    /// The close requested so far.
    #[cfg(test)]
    pub fn reason(&self) -> Option<&CloseError> {
        self.reason.get()
    }

    /// Resolves once a close has been requested.
    pub async fn requested(&self) -> &CloseError {
        loop {
            if let Some(reason) = self.reason.get() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

impl Outbox {
    /// Creates the handle and the receiving end that the connection task drains.
    pub fn new(socket_id: String, bounds: Bounds) -> (Outbox, Queue) {
        let (tx, rx) = mpsc::channel(bounds.frames.max(1));
        let inner = Arc::new(Inner {
            socket_id: socket_id.into(),
            tx,
            queued_bytes: AtomicUsize::new(0),
            max_bytes: bounds.bytes,
            close: CloseSignal::default(),
        });
        let queue = Queue {
            rx,
            inner: inner.clone(),
        };
        (Outbox { inner }, queue)
    }

    pub fn socket_id(&self) -> &str {
        &self.inner.socket_id
    }

    /// Queues a frame without waiting. A full queue means the client is not reading; it is
    /// closed with 4100 and this frame is dropped.
    pub fn send(&self, frame: Frame) {
        let size = frame.size();
        let before = self.inner.queued_bytes.fetch_add(size, Ordering::Relaxed);
        let over_bytes = before + size > self.inner.max_bytes && before > 0;
        if over_bytes || self.inner.tx.try_send(frame).is_err() {
            self.inner.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            if !self.inner.tx.is_closed() {
                self.close(CloseError::OverCapacity);
            }
        }
    }

    /// Asks the connection task to close with `reason`. The first request wins.
    pub fn close(&self, reason: CloseError) {
        if self.inner.close.reason.set(reason).is_ok() {
            self.inner.close.notify.notify_one();
        }
    }

    pub fn close_signal(&self) -> &CloseSignal {
        &self.inner.close
    }

    /// Bytes waiting in the queue.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        self.inner.queued_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::is_valid_socket_id;

    const ROOMY: Bounds = Bounds {
        frames: 2,
        bytes: 1 << 20,
    };

    #[test]
    fn socket_ids_have_the_sdk_shape_and_differ() {
        let a = new_socket_id();
        let b = new_socket_id();
        assert!(is_valid_socket_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_full_queue_closes_with_4100_instead_of_growing() {
        let (outbox, mut rx) = Outbox::new("1.1".into(), ROOMY);
        for i in 0..5 {
            outbox.send(Frame::from(format!("{i}").as_str()));
        }
        assert_eq!(
            outbox.close_signal().requested().await,
            &CloseError::OverCapacity
        );
        assert_eq!(rx.try_recv().as_deref(), Some("0"));
        assert_eq!(rx.try_recv().as_deref(), Some("1"));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn the_byte_bound_closes_a_slow_consumer_of_large_frames() {
        let bounds = Bounds {
            frames: 1000,
            bytes: 25_000,
        };
        let (outbox, mut rx) = Outbox::new("1.1".into(), bounds);
        let big = Frame::from("x".repeat(10_000).as_str());
        outbox.send(big.clone());
        outbox.send(big.clone());
        assert_eq!(outbox.queued_bytes(), 2 * big.size());
        assert!(outbox.close_signal().reason.get().is_none());
        outbox.send(big.clone());
        assert_eq!(
            outbox.close_signal().requested().await,
            &CloseError::OverCapacity
        );
        assert_eq!(outbox.queued_bytes(), 2 * big.size());
        assert!(rx.try_recv().is_some() && rx.try_recv().is_some());
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn the_first_close_reason_wins() {
        let (outbox, _rx) = Outbox::new("1.1".into(), ROOMY);
        outbox.close(CloseError::PongNotReceived);
        outbox.close(CloseError::ShuttingDown);
        assert_eq!(
            outbox.close_signal().requested().await,
            &CloseError::PongNotReceived
        );
    }
}

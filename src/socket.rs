//! The handle through which anything in the server reaches one WebSocket connection: a bounded
//! queue of outgoing frames and a close signal. A connection whose queue is full is closed with
//! 4100 rather than buffering without limit.

use std::sync::{Arc, OnceLock};

use rand::Rng;
use tokio::sync::{mpsc, Notify};

use crate::{error::CloseError, frame::Frame};

/// `digits.digits`, random so that one client cannot guess another's id and reuse its
/// signatures.
pub fn new_socket_id() -> String {
    let mut rng = rand::rng();
    format!(
        "{}.{}",
        rng.random_range(1..=u32::MAX),
        rng.random_range(1..=u32::MAX)
    )
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
    close: CloseSignal,
}

/// Set once by whoever decides the connection must end; the connection task waits on it.
#[derive(Debug, Default)]
pub struct CloseSignal {
    reason: OnceLock<CloseError>,
    notify: Notify,
}

impl CloseSignal {
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
    pub fn new(socket_id: String, capacity: usize) -> (Outbox, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbox = Outbox {
            inner: Arc::new(Inner {
                socket_id: socket_id.into(),
                tx,
                close: CloseSignal::default(),
            }),
        };
        (outbox, rx)
    }

    pub fn socket_id(&self) -> &str {
        &self.inner.socket_id
    }

    /// Queues a frame without waiting. A full queue means the client is not reading; it is
    /// closed with 4100 and this frame is dropped.
    pub fn send(&self, frame: Frame) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inner.tx.try_send(frame) {
            self.close(CloseError::OverCapacity);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::is_valid_socket_id;

    #[test]
    fn socket_ids_have_the_sdk_shape_and_differ() {
        let a = new_socket_id();
        let b = new_socket_id();
        assert!(is_valid_socket_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_full_queue_closes_with_4100_instead_of_growing() {
        let (outbox, mut rx) = Outbox::new("1.1".into(), 2);
        for i in 0..5 {
            outbox.send(format!("{i}").into());
        }
        assert_eq!(
            outbox.close_signal().requested().await,
            &CloseError::OverCapacity
        );
        assert_eq!(rx.recv().await.as_deref(), Some("0"));
        assert_eq!(rx.recv().await.as_deref(), Some("1"));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_first_close_reason_wins() {
        let (outbox, _rx) = Outbox::new("1.1".into(), 2);
        outbox.close(CloseError::PongNotReceived);
        outbox.close(CloseError::ShuttingDown);
        assert_eq!(
            outbox.close_signal().requested().await,
            &CloseError::PongNotReceived
        );
    }
}

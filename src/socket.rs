//! The handle through which anything in the server reaches one connection: a queue of outgoing
//! frames bounded by count and by bytes, and a close signal. A connection whose queue is full
//! is closed with 4100 rather than buffering without limit, so a slow consumer costs at most
//! its byte bound whatever the size of the events.
//!
//! Frames, the close request, the pending pong and the waker of the connection's writer task
//! share one small lock per connection (never a shared one): a delivery is one uncontended lock,
//! a push and at most one wake-up, however many frames arrive before the writer runs.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Poll, Waker},
};

use bytes::Bytes;
use rand::Rng;

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

/// A drained queue keeps at most this much room; a burst's worth is given back.
const KEPT_CAPACITY: usize = 64;

/// A cloneable handle to one connection's outgoing side.
#[derive(Clone, Debug)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket_id: Arc<str>,
    bounds: Bounds,
    shared: Mutex<Shared>,
}

/// What the writer waits on, under one lock: a delivery is one uncontended lock and at most one
/// wake-up, and the writer waits on one thing for frames, pongs, closes and stops.
#[derive(Debug, Default)]
struct Shared {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// The first close requested; later ones are ignored.
    close: Option<CloseError>,
    waker: Option<Waker>,
    /// Whether a new frame should wake the writer: not while its transport is backed up, since
    /// it would not take the frame anyway (a close, a pong or a stop always wakes it).
    wants_frames: bool,
    /// The writer has been woken for frames and not yet looked: more frames need no wake-up.
    woken: bool,
    /// The connection is handling a client frame: what it queues meanwhile waits until it is
    /// done ([`Outbox::hold`]).
    held: bool,
    /// The payload of the latest transport-level ping not yet answered.
    pong: Option<Bytes>,
    /// The connection is ending for another reason: the writer is to hand its transport back.
    stop: bool,
    /// The queue is gone with its connection: frames are dropped, not kept.
    ended: bool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic elsewhere while holding the lock leaves the queue consistent (every change is
        // a single push, pop or assignment), so the data is still good to use.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why the writer was woken.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A close was requested: end with this reason.
    Close(CloseError),
    /// The connection ends for another reason ([`Outbox::stop_writing`]).
    Stop,
    /// A transport-level ping to answer with this payload.
    Pong(Bytes),
    /// Frames are waiting; [`Queue::drain`] them.
    Frames,
}

/// The receiving end, drained by the connection's writer.
#[derive(Debug)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    /// Resolves with the close once one is requested, a stop, a pong to send or, when `frames`
    /// is set, once frames are waiting. Cancel-safe: it takes nothing but the pong, and only
    /// when it resolves.
    pub fn next(&mut self, frames: bool) -> impl Future<Output = Next> + '_ {
        std::future::poll_fn(move |cx| {
            let mut shared = self.inner.lock();
            if let Some(reason) = &shared.close {
                return Poll::Ready(Next::Close(reason.clone()));
            }
            if shared.stop {
                return Poll::Ready(Next::Stop);
            }
            if let Some(payload) = shared.pong.take() {
                return Poll::Ready(Next::Pong(payload));
            }
            if frames && !shared.held && !shared.frames.is_empty() {
                return Poll::Ready(Next::Frames);
            }
            shared.wants_frames = frames;
            shared.woken = false;
            // Kept, not taken, by those who wake it: a delivery clones no waker.
            match &shared.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => shared.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    /// Hands up to `max` waiting frames to `each`, oldest first, and returns how many.
    pub fn drain(&mut self, max: usize, mut each: impl FnMut(Frame)) -> usize {
        let mut shared = self.inner.lock();
        let count = shared.frames.len().min(max);
        let mut bytes = 0;
        for frame in shared.frames.drain(..count) {
            bytes += frame.size();
            each(frame);
        }
        shared.bytes -= bytes;
        if shared.frames.is_empty() && shared.frames.capacity() > KEPT_CAPACITY {
            shared.frames = VecDeque::new();
        }
        count
    }

    /// Waits for the next frame; `None` once a close is requested and nothing is left.
    #[cfg(test)]
    pub async fn recv(&mut self) -> Option<Frame> {
        let _ = self.next(true).await;
        self.try_recv()
    }

    #[cfg(test)]
    pub fn try_recv(&mut self) -> Option<Frame> {
        let mut frame = None;
        self.drain(1, |f| frame = Some(f));
        frame
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let mut shared = self.inner.lock();
        shared.ended = true;
        shared.frames = VecDeque::new();
        shared.bytes = 0;
        shared.waker = None;
    }
}

impl Outbox {
    /// Creates the handle and the receiving end that the connection's writer drains.
    pub fn new(socket_id: String, bounds: Bounds) -> (Outbox, Queue) {
        let inner = Arc::new(Inner {
            socket_id: socket_id.into(),
            bounds: Bounds {
                frames: bounds.frames.max(1),
                bytes: bounds.bytes,
            },
            shared: Mutex::default(),
        });
        let queue = Queue {
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
        let mut shared = self.inner.lock();
        if shared.ended {
            return;
        }
        let bounds = self.inner.bounds;
        let over_bytes = shared.bytes + size > bounds.bytes && shared.bytes > 0;
        if over_bytes || shared.frames.len() >= bounds.frames {
            drop(shared);
            return self.close(CloseError::OverCapacity);
        }
        shared.frames.push_back(frame);
        shared.bytes += size;
        Self::wake_for_frames(&mut shared);
    }

    /// Holds the frames queued from now on until [`Outbox::release`]: while the connection
    /// handles a client frame, so that the client sees the answer (`subscription_succeeded`)
    /// only once all the command's effects are done (`member_added` published to the cluster,
    /// the count read), as a client that acts on the answer expects.
    pub fn hold(&self) {
        self.inner.lock().held = true;
    }

    pub fn release(&self) {
        let mut shared = self.inner.lock();
        shared.held = false;
        if !shared.frames.is_empty() {
            Self::wake_for_frames(&mut shared);
        }
    }

    fn wake_for_frames(shared: &mut Shared) {
        if shared.wants_frames && !shared.held && !shared.woken {
            shared.woken = true;
            Self::wake(shared);
        }
    }

    /// Asks the connection to close with `reason`. The first request wins.
    pub fn close(&self, reason: CloseError) {
        let mut shared = self.inner.lock();
        if shared.close.is_some() {
            return;
        }
        shared.close = Some(reason);
        Self::wake(&shared);
    }

    /// Answers a transport-level ping. Only the latest unanswered one is kept, so a client that
    /// floods pings and never reads holds one pong, not one per ping.
    pub fn pong(&self, payload: Bytes) {
        let mut shared = self.inner.lock();
        shared.pong = Some(payload);
        Self::wake(&shared);
    }

    /// Asks the writer to stop and hand the transport back; what is queued stays queued.
    pub fn stop_writing(&self) {
        let mut shared = self.inner.lock();
        shared.stop = true;
        Self::wake(&shared);
    }

    fn wake(shared: &Shared) {
        if let Some(waker) = &shared.waker {
            waker.wake_by_ref();
        }
    }

    /// The close requested so far.
    #[cfg(test)]
    pub fn close_reason(&self) -> Option<CloseError> {
        self.inner.lock().close.clone()
    }

    /// Bytes waiting in the queue.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        self.inner.lock().bytes
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
        assert_eq!(rx.next(true).await, Next::Close(CloseError::OverCapacity));
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
        assert_eq!(outbox.close_reason(), None);
        outbox.send(big.clone());
        assert_eq!(rx.next(true).await, Next::Close(CloseError::OverCapacity));
        assert_eq!(outbox.queued_bytes(), 2 * big.size());
        assert_eq!(rx.drain(10, drop), 2);
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn the_first_close_reason_wins() {
        let (outbox, mut rx) = Outbox::new("1.1".into(), ROOMY);
        outbox.close(CloseError::PongNotReceived);
        outbox.close(CloseError::ShuttingDown);
        assert_eq!(
            rx.next(true).await,
            Next::Close(CloseError::PongNotReceived)
        );
    }

    /// Counts the wake-ups of a task that polls the queue by hand.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll_next(rx: &mut Queue, frames: bool, wakes: &Arc<Wakes>) -> Poll<Next> {
        let waker = Waker::from(wakes.clone());
        let next = std::pin::pin!(rx.next(frames));
        next.poll(&mut std::task::Context::from_waker(&waker))
    }

    #[test]
    fn a_backed_up_task_is_woken_by_a_close_but_not_by_frames() {
        let wakes = Arc::new(Wakes::default());
        let count = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);
        let (outbox, mut rx) = Outbox::new(
            "1.1".into(),
            Bounds {
                frames: 8,
                bytes: 1 << 20,
            },
        );

        assert!(poll_next(&mut rx, true, &wakes).is_pending());
        outbox.send(Frame::from("a"));
        outbox.send(Frame::from("b"));
        assert_eq!(count(), 1, "one wake-up for frames that arrive together");
        assert_eq!(poll_next(&mut rx, true, &wakes), Poll::Ready(Next::Frames));
        assert_eq!(rx.drain(1, drop), 1);

        assert!(poll_next(&mut rx, false, &wakes).is_pending());
        outbox.send(Frame::from("c"));
        assert_eq!(
            count(),
            1,
            "a task that is not taking frames is not woken for them"
        );
        outbox.close(CloseError::ShuttingDown);
        assert_eq!(count(), 2);
        assert_eq!(
            poll_next(&mut rx, false, &wakes),
            Poll::Ready(Next::Close(CloseError::ShuttingDown))
        );
        let mut left = Vec::new();
        rx.drain(10, |f| left.push(f.text().to_string()));
        assert_eq!(left, ["b", "c"]);
    }

    #[test]
    fn frames_queued_while_held_go_out_on_release() {
        let wakes = Arc::new(Wakes::default());
        let count = || wakes.0.load(std::sync::atomic::Ordering::SeqCst);
        let (outbox, mut rx) = Outbox::new("1.1".into(), ROOMY);
        assert!(poll_next(&mut rx, true, &wakes).is_pending());
        outbox.hold();
        outbox.send(Frame::from("answer"));
        assert_eq!(count(), 0, "held: the writer is not woken");
        assert!(poll_next(&mut rx, true, &wakes).is_pending());
        outbox.release();
        assert_eq!(count(), 1);
        assert_eq!(poll_next(&mut rx, true, &wakes), Poll::Ready(Next::Frames));
        assert_eq!(rx.try_recv().as_deref(), Some("answer"));
    }

    #[test]
    fn frames_for_an_ended_connection_are_dropped() {
        let (outbox, rx) = Outbox::new("1.1".into(), ROOMY);
        drop(rx);
        outbox.send(Frame::from("late"));
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(
            outbox.close_reason(),
            None,
            "not a slow consumer: simply gone"
        );
    }
}

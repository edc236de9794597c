//! The open console streams: each watches one app through a bounded queue of ready-made JSON
//! lines. The server's happenings are turned into console events here, once per happening
//! whoever watches, and only when a console of that app is open.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex,
};

use tokio::sync::mpsc;

use super::{event, MAX_CONSOLES, QUEUE_CAPACITY};
use crate::{
    config::AppConfig,
    error::ApiError,
    happenings::{Happening, Observe},
};

/// One console event, serialized once for every console of the app.
pub type Line = Arc<str>;

#[derive(Default)]
pub struct Console {
    watchers: Mutex<Vec<Watcher>>,
    /// `watchers.len()`, read without the lock on every happening.
    open: AtomicUsize,
    next_id: AtomicU64,
}

struct Watcher {
    id: u64,
    app: String,
    lines: mpsc::Sender<Line>,
    dropped: Arc<AtomicU64>,
}

/// An admitted console: its app, its queue, and its seat (given back when this is dropped).
pub struct Watch {
    pub app: Arc<AppConfig>,
    pub lines: mpsc::Receiver<Line>,
    dropped: Arc<AtomicU64>,
    console: Arc<Console>,
    id: u64,
}

impl Watch {
    /// Events left out since the last call because the queue was full.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.console.lock();
        watchers.retain(|w| w.id != self.id);
        self.console.open.store(watchers.len(), Ordering::Relaxed);
    }
}

impl Console {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.watchers.lock().expect("not poisoned")
    }

    /// Takes a seat for a console of `app`; refused when [`MAX_CONSOLES`] are open.
    pub fn watch(self: &Arc<Self>, app: Arc<AppConfig>) -> Result<Watch, ApiError> {
        let mut watchers = self.lock();
        if watchers.len() >= MAX_CONSOLES {
            return Err(ApiError::TooManyConsoles(MAX_CONSOLES));
        }
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        watchers.push(Watcher {
            id,
            app: app.id.clone(),
            lines: tx,
            dropped: dropped.clone(),
        });
        self.open.store(watchers.len(), Ordering::Relaxed);
        Ok(Watch {
            app,
            lines: rx,
            dropped,
            console: self.clone(),
            id,
        })
    }

    /// Consoles open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Observe for Console {
    fn observe(&self, happening: &Happening) {
        if self.open() == 0 {
            return;
        }
        let Some(app) = event::app_of(happening) else {
            return;
        };
        let watchers = self.lock();
        if !watchers.iter().any(|w| w.app == app) {
            return;
        }
        let Some(line) = event::line(happening) else {
            return;
        };
        let line: Line = line.into();
        for watcher in watchers.iter().filter(|w| w.app == app) {
            if watcher.lines.try_send(line.clone()).is_err() {
                watcher.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn watching_published(&self) -> bool {
        self.open() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::happenings::Change;

    fn occupied(app: &str, channel: &str) -> Happening {
        Happening::Membership {
            app: app.into(),
            channel: channel.into(),
            change: Change::Occupied,
        }
    }

    #[test]
    fn each_console_sees_only_its_app() {
        let console = Arc::new(Console::default());
        let a = AppConfig::default();
        let b = AppConfig {
            id: "other".into(),
            ..AppConfig::default()
        };
        let mut watch_a = console.watch(Arc::new(a)).unwrap();
        let mut watch_b = console.watch(Arc::new(b)).unwrap();
        console.observe(&occupied("app_id", "one"));
        console.observe(&occupied("other", "two"));
        let line = watch_a.lines.try_recv().unwrap();
        assert!(line.contains(r#""details":"Channel: \"one\"""#), "{line}");
        assert!(watch_a.lines.try_recv().is_err());
        let line = watch_b.lines.try_recv().unwrap();
        assert!(line.contains(r#""details":"Channel: \"two\"""#), "{line}");
        assert!(watch_b.lines.try_recv().is_err());
    }

    #[test]
    fn seats_are_bounded_and_given_back() {
        let console = Arc::new(Console::default());
        let app = Arc::new(AppConfig::default());
        let seats: Vec<Watch> = (0..MAX_CONSOLES)
            .map(|_| console.watch(app.clone()).unwrap())
            .collect();
        assert_eq!(
            console.watch(app.clone()).err(),
            Some(ApiError::TooManyConsoles(MAX_CONSOLES))
        );
        drop(seats);
        assert_eq!(console.open(), 0);
        assert!(console.watch(app).is_ok());
    }

    #[test]
    fn a_full_queue_counts_what_it_left_out() {
        let console = Arc::new(Console::default());
        let mut watch = console.watch(Arc::new(AppConfig::default())).unwrap();
        for i in 0..QUEUE_CAPACITY + 7 {
            console.observe(&occupied("app_id", &format!("c{i}")));
        }
        assert_eq!(watch.take_dropped(), 7);
        assert_eq!(watch.take_dropped(), 0);
        let mut queued = 0;
        while watch.lines.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, QUEUE_CAPACITY);
    }
}

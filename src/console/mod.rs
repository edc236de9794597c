//! The web console, as Poxa has one: a page at `/` (`page/`, built into the binary) where a
//! developer signs in with an app's key and secret and watches that app live. The page reads
//! the event stream at `/console`, a WebSocket signed like a REST request, whose frames are
//! Poxa's (`event`), and the few signed JSON endpoints of `routes`.
//!
//! The console is one more observer of the server's happenings: `watchers` keeps the open
//! streams, each with a bounded queue, so a page that falls behind loses events (and is told how
//! many) instead of holding memory; with no page open it costs an atomic load per happening.
//! `stream` serves one console WebSocket. A console sees what happens on its own node.

mod auth;
mod event;
pub mod routes;
mod stream;
mod watchers;

pub use auth::admit;
pub use stream::serve;
pub use watchers::{Console, Watch};

/// Console streams open at once, all apps together.
pub const MAX_CONSOLES: usize = 16;

/// Events queued for one console; beyond it, new ones are counted and left out.
pub const QUEUE_CAPACITY: usize = 256;

/// Largest message a console page may send (its messages are read only to be ignored).
pub const MESSAGE_CAP: usize = 1024;

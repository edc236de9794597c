//! The HTTP fallback transports of pusher-js (`xhr_streaming` and `xhr_polling`), for browsers
//! whose WebSocket cannot get through (proxies, carriers, antivirus). An HTTP session is a
//! connection like any other: the same `connection::serve` runs it, with the same socket ids,
//! commands, outbox bounds and liveness rules; only its [`crate::transport`] halves differ.
//!
//! `session` is the transport (and the registry of open sessions), `receive` the receiving
//! responses, `framing` their lines, `routes` the HTTP handlers. A session lives on the node that
//! opened it: behind a load balancer the HTTP transports need sticky sessions.

mod framing;
mod receive;
mod routes;
mod session;

pub use routes::endpoint;
pub use session::Sessions;

//! poxide: a server for the Pusher Channels protocol.
//!
//! The layout follows the path of a message. `listener` accepts TCP (`tls` for its TLS
//! listener), `service` serves HTTP/1.1
//! on each connection and hands WebSocket upgrades to `upgrade`; `websocket/` is that transport
//! (behind the `transport` seam; `xhr/` is the HTTP fallback transport) and `connection` runs one client over it, parsing with `frame`
//! (wire format) and `channel` (names) and dispatching to `cmd/`. `hub/` holds channel state
//! behind the `Adapter` trait and fans frames out to each `socket`'s bounded queue; `http/` is
//! the signed REST API; `webhook/` the webhooks; `signature` the HMACs; `config` the settings and
//! `apps/` the apps (from the file or a database, followed while the server runs); `state` what everything shares; `server` wires it up. `cluster/` shares the hub
//! between nodes through Redis, `transitions` says what a join or leave means for the others.
//! `happenings` is the one stream of what happens, which `inspect/` (the test double's API,
//! also in `testing`), `metrics/` and `console/` (the web console) observe. `conformance/` replays the protocol transcripts against any
//! server; `fuzzing` is what the fuzz targets call.

mod apps;
mod channel;
mod client_ip;
mod cluster;
mod cmd;
pub mod config;
pub mod conformance;
mod connection;
mod console;
mod error;
mod frame;
pub mod fuzzing;
mod happenings;
mod http;
mod hub;
mod inspect;
mod listener;
mod log_limit;
mod metrics;
mod record;
mod server;
mod service;
mod session;
pub mod signature;
mod socket;
mod state;
mod subscription_count;
pub mod testing;
mod tls;
mod transitions;
mod transport;
mod upgrade;
mod webhook;
mod websocket;
mod xhr;

pub use apps::admin::{run as apps_command, AppsArgs};
pub use config::{AppConfig, Config};
pub use server::{RunningServer, Server, StartError};
pub use tls::TlsError;
pub use webhook::WebhookStats;

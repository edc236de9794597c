//! poxide: a server for the Pusher Channels protocol.
//!
//! The layout follows the path of a message: `frame` (wire format) and `channel` (names) are
//! parsed by `connection` and dispatched to `cmd/`; `hub/` holds channel state behind the
//! `Adapter` trait and fans frames out to each `socket`'s bounded queue; `http/` is the signed
//! REST API; `signature` the HMACs; `config` and `apps` the settings; `server` wires it up.
//! `conformance/` replays the protocol transcripts against any server.

pub mod apps;
pub mod channel;
pub mod cmd;
pub mod config;
pub mod conformance;
pub mod connection;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod listener;
pub mod server;
pub mod service;
pub mod session;
pub mod signature;
pub mod socket;
pub mod state;
pub mod subscription_count;
pub mod transport;
pub mod upgrade;
pub mod webhook;
pub mod websocket;

pub use config::{AppConfig, Config};
pub use server::{RunningServer, Server};

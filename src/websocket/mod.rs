//! The WebSocket transport, written for this server rather than taken from a general library.
//!
//! Every event goes to many connections as the same bytes: server frames are unmasked, so the
//! complete frame (header and payload) is encoded once when the event is published (see
//! [`crate::frame::Frame`]) and each connection writes shared clones of it, many per vectored
//! write. General WebSocket libraries own a per-connection write buffer and copy each message
//! into it, and allocate a large read buffer per socket up front; here a connection holds no
//! buffer while idle. Reading is small too: [`codec`] decodes client frames under a message cap
//! checked from the frame header, with the RFC's close codes for every rule a client breaks.
//!
//! `handshake` answers the HTTP upgrade; `socket` is the [`crate::transport`] implementation.

pub mod codec;
mod handshake;
mod socket;

pub use handshake::{accept_key, is_upgrade};
pub use socket::split;

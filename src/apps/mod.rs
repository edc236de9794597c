//! The apps: the registry every lookup reads (`registry`), the databases they may live in
//! (`store`), what keeps the registry current while the server runs (`follow`), and the
//! `poxide apps` command that edits a database store (`admin`).

pub mod admin;
mod follow;
mod registry;
mod store;

pub use follow::{follow, load, Source};
pub use registry::Apps;
pub use store::{Store, StoreError, StoreUrl};

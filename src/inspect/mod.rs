//! The inspection API of the Pusher double (`--inspect`): what was published, which webhooks
//! were emitted and what became of them, who is connected, and waits for any of these, so a
//! test asserts on what its app did instead of sleeping. Off unless asked for; the records
//! are bounded (`inspect_capacity` of each kind). It observes the server's one stream of
//! happenings (`crate::happenings`), and sees what happens on its own node.

mod records;
pub mod routes;

pub use records::Inspector;

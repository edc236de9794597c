//! The inspection API of the Pusher double (`--inspect`): what was published, which webhooks
//! were emitted and what became of them, who is connected, and waits for any of these, so a
//! test asserts on what its app did instead of sleeping. Off unless asked for; the records
//! are bounded (`inspect_capacity` of each kind). It observes the server's one stream of
//! happenings (`crate::happenings`), and sees what happens on its own node.

mod records;
pub mod routes;

use std::time::Duration;

pub use records::{ConnectionRecord, Delivery, EventRecord, Filter, Inspector, WebhookRecord};

use crate::state::ServerState;

/// How long a reset waits for the connections it closed to finish.
const RESET_WAIT: Duration = Duration::from_secs(5);

/// Closes every connection with 4200 (clients reconnect and resubscribe), then forgets the
/// records, cache channels and webhooks not yet sent. Sequence numbers keep growing.
pub async fn reset(state: &ServerState) {
    let Some(inspector) = &state.inspector else {
        return;
    };
    inspector.close_all();
    // Their departures (vacated, member_removed) are part of what is being reset.
    inspector
        .wait(RESET_WAIT, || async move {
            (inspector.connection_count() == 0).then_some(())
        })
        .await;
    state.webhooks.reset();
    state.adapter.clear_caches().await;
    inspector.clear();
}

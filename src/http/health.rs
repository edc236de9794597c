//! Health checks for load balancers and probes: `/ping` as Poxa answers it (balancers set up
//! for Poxa use it), `/up` while the process serves, `/ready` while it accepts connections.

use std::sync::Arc;

use poem::{handler, http::StatusCode, web::Data};

use crate::state::ServerState;

#[handler]
pub fn ping() -> &'static str {
    "Pong!"
}

#[handler]
pub fn up() -> &'static str {
    "OK"
}

/// 503 from the moment a graceful shutdown starts, and while a cluster node cannot reach its
/// Redis, so a balancer stops sending clients that would be refused.
#[handler]
pub fn ready(Data(state): Data<&Arc<ServerState>>) -> (StatusCode, &'static str) {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !state.adapter.ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "cluster state unavailable")
    } else {
        (StatusCode::OK, "OK")
    }
}

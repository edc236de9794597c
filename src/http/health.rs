//! Health checks for load balancers and probes: `/ping` as Poxa answers it (balancers set up
//! for Poxa use it), `/up` while the process serves.

use poem::handler;

#[handler]
pub fn ping() -> &'static str {
    "Pong!"
}

#[handler]
pub fn up() -> &'static str {
    "OK"
}

//! The reverse harness: poxide plays a scripted Pusher server to grade a client library, which a
//! small driver program wraps (`conformance/CLIENTS.md`). `scenario.rs` is the file format,
//! `driver.rs` the driver process and its JSON lines, `stage.rs` the scripted server (WebSocket
//! listener and auth endpoint), `play.rs` one scenario's run, `cli.rs` the command.

pub mod cli;
mod driver;
mod play;
pub mod scenario;
mod stage;

use futures_util::{stream, StreamExt};

use super::{grade::Graded, transcript::Level};
pub use play::{play, Played};
use scenario::Scenario;

/// Plays every scenario, `jobs` at a time, each with a fresh driver started from `command`, and
/// grades it at its level.
pub async fn grade(scenarios: &[Scenario], command: &str, jobs: usize) -> Vec<(Graded, Played)> {
    let mut results: Vec<(Graded, Played)> = stream::iter(scenarios)
        .map(|scenario| async move {
            let played = play(scenario, command).await;
            let header = &scenario.header;
            let outcome = Some(played.outcome.clone());
            let graded = Graded {
                name: header.name.clone(),
                feature: header.feature.clone(),
                level: header.level,
                source: header.source.clone(),
                protocol: outcome.clone().filter(|_| header.level == Level::Protocol),
                poxide: outcome.filter(|_| header.level == Level::Poxide),
            };
            (graded, played)
        })
        .buffer_unordered(jobs.max(1))
        .collect()
        .await;
    results.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    results
}

/// The features of the client scenarios, in the order `CLIENTS.md` lists them.
pub const FEATURES: &[&str] = &[
    "Connection",
    "Close codes",
    "Liveness",
    "Reconnection",
    "Authorization",
    "Presence",
    "Client events",
    "Sign-in",
    "Watchlist",
    "Cache channels",
    "Subscription counts",
    "Encrypted channels",
    "Server frames",
];

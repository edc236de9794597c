//! Keeps the registry in step with where the apps come from: the configuration file (read again
//! when it changes or on SIGHUP) or a database (its revision polled). A source that fails leaves
//! the running apps as they were, with one log line per interval.

use std::{path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use tokio::sync::Notify;

use super::store::{Store, StoreError};
use crate::{
    config::{AppConfig, Config, Overrides},
    error::CloseError,
    log_limit::Throttle,
    state::ServerState,
};

/// Where the apps come from.
pub enum Source {
    /// The `[[apps]]` of this configuration file, read with the same environment and flags as
    /// at start-up.
    File {
        path: PathBuf,
        env: Box<Overrides>,
        flags: Box<Overrides>,
    },
    Database(Store),
}

/// How long a changed file must stay unchanged before it is read.
const SETTLE: Duration = Duration::from_millis(100);

/// Failures of the source: one line per interval, however often they happen.
static FAILING: Throttle = Throttle::new(30);

/// Every row that maps to a valid app. A row that does not is left out with a line saying why
/// (once per load, and loads happen only on a change); its app, if it was running, stays as it
/// was.
pub async fn load(store: &Store, running: &super::Apps) -> Result<Vec<AppConfig>, StoreError> {
    let rows = store.load().await?;
    let mut apps = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for row in rows {
        match row.to_app() {
            Ok(app) => apps.push(app),
            Err(why) => {
                if let Some(before) = running.by_id(&row.id) {
                    apps.push((*before).clone());
                }
                refused.push(format!("{}: {why}", row.id));
            }
        }
    }
    if !refused.is_empty() {
        tracing::warn!(
            "apps database: rows refused, their apps left as they were: {}",
            refused.join("; ")
        );
    }
    Ok(apps)
}

fn apply(state: &ServerState, apps: Vec<AppConfig>, from: &str) {
    let changes = state.apps.replace(apps);
    if changes.is_empty() {
        return;
    }
    tracing::info!("apps changed ({from}): {changes}");
    state.adapter.apps_changed(state.apps.ids());
    // Idle connections too: the others notice the new generation at their next turn.
    for id in &changes.removed {
        state.adapter.close_app(id, CloseError::UnknownApp);
    }
    for id in &changes.changed {
        if state.apps.by_id(id).is_some_and(|app| !app.enabled) {
            state.adapter.close_app(id, CloseError::AppDisabled);
        }
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs until shutdown: every `every`, and at once when `now` is notified.
pub async fn follow(
    source: Source,
    state: Arc<ServerState>,
    every: Duration,
    now: Arc<Notify>,
    mut revision: i64,
) {
    let mut file_seen = match &source {
        Source::File { path, .. } => modified(path),
        Source::Database(_) => None,
    };
    let mut failing = false;
    loop {
        let forced = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = now.notified() => true,
            _ = state.shutdown.cancelled() => return,
        };
        match &source {
            Source::File { path, env, flags } => {
                let mut seen = modified(path);
                if !forced && seen == file_seen {
                    continue;
                }
                // Not in the middle of a write: the file has stayed as it is for a moment.
                loop {
                    tokio::time::sleep(SETTLE).await;
                    let now = modified(path);
                    if now == seen {
                        break;
                    }
                    seen = now;
                }
                file_seen = seen;
                match Config::load(Some(path), env, flags) {
                    Ok(config) => apply(&state, config.apps, &path.display().to_string()),
                    Err(e) => tracing::error!("{e}: the running apps are unchanged"),
                }
            }
            Source::Database(store) => {
                let counted = |ok: bool| {
                    if let Some(m) = &state.metrics {
                        m.apps_store_read(ok);
                    }
                };
                let checked = match store.revision().await {
                    Ok(r) if r == revision && !forced => Ok(()),
                    Ok(r) => {
                        counted(true);
                        load(store, &state.apps).await.map(|apps| {
                            revision = r;
                            apply(&state, apps, "database");
                        })
                    }
                    Err(e) => Err(e),
                };
                counted(checked.is_ok());
                match checked {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("apps database reachable again");
                    }
                    Ok(()) => {}
                    Err(e) => {
                        failing = true;
                        FAILING.log(|left_out| {
                            tracing::warn!(
                                left_out,
                                "{e}: serving the apps last read, retrying every {} ms",
                                every.as_millis()
                            )
                        });
                    }
                }
            }
        }
    }
}

//! Who may watch: a console request is signed like a REST request (HMAC-SHA256 with the app's
//! secret over `GET\n{path}\n` and the sorted query), but names its app by `auth_key` alone,
//! since Poxa's console page knows only the key and the secret.

use std::sync::Arc;

use super::Watch;
use crate::{
    config::AppConfig,
    error::ApiError,
    http::auth::{param, parse_query, unix_now, verify_query, Params},
    state::ServerState,
};

/// Checks a signed console request to `path` at Unix time `now`.
pub fn verify(
    state: &ServerState,
    path: &str,
    params: &Params,
    now: i64,
) -> Result<Arc<AppConfig>, ApiError> {
    let key = param(params, "auth_key").ok_or(ApiError::MissingAuthParam("auth_key"))?;
    let app = state
        .apps
        .by_key(key)
        .ok_or_else(|| ApiError::UnknownKey(key.to_string()))?;
    let app = verify_query(&state.apps, &app.id, "GET", path, params, now)?;
    if !app.console {
        return Err(ApiError::ConsoleOff);
    }
    Ok(app)
}

/// Admits the console WebSocket `/console?auth_key=…`: a seat for its app, or why not.
pub fn admit(state: &ServerState, query: Option<&str>) -> Result<Watch, ApiError> {
    let console = state.console.as_ref().ok_or(ApiError::ConsoleOff)?;
    let params = parse_query(query);
    let app = verify(state, "/console", &params, unix_now())?;
    console.watch(app)
}

//! The REST API (protocol §12): thin handlers that authenticate the request, then hand the parsed
//! input to `events` or `channels`. Errors become plain-text bodies with hosted Pusher's status
//! codes (see `error::ApiError`).

pub mod answered;
pub mod auth;
pub mod channels;
pub mod events;
mod fields;
pub mod health;

use std::sync::Arc;

use auth::Signed;
use poem::{
    handler,
    web::{Data, Json, Path},
};
use serde_json::Value;

use crate::{error::ApiError, state::ServerState};

type ApiResult = Result<Json<Value>, ApiError>;

#[handler]
pub async fn trigger(signed: Signed, Data(state): Data<&Arc<ServerState>>) -> ApiResult {
    events::trigger(state, &signed.app, &signed.body)
        .await
        .map(Json)
}

#[handler]
pub async fn batch_trigger(signed: Signed, Data(state): Data<&Arc<ServerState>>) -> ApiResult {
    events::batch(state, &signed.app, &signed.body)
        .await
        .map(Json)
}

#[handler]
pub async fn list_channels(signed: Signed, Data(state): Data<&Arc<ServerState>>) -> ApiResult {
    channels::list(state, &signed.app, &signed.params)
        .await
        .map(Json)
}

#[handler]
pub async fn channel_info(
    signed: Signed,
    Path((_, channel)): Path<(String, String)>,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    channels::info(state, &signed.app, &channel, &signed.params)
        .await
        .map(Json)
}

#[handler]
pub async fn channel_users(
    signed: Signed,
    Path((_, channel)): Path<(String, String)>,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    channels::users(state, &signed.app, &channel)
        .await
        .map(Json)
}

#[handler]
pub async fn terminate_user(
    signed: Signed,
    Path((_, user_id)): Path<(String, String)>,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    state
        .adapter
        .terminate_user(&signed.app.id, &user_id)
        .await?;
    tracing::info!(app = %signed.app.id, user = %user_id, "terminated user connections");
    Ok(Json(serde_json::json!({})))
}

/// Any other path.
pub fn not_found_response() -> poem::Response {
    poem::Response::builder()
        .status(poem::http::StatusCode::NOT_FOUND)
        .content_type("text/plain; charset=utf-8")
        .body("Not found")
}

/// Parses `info=a,b` into attribute names, refusing any not in `allowed`.
fn info_attributes<'a>(info: Option<&'a str>, allowed: &[&str]) -> Result<Vec<&'a str>, ApiError> {
    let Some(info) = info else {
        return Ok(Vec::new());
    };
    info.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            if allowed.contains(&a) {
                Ok(a)
            } else {
                Err(ApiError::BadInfo {
                    attribute: a.to_string(),
                    reason: "unknown attribute",
                })
            }
        })
        .collect()
}

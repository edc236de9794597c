//! The REST API (protocol §12): thin handlers that authenticate the request, then hand the parsed
//! input to `events` or `channels`. Errors become plain-text bodies with hosted Pusher's status
//! codes (see `error::ApiError`).

pub mod auth;
pub mod channels;
pub mod events;

use std::sync::Arc;

use poem::{
    handler,
    web::{Data, Json, Path},
    Body, Request,
};
use serde_json::Value;

use crate::{error::ApiError, server::ServerState};

type ApiResult = Result<Json<Value>, ApiError>;

#[handler]
pub async fn trigger(
    req: &Request,
    Path(app_id): Path<String>,
    body: Body,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    let body = read_body(body).await?;
    let params = auth::query_params(req);
    let app = auth::authenticate(state, &app_id, req, &params, &body)?;
    events::trigger(state, &app, &body).await.map(Json)
}

#[handler]
pub async fn batch_trigger(
    req: &Request,
    Path(app_id): Path<String>,
    body: Body,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    let body = read_body(body).await?;
    let params = auth::query_params(req);
    let app = auth::authenticate(state, &app_id, req, &params, &body)?;
    events::batch(state, &app, &body).await.map(Json)
}

#[handler]
pub async fn list_channels(
    req: &Request,
    Path(app_id): Path<String>,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    let params = auth::query_params(req);
    let app = auth::authenticate(state, &app_id, req, &params, &[])?;
    channels::list(state, &app, &params).await.map(Json)
}

#[handler]
pub async fn channel_info(
    req: &Request,
    Path((app_id, channel)): Path<(String, String)>,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    let params = auth::query_params(req);
    let app = auth::authenticate(state, &app_id, req, &params, &[])?;
    channels::info(state, &app, &channel, &params)
        .await
        .map(Json)
}

#[handler]
pub async fn channel_users(
    req: &Request,
    Path((app_id, channel)): Path<(String, String)>,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    let params = auth::query_params(req);
    let app = auth::authenticate(state, &app_id, req, &params, &[])?;
    channels::users(state, &app, &channel).await.map(Json)
}

#[handler]
pub async fn terminate_user(
    req: &Request,
    Path((app_id, user_id)): Path<(String, String)>,
    body: Body,
    Data(state): Data<&Arc<ServerState>>,
) -> ApiResult {
    let body = read_body(body).await?;
    let params = auth::query_params(req);
    let app = auth::authenticate(state, &app_id, req, &params, &body)?;
    let closed = state.adapter.terminate_user(&app.id, &user_id).await;
    tracing::info!(app = %app.id, user = %user_id, closed, "terminated user connections");
    Ok(Json(serde_json::json!({})))
}

/// Requests larger than this are refused before they are read whole.
const MAX_BODY_BYTES: usize = 1 << 20;

async fn read_body(body: Body) -> Result<Vec<u8>, ApiError> {
    let bytes = body
        .into_bytes_limit(MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => ApiError::BodyTooLarge(MAX_BODY_BYTES),
            other => ApiError::InvalidBody(other.to_string()),
        })?;
    Ok(bytes.to_vec())
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

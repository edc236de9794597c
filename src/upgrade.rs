//! The WebSocket handshake (protocol §1): which app a key names, which protocol versions are
//! accepted, and what an upgrade on an unknown path gets.

use std::{collections::HashMap, sync::Arc};

use poem::{
    handler,
    http::StatusCode,
    web::{websocket::WebSocket, Data, Path, Query},
    IntoResponse, Response,
};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{connection, error::CloseError, server::ServerState};

/// Largest WebSocket message tungstenite will assemble, unless an app's payload limit needs more.
/// Frames between the payload limit and this get a `pusher:error`; beyond it the connection is
/// dropped before the text is even read.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Oldest and newest protocol versions served; missing means 7 (as Poxa).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

fn ws_config(payload_limit: usize) -> WebSocketConfig {
    let max = MAX_MESSAGE_BYTES.max(payload_limit.saturating_mul(2));
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

#[handler]
pub async fn app_socket(
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocket,
    Data(state): Data<&Arc<ServerState>>,
) -> impl IntoResponse {
    let state = state.clone();
    let protocol_ok = query
        .get("protocol")
        .is_none_or(|p| p.parse::<u32>().is_ok_and(|v| PROTOCOLS.contains(&v)));
    let app = state.apps.by_key(&key).cloned();
    let payload_limit = app.as_ref().map_or(0, |a| a.payload_limit);
    ws.config(ws_config(payload_limit))
        .on_upgrade(move |socket| async move {
            match app {
                None => connection::refuse(socket, CloseError::UnknownApp).await,
                Some(_) if !protocol_ok => {
                    connection::refuse(socket, CloseError::UnsupportedProtocol).await
                }
                Some(app) => connection::serve(socket, state, app).await,
            }
        })
}

/// Any other path: a WebSocket upgrade is accepted only to be closed with 4005, as pusher-js
/// understands it; plain HTTP gets 404.
#[handler]
pub async fn not_found(ws: Option<WebSocket>) -> Response {
    match ws {
        Some(ws) => ws
            .on_upgrade(|socket| connection::refuse(socket, CloseError::PathNotFound))
            .into_response(),
        None => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

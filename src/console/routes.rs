//! The console's HTTP side: the page and its assets (built into the binary, so it works offline),
//! and the signed JSON endpoints the page reads besides the REST API: which app its key names
//! (so a wrong secret is a clear message, not a WebSocket that fails without saying why),
//! a presence channel's members with their `user_info`, and, to a page opened on this machine,
//! the apps it may pick from.

use std::{net::IpAddr, sync::Arc};

use poem::{
    get, handler,
    http::{header, StatusCode},
    web::{Data, Json, Path},
    IntoResponse, Request, Response, Route,
};
use serde_json::{json, Value};

use super::auth::verify;
use crate::{
    channel::{Access, ChannelKind},
    config::AppConfig,
    error::ApiError,
    http::auth::{param, query_params, unix_now},
    state::ServerState,
};

const INDEX: &str = include_str!("page/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("page/console.css"),
    ),
    (
        "console.mjs",
        "text/javascript; charset=utf-8",
        include_str!("page/console.mjs"),
    ),
    (
        "crypto.mjs",
        "text/javascript; charset=utf-8",
        include_str!("page/crypto.mjs"),
    ),
];

/// The routes under `/console/` (the WebSocket `/console` itself is an upgrade, see
/// `crate::upgrade`).
pub fn routes() -> Route {
    Route::new()
        .at("/assets/:file", get(asset))
        .at("/app", get(which_app))
        .at("/members", get(presence_members))
        .at("/apps", get(local_apps))
}

#[handler]
pub fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

#[handler]
fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, kind, body)) => page(body, kind),
        None => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

fn page(body: &'static str, content_type: &str) -> Response {
    Response::builder()
        .content_type(content_type)
        // The page comes with the binary: a new binary must not meet an old cached script.
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-content-type-options", "nosniff")
        .body(body)
}

/// Checks the request's console signature.
fn signed(req: &Request, state: &ServerState) -> Result<Arc<AppConfig>, ApiError> {
    verify(
        state,
        req.original_uri().path(),
        &query_params(req),
        unix_now(),
    )
    .inspect_err(|e| {
        crate::log_limit::signature_failed(
            "console",
            &req.remote_addr().to_string(),
            &format_args!("GET {}: {e}", req.original_uri().path()),
        )
    })
}

/// The app the signature's key names.
#[handler]
fn which_app(req: &Request, Data(state): Data<&Arc<ServerState>>) -> Result<Json<Value>, ApiError> {
    let app = signed(req, state)?;
    Ok(Json(json!({ "app_id": app.id, "key": app.key })))
}

/// A presence channel's members with their `user_info` (the REST API gives ids only).
#[handler]
async fn presence_members(
    req: &Request,
    Data(state): Data<&Arc<ServerState>>,
) -> Result<Json<Value>, ApiError> {
    let app = signed(req, state)?;
    let params = query_params(req);
    let channel = param(&params, "channel").ok_or(ApiError::MissingField("channel"))?;
    if ChannelKind::of(channel).access != Access::Presence {
        return Err(ApiError::NotPresence(channel.to_string()));
    }
    let members: Vec<Value> = state
        .adapter
        .members(&app.id, channel)
        .await?
        .into_iter()
        .map(|m| {
            let info = m
                .user_info
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
            json!({ "user_id": m.user_id, "user_info": info })
        })
        .collect();
    Ok(Json(json!({ "members": members })))
}

/// To a page opened on this machine: the apps to pick from, with the secret of those whose
/// credentials are Poxa's public defaults (anyone may know them anyway).
#[handler]
fn local_apps(
    req: &Request,
    Data(state): Data<&Arc<ServerState>>,
) -> Result<Json<Value>, ApiError> {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let proxied = req.headers().contains_key("x-forwarded-for")
        || req.headers().contains_key(header::FORWARDED);
    if proxied || !peer.is_some_and(|ip| is_loopback(&ip)) {
        return Err(ApiError::NotLoopback);
    }
    // The apps configured at start in their order, then those added since (from a database or
    // a reloaded file) by id.
    let served = state.apps.all();
    let started: Vec<&str> = state.config.apps.iter().map(|a| a.id.as_str()).collect();
    let position = |id: &str| started.iter().position(|s| *s == id).unwrap_or(usize::MAX);
    let mut ordered: Vec<_> = served.iter().collect();
    ordered.sort_by_key(|a| position(&a.id));
    let apps: Vec<Value> = ordered
        .into_iter()
        .filter(|a| a.console)
        .map(|a| {
            let mut entry = json!({ "app_id": a.id, "key": a.key });
            if a.secret == AppConfig::default().secret {
                entry["secret"] = a.secret.clone().into();
            }
            entry
        })
        .collect();
    Ok(Json(json!({ "apps": apps })))
}

fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

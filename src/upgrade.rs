//! The WebSocket handshake (protocol §1): which app a key names, which protocol versions are
//! accepted, and what an upgrade on an unknown path gets. The HTTP layer hands every upgrade
//! request here; once the 101 is written, the connection runs in its own tracked task.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use poem::{
    http::{header, StatusCode},
    Response,
};
use tokio::net::TcpStream;

use crate::{
    config::AppConfig,
    connection,
    error::CloseError,
    state::ServerState,
    websocket::{self, accept_key},
};

/// Oldest and newest protocol versions served; missing means 7 (as Poxa).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// Largest message a connection that is about to be refused may send.
const REFUSED_MESSAGE_CAP: usize = 1024;

/// What the upgraded connection will do.
enum Plan {
    Serve(Arc<AppConfig>),
    Refuse(CloseError),
}

pub fn handle(mut req: hyper::Request<Incoming>, state: &Arc<ServerState>) -> Response {
    let accept = match accept_key(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into(),
    };
    let plan = plan(req.uri(), state);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state = state.clone();
    state.tasks.clone().spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("upgraded connection is not a TCP stream");
            return;
        };
        let cap = match &plan {
            Plan::Serve(app) => connection::message_cap(app.payload_limit),
            Plan::Refuse(_) => REFUSED_MESSAGE_CAP,
        };
        let (source, sink) = websocket::split(parts.io.into_inner(), parts.read_buf, cap);
        match plan {
            Plan::Serve(app) => connection::serve(source, sink, state, app).await,
            Plan::Refuse(reason) => connection::refuse(source, sink, reason).await,
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .finish()
}

/// `/app/{key}?protocol=N`; any other path is accepted only to be closed with 4005, as
/// pusher-js understands it.
fn plan(uri: &poem::http::Uri, state: &ServerState) -> Plan {
    let Some(key) = uri
        .path()
        .strip_prefix("/app/")
        .filter(|k| !k.is_empty() && !k.contains('/'))
    else {
        return Plan::Refuse(CloseError::PathNotFound);
    };
    let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
    let Some(app) = state.apps.by_key(&key) else {
        return Plan::Refuse(CloseError::UnknownApp);
    };
    let protocol_ok = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "protocol")
        .is_none_or(|(_, v)| v.parse::<u32>().is_ok_and(|v| PROTOCOLS.contains(&v)));
    if !protocol_ok {
        return Plan::Refuse(CloseError::UnsupportedProtocol);
    }
    Plan::Serve(app.clone())
}

//! The HTTP side of the fallback transports, under `{httpPath}/app/{key}/{server}/{session}/`
//! (`httpPath` is `/pusher` unless the client set another; `''` gives `/app/...`):
//! `xhr_streaming` and `xhr` receive, `xhr_send` sends, and `OPTIONS` answers CORS preflights.
//! A receiving request for a session that does not exist opens it, as a WebSocket upgrade opens
//! a connection, with the same app, origin and rate checks.

use std::{net::IpAddr, sync::Arc};

use bytes::Bytes;
use poem::{
    handler,
    http::{header, HeaderMap, StatusCode},
    web::{Data, Path},
    Body, Request, Response,
};

use super::{
    framing,
    receive::{self, Mode},
    session::{HandOver, XhrSession},
};
use crate::{
    client_ip::client_ip,
    config::AppConfig,
    connection,
    error::CloseError,
    frame,
    state::ServerState,
    transport::Received,
    upgrade::{over_connection_rate, refused_origin, shown_origin},
};

/// The endpoint of `{httpPath}/app/:key/:server/:session/:kind`.
pub fn endpoint() -> poem::RouteMethod {
    poem::post(transport).options(preflight)
}

/// The path's parts, checked: `server` is 0–999 and `session` a short token, as pusher-js
/// makes them, so that no request can name an unbounded id.
fn valid(server: &str, session: &str) -> bool {
    (1..=3).contains(&server.len())
        && server.bytes().all(|b| b.is_ascii_digit())
        && (1..=32).contains(&session.len())
        && session.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[handler]
async fn transport(
    req: &Request,
    body: Body,
    Path((key, server, session, kind)): Path<(String, String, String, String)>,
    Data(state): Data<&Arc<ServerState>>,
) -> Response {
    if !valid(&server, &session) {
        return not_found(req.headers());
    }
    let response = match kind.as_str() {
        "xhr_streaming" => receive_request(req, state, &key, &server, &session, Mode::Streaming),
        "xhr" => receive_request(req, state, &key, &server, &session, Mode::Polling),
        "xhr_send" => send(state, &key, &server, &session, body).await,
        _ => return not_found(req.headers()),
    };
    with_cors(response, req.headers())
}

/// The CORS preflight pusher-js's `Content-Type: application/json` requests cause.
#[handler]
fn preflight(req: &Request) -> Response {
    let allowed_headers = req
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .unwrap_or("Content-Type")
        .to_string();
    let response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, "OPTIONS, POST")
        .header(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers)
        .header(header::ACCESS_CONTROL_MAX_AGE, "31536000")
        .finish();
    with_cors(response, req.headers())
}

fn session_id(app: &AppConfig, server: &str, session: &str) -> String {
    format!("{}/{server}/{session}", app.id)
}

fn receive_request(
    req: &Request,
    state: &Arc<ServerState>,
    key: &str,
    server: &str,
    session: &str,
    mode: Mode,
) -> Response {
    let Some(app) = state.apps.by_key(key) else {
        return refused(&CloseError::UnknownApp);
    };
    if !app.enabled {
        return refused(&CloseError::AppDisabled);
    }
    let origin = req.header(header::ORIGIN).map(str::to_string);
    if let Some(reason) = refused_origin(state, &app, origin.as_deref()) {
        return refused(&reason);
    }
    let id = session_id(&app, server, session);
    let (session, opened) = match state.xhr_sessions.get(&id) {
        Some(session) => (session, false),
        None => match open(req, state, app, id, origin) {
            Ok(session) => (session, true),
            Err(response) => return *response,
        },
    };
    let Some(attached) = session.attach() else {
        return lines(framing::close(2010, "Another connection still open"));
    };
    let pace = receive::Pace {
        heartbeat: state.config.http_heartbeat,
        stream_bytes: state.config.http_stream_bytes,
    };
    Response::builder()
        .content_type("application/javascript; charset=UTF-8")
        // Proxies (nginx) must pass each line on as it comes.
        .header("x-accel-buffering", "no")
        .body(Body::from_bytes_stream(receive::body(
            attached, mode, opened, pace,
        )))
}

/// Opens a session and starts its connection, as a WebSocket upgrade would.
fn open(
    req: &Request,
    state: &Arc<ServerState>,
    app: Arc<AppConfig>,
    id: String,
    origin: Option<String>,
) -> Result<Arc<XhrSession>, Box<Response>> {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let ip = client_ip(
        peer,
        req.header("x-forwarded-for"),
        &state.config.trusted_proxies,
    );
    if let Some(refusal) = over_connection_rate(state, &app, ip) {
        return Err(Box::new(refusal));
    }
    let cap = connection::message_cap(app.payload_limit);
    let (session, source, sink) = XhrSession::new(cap, state.config.http_session_timeout);
    let limit = state.config.max_http_sessions;
    if !state
        .xhr_sessions
        .insert(id.clone(), session.clone(), limit)
    {
        return Err(Box::new(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Too many HTTP sessions: at most {limit} at once on this node"),
        )));
    }
    let origin = shown_origin(req.headers(), origin);
    let state = state.clone();
    state.tasks.clone().spawn(async move {
        connection::serve(source, sink, state.clone(), app, origin).await;
        state.xhr_sessions.remove(&id);
    });
    Ok(session)
}

async fn send(
    state: &Arc<ServerState>,
    key: &str,
    server: &str,
    session: &str,
    body: Body,
) -> Response {
    let session = state
        .apps
        .by_key(key)
        .and_then(|app| state.xhr_sessions.get(&session_id(&app, server, session)));
    let Some(session) = session else {
        return plain(StatusCode::NOT_FOUND, "Session not found");
    };
    // A few messages' worth: pusher-js sends one per request.
    let limit = session.message_cap.saturating_mul(4);
    let read = tokio::time::timeout(state.config.http_body_timeout, body.into_bytes_limit(limit));
    let bytes = match read.await {
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "Request body not received in time",
            )
        }
        Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body too large: at most {limit} bytes"),
            )
        }
        Ok(Err(e)) => return plain(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Ok(bytes)) => bytes,
    };
    if bytes.is_empty() {
        return plain(StatusCode::BAD_REQUEST, "Payload expected.");
    }
    let Ok(messages) = serde_json::from_slice::<Vec<String>>(&bytes) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "Broken JSON encoding: expected an array of strings.",
        );
    };
    // `[]` is pusher-js's heartbeat: activity with no content.
    let messages = if messages.is_empty() {
        vec![Received::Pong]
    } else {
        messages
            .into_iter()
            .map(|m| {
                if m.len() > session.message_cap {
                    Received::Violation {
                        code: crate::websocket::codec::TOO_BIG,
                        reason: "message too big",
                    }
                } else {
                    Received::Text(m)
                }
            })
            .collect()
    };
    match session
        .hand_over(messages, state.config.http_body_timeout)
        .await
    {
        Ok(()) => {}
        Err(HandOver::Gone) => return plain(StatusCode::NOT_FOUND, "Session not found"),
        Err(HandOver::Busy) => return plain(StatusCode::SERVICE_UNAVAILABLE, "Session busy"),
    }
    Response::builder().status(StatusCode::NO_CONTENT).finish()
}

/// A connection refused before it started: the session opens, says why, and closes, as a
/// refused WebSocket does (`pusher:error`, then the close code).
fn refused(reason: &CloseError) -> Response {
    let error = frame::error(&reason.to_string(), Some(reason.code()));
    let mut body = framing::open().to_vec();
    body.extend_from_slice(&framing::frames(&[error]));
    body.extend_from_slice(&framing::close(reason.code(), &reason.to_string()));
    lines(body.into())
}

fn lines(body: Bytes) -> Response {
    Response::builder()
        .content_type("application/javascript; charset=UTF-8")
        .body(body)
}

fn plain(status: StatusCode, text: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/plain; charset=utf-8")
        .body(text.to_string())
}

fn not_found(headers: &HeaderMap) -> Response {
    with_cors(plain(StatusCode::NOT_FOUND, "Not found"), headers)
}

/// Every answer may be read by the page that asked, from any origin (the app's
/// `allowed_origins` are checked when a session opens), and none may be cached.
fn with_cors(mut response: Response, request: &HeaderMap) -> Response {
    let origin = request
        .get(header::ORIGIN)
        .cloned()
        .unwrap_or_else(|| header::HeaderValue::from_static("*"));
    let headers = response.headers_mut();
    if origin != "*" {
        headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::HeaderValue::from_static("true"),
        );
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(
            "no-store, no-cache, no-transform, must-revalidate, max-age=0",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn ids_as_pusher_js_makes_them() {
        assert!(valid("0", "abcdefgh"));
        assert!(valid("999", "0v1u2t3s"));
        assert!(!valid("1000", "abcdefgh"));
        assert!(!valid("", "abcdefgh"));
        assert!(!valid("12", ""));
        assert!(!valid("12", "../../etc"));
        assert!(!valid("12", &"a".repeat(33)));
    }
}

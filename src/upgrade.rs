//! The WebSocket handshake (protocol §1): which app a key names, which protocol versions are
//! accepted, and what an upgrade on an unknown path gets. The HTTP layer hands every upgrade
//! request here; once the 101 is written, the connection runs in its own tracked task.

use std::{net::IpAddr, sync::Arc};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use poem::{
    http::{header, StatusCode},
    Response,
};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::{
    client_ip::client_ip,
    config::AppConfig,
    connection, console,
    error::CloseError,
    happenings::Happening,
    log_limit::Throttle,
    metrics::Limit,
    state::ServerState,
    transport::{Sink, Source},
    websocket::{self, accept_key},
};

/// Refused connections are logged at most once every 10 s.
static REFUSED: Throttle = Throttle::new(10);

/// Oldest and newest protocol versions served; missing means 7 (as Poxa).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// Largest message a connection that is about to be refused may send.
const REFUSED_MESSAGE_CAP: usize = 1024;

/// What the upgraded connection will do.
enum Plan {
    Serve(Arc<AppConfig>),
    Refuse(CloseError),
    /// The web console's event stream.
    Console(console::Watch),
}

pub fn handle(
    mut req: hyper::Request<Incoming>,
    peer: IpAddr,
    state: &Arc<ServerState>,
) -> Response {
    let accept = match accept_key(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into(),
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let plan = if req.uri().path() == "/console" && state.console.is_some() {
        // Refused before the upgrade, with the reason in the body, as a REST call would be.
        match console::admit(state, req.uri().query()) {
            Ok(watch) => Plan::Console(watch),
            Err(e) => return poem::error::ResponseError::as_response(&e),
        }
    } else {
        plan(req.uri(), state)
    };
    let plan = match plan {
        Plan::Serve(app) => match refused_origin(state, &app, origin.as_deref()) {
            Some(reason) => Plan::Refuse(reason),
            None => Plan::Serve(app),
        },
        plan => plan,
    };
    let origin = shown_origin(req.headers(), origin);
    if let Plan::Serve(app) = &plan {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let ip = client_ip(peer, forwarded, &state.config.trusted_proxies);
        // Before the upgrade: a refused client costs no connection task.
        if let Some(refusal) = over_connection_rate(state, app, ip) {
            return refusal;
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state = state.clone();
    state.tasks.clone().spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let cap = match &plan {
            Plan::Serve(app) => connection::message_cap(app.payload_limit),
            Plan::Refuse(_) => REFUSED_MESSAGE_CAP,
            Plan::Console(_) => console::MESSAGE_CAP,
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (source, sink) = websocket::split(parts.io.into_inner(), parts.read_buf, cap);
                run(source, sink, state, plan, origin).await
            }
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(parts) => {
                    let (source, sink) =
                        websocket::split(parts.io.into_inner(), parts.read_buf, cap);
                    // Boxed: otherwise every connection's task, plain ones too, would be as
                    // large as both connection futures together (3 KiB more each, measured).
                    Box::pin(run(source, sink, state, plan, origin)).await
                }
                Err(_) => tracing::error!("upgraded connection is neither TCP nor TLS"),
            },
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .finish()
}

async fn run(
    source: impl Source,
    sink: impl Sink,
    state: Arc<ServerState>,
    plan: Plan,
    origin: String,
) {
    match plan {
        Plan::Serve(app) => connection::serve(source, sink, state, app, origin).await,
        Plan::Refuse(reason) => connection::refuse(source, sink, reason).await,
        Plan::Console(watch) => console::serve(source, sink, state, watch).await,
    }
}

/// The app's `allowed_origins` refuse `origin`: why, as observers are told.
pub fn refused_origin(
    state: &ServerState,
    app: &AppConfig,
    origin: Option<&str>,
) -> Option<CloseError> {
    if origin_allowed(app, origin) {
        return None;
    }
    let reason = CloseError::OriginNotAllowed(origin.unwrap_or_default().to_string());
    state.happenings.emit(|| Happening::Refused {
        app: app.id.clone(),
        code: reason.code(),
        reason: reason.to_string(),
    });
    Some(reason)
}

/// `ip` opened more connections of the app than `connection_rate_per_ip` allows: the 429 to
/// answer instead (counted and logged).
pub fn over_connection_rate(state: &ServerState, app: &AppConfig, ip: IpAddr) -> Option<Response> {
    if state.connection_rates.admit(app, ip) {
        return None;
    }
    state.happenings.emit(|| Happening::RateLimited {
        app: app.id.clone(),
        limit: Limit::Connection,
    });
    let rate = app.connection_rate_per_ip.unwrap_or_default();
    REFUSED.log(|left_out| {
        tracing::warn!(
            app = %app.id,
            %ip,
            left_out,
            "connection refused: over connection_rate_per_ip ({rate} a second)"
        )
    });
    let message =
        format!("Too many connections: at most {rate} new connections per second from {ip}");
    Some(
        Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header(header::RETRY_AFTER, "1")
            .content_type("application/json")
            .body(serde_json::json!({ "error": message }).to_string()),
    )
}

/// What the console shows as a connection's origin: the page's for a browser, else the host
/// the client asked for.
pub fn shown_origin(headers: &header::HeaderMap, origin: Option<String>) -> String {
    origin.unwrap_or_else(|| {
        headers.get(header::HOST).map_or("unknown".into(), |v| {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        })
    })
}

/// Whether the app accepts a WebSocket from `origin` (see `AppConfig::allowed_origins`).
fn origin_allowed(app: &AppConfig, origin: Option<&str>) -> bool {
    match origin {
        None => true,
        Some(origin) => {
            app.allowed_origins.is_empty()
                || app
                    .allowed_origins
                    .iter()
                    .any(|pattern| wildcard_match(pattern, origin))
        }
    }
}

/// `*` in `pattern` matches any run of characters (possibly none); the rest literally,
/// ignoring ASCII case as origins do.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
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
    if !app.enabled {
        return Plan::Refuse(CloseError::AppDisabled);
    }
    let protocol_ok = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "protocol")
        .is_none_or(|(_, v)| v.parse::<u32>().is_ok_and(|v| PROTOCOLS.contains(&v)));
    if !protocol_ok {
        return Plan::Refuse(CloseError::UnsupportedProtocol);
    }
    Plan::Serve(app)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn origin_patterns() {
        assert!(wildcard_match(
            "https://*.example.com",
            "https://app.example.com"
        ));
        assert!(wildcard_match(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(wildcard_match(
            "HTTPS://App.Example.com",
            "https://app.example.com"
        ));
        assert!(!wildcard_match(
            "https://*.example.com",
            "https://example.com"
        ));
        assert!(!wildcard_match(
            "https://*.example.com",
            "https://evil.com/.example.com.x"
        ));
        assert!(!wildcard_match(
            "https://*.example.com",
            "http://app.example.com"
        ));
        assert!(wildcard_match(
            "http://localhost:*",
            "http://localhost:3000"
        ));
        assert!(wildcard_match("*", "null"));
        assert!(!wildcard_match(
            "https://app.example.com",
            "https://app.example.com.evil.io"
        ));
        assert!(wildcard_match("https://*.a.*.com", "https://x.a.y.com"));
    }
}

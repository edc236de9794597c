//! One HTTP/1.1 connection, plain or TLS: hyper with a deadline for each request head (which
//! also ends idle keep-alive connections), WebSocket upgrades to `upgrade.rs`, everything else
//! to the REST routes. HTTP/2 is not served: no Pusher client or server SDK needs it, and each
//! of its streams would be one more thing to bound.
//!
//! The first byte tells TLS from plain HTTP (a handshake starts with 22), so a client on the
//! wrong port gets a hint in the log, and a plain request on the TLS port a plain answer
//! saying so, instead of a silent failure.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::{
    endpoint::BoxEndpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
    Endpoint,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsAcceptor;

use crate::{log_limit::Throttle, state::ServerState, upgrade, websocket};

/// The REST routes, shared by every connection.
pub type Rest = Arc<BoxEndpoint<'static, poem::Response>>;

/// Bytes hyper may buffer for one request head.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long requests in flight may finish once a shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Hints about clients on the wrong port, at most one a minute of each kind.
static PLAIN_ON_TLS: Throttle = Throttle::new(60);
static TLS_ON_PLAIN: Throttle = Throttle::new(60);

/// Whether the first byte the client sends (within the header deadline) is `TLS_HANDSHAKE`;
/// `None` when it sends nothing, in time or before a shutdown.
async fn starts_with_tls(stream: &TcpStream, state: &ServerState) -> Option<bool> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(state.config.http_header_timeout, stream.peek(&mut first));
    tokio::select! {
        peeked = peeked => match peeked {
            Ok(Ok(1)) => Some(first[0] == TLS_HANDSHAKE),
            _ => None,
        },
        _ = state.shutdown.cancelled() => None,
    }
}

/// A connection to the plain listener.
pub async fn serve_plain(stream: TcpStream, peer: SocketAddr, state: Arc<ServerState>, rest: Rest) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    match starts_with_tls(&stream, &state).await {
        None => return,
        Some(true) => {
            TLS_ON_PLAIN.log(|_| match &state.config.tls {
                Some(tls) => tracing::info!(
                    %peer,
                    "a TLS handshake arrived on the plain port {}: point wss:// and https:// clients at the TLS port {}",
                    local.port(),
                    tls.port
                ),
                None => tracing::info!(
                    %peer,
                    "a TLS handshake arrived on port {}, which serves plain ws:// and http://: give pusher-js forceTLS: false (hosted Pusher's snippets default to TLS), or serve TLS with POXIDE_TLS_CERT and POXIDE_TLS_KEY",
                    local.port()
                ),
            });
            return;
        }
        Some(false) => {}
    }
    serve(stream, peer, local, Scheme::HTTP, state, rest).await
}

/// A connection to the TLS listener: the handshake (within the header deadline), then HTTP.
pub async fn serve_tls(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    rest: Rest,
    acceptor: TlsAcceptor,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    match starts_with_tls(&stream, &state).await {
        None => return,
        Some(false) => {
            PLAIN_ON_TLS.log(|_| {
                tracing::info!(
                    %peer,
                    "plain HTTP arrived on the TLS port {}: use https:// and wss:// (pusher-js: forceTLS with wssPort), or the plain port",
                    local.port()
                )
            });
            let body = "This port serves TLS: use https:// or wss://.\n";
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(
                state.config.http_header_timeout,
                stream.write_all(answer.as_bytes()),
            )
            .await;
            return;
        }
        Some(true) => {}
    }
    let handshake = tokio::time::timeout(state.config.http_header_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => return,
        },
        _ = state.shutdown.cancelled() => return,
    };
    serve(stream, peer, local, Scheme::HTTPS, state, rest).await
}

async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    scheme: Scheme,
    state: Arc<ServerState>,
    rest: Rest,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let state = state.clone();
        service_fn(move |req: hyper::Request<Incoming>| {
            let state = state.clone();
            let rest = rest.clone();
            let scheme = scheme.clone();
            async move {
                let response = if websocket::is_upgrade(req.headers()) {
                    upgrade::handle(req, peer.ip(), &state)
                } else {
                    let req = poem::Request::from((
                        req,
                        LocalAddr(local.into()),
                        RemoteAddr(peer.into()),
                        scheme,
                    ));
                    rest.get_response(req).await
                };
                Ok::<_, Infallible>(hyper::Response::from(response))
            }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.http_header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = state.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}

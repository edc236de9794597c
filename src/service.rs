//! One HTTP/1.1 connection: hyper with a deadline for each request head (which also ends idle
//! keep-alive connections), WebSocket upgrades to `upgrade.rs`, everything else to the REST
//! routes. Cleartext HTTP/2 is not served: no Pusher client or server SDK speaks it, and each
//! of its streams would be one more thing to bound.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::{
    endpoint::BoxEndpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
    Endpoint,
};
use tokio::net::TcpStream;

use crate::{state::ServerState, upgrade, websocket};

/// The REST routes, shared by every connection.
pub type Rest = Arc<BoxEndpoint<'static, poem::Response>>;

/// Bytes hyper may buffer for one request head.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long requests in flight may finish once a shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(stream: TcpStream, peer: SocketAddr, state: Arc<ServerState>, rest: Rest) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let service = {
        let state = state.clone();
        service_fn(move |req: hyper::Request<Incoming>| {
            let state = state.clone();
            let rest = rest.clone();
            async move {
                let response = if websocket::is_upgrade(req.headers()) {
                    upgrade::handle(req, peer.ip(), &state)
                } else {
                    let req = poem::Request::from((
                        req,
                        LocalAddr(local.into()),
                        RemoteAddr(peer.into()),
                        Scheme::HTTP,
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

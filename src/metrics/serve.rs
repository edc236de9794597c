//! The metrics listener: `GET /metrics` in the Prometheus text format, anything else 404. Its
//! own port, so the public listener never exposes it and a scrape never queues behind clients.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::state::ServerState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Scrapes served at once; more are turned away at accept.
const MAX_CONNECTIONS: usize = 16;

pub async fn serve(listener: TcpListener, state: Arc<ServerState>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, most likely: the public listener backs off and logs; a scrape
            // can wait for the next interval.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let response = match (req.method(), req.uri().path()) {
                        (&hyper::Method::GET, "/metrics") => {
                            let text = state
                                .metrics
                                .as_ref()
                                .map(|m| m.render(&state))
                                .unwrap_or_default();
                            Response::builder()
                                .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
                                .body(Full::new(Bytes::from(text)))
                        }
                        _ => Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"Not found: try /metrics\n"))),
                    };
                    Ok::<_, Infallible>(response.expect("a valid response"))
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(state.config.http_header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}

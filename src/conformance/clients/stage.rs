//! The scripted server a client library connects to: a WebSocket listener that hands each
//! accepted connection to the scenario, and an HTTP auth endpoint that signs as a Pusher app's
//! backend would (or answers as the scenario says) and records every request.

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::{net::TcpListener, net::TcpStream, sync::mpsc, task::JoinHandle};
use tokio_tungstenite::{
    tungstenite::{
        handshake::server::{Request as Upgrade, Response as Upgraded},
        protocol::{frame::coding::CloseCode, CloseFrame},
        Message,
    },
    WebSocketStream,
};

use super::scenario::Reply;
use crate::signature;

/// The app the library is configured with.
pub const KEY: &str = "app_key";
pub const SECRET: &str = "secret";

/// Who the auth endpoint signs in and admits to presence channels when the scenario doesn't say.
pub const DEFAULT_CHANNEL_DATA: &str = r#"{"user_id":"u1","user_info":{"name":"Ann"}}"#;
pub const DEFAULT_USER_DATA: &str = r#"{"id":"u1","name":"Ann"}"#;

/// The largest auth request body read.
const MAX_AUTH_BODY: usize = 64 * 1024;
/// Connections, frames and auth requests queued before the scenario reads them.
const QUEUE: usize = 256;

/// What a library sent on a connection, as the scenario reads it.
#[derive(Debug)]
pub enum Sent {
    Text(String),
    Binary(usize),
    /// A close frame, with its code if it had one.
    Closed(Option<u16>),
    /// The connection ended without a close frame.
    Ended,
}

/// One WebSocket connection the library opened.
pub struct Connection {
    pub path: String,
    sink: Option<SplitSink<WebSocketStream<TcpStream>, Message>>,
    pub frames: mpsc::Receiver<Sent>,
    reader: JoinHandle<()>,
}

impl Connection {
    pub async fn send_text(&mut self, text: String) -> Result<(), String> {
        let sink = self.sink.as_mut().ok_or("the connection is closed")?;
        sink.send(Message::text(text))
            .await
            .map_err(|e| format!("sending: {e}"))
    }

    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), String> {
        let sink = self.sink.as_mut().ok_or("the connection is closed")?;
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        };
        sink.send(Message::Close(Some(frame)))
            .await
            .map_err(|e| format!("closing: {e}"))
    }

    /// Ends the TCP connection without a close frame.
    pub fn drop_tcp(&mut self) {
        self.sink = None;
        self.reader.abort();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Which endpoint an auth request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Channel,
    User,
}

/// A request to the auth endpoint: its form fields.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub kind: AuthKind,
    pub form: BTreeMap<String, String>,
}

/// The auth endpoint's answers to come, and who it admits.
#[derive(Default)]
struct Desk {
    channel_replies: VecDeque<Reply>,
    user_replies: VecDeque<Reply>,
}

pub struct Stage {
    pub ws_port: u16,
    pub auth_port: u16,
    accepted: mpsc::Receiver<Connection>,
    pub auth_requests: mpsc::Receiver<AuthRequest>,
    desk: Arc<Mutex<Desk>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Stage {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads one connection's frames into a queue until it ends.
fn read_frames(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<TcpStream>>,
    tx: mpsc::Sender<Sent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(next) = stream.next().await {
            let incoming = match next {
                Ok(Message::Text(t)) => Sent::Text(t.to_string()),
                Ok(Message::Binary(b)) => Sent::Binary(b.len()),
                Ok(Message::Close(frame)) => Sent::Closed(frame.map(|f| u16::from(f.code))),
                Ok(_) => continue,
                Err(_) => break,
            };
            let closed = matches!(incoming, Sent::Closed(_));
            if tx.send(incoming).await.is_err() || closed {
                return;
            }
        }
        let _ = tx.send(Sent::Ended).await;
    })
}

impl Stage {
    /// Listens on two loopback ports; `channel_data` and `user_data` are who the auth endpoint
    /// signs for by default.
    pub async fn open(channel_data: String, user_data: String) -> Result<Stage, String> {
        let bind = |what: &'static str| async move {
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("binding the {what} port: {e}"))
        };
        let ws = bind("WebSocket").await?;
        let auth = bind("auth").await?;
        let port = |l: &TcpListener| l.local_addr().map(|a: SocketAddr| a.port()).unwrap_or(0);
        let (ws_port, auth_port) = (port(&ws), port(&auth));
        let (accepted_tx, accepted) = mpsc::channel(QUEUE);
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                let accepted_tx = accepted_tx.clone();
                tokio::spawn(async move {
                    let mut path = String::new();
                    // The error type is tungstenite's, so its size is not ours to choose.
                    #[allow(clippy::result_large_err)]
                    let callback = |req: &Upgrade, res: Upgraded| {
                        path = req.uri().to_string();
                        Ok(res)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                        return;
                    };
                    let (sink, stream) = ws.split();
                    let (tx, frames) = mpsc::channel(QUEUE);
                    let reader = read_frames(stream, tx);
                    let _ = accepted_tx
                        .send(Connection {
                            path,
                            sink: Some(sink),
                            frames,
                            reader,
                        })
                        .await;
                });
            }
        });
        let desk = Arc::new(Mutex::new(Desk::default()));
        let (requests_tx, auth_requests) = mpsc::channel(QUEUE);
        let signer = Arc::new(Signer {
            desk: desk.clone(),
            requests: requests_tx,
            channel_data,
            user_data,
        });
        let serving = tokio::spawn(async move {
            while let Ok((stream, _)) = auth.accept().await {
                let signer = signer.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let signer = signer.clone();
                        async move { Ok::<_, Infallible>(signer.answer(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Stage {
            ws_port,
            auth_port,
            accepted,
            auth_requests,
            desk,
            tasks: vec![accepting, serving],
        })
    }

    /// The next connection the library opens, if one comes before `deadline`.
    pub async fn next_connection(&mut self, deadline: tokio::time::Instant) -> Option<Connection> {
        tokio::time::timeout_at(deadline, self.accepted.recv())
            .await
            .ok()
            .flatten()
    }

    /// How the auth endpoint answers its next request of that kind.
    pub fn queue_reply(&self, kind: AuthKind, reply: Reply) {
        let mut desk = self.desk.lock().expect("auth desk");
        match kind {
            AuthKind::Channel => desk.channel_replies.push_back(reply),
            AuthKind::User => desk.user_replies.push_back(reply),
        }
    }
}

/// The auth endpoint's logic.
struct Signer {
    desk: Arc<Mutex<Desk>>,
    requests: mpsc::Sender<AuthRequest>,
    channel_data: String,
    user_data: String,
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

impl Signer {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let kind = match req.uri().path() {
            "/pusher/auth" => AuthKind::Channel,
            "/pusher/user-auth" => AuthKind::User,
            _ => return respond(404, "text/plain", "Not found".into()),
        };
        let query = req.uri().query().unwrap_or("").to_string();
        let body = match Limited::new(req.into_body(), MAX_AUTH_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return respond(413, "text/plain", "Body too large".into()),
        };
        // Form fields from the body, or the query for a library that sends them there.
        let source = if body.is_empty() {
            query.as_bytes()
        } else {
            &body[..]
        };
        let form: BTreeMap<String, String> = form_urlencoded::parse(source).into_owned().collect();
        let reply = {
            let mut desk = self.desk.lock().expect("auth desk");
            match kind {
                AuthKind::Channel => desk.channel_replies.pop_front(),
                AuthKind::User => desk.user_replies.pop_front(),
            }
        };
        let _ = self.requests.try_send(AuthRequest {
            kind,
            form: form.clone(),
        });
        if let Some(reply) = reply {
            let status = reply.status.unwrap_or(200);
            return match (reply.body, reply.text) {
                (Some(body), _) => respond(status, "application/json", body.to_string()),
                (None, Some(text)) => respond(status, "text/plain", text),
                (None, None) => respond(status, "text/plain", "Forbidden".into()),
            };
        }
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        let socket_id = field("socket_id");
        let body = match kind {
            AuthKind::Channel => {
                let channel = field("channel_name");
                if channel.starts_with("presence-") {
                    let data = &self.channel_data;
                    let auth = signature::channel_auth(KEY, SECRET, socket_id, channel, Some(data));
                    json!({"auth": auth, "channel_data": data})
                } else {
                    json!({"auth": signature::channel_auth(KEY, SECRET, socket_id, channel, None)})
                }
            }
            AuthKind::User => {
                let data = &self.user_data;
                json!({"auth": signature::user_auth(KEY, SECRET, socket_id, data), "user_data": data})
            }
        };
        respond(200, "application/json", body.to_string())
    }
}

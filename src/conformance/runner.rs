//! Replays one transcript against a server reachable over the network, recording the exchange
//! in a normalized form (random socket ids, signatures and times replaced) for snapshots.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use regex::Regex;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message},
    MaybeTlsStream, WebSocketStream,
};

use super::{
    template::Bindings,
    transcript::{AppRef, Expect, ExpectClose, Level, Rest, Send, Step, Transcript},
};
use crate::signature;

const DEFAULT_PATH: &str = "/app/{{key}}?protocol=7&client=js&version=8.4.0&flash=false";
const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Silence required from every open client after the last step.
const FINAL_SILENCE_MS: u64 = 100;

/// The expected frame (template) and the one received, pretty-printed, with `-` before the
/// lines only the expectation has and `+` before those only the received frame has.
fn diff(expected: &Value, actual: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (expected, actual) = (pretty(expected), pretty(actual));
    let e_lines: Vec<&str> = expected.lines().collect();
    let a_lines: Vec<&str> = actual.lines().collect();
    let mut out = String::from("  expected (-) / received (+):");
    for line in &e_lines {
        let mark = if a_lines.contains(line) { ' ' } else { '-' };
        out.push_str(&format!("\n  {mark} {line}"));
    }
    for line in a_lines.iter().filter(|l| !e_lines.contains(l)) {
        out.push_str(&format!("\n  + {line}"));
    }
    out
}

/// One app's credentials on the target server.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: String,
    pub key: String,
    pub secret: String,
}

/// Where and as whom to run.
#[derive(Debug, Clone)]
pub struct Target {
    /// `ws://host:port` of each node; a scenario's clients are spread over them in the order
    /// they connect (or placed with `"node": N`), so a cluster is tested as clients see it.
    pub ws_urls: Vec<String>,
    /// `http://host:port`
    pub http_url: String,
    pub default_app: Credentials,
    pub second_app: Option<Credentials>,
}

/// How strictly, and in which namespace, one run checks a scenario.
#[derive(Debug, Clone, Default)]
pub struct Mode {
    /// Check poxide's choices too (wording, `$poxide` values, poxide-level steps).
    pub strict: bool,
    /// What `{{ns}}` becomes.
    pub ns: String,
}

impl Mode {
    /// How poxide's own suite runs: every expectation, no namespace.
    pub fn strict() -> Mode {
        Mode {
            strict: true,
            ns: String::new(),
        }
    }

    /// Whether a step of this level is checked in this mode.
    fn checks(&self, level: Option<Level>) -> bool {
        self.strict || level != Some(Level::Poxide)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", content = "why", rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub outcome: Outcome,
    /// The normalized exchange, one line per frame or call.
    pub log: Vec<String>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Client {
    ws: Ws,
    open: bool,
    /// A message an optional expectation looked at and left for the next step.
    put_back: Option<Received>,
}

struct Run<'a> {
    target: &'a Target,
    mode: &'a Mode,
    bindings: Bindings,
    clients: HashMap<String, Client>,
    log: Vec<String>,
    http: reqwest::Client,
    /// Connect steps so far, for spreading clients over the nodes.
    connects: usize,
}

pub async fn run(transcript: &Transcript, target: &Target, mode: &Mode) -> Report {
    let name = transcript.header.name.clone();
    if transcript.header.uses_second_app && target.second_app.is_none() {
        return Report {
            name,
            outcome: Outcome::Skipped("needs a second app".into()),
            log: Vec::new(),
        };
    }
    let mut run = Run::new(target, mode);
    let mut outcome = Outcome::Passed;
    for (line, step) in &transcript.steps {
        if let Err(e) = run.step(step).await {
            outcome = Outcome::Failed(format!("line {line}: {e}"));
            break;
        }
    }
    // "And nothing more" is poxide's promise; the protocol leaves a server free to send more.
    if outcome == Outcome::Passed && mode.strict {
        if let Err(e) = run.final_silence().await {
            outcome = Outcome::Failed(e);
        }
    }
    for client in run.clients.values_mut() {
        if client.open {
            let _ = client.ws.close(None).await;
        }
    }
    Report {
        name,
        outcome,
        log: run.log,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

enum Received {
    Text(String),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    /// The stream ended without a close frame.
    Ended,
}

impl<'a> Run<'a> {
    fn new(target: &'a Target, mode: &'a Mode) -> Self {
        let mut bindings = Bindings {
            ns: mode.ns.clone(),
            strict: mode.strict,
            ..Bindings::default()
        };
        let creds = &mut bindings.credentials;
        creds.insert("app_id", target.default_app.id.clone());
        creds.insert("key", target.default_app.key.clone());
        creds.insert("secret", target.default_app.secret.clone());
        if let Some(second) = &target.second_app {
            creds.insert("app2_id", second.id.clone());
            creds.insert("key2", second.key.clone());
            creds.insert("secret2", second.secret.clone());
        }
        Run {
            target,
            mode,
            bindings,
            clients: HashMap::new(),
            log: Vec::new(),
            http: reqwest::Client::new(),
            connects: 0,
        }
    }

    fn app(&self, app: AppRef) -> Result<&Credentials, String> {
        match app {
            AppRef::Default => Ok(&self.target.default_app),
            AppRef::Second => self
                .target
                .second_app
                .as_ref()
                .ok_or_else(|| "no second app configured".to_string()),
        }
    }

    fn client(&mut self, name: &str) -> Result<&mut Client, String> {
        self.clients
            .get_mut(name)
            .ok_or_else(|| format!("client {name:?} is not connected"))
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Connect(c) => {
                let template = match (&c.path, c.app) {
                    (Some(path), _) => path.clone(),
                    (None, AppRef::Default) => DEFAULT_PATH.to_string(),
                    (None, AppRef::Second) => DEFAULT_PATH.replace("{{key}}", "{{key2}}"),
                };
                let path = self.bindings.substitute(&template)?;
                let urls = &self.target.ws_urls;
                let node = c.node.unwrap_or(self.connects) % urls.len().max(1);
                self.connects += 1;
                let url = format!("{}{}", urls.get(node).ok_or("no WebSocket URL")?, path);
                let mut request = url
                    .as_str()
                    .into_client_request()
                    .map_err(|e| format!("connect {url}: {e}"))?;
                if let Some(origin) = &c.origin {
                    let value = origin.parse().map_err(|_| format!("origin {origin:?}"))?;
                    request.headers_mut().insert("origin", value);
                }
                let connected = tokio_tungstenite::connect_async(request).await;
                let ws = match (connected, c.expect_status) {
                    (Ok((ws, _)), None) => ws,
                    (Ok(_), Some(status)) => {
                        return Err(format!("connect {url}: upgraded, expected HTTP {status}"))
                    }
                    (Err(tokio_tungstenite::tungstenite::Error::Http(response)), Some(status)) => {
                        let got = response.status().as_u16();
                        let text = response
                            .body()
                            .as_deref()
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default()
                            .into_owned();
                        self.log
                            .push(format!("{}: connect {template} => {got} {text}", c.connect));
                        if got != status {
                            return Err(format!("connect {url}: HTTP {got}, expected {status}"));
                        }
                        if let Some(expected) = &c.expect_body {
                            let actual: Value = serde_json::from_str(&text)
                                .map_err(|e| format!("refusal is not JSON ({e}): {text}"))?;
                            self.bindings.match_json(expected, &actual)?;
                        }
                        return Ok(());
                    }
                    (Err(e), _) => return Err(format!("connect {url}: {e}")),
                };
                self.log.push(format!("{}: connect {template}", c.connect));
                self.clients.insert(
                    c.connect.clone(),
                    Client {
                        ws,
                        open: true,
                        put_back: None,
                    },
                );
                Ok(())
            }
            Step::Send(s) if !self.mode.checks(s.level) => Ok(()),
            Step::Send(s) => self.send(s).await,
            Step::Expect(e) if !self.mode.checks(e.level) => self.expect_optional(e).await,
            Step::Expect(e) => self.expect(e).await,
            Step::ExpectClose(e) => self.expect_close(e).await,
            Step::ExpectSilence(s) if !self.mode.checks(s.level) => Ok(()),
            Step::ExpectSilence(s) => {
                self.silence(&s.expect_silence, s.ms).await?;
                self.log
                    .push(format!("{}: nothing for {} ms", s.expect_silence, s.ms));
                Ok(())
            }
            Step::Disconnect(d) => {
                let client = self.client(&d.disconnect)?;
                client
                    .ws
                    .close(None)
                    .await
                    .map_err(|e| format!("close: {e}"))?;
                // Wait for the server's side of the close handshake, so that whatever the
                // server does on disconnect has happened before the next step.
                let _ = tokio::time::timeout(Duration::from_millis(DEFAULT_TIMEOUT_MS), async {
                    while let Some(Ok(_)) = client.ws.next().await {}
                })
                .await;
                client.open = false;
                self.log.push(format!("{}: disconnect", d.disconnect));
                Ok(())
            }
            Step::Wait(w) if !self.mode.checks(w.level) => Ok(()),
            Step::Wait(w) => {
                tokio::time::sleep(Duration::from_millis(w.wait_ms)).await;
                Ok(())
            }
            Step::SignChannel(s) => {
                let app = self.app(s.sign_channel.app)?.clone();
                let token = self
                    .bindings
                    .channel_token(&s.sign_channel, &app.key, &app.secret)?;
                self.bindings.vars.insert(s.var.clone(), token);
                Ok(())
            }
            Step::SignUser(s) => {
                let app = self.app(s.sign_user.app)?.clone();
                let token = self
                    .bindings
                    .user_token(&s.sign_user, &app.key, &app.secret)?;
                self.bindings.vars.insert(s.var.clone(), token);
                Ok(())
            }
            Step::Rest(r) => self.rest(r).await,
            Step::Hmac(h) => {
                let got = signature::sign(&h.hmac.secret, &h.hmac.string);
                self.log.push(format!("hmac {:?} = {got}", h.hmac.string));
                if got == h.expect {
                    Ok(())
                } else {
                    Err(format!("HMAC is {got}, expected {}", h.expect))
                }
            }
            Step::RestSignature(r) => {
                let input = &r.rest_signature;
                let extra: Vec<(String, String)> = input
                    .query
                    .iter()
                    .map(|(k, v)| (k.clone(), value_text(v)))
                    .collect();
                let timestamp: u64 = input
                    .timestamp
                    .parse()
                    .map_err(|_| "timestamp must be an integer".to_string())?;
                let params = signature::sign_rest_request(
                    &input.key,
                    &input.secret,
                    &input.method,
                    &input.path,
                    timestamp,
                    input.body.as_bytes(),
                    &extra,
                );
                let md5 = signature::body_md5(input.body.as_bytes());
                let string = signature::rest_string_to_sign(
                    &input.method,
                    &input.path,
                    params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                let sig = params
                    .iter()
                    .find(|(k, _)| k == "auth_signature")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                self.log.push(format!("rest signature {string:?} = {sig}"));
                let checks = [
                    ("body_md5", &r.expect.body_md5, md5),
                    ("string_to_sign", &r.expect.string_to_sign, string),
                    ("auth_signature", &r.expect.auth_signature, sig),
                ];
                for (what, expected, got) in checks {
                    if let Some(expected) = expected {
                        if *expected != got {
                            return Err(format!("{what} is {got:?}, expected {expected:?}"));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    async fn send(&mut self, s: &Send) -> Result<(), String> {
        let (message, shown) = if let Some(frame) = &s.frame {
            let text = self.bindings.substitute_json(frame)?.to_string();
            (Message::text(text), frame.to_string())
        } else if let Some(text) = &s.text {
            (Message::text(self.bindings.substitute(text)?), text.clone())
        } else if let Some(binary) = &s.binary {
            let bytes = self.bindings.substitute(binary)?.into_bytes();
            (Message::binary(bytes), format!("binary {binary:?}"))
        } else {
            let payload = s.ping.clone().unwrap_or_default();
            (
                Message::Ping(payload.clone().into_bytes().into()),
                format!("ping {payload:?}"),
            )
        };
        let client = self.client(&s.send)?;
        client
            .ws
            .send(message)
            .await
            .map_err(|e| format!("send: {e}"))?;
        self.log
            .push(format!("{} >> {}", s.send, compact_runs(&shown)));
        Ok(())
    }

    async fn receive(&mut self, name: &str, timeout_ms: u64) -> Result<Option<Received>, String> {
        let client = self.client(name)?;
        if let Some(received) = client.put_back.take() {
            return Ok(Some(received));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let next = match tokio::time::timeout_at(deadline, client.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(next) => next,
            };
            let received = match next {
                None | Some(Err(_)) => Received::Ended,
                Some(Ok(Message::Text(t))) => Received::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Received::Binary(b.to_vec()),
                Some(Ok(Message::Pong(p))) => Received::Pong(p.to_vec()),
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    Received::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
            };
            if matches!(received, Received::Close(_) | Received::Ended) {
                client.open = false;
            }
            return Ok(Some(received));
        }
    }

    /// Learns socket ids from `connection_established`, so later steps can use them.
    fn note_frame(&mut self, client: &str, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if value.get("event").and_then(Value::as_str) != Some("pusher:connection_established") {
            return;
        }
        let socket_id = value
            .get("data")
            .and_then(Value::as_str)
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|d| d.get("socket_id").and_then(Value::as_str).map(String::from));
        if let Some(id) = socket_id {
            self.bindings.socket_ids.insert(client.to_string(), id);
        }
    }

    fn describe(&self, received: &Received) -> String {
        match received {
            Received::Text(t) => self.normalize(t),
            Received::Binary(b) => format!("binary frame of {} bytes", b.len()),
            Received::Pong(p) => format!("pong {:?}", String::from_utf8_lossy(p)),
            Received::Close(Some((code, reason))) => format!("close {code} {reason:?}"),
            Received::Close(None) => "close without code".into(),
            Received::Ended => "connection ended without a close frame".into(),
        }
    }

    async fn expect(&mut self, e: &Expect) -> Result<(), String> {
        let timeout = e.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let received = self
            .receive(&e.expect, timeout)
            .await?
            .ok_or_else(|| format!("{}: nothing received within {timeout} ms", e.expect))?;
        if let Received::Text(text) = &received {
            self.note_frame(&e.expect, text);
        }
        let shown = self.describe(&received);
        self.log
            .push(format!("{} << {}", e.expect, compact_runs(&shown)));
        match (&received, &e.frame, &e.pong) {
            (Received::Text(text), Some(expected), _) => {
                let actual: Value = serde_json::from_str(text)
                    .map_err(|err| format!("frame is not JSON ({err}): {text}"))?;
                self.bindings
                    .match_json(expected, &actual)
                    .map_err(|why| format!("{why}\n{}", diff(expected, &actual)))
            }
            (Received::Pong(payload), _, Some(expected)) if payload == expected.as_bytes() => {
                Ok(())
            }
            _ => Err(format!(
                "{}: expected {}, got {shown}",
                e.expect,
                match (&e.frame, &e.pong) {
                    (Some(f), _) => f.to_string(),
                    (_, Some(p)) => format!("pong {p:?}"),
                    _ => String::new(),
                }
            )),
        }
    }

    /// A frame the protocol allows but does not require: absent, or present and matching.
    async fn expect_optional(&mut self, e: &Expect) -> Result<(), String> {
        let Some(expected) = &e.frame else {
            return Ok(());
        };
        let timeout = e.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let Some(received) = self.receive(&e.expect, timeout).await? else {
            self.log
                .push(format!("{}: (optional frame absent)", e.expect));
            return Ok(());
        };
        let event_of = |v: &Value| v.get("event").and_then(Value::as_str).map(String::from);
        let same_event = match &received {
            Received::Text(text) => {
                serde_json::from_str::<Value>(text)
                    .ok()
                    .is_some_and(|actual| {
                        event_of(&actual).is_some() && event_of(&actual) == event_of(expected)
                    })
            }
            _ => false,
        };
        if !same_event {
            self.log
                .push(format!("{}: (optional frame absent)", e.expect));
            self.client(&e.expect)?.put_back = Some(received);
            return Ok(());
        }
        self.client(&e.expect)?.put_back = Some(received);
        self.expect(e).await
    }

    async fn expect_close(&mut self, e: &ExpectClose) -> Result<(), String> {
        let timeout = e.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        loop {
            let received = self
                .receive(&e.expect_close, timeout)
                .await?
                .ok_or_else(|| format!("{}: no close within {timeout} ms", e.expect_close))?;
            let shown = self.describe(&received);
            self.log
                .push(format!("{} << {}", e.expect_close, compact_runs(&shown)));
            match received {
                Received::Close(Some((code, reason))) => {
                    if code != e.code {
                        return Err(format!(
                            "closed with {code} {reason:?}, expected {}",
                            e.code
                        ));
                    }
                    // A close reason is free text (RFC 6455): only poxide's own wording is pinned.
                    if let Some(template) = e.reason.as_ref().filter(|_| self.mode.strict) {
                        if !self.bindings.matches_text(template, &reason)? {
                            return Err(format!("close reason {reason:?}, expected {template:?}"));
                        }
                    }
                    return Ok(());
                }
                Received::Text(_) | Received::Binary(_) | Received::Pong(_) if e.skip_frames => {}
                _ => return Err(format!("expected close {}, got {shown}", e.code)),
            }
        }
    }

    async fn silence(&mut self, name: &str, ms: u64) -> Result<(), String> {
        match self.receive(name, ms).await? {
            None => Ok(()),
            Some(received) => {
                let shown = self.describe(&received);
                Err(format!("{name}: expected nothing for {ms} ms, got {shown}"))
            }
        }
    }

    async fn final_silence(&mut self) -> Result<(), String> {
        let mut open: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(n, _)| n.clone())
            .collect();
        open.sort();
        for name in open {
            self.silence(&name, FINAL_SILENCE_MS)
                .await
                .map_err(|e| format!("after the last step: {e}"))?;
        }
        Ok(())
    }

    async fn rest(&mut self, r: &Rest) -> Result<(), String> {
        let req = &r.rest;
        let app = self.app(req.app)?.clone();
        let path = self.bindings.substitute(&req.path)?;
        let body: Vec<u8> = match (&req.body, &req.body_text) {
            (Some(json), _) => self
                .bindings
                .substitute_json(json)?
                .to_string()
                .into_bytes(),
            (_, Some(text)) => self.bindings.substitute(text)?.into_bytes(),
            _ => Vec::new(),
        };
        let extra: Vec<(String, String)> = req
            .query
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.bindings.substitute(&value_text(v))?)))
            .collect::<Result<_, String>>()?;
        let mut params = if req.sign.unwrap_or(true) {
            let secret = match &req.secret {
                Some(s) => self.bindings.substitute(s)?,
                None => app.secret.clone(),
            };
            let timestamp = (now_unix() + req.timestamp_offset).max(0) as u64;
            signature::sign_rest_request(
                &app.key,
                &secret,
                &req.method,
                &path,
                timestamp,
                &body,
                &extra,
            )
        } else {
            extra
        };
        for (key, value) in &req.overrides {
            params.retain(|(k, _)| k != key);
            if !value.is_null() {
                params.push((key.clone(), self.bindings.substitute(&value_text(value))?));
            }
        }
        if req.sign_overrides {
            let secret = match &req.secret {
                Some(s) => self.bindings.substitute(s)?,
                None => app.secret.clone(),
            };
            params.retain(|(k, _)| k != "auth_signature");
            let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let string_to_sign =
                signature::rest_string_to_sign(&req.method.to_ascii_uppercase(), &path, pairs);
            params.push((
                "auth_signature".into(),
                signature::sign(&secret, &string_to_sign),
            ));
        }
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let url = if query.is_empty() {
            format!("{}{}", self.target.http_url, path)
        } else {
            format!("{}{}?{}", self.target.http_url, path, query)
        };
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|e| format!("method: {e}"))?;
        let mut request = self.http.request(method, &url);
        if !body.is_empty() {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| format!("reading body: {e}"))?;
        let shown_body = match (&req.body, &req.body_text) {
            (Some(json), _) => format!(" {json}"),
            (_, Some(text)) => format!(" {text:?}"),
            _ => String::new(),
        };
        self.log.push(compact_runs(&format!(
            "rest {} {}{} => {status} {}",
            req.method,
            req.path,
            shown_body,
            self.normalize(&text)
        )));
        if !self.mode.checks(r.level) {
            return Ok(());
        }
        if status != r.expect_status {
            return Err(format!(
                "status {status}, expected {}: {text}",
                r.expect_status
            ));
        }
        if let Some(expected) = &r.expect_body {
            let actual: Value = serde_json::from_str(&text)
                .map_err(|e| format!("body is not JSON ({e}): {text}"))?;
            self.bindings.match_json(expected, &actual)?;
        }
        if let Some(expected) = &r.expect_text {
            self.bindings
                .match_json(expected, &Value::String(text.clone()))
                .map_err(|why| format!("body: {why}"))?;
        }
        for (name, expected) in &r.expect_headers {
            let expected = value_text(expected);
            let actual = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
            if actual != Some(expected.as_str()) {
                return Err(format!("header {name}: {actual:?}, expected {expected:?}"));
            }
        }
        Ok(())
    }

    /// Replaces what differs between runs: socket ids, signatures computed from them, times.
    fn normalize(&self, text: &str) -> String {
        let mut out = text.to_string();
        let mut known: Vec<(String, String)> = Vec::new();
        for (name, value) in &self.bindings.vars {
            known.push((value.clone(), format!("{{{{var:{name}}}}}")));
            if let Some((_, sig)) = value.split_once(':') {
                known.push((sig.to_string(), format!("{{{{var:{name}}}}}#signature")));
            }
        }
        for (name, id) in &self.bindings.socket_ids {
            known.push((id.clone(), format!("{{{{socket_id:{name}}}}}")));
        }
        known.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        for (value, placeholder) in known {
            if !value.is_empty() {
                out = out.replace(&value, &placeholder);
            }
        }
        for (re, with) in normalizers() {
            out = re.replace_all(&out, *with).into_owned();
        }
        out
    }
}

fn normalizers() -> &'static [(Regex, &'static str)] {
    static CELL: std::sync::OnceLock<Vec<(Regex, &'static str)>> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        [
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>"),
            (r"auth_timestamp=\d+", "auth_timestamp=<time>"),
            (r"\b[0-9a-f]{64}\b", "<hmac>"),
            (r#""ttl":\d+"#, r#""ttl":<seconds>"#),
        ]
        .into_iter()
        .map(|(re, with)| (Regex::new(re).expect("valid normalizer"), with))
        .collect()
    })
}

/// Shortens runs of one character (oversized payloads) to the `{{repeat:N:c}}` form.
fn compact_runs(text: &str) -> String {
    const MIN_RUN: usize = 32;
    let mut out = String::with_capacity(text.len().min(4096));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut n = 1;
        while chars.peek() == Some(&c) {
            chars.next();
            n += 1;
        }
        if n >= MIN_RUN {
            out.push_str(&format!("{{{{repeat:{n}:{c}}}}}"));
        } else {
            out.extend(std::iter::repeat_n(c, n));
        }
    }
    out
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_failed_frame_shows_both_sides_line_by_line() {
        let shown = super::diff(
            &json!({"event": "pusher:error", "data": {"code": 4001}}),
            &json!({"event": "pusher:error", "data": {"code": 4009}}),
        );
        assert_eq!(
            shown,
            "  expected (-) / received (+):\n    {\n      \"event\": \"pusher:error\",\n      \"data\": {\n  -     \"code\": 4001\n      }\n    }\n  +     \"code\": 4009"
        );
    }
}

//! One client scenario, played: a stage and a fresh driver, the steps in order, and the outcome.
//! A driver that reports a command `unsupported` skips the scenario (the library lacks the
//! feature) instead of failing it.

use std::{collections::HashMap, time::Duration};

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::{
    driver::Driver,
    scenario::{Accept, DriverStep, Expect, ExpectClose, Scenario, Step},
    stage::{
        AuthKind, Connection, Sent, Stage, DEFAULT_CHANNEL_DATA, DEFAULT_USER_DATA, KEY, SECRET,
    },
};
use crate::conformance::{runner::Outcome, template::Bindings};

/// For steps that wait for the library and give no `timeout_ms`.
const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// The first connection also waits for the driver (and its runtime) to start.
const FIRST_CONNECTION_TIMEOUT_MS: u64 = 15000;

/// The result of one scenario, with what happened for the failure message.
#[derive(Debug)]
pub struct Played {
    pub name: String,
    pub outcome: Outcome,
    pub log: Vec<String>,
}

struct Play<'a> {
    scenario: &'a Scenario,
    stage: Stage,
    driver: Driver,
    bindings: Bindings,
    connections: HashMap<String, Connection>,
    accepted: usize,
    channel_data: String,
    user_data: String,
    /// When the previous step ended: `min_ms` bounds count from here.
    since: Instant,
    log: Vec<String>,
}

/// Why a scenario stopped early.
enum Stop {
    Failed(String),
    Unsupported(String),
}

impl From<String> for Stop {
    fn from(why: String) -> Stop {
        Stop::Failed(why)
    }
}

fn unsupported(report: &Value) -> Option<String> {
    (report.get("report").and_then(Value::as_str) == Some("unsupported")).then(|| {
        let field = |k: &str| report.get(k).and_then(Value::as_str).unwrap_or("");
        format!(
            "the library does not implement {}: {}",
            field("cmd"),
            field("why")
        )
    })
}

/// Plays the scenario with a driver started from `command`.
pub async fn play(scenario: &Scenario, command: &str) -> Played {
    let name = scenario.header.name.clone();
    let channel_data = scenario
        .header
        .channel_data
        .clone()
        .unwrap_or_else(|| DEFAULT_CHANNEL_DATA.into());
    let user_data = scenario
        .header
        .user_data
        .clone()
        .unwrap_or_else(|| DEFAULT_USER_DATA.into());
    let stage = match Stage::open(channel_data.clone(), user_data.clone()).await {
        Ok(stage) => stage,
        Err(why) => {
            return Played {
                name,
                outcome: Outcome::Failed(why),
                log: Vec::new(),
            }
        }
    };
    let driver = match Driver::spawn(command) {
        Ok(driver) => driver,
        Err(why) => {
            return Played {
                name,
                outcome: Outcome::Failed(why),
                log: Vec::new(),
            }
        }
    };
    let mut bindings = Bindings {
        strict: true,
        ..Bindings::default()
    };
    bindings.credentials.insert("key", KEY.into());
    bindings.credentials.insert("secret", SECRET.into());
    bindings.credentials.insert("app_id", "app_id".into());
    let mut play = Play {
        scenario,
        stage,
        driver,
        bindings,
        connections: HashMap::new(),
        accepted: 0,
        channel_data,
        user_data,
        since: Instant::now(),
        log: Vec::new(),
    };
    let mut outcome = Outcome::Passed;
    for (line, step) in &scenario.steps {
        match play.step(step).await {
            Ok(()) => play.since = Instant::now(),
            Err(Stop::Unsupported(why)) => {
                outcome = Outcome::Skipped(why);
                break;
            }
            Err(Stop::Failed(why)) => {
                // A command the library lacks shows as a failure of the step after it.
                outcome = match play.pending_unsupported() {
                    Some(why) => Outcome::Skipped(why),
                    None => {
                        let stderr = play.driver.stderr_tail();
                        let stderr = if stderr.is_empty() {
                            String::new()
                        } else {
                            format!("\n  driver stderr:\n{stderr}")
                        };
                        Outcome::Failed(format!("line {line}: {why}{stderr}"))
                    }
                };
                break;
            }
        }
    }
    let Play { driver, log, .. } = play;
    driver.finish().await;
    Played { name, outcome, log }
}

impl Play<'_> {
    fn deadline(&self, timeout_ms: Option<u64>) -> Instant {
        Instant::now() + Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))
    }

    fn connection(&mut self, name: &str) -> Result<&mut Connection, String> {
        self.connections
            .get_mut(name)
            .ok_or_else(|| format!("no connection named {name:?} was accepted"))
    }

    fn pending_unsupported(&mut self) -> Option<String> {
        while let Some(report) = self.driver.pending_report() {
            if let Some(why) = unsupported(&report) {
                return Some(why);
            }
        }
        None
    }

    /// Whether a report has every key of the pattern, matching.
    fn report_matches(&self, pattern: &Map<String, Value>, report: &Value) -> bool {
        pattern.iter().all(|(key, expected)| match report.get(key) {
            Some(actual) => self.bindings.match_json(expected, actual).is_ok(),
            None => false,
        })
    }

    async fn step(&mut self, step: &Step) -> Result<(), Stop> {
        match step {
            Step::Driver(d) => self.command(d).await,
            Step::Accept(a) => self.accept(a).await,
            Step::Establish(e) => {
                let socket_id = format!("{}.{}", 1000 + self.accepted, rand::random::<u32>());
                let data = json!({
                    "socket_id": socket_id,
                    "activity_timeout": e.activity_timeout.unwrap_or(120),
                });
                let frame =
                    json!({"event": "pusher:connection_established", "data": data.to_string()});
                self.bindings
                    .socket_ids
                    .insert(e.establish.clone(), socket_id);
                self.log.push(format!("{} << {frame}", e.establish));
                self.connection(&e.establish)?
                    .send_text(frame.to_string())
                    .await?;
                Ok(())
            }
            Step::Send(s) => {
                let text = match (&s.frame, &s.text) {
                    (Some(frame), _) => self.bindings.substitute_json(frame)?.to_string(),
                    (_, Some(text)) => self.bindings.substitute(text)?,
                    _ => unreachable!("parse requires one"),
                };
                self.log.push(format!("{} << {text}", s.send));
                self.connection(&s.send)?.send_text(text).await?;
                Ok(())
            }
            Step::Close(c) => {
                self.log
                    .push(format!("{} << close {} {:?}", c.close, c.code, c.reason));
                self.connection(&c.close)?.close(c.code, &c.reason).await?;
                Ok(())
            }
            Step::Drop(d) => {
                self.log.push(format!("{} << TCP closed", d.drop));
                self.connection(&d.drop)?.drop_tcp();
                Ok(())
            }
            Step::Expect(e) => self.expect(e).await,
            Step::ExpectSilence(s) => {
                let deadline = Instant::now() + Duration::from_millis(s.ms);
                self.connection(&s.expect_silence)?;
                match self.next_sent(&s.expect_silence, deadline, false).await {
                    Err(_) => Ok(()),
                    Ok(sent) => Err(Stop::Failed(format!(
                        "{}: expected nothing for {} ms, got {}",
                        s.expect_silence,
                        s.ms,
                        describe(sent.as_ref())
                    ))),
                }
            }
            Step::ExpectClose(e) => self.expect_close(e).await,
            Step::ExpectNoConnection(e) => {
                let deadline = Instant::now() + Duration::from_millis(e.expect_no_connection);
                match self.stage.next_connection(deadline).await {
                    None => Ok(()),
                    Some(conn) => Err(Stop::Failed(format!(
                        "the library connected again ({}) within {} ms",
                        conn.path, e.expect_no_connection
                    ))),
                }
            }
            Step::Report(r) => {
                let pattern = match self
                    .bindings
                    .substitute_json(&Value::Object(r.report.clone()))?
                {
                    Value::Object(m) => m,
                    _ => unreachable!("an object stays one"),
                };
                let deadline = self.deadline(r.timeout_ms);
                loop {
                    let Some(report) = self.driver.next_report(deadline).await else {
                        return Err(Stop::Failed(format!(
                            "no report matching {} within {} ms",
                            Value::Object(pattern),
                            r.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
                        )));
                    };
                    if let Some(why) = unsupported(&report) {
                        return Err(Stop::Unsupported(why));
                    }
                    let matched = self.report_matches(&pattern, &report);
                    self.log.push(format!(
                        "driver: {report}{}",
                        if matched { "" } else { " (passed over)" }
                    ));
                    if matched {
                        return Ok(());
                    }
                }
            }
            Step::NoReport(r) => {
                let deadline = Instant::now() + Duration::from_millis(r.ms);
                while let Some(report) = self.driver.next_report(deadline).await {
                    if let Some(why) = unsupported(&report) {
                        return Err(Stop::Unsupported(why));
                    }
                    self.log.push(format!("driver: {report}"));
                    if self.report_matches(&r.no_report, &report) {
                        return Err(Stop::Failed(format!(
                            "the library reported {report}, expected no {} within {} ms",
                            Value::Object(r.no_report.clone()),
                            r.ms
                        )));
                    }
                }
                Ok(())
            }
            Step::AuthReply(r) => {
                let reply = self.templated_reply(&r.auth_reply)?;
                self.stage.queue_reply(AuthKind::Channel, reply);
                Ok(())
            }
            Step::UserAuthReply(r) => {
                let reply = self.templated_reply(&r.user_auth_reply)?;
                self.stage.queue_reply(AuthKind::User, reply);
                Ok(())
            }
            Step::ExpectAuthRequest(e) => {
                self.auth_request(AuthKind::Channel, &e.expect_auth_request, e.timeout_ms)
                    .await
            }
            Step::ExpectUserAuthRequest(e) => {
                self.auth_request(AuthKind::User, &e.expect_user_auth_request, e.timeout_ms)
                    .await
            }
            Step::SignChannel(s) => {
                let token = self.bindings.channel_token(&s.sign_channel, KEY, SECRET)?;
                self.bindings.vars.insert(s.var.clone(), token);
                Ok(())
            }
            Step::SignUser(s) => {
                let token = self.bindings.user_token(&s.sign_user, KEY, SECRET)?;
                self.bindings.vars.insert(s.var.clone(), token);
                Ok(())
            }
            Step::Wait(w) => {
                tokio::time::sleep(Duration::from_millis(w.wait_ms)).await;
                Ok(())
            }
        }
    }

    fn templated_reply(
        &self,
        reply: &super::scenario::Reply,
    ) -> Result<super::scenario::Reply, String> {
        Ok(super::scenario::Reply {
            status: reply.status,
            body: reply
                .body
                .as_ref()
                .map(|b| self.bindings.substitute_json(b))
                .transpose()?,
            text: reply
                .text
                .as_deref()
                .map(|t| self.bindings.substitute(t))
                .transpose()?,
        })
    }

    async fn command(&mut self, d: &DriverStep) -> Result<(), Stop> {
        let mut fields = Map::new();
        if d.driver == "connect" {
            let mut options = Map::new();
            options.insert("key".into(), KEY.into());
            options.insert("host".into(), "127.0.0.1".into());
            options.insert("port".into(), self.stage.ws_port.into());
            options.insert("tls".into(), false.into());
            let auth = |path: &str| format!("http://127.0.0.1:{}{path}", self.stage.auth_port);
            options.insert("auth_endpoint".into(), auth("/pusher/auth").into());
            options.insert(
                "user_auth_endpoint".into(),
                auth("/pusher/user-auth").into(),
            );
            // Who the auth endpoint signs for, for a library that builds channel_data itself.
            options.insert("channel_data".into(), self.channel_data.clone().into());
            options.insert("user_data".into(), self.user_data.clone().into());
            options.extend(self.scenario.header.connect.clone());
            options.extend(d.options.clone());
            fields.insert("options".into(), Value::Object(options));
        }
        if let Some(channel) = &d.channel {
            fields.insert("channel".into(), self.bindings.substitute(channel)?.into());
        }
        if let Some(event) = &d.event {
            fields.insert("event".into(), self.bindings.substitute(event)?.into());
        }
        if let Some(data) = &d.data {
            fields.insert("data".into(), self.bindings.substitute_json(data)?);
        }
        self.log.push(format!(
            "driver >> {} {}",
            d.driver,
            Value::Object(fields.clone())
        ));
        self.driver.command(&d.driver, fields).await?;
        Ok(())
    }

    async fn accept(&mut self, a: &Accept) -> Result<(), Stop> {
        let timeout = a.timeout_ms.unwrap_or(if self.accepted == 0 {
            FIRST_CONNECTION_TIMEOUT_MS
        } else {
            DEFAULT_TIMEOUT_MS
        });
        let deadline = Instant::now() + Duration::from_millis(timeout);
        let conn = self
            .stage
            .next_connection(deadline)
            .await
            .ok_or_else(|| format!("the library opened no WebSocket within {timeout} ms"))?;
        let waited = self.since.elapsed();
        self.accepted += 1;
        self.log.push(format!(
            "{}: connected to {} after {} ms",
            a.accept,
            conn.path,
            waited.as_millis()
        ));
        if let Some(min) = a.min_ms {
            if waited < Duration::from_millis(min) {
                return Err(Stop::Failed(format!(
                    "the library connected after {} ms, sooner than the {min} ms it must wait",
                    waited.as_millis()
                )));
            }
        }
        let (path, query) = conn.path.split_once('?').unwrap_or((&conn.path, ""));
        let expected_path = format!("/app/{KEY}");
        if path != expected_path {
            return Err(Stop::Failed(format!(
                "the library connected to {path}, expected {expected_path}"
            )));
        }
        let params: Map<String, Value> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        for (key, expected) in &a.query {
            let actual = params
                .get(key)
                .ok_or_else(|| format!("the connection's query {query:?} has no {key:?}"))?;
            self.bindings
                .match_json(expected, actual)
                .map_err(|why| format!("query parameter {key}: {why}"))?;
        }
        self.connections.insert(a.accept.clone(), conn);
        Ok(())
    }

    /// The next frame the library sends on `name`, answering the `pusher:ping`s it sends of its
    /// own accord (a client may ping at any time) unless `pings` says they are what is awaited.
    async fn next_sent(
        &mut self,
        name: &str,
        deadline: Instant,
        pings: bool,
    ) -> Result<Option<Sent>, tokio::time::error::Elapsed> {
        loop {
            let conn = self
                .connections
                .get_mut(name)
                .expect("checked by the caller");
            let sent = tokio::time::timeout_at(deadline, conn.frames.recv()).await?;
            let is_ping = matches!(&sent, Some(Sent::Text(t)) if event_of(t).as_deref() == Some("pusher:ping"));
            if pings || !is_ping {
                return Ok(sent);
            }
            self.log
                .push(format!("{name} >> {} (answered)", describe(sent.as_ref())));
            let pong = json!({"event": "pusher:pong", "data": {}}).to_string();
            let _ = conn.send_text(pong).await;
        }
    }

    async fn expect(&mut self, e: &Expect) -> Result<(), Stop> {
        let deadline = self.deadline(e.timeout_ms);
        let since = self.since;
        self.connection(&e.expect)?;
        let pings = e.frame.get("event").and_then(Value::as_str) == Some("pusher:ping");
        let sent = self
            .next_sent(&e.expect, deadline, pings)
            .await
            .map_err(|_| {
                format!(
                    "{}: the library sent nothing within {} ms",
                    e.expect,
                    e.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
                )
            })?;
        let waited = since.elapsed();
        self.log
            .push(format!("{} >> {}", e.expect, describe(sent.as_ref())));
        let Some(Sent::Text(text)) = sent else {
            return Err(Stop::Failed(format!(
                "{}: expected {}, got {}",
                e.expect,
                e.frame,
                describe(sent.as_ref())
            )));
        };
        if let Some(min) = e.min_ms {
            if waited < Duration::from_millis(min) {
                return Err(Stop::Failed(format!(
                    "{}: sent after {} ms, sooner than {min} ms: {text}",
                    e.expect,
                    waited.as_millis()
                )));
            }
        }
        let actual: Value = serde_json::from_str(&text).map_err(|err| {
            format!(
                "{}: the library sent text that is not JSON ({err}): {text}",
                e.expect
            )
        })?;
        self.bindings
            .match_json(&e.frame, &actual)
            .map_err(|why| Stop::Failed(format!("{}: {why} in {text}", e.expect)))
    }

    async fn expect_close(&mut self, e: &ExpectClose) -> Result<(), Stop> {
        let deadline = self.deadline(e.timeout_ms);
        let name = e.expect_close.clone();
        loop {
            let conn = self.connection(&name)?;
            let sent = tokio::time::timeout_at(deadline, conn.frames.recv())
                .await
                .map_err(|_| format!("{name}: the library did not close the connection"))?;
            self.log
                .push(format!("{name} >> {}", describe(sent.as_ref())));
            match sent {
                Some(Sent::Text(_)) | Some(Sent::Binary(_)) => continue,
                Some(Sent::Closed(code)) => {
                    return match e.code {
                        Some(expected) if code != Some(expected) => Err(Stop::Failed(format!(
                            "{name}: closed with {code:?}, expected {expected}"
                        ))),
                        _ => Ok(()),
                    };
                }
                Some(Sent::Ended) | None => {
                    return match e.code {
                        Some(expected) => Err(Stop::Failed(format!(
                            "{name}: the connection ended without a close frame, expected code {expected}"
                        ))),
                        None => Ok(()),
                    };
                }
            }
        }
    }

    async fn auth_request(
        &mut self,
        kind: AuthKind,
        expected: &Map<String, Value>,
        timeout_ms: Option<u64>,
    ) -> Result<(), Stop> {
        let deadline = self.deadline(timeout_ms);
        loop {
            let request = tokio::time::timeout_at(deadline, self.stage.auth_requests.recv())
                .await
                .ok()
                .flatten()
                .ok_or_else(|| format!("no {kind:?} auth request within the deadline"))?;
            self.log
                .push(format!("auth endpoint: {kind:?} {:?}", request.form));
            if request.kind != kind {
                continue;
            }
            for (field, pattern) in expected {
                let actual = request.form.get(field).ok_or_else(|| {
                    format!("the auth request has no {field:?}: {:?}", request.form)
                })?;
                self.bindings
                    .match_json(pattern, &Value::String(actual.clone()))
                    .map_err(|why| format!("auth request field {field}: {why}"))?;
            }
            return Ok(());
        }
    }
}

fn event_of(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("event")?.as_str().map(String::from)
}

fn describe(sent: Option<&Sent>) -> String {
    match sent {
        Some(Sent::Text(t)) => t.clone(),
        Some(Sent::Binary(n)) => format!("a binary frame of {n} bytes"),
        Some(Sent::Closed(Some(code))) => format!("close {code}"),
        Some(Sent::Closed(None)) => "close without a code".into(),
        Some(Sent::Ended) | None => "the connection ended".into(),
    }
}

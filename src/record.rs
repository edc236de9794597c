//! `--record DIR`: every exchange of the default app's connections, and every REST call, is
//! written as a conformance transcript, so a client-library author can record what their
//! library does against poxide and replay it against any server (`poxide conformance --dir`).
//!
//! Connections that overlap in time form a group, written as one file when its last
//! connection closes (or at shutdown). Socket ids become `{{socket_id:cN}}`, valid channel and
//! user signatures become `sign_*` steps (so the replay signs for its own socket ids), REST
//! calls are signed afresh by the runner; pings and pongs, which depend on timing, are left
//! out.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};

use crate::{
    config::AppConfig,
    happenings::{Happening, Observe},
    signature,
};

pub struct Recorder {
    dir: PathBuf,
    app: AppConfig,
    group: Mutex<Group>,
    started_ms: u128,
}

#[derive(Default)]
struct Group {
    steps: Vec<Value>,
    /// Socket id → client name.
    clients: HashMap<String, String>,
    open: usize,
    signatures: usize,
    written: usize,
    /// REST calls waiting for their answer: call id → index of their step.
    calls: HashMap<u64, usize>,
    /// Steps were left out: the group reached [`MAX_STEPS`].
    truncated: bool,
}

/// Steps one group keeps: connections that stay open for days must not grow it for ever.
const MAX_STEPS: usize = 100_000;

impl Group {
    fn push(&mut self, step: Value) {
        if self.steps.len() >= MAX_STEPS {
            if !self.truncated {
                self.truncated = true;
                tracing::warn!("recording: a group of connections reached {MAX_STEPS} steps; the rest of it is not recorded");
            }
            return;
        }
        self.steps.push(step);
    }
}

impl Recorder {
    pub fn new(dir: PathBuf, app: AppConfig) -> Self {
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Recorder {
            dir,
            app,
            group: Mutex::default(),
            started_ms,
        }
    }

    /// Writes what is recorded and not yet written (at shutdown).
    pub fn flush(&self) {
        let mut group = self.group.lock().expect("not poisoned");
        self.write(&mut group);
    }

    fn write(&self, group: &mut Group) {
        if group.steps.is_empty() {
            return;
        }
        group.written += 1;
        let name = format!("recorded-{}-{:04}", self.started_ms, group.written);
        let description = if group.truncated {
            format!("Recorded by poxide --record (cut after {MAX_STEPS} steps)")
        } else {
            "Recorded by poxide --record".to_string()
        };
        let header = json!({
            "name": name,
            "description": description,
            // A recording pins poxide's own exchange, so only a strict run grades it.
            "feature": "Recorded",
            "level": "poxide",
            "snapshot": false,
        });
        let mut text = format!("{header}\n");
        for step in group.steps.drain(..) {
            text.push_str(&format!("{step}\n"));
        }
        group.clients.clear();
        group.signatures = 0;
        group.calls.clear();
        group.truncated = false;
        let path = self.dir.join(format!("{name}.jsonl"));
        if let Err(e) =
            std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::write(&path, text))
        {
            tracing::warn!(
                "cannot write the recorded transcript {}: {e}",
                path.display()
            );
        }
    }
}

/// Replaces every known socket id in every string of `value` by its placeholder.
fn template(value: &mut Value, clients: &HashMap<String, String>) {
    match value {
        Value::String(s) => {
            for (socket_id, name) in clients {
                if s.contains(socket_id.as_str()) {
                    *s = s.replace(socket_id.as_str(), &format!("{{{{socket_id:{name}}}}}"));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| template(v, clients)),
        Value::Object(fields) => fields.values_mut().for_each(|v| template(v, clients)),
        _ => {}
    }
}

fn is_ping_or_pong(frame: &Value) -> bool {
    matches!(frame["event"].as_str(), Some("pusher:ping" | "pusher:pong"))
}

impl Recorder {
    /// A `sign_*` step for a valid signature in a subscribe or signin frame, whose `auth` then
    /// refers to it.
    fn signature_step(
        &self,
        group: &mut Group,
        socket_id: &str,
        name: &str,
        frame: &mut Value,
    ) -> Option<Value> {
        let event = frame["event"].as_str()?.to_string();
        let data = frame.get_mut("data")?;
        let auth = data["auth"].as_str()?.to_string();
        let (step, string_to_sign) = match event.as_str() {
            "pusher:subscribe" => {
                let channel = data["channel"].as_str()?.to_string();
                let channel_data = data["channel_data"].as_str().map(str::to_string);
                let signed =
                    signature::channel_string_to_sign(socket_id, &channel, channel_data.as_deref());
                let mut sign = json!({"client": name, "channel": channel});
                if let Some(cd) = channel_data {
                    sign["channel_data"] = cd.into();
                }
                (json!({"sign_channel": sign}), signed)
            }
            "pusher:signin" => {
                let user_data = data["user_data"].as_str()?.to_string();
                let signed = signature::user_string_to_sign(socket_id, &user_data);
                (
                    json!({"sign_user": {"client": name, "user_data": user_data}}),
                    signed,
                )
            }
            _ => return None,
        };
        signature::verify_auth_token(&self.app.key, &self.app.secret, &auth, &string_to_sign)
            .ok()?;
        group.signatures += 1;
        let var = format!("auth{}", group.signatures);
        data["auth"] = format!("{{{{var:{var}}}}}").into();
        let mut step = step;
        step["as"] = var.into();
        Some(step)
    }

    /// The step of a REST call to the default app; its expectations come with the answer.
    fn rest_step(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &str,
        clients: &HashMap<String, String>,
    ) -> Option<Value> {
        let rest_of_path = path.strip_prefix(&format!("/apps/{}/", self.app.id))?;
        let mut rest =
            json!({"method": method, "path": format!("/apps/{{{{app_id}}}}/{rest_of_path}")});
        // All of it for now: the answer tells whether the signature held (see `answer`).
        let mut query = Value::Object(
            query
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        );
        template(&mut query, clients);
        rest["query"] = query;
        if !body.is_empty() {
            let mut body = Value::String(body.to_string());
            template(&mut body, clients);
            rest["body_text"] = body;
        }
        Some(json!({ "rest": rest }))
    }
}

/// Fills in a REST step's expectations from its answer. A call that was signed is signed
/// afresh on replay; one refused as unauthenticated (401) goes again exactly as it came, and
/// only its status is kept, since the message names the time and signature of that one call.
fn answer(step: &mut Value, status: u16, response: &str, clients: &HashMap<String, String>) {
    step["expect_status"] = status.into();
    let rest = &mut step["rest"];
    if status == 401 {
        rest["sign"] = false.into();
        step["expect_text"] = "{{any}}".into();
        return;
    }
    if let Some(query) = rest["query"].as_object_mut() {
        query.retain(|k, _| !k.starts_with("auth_") && k != "body_md5");
        if query.is_empty() {
            rest.as_object_mut().map(|r| r.remove("query"));
        }
    }
    match serde_json::from_str::<Value>(response) {
        Ok(mut body) => {
            template(&mut body, clients);
            step["expect_body"] = body;
        }
        Err(_) => {
            let mut text = Value::String(response.to_string());
            template(&mut text, clients);
            step["expect_text"] = text;
        }
    }
}

impl Observe for Recorder {
    fn wants_wire(&self) -> bool {
        true
    }

    fn wants_unwanted_webhooks(&self) -> bool {
        true
    }

    fn observe(&self, happening: &Happening) {
        let mut group = self.group.lock().expect("not poisoned");
        let group = &mut *group;
        match happening {
            Happening::Connected { app, socket, .. } if *app == self.app.id => {
                let name = format!("c{}", group.clients.len() + 1);
                group
                    .clients
                    .insert(socket.socket_id().to_string(), name.clone());
                group.open += 1;
                group.push(json!({"connect": name}));
            }
            Happening::FrameIn { socket_id, text } => {
                let Some(name) = group.clients.get(socket_id).cloned() else {
                    return;
                };
                let mut frame = match serde_json::from_str::<Value>(text) {
                    Ok(frame @ Value::Object(_)) => frame,
                    // Exactly as sent: not JSON, or JSON that is not an object.
                    _ => return group.push(json!({"send": name, "text": text})),
                };
                if is_ping_or_pong(&frame) {
                    return;
                }
                if let Some(step) = self.signature_step(group, socket_id, &name, &mut frame) {
                    group.push(step);
                }
                template(&mut frame, &group.clients);
                group.push(json!({"send": name, "frame": frame}));
            }
            Happening::FrameOut { socket_id, text } => {
                let Some(name) = group.clients.get(socket_id).cloned() else {
                    return;
                };
                let Ok(mut frame) = serde_json::from_str::<Value>(text) else {
                    return;
                };
                if is_ping_or_pong(&frame) {
                    return;
                }
                template(&mut frame, &group.clients);
                group.push(json!({"expect": name, "frame": frame}));
            }
            Happening::Closed {
                socket_id, code, ..
            } => {
                let Some(name) = group.clients.get(socket_id).cloned() else {
                    return;
                };
                group.push(match code {
                    Some(code) => json!({"expect_close": name, "code": code}),
                    None => json!({"disconnect": name}),
                });
            }
            Happening::Disconnected { socket_id, .. } if group.clients.contains_key(socket_id) => {
                group.open = group.open.saturating_sub(1);
                if group.open == 0 {
                    self.write(group);
                }
            }
            Happening::BinaryIn { socket_id } => {
                if let Some(name) = group.clients.get(socket_id).cloned() {
                    group.push(json!({"send": name, "binary": ""}));
                }
            }
            Happening::RestCall {
                id,
                method,
                path,
                query,
                body,
            } => {
                if let Some(step) = self.rest_step(method, path, query, body, &group.clients) {
                    group.calls.insert(*id, group.steps.len());
                    group.push(step);
                }
            }
            Happening::RestAnswer {
                id,
                status,
                response,
            } => {
                if let Some(index) = group.calls.remove(id) {
                    let clients = group.clients.clone();
                    if let Some(step) = group.steps.get_mut(index) {
                        answer(step, *status, response, &clients);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Middleware of the REST routes while recording: reports each call with its answer. (It
/// reads the body before the signature is checked, which the recording double can afford.)
pub async fn observe_rest<E: poem::Endpoint>(
    endpoint: std::sync::Arc<E>,
    mut req: poem::Request,
) -> poem::Result<poem::Response> {
    let Some(state) = req
        .data::<std::sync::Arc<crate::state::ServerState>>()
        .cloned()
    else {
        return Ok(endpoint.get_response(req).await);
    };
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = crate::http::auth::query_params(&req);
    let body =
        crate::http::auth::read_body(req.take_body(), state.config.http_body_timeout).await?;
    req.set_body(body.clone());
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.happenings.emit_wire(|| Happening::RestCall {
        id,
        method,
        path,
        query,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let response = endpoint.get_response(req).await;
    let (parts, answer) = response.into_parts();
    let answer = answer.into_vec().await.unwrap_or_default();
    state.happenings.emit_wire(|| Happening::RestAnswer {
        id,
        status: parts.status.as_u16(),
        response: String::from_utf8_lossy(&answer).into_owned(),
    });
    Ok(poem::Response::from_parts(parts, answer.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Bounds, Outbox};

    #[test]
    fn a_group_keeps_at_most_max_steps() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::new(dir.path().to_path_buf(), AppConfig::default());
        let bounds = Bounds {
            frames: 4,
            bytes: 1 << 10,
        };
        let (socket, _queue) = Outbox::new("1.1".into(), bounds);
        recorder.observe(&Happening::Connected {
            app: "app_id".into(),
            socket,
            origin: String::new(),
        });
        for _ in 0..MAX_STEPS + 10 {
            recorder.observe(&Happening::FrameIn {
                socket_id: "1.1".into(),
                text: r#"{"event":"client-x","channel":"private-a","data":{}}"#.into(),
            });
        }
        assert_eq!(recorder.group.lock().unwrap().steps.len(), MAX_STEPS);
        recorder.observe(&Happening::Disconnected {
            app: "app_id".into(),
            socket_id: "1.1".into(),
            channels: Vec::new(),
            lifetime_secs: 0,
            code: None,
        });
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            text.lines().count(),
            MAX_STEPS + 1,
            "the header and the steps kept"
        );
        assert!(text
            .lines()
            .next()
            .unwrap()
            .contains("cut after 100000 steps"));
    }
}

//! The transcript file format (see `conformance/README.md`): a header line and one step per line.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct Transcript {
    pub path: PathBuf,
    pub header: Header,
    /// Each step with its 1-based line number, for error messages.
    pub steps: Vec<(usize, Step)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub app: Option<AppOverrides>,
    #[serde(default)]
    pub uses_second_app: bool,
    /// `false` for scenarios whose frames may legitimately differ between runs (races the
    /// steps match loosely): they are checked but not snapshotted.
    #[serde(default = "yes")]
    pub snapshot: bool,
    /// The `## ` section of `conformance/BEHAVIOUR.md` the scenario belongs to; the report
    /// groups results by it.
    pub feature: String,
    pub level: Level,
    /// Where the protocol requires what a protocol-level scenario checks.
    #[serde(default)]
    pub source: Option<String>,
    /// The scenario observes app-wide state (an unfiltered channel listing, connection
    /// counts): against a shared server it runs alone, after the others.
    #[serde(default)]
    pub exclusive: bool,
}

/// Whose rule an expectation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Required by the Pusher docs or relied on by pusher-js: every server is graded on it.
    Protocol,
    /// poxide's choice where the docs are silent: graded only with `--strict`.
    Poxide,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Protocol => "protocol",
            Level::Poxide => "poxide",
        }
    }
}

fn yes() -> bool {
    true
}

impl Header {
    /// Whether the scenario needs a server configured for it (and so cannot run against an
    /// arbitrary external server).
    pub fn needs_configured_server(&self) -> bool {
        self.app.is_some() || self.uses_second_app
    }
}

/// Settings a scenario changes: the two server-wide timeouts, and any `AppConfig` setting of the
/// default app (by its config-file name).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct AppOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pong_timeout_ms: Option<u64>,
    #[serde(flatten)]
    pub app: serde_json::Map<String, Value>,
}

/// Which of the two apps a step talks to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppRef {
    #[default]
    Default,
    Second,
}

#[derive(Debug, Clone)]
pub enum Step {
    Connect(Connect),
    Send(Send),
    Expect(Expect),
    ExpectClose(ExpectClose),
    ExpectSilence(ExpectSilence),
    Disconnect(Disconnect),
    Wait(Wait),
    SignChannel(SignChannel),
    SignUser(SignUser),
    Rest(Box<Rest>),
    Hmac(HmacCheck),
    RestSignature(RestSignatureCheck),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    pub connect: String,
    pub path: Option<String>,
    #[serde(default)]
    pub app: AppRef,
    /// Which node of a cluster target (wrapping around); by default clients go round-robin.
    pub node: Option<usize>,
    /// The `Origin` header a browser would send.
    pub origin: Option<String>,
    /// The upgrade must be refused with this HTTP status (and no client is created).
    pub expect_status: Option<u16>,
    /// With `expect_status`: the refusal's JSON body.
    pub expect_body: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    pub send: String,
    pub frame: Option<Value>,
    pub text: Option<String>,
    pub binary: Option<String>,
    pub ping: Option<String>,
    /// `poxide`: not sent unless strict (with the poxide-level steps expecting its answer).
    #[serde(default)]
    pub level: Option<Level>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub expect: String,
    pub frame: Option<Value>,
    pub pong: Option<String>,
    pub timeout_ms: Option<u64>,
    /// `poxide`: unless strict, the frame may be absent; a frame of the same event must still
    /// match, and any other is left for the next step.
    #[serde(default)]
    pub level: Option<Level>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectClose {
    pub expect_close: String,
    pub code: u16,
    pub reason: Option<String>,
    #[serde(default)]
    pub skip_frames: bool,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSilence {
    pub expect_silence: String,
    pub ms: u64,
    /// `poxide`: skipped unless strict.
    #[serde(default)]
    pub level: Option<Level>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disconnect {
    pub disconnect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    pub wait_ms: u64,
    /// `poxide`: skipped unless strict.
    #[serde(default)]
    pub level: Option<Level>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignChannel {
    pub sign_channel: SignChannelInput,
    #[serde(rename = "as")]
    pub var: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignChannelInput {
    pub client: String,
    pub channel: String,
    pub channel_data: Option<String>,
    #[serde(default)]
    pub app: AppRef,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUser {
    pub sign_user: SignUserInput,
    #[serde(rename = "as")]
    pub var: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUserInput {
    pub client: String,
    pub user_data: String,
    #[serde(default)]
    pub app: AppRef,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rest {
    pub rest: RestRequest,
    pub expect_status: u16,
    pub expect_body: Option<Value>,
    /// The body as text: a template string, or a `{"$message": …}` matcher.
    pub expect_text: Option<Value>,
    /// Response headers that must have these values (names in any case).
    #[serde(default)]
    pub expect_headers: Map<String, Value>,
    /// `poxide`: the request is made, but its response is checked only when strict.
    #[serde(default)]
    pub level: Option<Level>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Map<String, Value>,
    pub body: Option<Value>,
    pub body_text: Option<String>,
    pub sign: Option<bool>,
    #[serde(default)]
    pub app: AppRef,
    pub secret: Option<String>,
    #[serde(default)]
    pub timestamp_offset: i64,
    #[serde(rename = "override", default)]
    pub overrides: Map<String, Value>,
    /// Sign after the overrides, so the signature is valid and what is tested is the override.
    #[serde(default)]
    pub sign_overrides: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacCheck {
    pub hmac: HmacInput,
    pub expect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacInput {
    pub secret: String,
    pub string: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestSignatureCheck {
    pub rest_signature: RestSignatureInput,
    pub expect: RestSignatureExpect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestSignatureInput {
    pub method: String,
    pub path: String,
    pub key: String,
    pub secret: String,
    pub timestamp: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub query: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestSignatureExpect {
    pub body_md5: Option<String>,
    pub string_to_sign: Option<String>,
    pub auth_signature: Option<String>,
}

/// The key that decides a line's step kind, with how to read the rest of the line.
const STEP_KINDS: &[&str] = &[
    "connect",
    "send",
    "expect",
    "expect_close",
    "expect_silence",
    "disconnect",
    "wait_ms",
    "sign_channel",
    "sign_user",
    "rest",
    "hmac",
    "rest_signature",
];

fn parse_step(value: Value) -> Result<Step, String> {
    let Value::Object(map) = &value else {
        return Err("a step must be a JSON object".into());
    };
    // `expect` doubles as the expected value of the signer checks.
    let checks_signer = map.contains_key("hmac") || map.contains_key("rest_signature");
    let kinds: Vec<&str> = STEP_KINDS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k) && !(checks_signer && *k == "expect"))
        .collect();
    let kind = match kinds.as_slice() {
        [one] => *one,
        [] => return Err(format!("unknown step; expected one of {STEP_KINDS:?}")),
        many => return Err(format!("ambiguous step: has {many:?}")),
    };
    fn read<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
    Ok(match kind {
        "connect" => Step::Connect(read(value)?),
        "send" => {
            let s: Send = read(value)?;
            let forms = [
                s.frame.is_some(),
                s.text.is_some(),
                s.binary.is_some(),
                s.ping.is_some(),
            ];
            if forms.iter().filter(|f| **f).count() != 1 {
                return Err("send needs exactly one of frame, text, binary, ping".into());
            }
            Step::Send(s)
        }
        "expect" => {
            let e: Expect = read(value)?;
            if e.frame.is_some() == e.pong.is_some() {
                return Err("expect needs exactly one of frame, pong".into());
            }
            Step::Expect(e)
        }
        "expect_close" => Step::ExpectClose(read(value)?),
        "expect_silence" => Step::ExpectSilence(read(value)?),
        "disconnect" => Step::Disconnect(read(value)?),
        "wait_ms" => Step::Wait(read(value)?),
        "sign_channel" => Step::SignChannel(read(value)?),
        "sign_user" => Step::SignUser(read(value)?),
        "rest" => {
            let r: Rest = read(value)?;
            if r.expect_body.is_some() && r.expect_text.is_some() {
                return Err("rest takes at most one of expect_body, expect_text".into());
            }
            if r.rest.body.is_some() && r.rest.body_text.is_some() {
                return Err("rest takes at most one of body, body_text".into());
            }
            Step::Rest(Box::new(r))
        }
        "hmac" => Step::Hmac(read(value)?),
        "rest_signature" => Step::RestSignature(read(value)?),
        _ => unreachable!("every kind is listed"),
    })
}

impl Transcript {
    pub fn parse(path: &Path, text: &str) -> Result<Transcript, String> {
        let (header, steps) = parse_lines(path, text, parse_step)?;
        let header: Header = header;
        check_header(path, &header.name, header.level, header.source.as_deref())?;
        Ok(Transcript {
            path: path.to_path_buf(),
            header,
            steps,
        })
    }

    /// The transcripts built into this binary.
    pub fn embedded() -> Result<Vec<Transcript>, String> {
        mod files {
            include!(concat!(env!("OUT_DIR"), "/transcripts.rs"));
        }
        files::TRANSCRIPTS
            .iter()
            .map(|(name, text)| {
                Transcript::parse(Path::new(name), text).map_err(|e| format!("{name}: {e}"))
            })
            .collect()
    }

    /// Every `*.jsonl` in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Transcript>, String> {
        load_dir(dir, Transcript::parse)
    }
}

/// The header and the numbered steps of a JSON Lines scenario (blank and `//` lines skipped).
pub(crate) fn parse_lines<H: serde::de::DeserializeOwned, S>(
    path: &Path,
    text: &str,
    parse_step: impl Fn(Value) -> Result<S, String>,
) -> Result<(H, Vec<(usize, S)>), String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with("//"));
    let (_, first) = lines
        .next()
        .ok_or_else(|| format!("{}: empty file", path.display()))?;
    let header: H = serde_json::from_str(first).map_err(|e| format!("header: {e}"))?;
    let steps = lines
        .map(|(n, line)| {
            let value: Value = serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
            parse_step(value)
                .map(|s| (n, s))
                .map_err(|e| format!("line {n}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((header, steps))
}

/// What every scenario header must satisfy: its name is its file's, and a protocol-level one
/// cites its source.
pub(crate) fn check_header(
    path: &Path,
    name: &str,
    level: Level,
    source: Option<&str>,
) -> Result<(), String> {
    if level == Level::Protocol && source.unwrap_or("").is_empty() {
        return Err("header: a protocol-level scenario cites its \"source\"".into());
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if name != stem {
        return Err(format!(
            "header name {name:?} differs from the file name {stem:?}"
        ));
    }
    Ok(())
}

/// Parses every `*.jsonl` file in `dir`, in name order.
pub(crate) fn load_dir<T>(
    dir: &Path,
    parse: impl Fn(&Path, &str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            parse(p, &text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

//! The client scenario format (`conformance/clients/*.jsonl`, described in
//! `conformance/CLIENTS.md`): a header line, then one step per line, each step naming what the
//! scripted server does or expects and what the driver is told or must report.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::conformance::transcript::{check_header, parse_lines, Level, SignChannel, SignUser};

#[derive(Debug, Clone)]
pub struct Scenario {
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
    pub feature: String,
    pub level: Level,
    pub source: Option<String>,
    /// What the auth endpoint signs as a presence member (a JSON string).
    pub channel_data: Option<String>,
    /// What the user-auth endpoint signs in as (a JSON string).
    pub user_data: Option<String>,
    /// Extra options of every `connect` command.
    #[serde(default)]
    pub connect: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Driver(DriverStep),
    Accept(Accept),
    Establish(Establish),
    Send(Send),
    Close(Close),
    Drop(DropStep),
    Expect(Expect),
    ExpectSilence(ExpectSilence),
    ExpectClose(ExpectClose),
    ExpectNoConnection(ExpectNoConnection),
    Report(ReportStep),
    NoReport(NoReport),
    AuthReply(AuthReply),
    UserAuthReply(UserAuthReply),
    ExpectAuthRequest(ExpectAuthRequest),
    ExpectUserAuthRequest(ExpectUserAuthRequest),
    SignChannel(SignChannel),
    SignUser(SignUser),
    Wait(Wait),
}

/// A command for the driver: `connect`, `subscribe`, `unsubscribe`, `trigger`, `signin`,
/// `disconnect`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverStep {
    pub driver: String,
    pub channel: Option<String>,
    pub event: Option<String>,
    pub data: Option<Value>,
    /// With `connect`: options over the defaults and the header's.
    #[serde(default)]
    pub options: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    pub accept: String,
    /// Query parameters that must be present with these values (others may be too).
    #[serde(default)]
    pub query: Map<String, Value>,
    pub timeout_ms: Option<u64>,
    /// The connection may not arrive sooner than this after the previous step.
    pub min_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Establish {
    pub establish: String,
    pub activity_timeout: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    pub send: String,
    pub frame: Option<Value>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Close {
    pub close: String,
    pub code: u16,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropStep {
    pub drop: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub expect: String,
    pub frame: Value,
    pub timeout_ms: Option<u64>,
    pub min_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSilence {
    pub expect_silence: String,
    pub ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectClose {
    pub expect_close: String,
    pub code: Option<u16>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectNoConnection {
    pub expect_no_connection: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportStep {
    pub report: Map<String, Value>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoReport {
    pub no_report: Map<String, Value>,
    pub ms: u64,
}

/// How the auth endpoint answers the next request: a status (with a text body), or a JSON body
/// (templates applied), or a raw text body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub status: Option<u16>,
    pub body: Option<Value>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthReply {
    pub auth_reply: Reply,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAuthReply {
    pub user_auth_reply: Reply,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectAuthRequest {
    pub expect_auth_request: Map<String, Value>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectUserAuthRequest {
    pub expect_user_auth_request: Map<String, Value>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    pub wait_ms: u64,
}

/// The key that decides a line's step kind.
const STEP_KINDS: &[&str] = &[
    "driver",
    "accept",
    "establish",
    "send",
    "close",
    "drop",
    "expect",
    "expect_silence",
    "expect_close",
    "expect_no_connection",
    "report",
    "no_report",
    "auth_reply",
    "user_auth_reply",
    "expect_auth_request",
    "expect_user_auth_request",
    "sign_channel",
    "sign_user",
    "wait_ms",
];

/// The driver commands a scenario may give.
pub const COMMANDS: &[&str] = &[
    "connect",
    "subscribe",
    "unsubscribe",
    "trigger",
    "signin",
    "disconnect",
];

fn parse_step(value: Value) -> Result<Step, String> {
    let Value::Object(map) = &value else {
        return Err("a step must be a JSON object".into());
    };
    let kinds: Vec<&str> = STEP_KINDS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
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
        "driver" => {
            let d: DriverStep = read(value)?;
            if !COMMANDS.contains(&d.driver.as_str()) {
                return Err(format!("unknown driver command {:?}", d.driver));
            }
            let needs_channel =
                matches!(d.driver.as_str(), "subscribe" | "unsubscribe" | "trigger");
            if needs_channel != d.channel.is_some() {
                return Err(format!(
                    "{} takes a channel exactly when it names one",
                    d.driver
                ));
            }
            if (d.driver == "trigger") != (d.event.is_some() && d.data.is_some()) {
                return Err("trigger takes an event and data, and only trigger does".into());
            }
            Step::Driver(d)
        }
        "accept" => Step::Accept(read(value)?),
        "establish" => Step::Establish(read(value)?),
        "send" => {
            let s: Send = read(value)?;
            if s.frame.is_some() == s.text.is_some() {
                return Err("send needs exactly one of frame, text".into());
            }
            Step::Send(s)
        }
        "close" => Step::Close(read(value)?),
        "drop" => Step::Drop(read(value)?),
        "expect" => Step::Expect(read(value)?),
        "expect_silence" => Step::ExpectSilence(read(value)?),
        "expect_close" => Step::ExpectClose(read(value)?),
        "expect_no_connection" => Step::ExpectNoConnection(read(value)?),
        "report" => Step::Report(read(value)?),
        "no_report" => Step::NoReport(read(value)?),
        "auth_reply" => Step::AuthReply(read(value)?),
        "user_auth_reply" => Step::UserAuthReply(read(value)?),
        "expect_auth_request" => Step::ExpectAuthRequest(read(value)?),
        "expect_user_auth_request" => Step::ExpectUserAuthRequest(read(value)?),
        "sign_channel" => Step::SignChannel(read(value)?),
        "sign_user" => Step::SignUser(read(value)?),
        "wait_ms" => Step::Wait(read(value)?),
        _ => unreachable!("every kind is listed"),
    })
}

impl Scenario {
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, String> {
        let (header, steps) = parse_lines(path, text, parse_step)?;
        let header: Header = header;
        check_header(path, &header.name, header.level, header.source.as_deref())?;
        Ok(Scenario {
            path: path.to_path_buf(),
            header,
            steps,
        })
    }

    /// The scenarios built into this binary.
    pub fn embedded() -> Result<Vec<Scenario>, String> {
        mod files {
            include!(concat!(env!("OUT_DIR"), "/client_scenarios.rs"));
        }
        files::SCENARIOS
            .iter()
            .map(|(name, text)| {
                Scenario::parse(Path::new(name), text).map_err(|e| format!("{name}: {e}"))
            })
            .collect()
    }

    /// Every `*.jsonl` in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
        crate::conformance::transcript::load_dir(dir, Scenario::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Scenario, String> {
        let header =
            r#"{"name": "x", "feature": "Connection", "level": "protocol", "source": "docs"}"#;
        let text = std::iter::once(header)
            .chain(lines.iter().copied())
            .collect::<Vec<_>>()
            .join("\n");
        Scenario::parse(Path::new("x.jsonl"), &text)
    }

    #[test]
    fn steps_are_read_and_bad_ones_named_with_their_line() {
        let scenario = parse(&[
            r#"{"driver": "connect"}"#,
            r#"{"accept": "c1", "query": {"protocol": "7"}, "min_ms": 900}"#,
            r#"{"driver": "trigger", "channel": "private-x", "event": "client-a", "data": {}}"#,
            r#"{"report": {"report": "state", "state": "connected"}}"#,
        ])
        .expect("parses");
        assert_eq!(scenario.steps.len(), 4);
        assert!(matches!(&scenario.steps[1], (3, Step::Accept(a)) if a.min_ms == Some(900)));
        let cases = [
            (
                r#"{"driver": "jump"}"#,
                "line 2: unknown driver command \"jump\"",
            ),
            (
                r#"{"driver": "subscribe"}"#,
                "line 2: subscribe takes a channel exactly when it names one",
            ),
            (
                r#"{"driver": "trigger", "channel": "c", "event": "client-a"}"#,
                "line 2: trigger takes an event and data, and only trigger does",
            ),
            (
                r#"{"send": "c1"}"#,
                "line 2: send needs exactly one of frame, text",
            ),
            (
                r#"{"accept": "c1", "expect": "c1", "frame": {}}"#,
                "line 2: ambiguous step: has [\"accept\", \"expect\"]",
            ),
        ];
        for (line, error) in cases {
            assert_eq!(parse(&[line]).unwrap_err(), error, "{line}");
        }
        let unsourced = r#"{"name": "x", "feature": "Connection", "level": "protocol"}"#;
        assert!(Scenario::parse(Path::new("x.jsonl"), unsourced)
            .unwrap_err()
            .contains("cites its \"source\""));
    }
}

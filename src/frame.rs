//! The wire format: parsing what clients send (protocol §3) and building what the server sends.
//!
//! Outgoing frames are serialized once into a shared [`Frame`] and the same bytes go to every
//! recipient. Client-event `data` and REST-triggered `data` are relayed byte for byte.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{error::FrameError, websocket::codec};

/// One server-to-client message, serialized once and shared by all its recipients: the complete
/// WebSocket frame (header and JSON text), so a connection writes it without copying.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Frames a JSON text that has `codec::MAX_HEADER` spare bytes in front of it.
    fn seal(buf: Vec<u8>) -> Frame {
        Frame(codec::seal(buf, codec::OP_TEXT))
    }

    /// The bytes on the wire.
    pub fn into_wire(self) -> Bytes {
        self.0
    }

    /// The JSON text, for transports that carry it in another envelope.
    pub fn text(&self) -> &str {
        let payload = &self.0[codec::payload_offset(&self.0)..];
        // SAFETY: every Frame is built from a `str` (see the constructors below).
        unsafe { std::str::from_utf8_unchecked(payload) }
    }

    /// Bytes this frame holds while it is queued.
    pub fn size(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Frame {
        Frame(codec::encode(codec::OP_TEXT, text.as_bytes()))
    }
}

impl std::ops::Deref for Frame {
    type Target = str;
    fn deref(&self) -> &str {
        self.text()
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({:?})", self.text())
    }
}

/// A parsed client-to-server message.
#[derive(Debug, PartialEq)]
pub enum ClientFrame {
    Ping,
    Pong,
    Subscribe(SubscribeRequest),
    Unsubscribe { channel: String },
    Signin(SigninRequest),
    ClientEvent(ClientEvent),
}

#[derive(Debug, PartialEq)]
pub struct SigninRequest {
    pub auth: Option<String>,
    pub user_data: Option<String>,
}

#[derive(Debug, PartialEq)]
pub struct SubscribeRequest {
    pub channel: String,
    pub auth: Option<String>,
    pub channel_data: Option<String>,
}

#[derive(Debug)]
pub struct ClientEvent {
    pub event: String,
    pub channel: Option<String>,
    /// Exactly as the client sent it; `null` when absent.
    pub data: Box<RawValue>,
}

impl PartialEq for ClientEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
            && self.channel == other.channel
            && self.data.get() == other.data.get()
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// `data` of subscribe and unsubscribe. Fields are kept loose so each wrong type gets its own
/// message instead of a generic parse error.
#[derive(Deserialize)]
struct ChannelData {
    channel: Option<serde_json::Value>,
    auth: Option<serde_json::Value>,
    channel_data: Option<serde_json::Value>,
    user_data: Option<serde_json::Value>,
}

/// A string field, or `None` when absent or null; other types become their JSON text so that
/// the error names what was sent.
fn loose_string(value: Option<serde_json::Value>) -> Option<String> {
    match value {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

impl ClientFrame {
    /// Parses one text frame. Never panics; every malformed input maps to a specific error.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
        if !raw.get().starts_with('{') {
            return Err(FrameError::NotAnObject);
        }
        let envelope: Envelope =
            serde_json::from_str(raw.get()).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
        let event: String = envelope
            .event
            .and_then(|e| serde_json::from_str(e.get()).ok())
            .ok_or(FrameError::MissingEvent)?;
        let channel: Option<String> = match envelope.channel {
            None => None,
            Some(c) if c.get() == "null" => None,
            Some(c) => Some(
                serde_json::from_str(c.get()).map_err(|_| FrameError::WrongType {
                    field: "channel",
                    expected: "a string",
                })?,
            ),
        };

        match event.as_str() {
            "pusher:ping" => Ok(ClientFrame::Ping),
            "pusher:pong" => Ok(ClientFrame::Pong),
            "pusher:subscribe" => {
                let data = channel_data(envelope.data)?;
                Ok(ClientFrame::Subscribe(SubscribeRequest {
                    channel: required_channel(data.channel)?,
                    auth: loose_string(data.auth),
                    channel_data: encoded_string(data.channel_data, "data.channel_data")?,
                }))
            }
            "pusher:unsubscribe" => {
                let data = channel_data(envelope.data)?;
                Ok(ClientFrame::Unsubscribe {
                    channel: required_channel(data.channel)?,
                })
            }
            "pusher:signin" => {
                let data = channel_data(envelope.data)?;
                Ok(ClientFrame::Signin(SigninRequest {
                    auth: loose_string(data.auth),
                    user_data: encoded_string(data.user_data, "data.user_data")?,
                }))
            }
            e if e.starts_with("pusher:") || e.starts_with("pusher_internal:") => {
                Err(FrameError::UnknownPusherEvent(event))
            }
            e if e.starts_with("client-") => Ok(ClientFrame::ClientEvent(ClientEvent {
                data: envelope
                    .data
                    .map(|d| d.to_owned())
                    .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON")),
                event,
                channel,
            })),
            _ => Err(FrameError::NotAClientEvent(event)),
        }
    }
}

fn channel_data(data: Option<&RawValue>) -> Result<ChannelData, FrameError> {
    let wrong = FrameError::WrongType {
        field: "data",
        expected: "an object",
    };
    let raw = data.ok_or_else(|| wrong.clone())?;
    if !raw.get().starts_with('{') {
        return Err(wrong);
    }
    serde_json::from_str(raw.get()).map_err(|_| wrong)
}

/// A field that must hold JSON text as a string (`channel_data`, `user_data`); absent or null is
/// `None`.
fn encoded_string(
    value: Option<serde_json::Value>,
    field: &'static str,
) -> Result<Option<String>, FrameError> {
    match value {
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Null) | None => Ok(None),
        Some(_) => Err(FrameError::WrongType {
            field,
            expected: "a JSON-encoded string",
        }),
    }
}

fn required_channel(value: Option<serde_json::Value>) -> Result<String, FrameError> {
    match value {
        Some(serde_json::Value::String(s)) => Ok(s),
        _ => Err(FrameError::MissingParameter("data.channel")),
    }
}

#[derive(Serialize)]
struct Out<'a, D: Serialize + ?Sized> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn build<D: Serialize + ?Sized>(
    event: &str,
    channel: Option<&str>,
    data: Option<&D>,
    user_id: Option<&str>,
) -> Frame {
    let out = Out {
        event,
        channel,
        data,
        user_id,
    };
    Frame::seal(json_after_header(&out))
}

/// `value` as JSON text, behind room for the frame header.
fn json_after_header<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.resize(codec::MAX_HEADER, 0);
    serde_json::to_writer(&mut buf, value).expect("server frames always serialize");
    buf
}

/// Serializes `value` to a JSON string, for the `data` fields that the protocol string-encodes.
fn encoded<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("server payloads always serialize")
}

#[derive(Serialize)]
struct Empty {}

pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> Frame {
    #[derive(Serialize)]
    struct Established<'a> {
        socket_id: &'a str,
        activity_timeout: u64,
    }
    let data = encoded(&Established {
        socket_id,
        activity_timeout: activity_timeout_secs,
    });
    build("pusher:connection_established", None, Some(&data), None)
}

pub fn error(message: &str, code: Option<u16>) -> Frame {
    #[derive(Serialize)]
    struct ErrorData<'a> {
        message: &'a str,
        code: Option<u16>,
    }
    build(
        "pusher:error",
        None,
        Some(&ErrorData { message, code }),
        None,
    )
}

pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> Frame {
    #[derive(Serialize)]
    struct SubscriptionError<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    }
    build(
        "pusher:subscription_error",
        Some(channel),
        Some(&SubscriptionError {
            kind,
            error: message,
            status,
        }),
        None,
    )
}

pub fn ping() -> Frame {
    build("pusher:ping", None, Some(&Empty {}), None)
}

pub fn pong() -> Frame {
    build("pusher:pong", None, Some(&Empty {}), None)
}

pub fn subscription_succeeded(channel: &str) -> Frame {
    build(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Some("{}"),
        None,
    )
}

/// A presence channel member as the hub stores it.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: String,
    pub user_info: Option<Arc<RawValue>>,
}

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        self.user_id == other.user_id
            && self.user_info.as_ref().map(|i| i.get()) == other.user_info.as_ref().map(|i| i.get())
    }
}

pub fn presence_subscription_succeeded<'a>(
    channel: &str,
    members: impl IntoIterator<Item = &'a Member>,
) -> Frame {
    #[derive(Serialize)]
    struct Presence<'a> {
        count: usize,
        hash: BTreeMap<&'a str, Option<&'a RawValue>>,
        ids: Vec<&'a str>,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        presence: Presence<'a>,
    }
    let hash: BTreeMap<&str, Option<&RawValue>> = members
        .into_iter()
        .map(|m| (m.user_id.as_str(), m.user_info.as_deref()))
        .collect();
    let ids = hash.keys().copied().collect();
    let data = encoded(&Data {
        presence: Presence {
            count: hash.len(),
            hash,
            ids,
        },
    });
    build(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Some(&data),
        None,
    )
}

pub fn member_added(channel: &str, member: &Member) -> Frame {
    #[derive(Serialize)]
    struct Added<'a> {
        user_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_info: Option<&'a RawValue>,
    }
    let data = encoded(&Added {
        user_id: &member.user_id,
        user_info: member.user_info.as_deref(),
    });
    build(
        "pusher_internal:member_added",
        Some(channel),
        Some(&data),
        None,
    )
}

pub fn member_removed(channel: &str, user_id: &str) -> Frame {
    #[derive(Serialize)]
    struct Removed<'a> {
        user_id: &'a str,
    }
    let data = encoded(&Removed { user_id });
    build(
        "pusher_internal:member_removed",
        Some(channel),
        Some(&data),
        None,
    )
}

pub fn signin_success(user_data: &str) -> Frame {
    #[derive(Serialize)]
    struct Success<'a> {
        user_data: &'a str,
    }
    build(
        "pusher:signin_success",
        None,
        Some(&Success { user_data }),
        None,
    )
}

/// `online`/`offline` lists for a watcher; empty lists are left out.
pub fn watchlist_events(online: &[String], offline: &[String]) -> Frame {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
        user_ids: &'a [String],
    }
    #[derive(Serialize)]
    struct Data<'a> {
        events: Vec<Entry<'a>>,
    }
    let events = [("online", online), ("offline", offline)]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, user_ids)| Entry { name, user_ids })
        .collect();
    let data = encoded(&Data { events });
    build("pusher_internal:watchlist_events", None, Some(&data), None)
}

pub fn subscription_count(channel: &str, count: usize) -> Frame {
    #[derive(Serialize)]
    struct Count {
        subscription_count: usize,
    }
    let data = encoded(&Count {
        subscription_count: count,
    });
    build(
        "pusher_internal:subscription_count",
        Some(channel),
        Some(&data),
        None,
    )
}

pub fn cache_miss(channel: &str) -> Frame {
    build::<()>("pusher:cache_miss", Some(channel), None, None)
}

/// An event triggered through the REST API, from `data` as the JSON string literal the publisher
/// sent: its bytes go into the frame as they are, with no unescaping and escaping again.
pub fn channel_event_raw(event: &str, channel: &str, data: &RawValue) -> Frame {
    build(event, Some(channel), Some(data), None)
}

/// A client event relayed to the other subscribers, with the sender's presence `user_id`.
pub fn client_event(event: &str, channel: &str, data: &RawValue, user_id: Option<&str>) -> Frame {
    build(event, Some(channel), Some(data), user_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_client_event() {
        assert_eq!(
            ClientFrame::parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::parse(
                r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":1}"}}"#
            ),
            Ok(ClientFrame::Subscribe(SubscribeRequest {
                channel: "presence-a".into(),
                auth: Some("k:s".into()),
                channel_data: Some(r#"{"user_id":1}"#.into()),
            }))
        );
        assert_eq!(
            ClientFrame::parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"a"}}"#),
            Ok(ClientFrame::Unsubscribe {
                channel: "a".into()
            })
        );
        let Ok(ClientFrame::ClientEvent(e)) = ClientFrame::parse(
            r#"{"event":"client-x","channel":"private-a","data":{"b": 1.50,"a":[]}}"#,
        ) else {
            panic!("not a client event")
        };
        assert_eq!(e.data.get(), r#"{"b": 1.50,"a":[]}"#);
    }

    #[test]
    fn each_malformed_input_has_its_own_error() {
        let cases: [(&str, FrameError); 8] = [
            ("[1]", FrameError::NotAnObject),
            ("\"x\"", FrameError::NotAnObject),
            ("{}", FrameError::MissingEvent),
            (r#"{"event":5}"#, FrameError::MissingEvent),
            (
                r#"{"event":"client-a","channel":5}"#,
                FrameError::WrongType {
                    field: "channel",
                    expected: "a string",
                },
            ),
            (
                r#"{"event":"pusher:subscribe","data":"x"}"#,
                FrameError::WrongType {
                    field: "data",
                    expected: "an object",
                },
            ),
            (
                r#"{"event":"pusher:subscribe","data":{}}"#,
                FrameError::MissingParameter("data.channel"),
            ),
            (
                r#"{"event":"pusher:bogus"}"#,
                FrameError::UnknownPusherEvent("pusher:bogus".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(ClientFrame::parse(input), Err(expected), "{input}");
        }
        assert!(matches!(
            ClientFrame::parse("{nope"),
            Err(FrameError::InvalidJson(_))
        ));
        assert_eq!(
            ClientFrame::parse(r#"{"event":"hello"}"#),
            Err(FrameError::NotAClientEvent("hello".into()))
        );
    }

    #[test]
    fn server_frames_have_the_exact_wire_shape() {
        assert_eq!(
            &*connection_established("1.2", 120),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#
        );
        assert_eq!(
            &*error("nope", None),
            r#"{"event":"pusher:error","data":{"message":"nope","code":null}}"#
        );
        assert_eq!(
            &*subscription_succeeded("a"),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"a","data":"{}"}"#
        );
        assert_eq!(
            &*cache_miss("cache-a"),
            r#"{"event":"pusher:cache_miss","channel":"cache-a"}"#
        );
        assert_eq!(
            &*channel_event_raw(
                "e",
                "c",
                &RawValue::from_string(r#""{\"a\":1}""#.into()).unwrap()
            ),
            r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#
        );
        let info: Arc<RawValue> = RawValue::from_string(r#"{"name":"Ann"}"#.into())
            .unwrap()
            .into();
        let members = [
            Member {
                user_id: "7".into(),
                user_info: None,
            },
            Member {
                user_id: "42".into(),
                user_info: Some(info),
            },
        ];
        assert_eq!(
            &*presence_subscription_succeeded("presence-r", &members),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-r","data":"{\"presence\":{\"count\":2,\"hash\":{\"42\":{\"name\":\"Ann\"},\"7\":null},\"ids\":[\"42\",\"7\"]}}"}"#
        );
        assert_eq!(
            &*member_added("presence-r", &members[1]),
            r#"{"event":"pusher_internal:member_added","channel":"presence-r","data":"{\"user_id\":\"42\",\"user_info\":{\"name\":\"Ann\"}}"}"#
        );
        let data = RawValue::from_string(r#"{"on": true}"#.into()).unwrap();
        assert_eq!(
            &*client_event("client-t", "presence-r", &data, Some("42")),
            r#"{"event":"client-t","channel":"presence-r","data":{"on": true},"user_id":"42"}"#
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn parser_never_panics_on_arbitrary_text(text in ".{0,300}") {
            let _ = ClientFrame::parse(&text);
        }

        #[test]
        fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = ClientFrame::parse(&text);
        }

        #[test]
        fn parser_never_panics_on_arbitrary_json(value in arb_json()) {
            let _ = ClientFrame::parse(&value.to_string());
        }

        #[test]
        fn parser_never_panics_on_envelopes_with_arbitrary_fields(
            event in prop_oneof![Just("pusher:subscribe".to_string()), Just("pusher:unsubscribe".to_string()), Just("pusher:ping".to_string()), "client-[a-z]{0,5}", ".{0,10}"],
            channel in arb_json(),
            data in arb_json(),
        ) {
            let frame = serde_json::json!({"event": event, "channel": channel, "data": data});
            let _ = ClientFrame::parse(&frame.to_string());
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("event".to_string()),
                        Just("channel".to_string()),
                        Just("data".to_string()),
                        Just("auth".to_string()),
                        Just("channel_data".to_string()),
                        ".{0,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

//! Entry points for the fuzz targets in `fuzz/`: each feeds arbitrary bytes to one parser that
//! takes input from the network or from files, and must never panic.

use std::path::Path;

use bytes::BytesMut;

use crate::{
    apps::Apps,
    config::{AppConfig, Config},
    conformance::transcript::Transcript,
    frame::ClientFrame,
    http::{auth, events},
    websocket::codec::Decoder,
};

/// The Pusher JSON frame parser.
pub fn client_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientFrame::parse(text);
    }
}

/// The WebSocket decoder, fed in chunks whose sizes come from the input itself.
pub fn websocket_frames(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = Decoder::new(4096);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// REST authentication: `METHOD\nPATH\nQUERY\nBODY`.
pub fn rest_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, '\n');
    let (method, path, query) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let body = parts.next().unwrap_or("").as_bytes();
    let apps = Apps::new(&[AppConfig::default()]);
    let params = auth::parse_query(Some(query));
    let app_id = path.split('/').nth(2).unwrap_or("");
    if auth::verify_query(&apps, app_id, method, path, &params, 1_700_000_000).is_ok() {
        let _ = auth::check_body_md5(&params, body);
    }
}

/// The REST event and batch bodies.
pub fn rest_bodies(data: &[u8]) {
    let app = AppConfig::default();
    let _ = events::check_trigger_body(&app, data);
    let _ = events::check_batch_body(&app, data);
}

/// The TOML configuration file.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text);
    }
}

/// A conformance transcript file.
pub fn transcript(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Transcript::parse(Path::new("fuzz.jsonl"), text);
    }
}

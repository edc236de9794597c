//! The lines of a receiving response, as pusher-js's HTTP transports read them (one per line):
//! `o` the session opened, `a[...]` Pusher frames each as a JSON string, `h` a heartbeat,
//! `c[code,"reason"]` the close, with the WebSocket's close codes.

use bytes::Bytes;

use crate::frame::Frame;

pub fn open() -> Bytes {
    Bytes::from_static(b"o\n")
}

pub fn heartbeat() -> Bytes {
    Bytes::from_static(b"h\n")
}

/// `a["{...}","{...}"]`: each frame's JSON text as a JSON string.
pub fn frames(frames: &[Frame]) -> Bytes {
    let texts: Vec<&str> = frames.iter().map(|f| f.text()).collect();
    let mut line = b"a".to_vec();
    serde_json::to_writer(&mut line, &texts).expect("strings serialize");
    line.push(b'\n');
    line.into()
}

pub fn close(code: u16, reason: &str) -> Bytes {
    let mut line = b"c".to_vec();
    serde_json::to_writer(&mut line, &(code, reason)).expect("serializes");
    line.push(b'\n');
    line.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_pusher_js_reads_them() {
        let frame = Frame::from(r#"{"event":"e","data":"{\"a\":1}"}"#);
        assert_eq!(
            &frames(&[frame.clone(), frame])[..],
            br#"a["{\"event\":\"e\",\"data\":\"{\\\"a\\\":1}\"}","{\"event\":\"e\",\"data\":\"{\\\"a\\\":1}\"}"]
"#
        );
        assert_eq!(
            &close(4200, "Server is \"off\"")[..],
            b"c[4200,\"Server is \\\"off\\\"\"]\n"
        );
        assert_eq!(&open()[..], b"o\n");
        assert_eq!(&heartbeat()[..], b"h\n");
    }
}

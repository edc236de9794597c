//! RFC 6455 framing, server side: decoding what clients send (masked, possibly fragmented) under
//! a message-size cap, and encoding what the server sends (unmasked, one frame per message).
//!
//! Every rule a client can break maps to the close code the RFC gives it: 1002 for a protocol
//! error, 1007 for text that is not UTF-8, 1009 for a message over the cap. The cap is checked
//! against the frame header, before any of the payload is buffered, so a client can make the
//! server hold at most one capped message.

use bytes::{Buf, Bytes, BytesMut};

/// Control frames carry at most this many payload bytes (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    /// Binary messages are refused by the protocol layer; their content is not kept.
    Binary,
    Ping(Bytes),
    Pong,
    /// The client's close frame, with its status code when it sent one.
    Close(Option<u16>),
}

/// A client broke the framing rules; the connection is closed with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn protocol(reason: &'static str) -> Violation {
    Violation { code: 1002, reason }
}

pub const TOO_BIG: u16 = 1009;

/// Incremental decoder: feed it the bytes read so far, take messages out.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// The fragments of an unfinished data message: whether it is text, and its bytes so far.
    partial: Option<(bool, Vec<u8>)>,
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: usize,
    /// Header bytes, mask key included.
    size: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message,
            partial: None,
        }
    }

    /// Bytes held for an unfinished fragmented message.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |(_, b)| b.len())
    }

    /// Takes the next complete message out of `buf`, or `None` when more bytes are needed.
    /// Consumed bytes are removed from `buf`; an incomplete frame is left where it is.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, Violation> {
        loop {
            let Some(header) = self.header(buf)? else {
                return Ok(None);
            };
            if buf.len() < header.size + header.len {
                return Ok(None);
            }
            buf.advance(header.size);
            let mut payload = buf.split_to(header.len);
            unmask(&mut payload, header.mask);
            if let Some(message) = self.complete(header.fin, header.opcode, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// Parses and checks the header at the start of `buf`, if it is all there.
    fn header(&self, buf: &BytesMut) -> Result<Option<Header>, Violation> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(protocol("reserved bits set"));
        }
        let opcode = b0 & 0x0F;
        let control = opcode >= OP_CLOSE;
        if !matches!(
            opcode,
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(protocol("unknown opcode"));
        }
        if b1 & 0x80 == 0 {
            return Err(protocol("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut be = [0u8; 8];
                be.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(protocol("payload length has its high bit set"));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if control {
            if !fin {
                return Err(protocol("fragmented control frame"));
            }
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(protocol("control frame over 125 bytes"));
            }
        } else {
            match (opcode, &self.partial) {
                (OP_CONTINUATION, None) => return Err(protocol("continuation without a start")),
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    return Err(protocol("new message inside a fragmented one"))
                }
                _ => {}
            }
            let total = len.saturating_add(self.buffered() as u64);
            if total > self.max_message as u64 {
                return Err(Violation {
                    code: TOO_BIG,
                    reason: "message too big",
                });
            }
        }
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&buf[at..at + 4]);
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            // Bounded by the message cap or the control limit just above.
            len: len as usize,
            size: at + 4,
        }))
    }

    fn complete(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: BytesMut,
    ) -> Result<Option<Message>, Violation> {
        match opcode {
            OP_PING => Ok(Some(Message::Ping(payload.freeze()))),
            OP_PONG => Ok(Some(Message::Pong)),
            OP_CLOSE => close_frame(&payload).map(Some),
            OP_TEXT | OP_BINARY if fin => data_message(opcode == OP_TEXT, payload.to_vec()),
            OP_TEXT | OP_BINARY => {
                self.partial = Some((opcode == OP_TEXT, payload.to_vec()));
                Ok(None)
            }
            _ => {
                let (text, mut bytes) = self.partial.take().expect("checked in the header");
                bytes.extend_from_slice(&payload);
                if fin {
                    data_message(text, bytes)
                } else {
                    self.partial = Some((text, bytes));
                    Ok(None)
                }
            }
        }
    }
}

fn data_message(text: bool, bytes: Vec<u8>) -> Result<Option<Message>, Violation> {
    if !text {
        return Ok(Some(Message::Binary));
    }
    String::from_utf8(bytes)
        .map(|s| Some(Message::Text(s)))
        .map_err(|_| Violation {
            code: 1007,
            reason: "text message is not valid UTF-8",
        })
}

fn close_frame(payload: &[u8]) -> Result<Message, Violation> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(protocol("close frame with a one-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(protocol("invalid close code"));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(Violation {
                    code: 1007,
                    reason: "close reason is not valid UTF-8",
                });
            }
            Ok(Message::Close(Some(code)))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Header bytes of an unmasked server frame with `len` payload bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Room reserved in front of a payload that is serialized before its length is known.
pub const MAX_HEADER: usize = 10;

/// Writes the header of a final, unmasked frame into the `header_len(len)` bytes of `out`.
pub fn write_header(out: &mut [u8], opcode: u8, len: usize) {
    out[0] = 0x80 | opcode;
    match out.len() {
        2 => out[1] = len as u8,
        4 => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// `buf` holds `MAX_HEADER` spare bytes followed by a payload: writes the header just in front
/// of the payload and returns the complete frame, without copying the payload.
pub fn seal(mut buf: Vec<u8>, opcode: u8) -> Bytes {
    let len = buf.len() - MAX_HEADER;
    let start = MAX_HEADER - header_len(len);
    write_header(&mut buf[start..MAX_HEADER], opcode, len);
    Bytes::from(buf).slice(start..)
}

/// One complete server frame.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(MAX_HEADER + payload.len());
    buf.resize(MAX_HEADER, 0);
    buf.extend_from_slice(payload);
    seal(buf, opcode)
}

/// A close frame with `code` and a reason cut to fit the 125-byte control limit.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &payload)
}

/// Where the payload of a server frame starts.
pub fn payload_offset(frame: &[u8]) -> usize {
    match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn decode_all(max: usize, bytes: &[u8]) -> Result<Vec<Message>, Violation> {
        let mut decoder = Decoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Byte by byte: every split point of a frame must work.
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = decoder.decode(&mut buf)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    #[test]
    fn text_ping_pong_and_close_arrive_whole_at_any_split() {
        let mut input = client(0x81, b"hello");
        input.extend(client(0x89, b"p"));
        input.extend(client(0x8A, b""));
        input.extend(client(0x81, &[b'x'; 300]));
        input.extend(client(0x88, &[0x03, 0xE8, b'b', b'y', b'e']));
        let messages = decode_all(1000, &input).unwrap();
        assert_eq!(
            messages,
            vec![
                Message::Text("hello".into()),
                Message::Ping(Bytes::from_static(b"p")),
                Message::Pong,
                Message::Text("x".repeat(300)),
                Message::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn fragments_join_and_control_frames_may_interleave() {
        let mut input = client(0x01, b"hel");
        input.extend(client(0x89, b""));
        input.extend(client(0x80, b"lo"));
        assert_eq!(
            decode_all(100, &input).unwrap(),
            vec![Message::Ping(Bytes::new()), Message::Text("hello".into())]
        );
    }

    #[test]
    fn each_broken_rule_has_its_close_code() {
        let code = |bytes: Vec<u8>| decode_all(20, &bytes).unwrap_err().code;
        assert_eq!(code(client(0xC1, b"x")), 1002, "reserved bit");
        assert_eq!(code(client(0x83, b"x")), 1002, "opcode 3");
        assert_eq!(code(vec![0x81, 0x01, b'x']), 1002, "unmasked");
        assert_eq!(code(client(0x09, b"")), 1002, "fragmented ping");
        assert_eq!(code(client(0x89, &[0; 126])), 1002, "long ping");
        assert_eq!(code(client(0x80, b"x")), 1002, "stray continuation");
        let mut two_starts = client(0x01, b"a");
        two_starts.extend(client(0x01, b"b"));
        assert_eq!(code(two_starts), 1002, "new message mid-fragment");
        assert_eq!(code(client(0x81, &[0xFF, 0xFE])), 1007, "bad UTF-8");
        assert_eq!(code(client(0x88, &[0x03])), 1002, "one-byte close");
        assert_eq!(code(client(0x88, &[0x03, 0xED])), 1002, "close code 1005");
        assert_eq!(code(client(0x81, &[b'a'; 21])), 1009, "over the cap");
        let mut fragmented = client(0x01, &[b'a'; 15]);
        fragmented.extend(client(0x80, &[b'a'; 6]));
        assert_eq!(code(fragmented), 1009, "fragments over the cap");
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        let mut decoder = Decoder::new(1 << 10);
        let mut buf = BytesMut::from(&[0x81u8, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf).unwrap_err().code, TOO_BIG);
    }

    #[test]
    fn server_frames_have_the_shortest_length_form() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = vec![b'a'; len];
            let frame = encode(OP_TEXT, &payload);
            assert_eq!(frame[0], 0x81);
            assert_eq!(payload_offset(&frame), header_len(len));
            assert_eq!(frame.len(), header_len(len) + len);
            assert_eq!(&frame[header_len(len)..], &payload[..]);
        }
        let close = close(4100, &"é".repeat(100));
        assert_eq!(close[1] as usize, close.len() - 2);
        assert!(close.len() - 2 <= 125);
        assert_eq!(&close[2..4], &4100u16.to_be_bytes());
    }
}

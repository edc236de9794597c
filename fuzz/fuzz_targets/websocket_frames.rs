//! The server's WebSocket frame decoder: the first byte is the chunk size the input is fed in,
//! the rest raw client-to-server bytes (masked frames, fragments, control frames).
//! Seeds: fuzz/corpus/websocket_frames/ (regenerate with `python3 fuzz/seed.py`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poxide::fuzzing::websocket_frames(data);
});

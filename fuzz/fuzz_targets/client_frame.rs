//! The Pusher client frame JSON parser: one WebSocket text message as a client sends it.
//! Seeds: fuzz/corpus/client_frame/ (regenerate with `python3 fuzz/seed.py`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poxide::fuzzing::client_frame(data);
});

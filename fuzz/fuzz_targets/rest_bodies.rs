//! The REST events and batch_events JSON bodies.
//! Seeds: fuzz/corpus/rest_bodies/ (regenerate with `python3 fuzz/seed.py`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poxide::fuzzing::rest_bodies(data);
});

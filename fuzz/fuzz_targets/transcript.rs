//! The conformance transcript (JSONL) parser.
//! Seeds: fuzz/corpus/transcript/ (regenerate with `python3 fuzz/seed.py`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poxide::fuzzing::transcript(data);
});

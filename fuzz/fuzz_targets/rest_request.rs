//! REST authentication: the input is `METHOD\nPATH\nQUERY\nBODY` (the body is everything after
//! the third newline); checks the query-string signature, timestamp and body_md5.
//! Seeds: fuzz/corpus/rest_request/ (regenerate with `python3 fuzz/seed.py`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poxide::fuzzing::rest_request(data);
});

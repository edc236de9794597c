//! The TOML configuration file.
//! Seeds: fuzz/corpus/config_toml/ (regenerate with `python3 fuzz/seed.py`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    poxide::fuzzing::config_toml(data);
});

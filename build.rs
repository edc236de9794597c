//! Embeds the conformance transcripts and client scenarios in the binary, so `poxide
//! conformance` and `poxide client-conformance` work from any directory without a checkout.

use std::{env, fs, path::PathBuf};

fn main() {
    embed("conformance/transcripts", "TRANSCRIPTS", "transcripts.rs");
    embed("conformance/clients", "SCENARIOS", "client_scenarios.rs");
}

/// Writes `OUT_DIR/out` with a static `name` holding every `*.jsonl` of `dir` as (file name,
/// text), sorted by name.
fn embed(dir: &str, name: &str, out: &str) {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join(dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "jsonl"));
    files.sort();
    let mut text = format!("/// Every file as (file name, text), sorted by name.\npub static {name}: &[(&str, &str)] = &[\n");
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        text.push_str(&format!(
            "    ({file:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    text.push_str("];\n");
    let target = PathBuf::from(env::var("OUT_DIR").unwrap()).join(out);
    fs::write(target, text).unwrap();
}

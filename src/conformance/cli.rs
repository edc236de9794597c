//! `poxide conformance`: replays the transcripts against a running server and prints
//! `N passed, M failed, K skipped`.

use std::{path::PathBuf, process::ExitCode};

use super::{
    runner::{self, Credentials, Outcome, Target},
    transcript::Transcript,
};

#[derive(clap::Args, Debug)]
pub struct ConformanceArgs {
    /// WebSocket base URL of the server, e.g. ws://127.0.0.1:8080. Repeat it for the nodes of
    /// a cluster: each scenario's clients are spread over them in turn.
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// HTTP base URL for the REST API; defaults to the last WebSocket URL with http://
    #[arg(long)]
    pub http_url: Option<String>,
    #[arg(long, default_value = "app_id")]
    pub app_id: String,
    #[arg(long, default_value = "app_key")]
    pub key: String,
    #[arg(long, default_value = "secret")]
    pub secret: String,
    /// Directory of `*.jsonl` transcripts; the ones built into this binary when absent.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Only scenarios whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
}

pub async fn run(args: ConformanceArgs) -> ExitCode {
    let loaded = match &args.dir {
        Some(dir) => Transcript::load_dir(dir),
        None => Transcript::embedded(),
    };
    let transcripts = match loaded {
        Ok(t) => t,
        Err(e) => {
            eprintln!("poxide conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let ws_urls: Vec<String> = args
        .url
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    let http_url = args.http_url.clone().unwrap_or_else(|| {
        ws_urls
            .last()
            .expect("clap requires one --url")
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1)
    });
    let target = Target {
        ws_urls,
        http_url,
        default_app: Credentials {
            id: args.app_id,
            key: args.key,
            secret: args.secret,
        },
        second_app: None,
    };
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for transcript in &transcripts {
        let name = &transcript.header.name;
        if args
            .filter
            .as_ref()
            .is_some_and(|f| !name.contains(f.as_str()))
        {
            continue;
        }
        let outcome = if transcript.header.needs_configured_server() {
            Outcome::Skipped("needs server settings made for the scenario".into())
        } else {
            runner::run(transcript, &target).await.outcome
        };
        match outcome {
            Outcome::Passed => {
                passed += 1;
                println!("PASS {name}");
            }
            Outcome::Failed(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                println!("SKIP {name}: {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

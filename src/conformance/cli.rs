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
    /// Directory of `*.jsonl` transcripts (such as `--record` writes); the ones built into this
    /// binary when absent.
    #[arg(long, alias = "transcripts")]
    pub dir: Option<PathBuf>,
    /// Only scenarios whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Id of a second app on the server, for the isolation scenarios (with --key2, --secret2).
    #[arg(long)]
    pub app2_id: Option<String>,
    #[arg(long)]
    pub key2: Option<String>,
    #[arg(long)]
    pub secret2: Option<String>,
    /// The server is configured as every scenario's settings say (printed when a scenario is
    /// skipped): run those scenarios too.
    #[arg(long)]
    pub assume_configured: bool,
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
        second_app: match (args.app2_id, args.key2, args.secret2) {
            (Some(id), Some(key), Some(secret)) => Some(Credentials { id, key, secret }),
            (None, None, None) => None,
            _ => {
                eprintln!("poxide conformance: --app2-id, --key2 and --secret2 go together");
                return ExitCode::from(2);
            }
        },
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
        let header = &transcript.header;
        let outcome = match (&header.app, header.uses_second_app) {
            (_, true) if target.second_app.is_none() => Outcome::Skipped(
                "needs a second app: pass --app2-id, --key2 and --secret2".into(),
            ),
            (Some(settings), _) if !args.assume_configured => Outcome::Skipped(format!(
                "needs these settings on the server's default app (then pass --assume-configured): {}",
                serde_json::to_string(settings).unwrap_or_default()
            )),
            _ => runner::run(transcript, &target).await.outcome,
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
    if passed + failed + skipped == 0 {
        eprintln!("poxide conformance: no scenario matches the selection");
        return ExitCode::from(2);
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

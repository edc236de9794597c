//! `poxide conformance`: grades a running server on the transcripts and prints the report by
//! feature with `N passed, M failed, K skipped` per level (or writes it as JSON).

use std::{path::PathBuf, process::ExitCode};

use super::{
    features,
    grade::{self, Options, Report},
    runner::{Credentials, Target},
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
    /// Grade poxide's own choices too (message wording, limits and options the Pusher docs leave
    /// open), not only what the protocol requires.
    #[arg(long)]
    pub strict: bool,
    /// Scenarios run at once, each in a namespace of its own (scenarios marked exclusive run
    /// alone, after the others).
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Also write the report as JSON to this file (`-` for standard output, instead of text).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub async fn run(args: ConformanceArgs) -> ExitCode {
    let loaded = match &args.dir {
        Some(dir) => Transcript::load_dir(dir),
        None => Transcript::embedded(),
    };
    let mut transcripts = match loaded {
        Ok(t) => t,
        Err(e) => {
            eprintln!("poxide conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(filter) = &args.filter {
        transcripts.retain(|t| t.header.name.contains(filter.as_str()));
    }
    if transcripts.is_empty() {
        eprintln!("poxide conformance: no scenario matches the selection");
        return ExitCode::from(2);
    }
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
    let options = Options {
        strict: args.strict,
        jobs: args.jobs,
        assume_configured: args.assume_configured,
        run_id: run_id(),
    };
    let results = grade::grade(&transcripts, &target, &options).await;
    let report = Report::new(&results, args.strict, &features());
    if let Err(e) = report.output(args.json.as_deref()) {
        eprintln!("poxide conformance: {e}");
        return ExitCode::from(2);
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Four letters that differ between runs, so a run never meets the channels of an earlier one.
fn run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..4)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

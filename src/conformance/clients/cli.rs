//! `poxide client-conformance --driver "<command>"`: grades a client library through its driver
//! and prints the report by feature; with `--deviations`, compares the failures with the list of
//! those the library is known to have.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use super::{scenario::Scenario, FEATURES};
use crate::conformance::{grade::Report, runner::Outcome};

#[derive(clap::Args, Debug)]
pub struct ClientConformanceArgs {
    /// The driver program, run with `sh -c` once per scenario (see conformance/CLIENTS.md).
    #[arg(long)]
    pub driver: String,
    /// Directory of client scenarios; the ones built into this binary when absent.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Only scenarios whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Scenarios played at once, each with its own driver and server.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Also write the report as JSON to this file (`-` for standard output, instead of text).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A file of `scenario: reason` lines, the scenarios this library is known to fail. The run
    /// succeeds when exactly these fail (a reason starting with `(varies)` marks a scenario the
    /// library passes or fails depending on its own timing, as a known race).
    #[arg(long)]
    pub deviations: Option<PathBuf>,
    /// Print each failed scenario's exchange.
    #[arg(long)]
    pub verbose: bool,
}

/// What a library is known to do differently in one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub reason: String,
    /// The library fails or passes it depending on its own timing.
    pub varies: bool,
}

/// Reads `scenario: reason` lines (`#` comments and blank lines skipped).
pub fn read_deviations(text: &str) -> Result<BTreeMap<String, Deviation>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l
                .split_once(':')
                .ok_or_else(|| format!("{l:?}: expected \"scenario: reason\""))?;
            let reason = reason.trim();
            let deviation = match reason.strip_prefix("(varies)") {
                Some(rest) => Deviation {
                    reason: rest.trim().to_string(),
                    varies: true,
                },
                None => Deviation {
                    reason: reason.to_string(),
                    varies: false,
                },
            };
            Ok((name.trim().to_string(), deviation))
        })
        .collect()
}

pub async fn run(args: ClientConformanceArgs) -> ExitCode {
    let loaded = match &args.dir {
        Some(dir) => Scenario::load_dir(dir),
        None => Scenario::embedded(),
    };
    let mut scenarios = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("poxide client-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(filter) = &args.filter {
        scenarios.retain(|s| s.header.name.contains(filter.as_str()));
    }
    if scenarios.is_empty() {
        eprintln!("poxide client-conformance: no scenario matches the selection");
        return ExitCode::from(2);
    }
    let deviations = match &args.deviations {
        None => None,
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| read_deviations(&t))
        {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("poxide client-conformance: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let results = super::grade(&scenarios, &args.driver, args.jobs).await;
    let graded: Vec<_> = results.iter().map(|(g, _)| g.clone()).collect();
    let report = Report::new(&graded, true, FEATURES);
    let printed = match report.output(args.json.as_deref()) {
        Ok(printed) => printed,
        Err(e) => {
            eprintln!("poxide client-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if printed && args.verbose {
        for (graded, played) in &results {
            if matches!(played.outcome, Outcome::Failed(_)) {
                println!("\n--- {}\n{}", graded.name, played.log.join("\n"));
            }
        }
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, p)| matches!(p.outcome, Outcome::Failed(_)))
        .map(|(g, _)| g.name.as_str())
        .collect();
    let Some(known) = deviations else {
        return if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    };
    let selected = |name: &str| scenarios.iter().any(|s| s.header.name == name);
    let unexpected: Vec<&&str> = failed.iter().filter(|n| !known.contains_key(**n)).collect();
    let fixed: Vec<&String> = known
        .iter()
        .filter(|(n, d)| !d.varies && selected(n) && !failed.contains(&n.as_str()))
        .map(|(n, _)| n)
        .collect();
    for name in &unexpected {
        eprintln!("unexpected failure (not in the deviations file): {name}");
    }
    for name in &fixed {
        eprintln!("listed as a deviation but passed or was skipped: {name}");
    }
    if unexpected.is_empty() && fixed.is_empty() {
        println!(
            "failures are exactly the known deviations ({} failed, {} listed)",
            failed.len(),
            known.len()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deviations_are_read_with_their_reasons_and_races() {
        let read = read_deviations(
            "# pysher\n\nclose-4100: reconnects after 10 s\n disconnect-state : (varies) its thread wakes late\n",
        )
        .unwrap();
        assert_eq!(
            read.into_iter().collect::<Vec<_>>(),
            [
                (
                    "close-4100".to_string(),
                    Deviation {
                        reason: "reconnects after 10 s".into(),
                        varies: false
                    }
                ),
                (
                    "disconnect-state".to_string(),
                    Deviation {
                        reason: "its thread wakes late".into(),
                        varies: true
                    }
                ),
            ]
        );
        assert!(read_deviations("no colon here").is_err());
    }
}

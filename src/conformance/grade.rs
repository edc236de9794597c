//! Grading a server: which scenarios run and how strictly, side by side in namespaces of their
//! own, and the report by feature and level (printed, or as JSON).
//!
//! A protocol-level scenario is graded on its protocol expectations alone; with `strict`, every
//! scenario is graded on all of its expectations too (poxide's wording and choices, and that
//! nothing more arrives after the last step). A strict run that passes implies the protocol run
//! would, so a scenario runs a second time only when it failed strictly, to tell a protocol
//! deviation from a difference of wording or choice.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
};

use futures_util::{stream, StreamExt};
use serde::Serialize;

use super::{
    runner::{self, Mode, Outcome, Target},
    transcript::{Level, Transcript},
};

/// What to grade and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub strict: bool,
    /// Scenarios run at once (exclusive ones run alone, after the others).
    pub jobs: usize,
    /// Run the scenarios that need settings of their own, as if the server had them.
    pub assume_configured: bool,
    /// The start of every namespace of this run, so that two runs against one server differ.
    pub run_id: String,
}

/// One scenario's result at each level it is graded on.
#[derive(Debug, Clone, Serialize)]
pub struct Graded {
    pub name: String,
    pub feature: String,
    pub level: Level,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// On its protocol expectations (protocol-level scenarios only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Outcome>,
    /// On every expectation (with `strict`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poxide: Option<Outcome>,
}

/// Why a scenario cannot run against this target, if it cannot.
fn unrunnable(transcript: &Transcript, target: &Target, options: &Options) -> Option<String> {
    let header = &transcript.header;
    if header.uses_second_app && target.second_app.is_none() {
        return Some("needs a second app: pass --app2-id, --key2 and --secret2".into());
    }
    match &header.app {
        Some(settings) if !options.assume_configured => Some(format!(
            "needs these settings on the server's default app (then pass --assume-configured): {}",
            serde_json::to_string(settings).unwrap_or_default()
        )),
        _ => None,
    }
}

/// Hands out the namespaces of one run.
struct Namespaces<'a> {
    run_id: &'a str,
    next: AtomicUsize,
}

impl Namespaces<'_> {
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}-", self.run_id)
    }
}

async fn grade_one(
    transcript: &Transcript,
    target: &Target,
    options: &Options,
    namespaces: &Namespaces<'_>,
) -> Graded {
    let header = &transcript.header;
    let mut graded = Graded {
        name: header.name.clone(),
        feature: header.feature.clone(),
        level: header.level,
        source: header.source.clone(),
        protocol: None,
        poxide: None,
    };
    let protocol_level = header.level == Level::Protocol;
    if let Some(why) = unrunnable(transcript, target, options) {
        let skipped = Some(Outcome::Skipped(why));
        graded.protocol = skipped.clone().filter(|_| protocol_level);
        graded.poxide = skipped.filter(|_| options.strict);
        return graded;
    }
    if options.strict {
        let mode = Mode {
            strict: true,
            ns: namespaces.next(),
        };
        let outcome = runner::run(transcript, target, &mode).await.outcome;
        if protocol_level && outcome == Outcome::Passed {
            graded.protocol = Some(Outcome::Passed);
        }
        graded.poxide = Some(outcome);
    }
    if protocol_level && graded.protocol.is_none() {
        let mode = Mode {
            strict: false,
            ns: namespaces.next(),
        };
        graded.protocol = Some(runner::run(transcript, target, &mode).await.outcome);
    }
    graded
}

/// Grades every transcript against the target.
pub async fn grade(transcripts: &[Transcript], target: &Target, options: &Options) -> Vec<Graded> {
    let namespaces = Namespaces {
        run_id: &options.run_id,
        next: AtomicUsize::new(0),
    };
    let (alone, together): (Vec<&Transcript>, Vec<&Transcript>) =
        transcripts.iter().partition(|t| t.header.exclusive);
    let mut results: Vec<Graded> = stream::iter(together)
        .map(|t| grade_one(t, target, options, &namespaces))
        .buffer_unordered(options.jobs.max(1))
        .collect()
        .await;
    for transcript in alone {
        results.push(grade_one(transcript, target, options, &namespaces).await);
    }
    results.sort_by(|a, b| a.name.cmp(&b.name));
    results
}

/// Passed, failed and skipped scenarios at one level.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    fn add(&mut self, outcome: Option<&Outcome>) {
        match outcome {
            Some(Outcome::Passed) => self.passed += 1,
            Some(Outcome::Failed(_)) => self.failed += 1,
            Some(Outcome::Skipped(_)) => self.skipped += 1,
            None => {}
        }
    }

    fn add_counts(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }

    pub fn total(&self) -> usize {
        self.passed + self.failed + self.skipped
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// The results of one feature.
#[derive(Debug, Serialize)]
pub struct FeatureReport<'a> {
    pub feature: &'a str,
    pub protocol: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poxide: Option<Counts>,
    pub scenarios: Vec<&'a Graded>,
}

/// The whole report: totals per level, then each feature in `order` (others after, by name).
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub strict: bool,
    pub protocol: Counts,
    /// Graded only with `strict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poxide: Option<Counts>,
    /// Poxide-level scenarios left out, without `strict`.
    pub not_graded: usize,
    pub features: Vec<FeatureReport<'a>>,
}

impl<'a> Report<'a> {
    pub fn new(results: &'a [Graded], strict: bool, order: &[&str]) -> Report<'a> {
        let mut by_feature: BTreeMap<(usize, &str), Vec<&Graded>> = BTreeMap::new();
        for graded in results {
            let rank = order
                .iter()
                .position(|f| *f == graded.feature)
                .unwrap_or(order.len());
            by_feature
                .entry((rank, graded.feature.as_str()))
                .or_default()
                .push(graded);
        }
        let mut report = Report {
            strict,
            protocol: Counts::default(),
            poxide: strict.then(Counts::default),
            not_graded: results
                .iter()
                .filter(|g| g.protocol.is_none() && g.poxide.is_none())
                .count(),
            features: Vec::new(),
        };
        for ((_, feature), scenarios) in by_feature {
            let mut protocol = Counts::default();
            let mut poxide = strict.then(Counts::default);
            for graded in &scenarios {
                protocol.add(graded.protocol.as_ref());
                if let Some(counts) = poxide.as_mut() {
                    counts.add(graded.poxide.as_ref());
                }
            }
            report.protocol.add_counts(protocol);
            if let (Some(total), Some(counts)) = (report.poxide.as_mut(), poxide) {
                total.add_counts(counts);
            }
            report.features.push(FeatureReport {
                feature,
                protocol,
                poxide,
                scenarios,
            });
        }
        report
    }

    /// Prints the report as text, and writes it as JSON to `json` if given (`-`: only JSON, on
    /// stdout). Whether the text was printed.
    pub fn output(&self, json: Option<&std::path::Path>) -> Result<bool, String> {
        let to_stdout = json == Some(std::path::Path::new("-"));
        if !to_stdout {
            print!("{}", self.text());
        }
        if let Some(path) = json {
            let text = serde_json::to_string_pretty(self).expect("the report serializes");
            if to_stdout {
                println!("{text}");
            } else {
                std::fs::write(path, text + "\n")
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Ok(!to_stdout)
    }

    pub fn failed(&self) -> bool {
        self.protocol.failed > 0 || self.poxide.is_some_and(|c| c.failed > 0)
    }

    /// The report as text: a line per scenario under its feature, and the totals.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let graded = |g: &&Graded| g.protocol.is_some() || g.poxide.is_some();
        for feature in &self.features {
            if !feature.scenarios.iter().any(graded) {
                continue;
            }
            out.push_str(&format!("\n## {}\n", feature.feature));
            for graded in &feature.scenarios {
                for (level, outcome) in [("protocol", &graded.protocol), ("poxide", &graded.poxide)]
                {
                    match outcome {
                        Some(Outcome::Passed) => {
                            out.push_str(&format!("PASS [{level}] {}\n", graded.name))
                        }
                        Some(Outcome::Failed(why)) => {
                            out.push_str(&format!("FAIL [{level}] {}: {why}\n", graded.name))
                        }
                        Some(Outcome::Skipped(why)) => {
                            out.push_str(&format!("SKIP [{level}] {}: {why}\n", graded.name))
                        }
                        None => {}
                    }
                }
            }
            out.push_str(&format!(
                "{}: protocol {}",
                feature.feature, feature.protocol
            ));
            if let Some(poxide) = feature.poxide {
                out.push_str(&format!("; poxide {poxide}"));
            }
            out.push('\n');
        }
        out.push_str(&format!("\nprotocol: {}\n", self.protocol));
        match self.poxide {
            Some(poxide) => out.push_str(&format!("poxide: {poxide}\n")),
            None => out.push_str(&format!(
                "poxide: {} {} not graded (pass --strict)\n",
                self.not_graded,
                if self.not_graded == 1 {
                    "scenario"
                } else {
                    "scenarios"
                }
            )),
        }
        out
    }
}

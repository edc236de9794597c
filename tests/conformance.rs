//! Replays every transcript in `conformance/transcripts/` against an in-process poxide and
//! compares each scenario's normalized exchange with its snapshot under `snapshots/`.

use std::path::Path;

use poxide::conformance::{
    run_in_cluster, run_in_process,
    runner::{Outcome, Report},
    transcript::Transcript,
};

/// Scenarios run at once; more would let timing-sensitive ones (rate limits, timeouts) drift.
const PARALLEL: usize = 4;

mod common;

use std::future::Future;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_passes_and_matches_its_snapshot() {
    check_all(|t| async move { run_in_process(&t).await }).await;
}

/// The same transcripts and snapshots with each client on another node of a three-node
/// cluster and the REST calls on the last one: a client cannot tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_passes_on_a_three_node_cluster() {
    let redis = common::redis::Redis::start().await;
    let url = redis.url();
    let scenario = std::sync::atomic::AtomicUsize::new(0);
    let scenario = std::sync::Arc::new(scenario);
    check_all(move |t| {
        let url = url.clone();
        let n = scenario.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move { run_in_cluster(&t, &url, &format!("conformance{n}")).await }
    })
    .await;
}

async fn check_all<F, Fut>(run: F)
where
    F: Fn(Transcript) -> Fut,
    Fut: Future<Output = Report> + Send + 'static,
{
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/transcripts");
    let mut transcripts = Transcript::load_dir(&dir).expect("transcripts load");
    let embedded = Transcript::embedded().expect("embedded transcripts parse");
    assert_eq!(
        embedded.iter().map(|t| &t.header.name).collect::<Vec<_>>(),
        transcripts
            .iter()
            .map(|t| &t.header.name)
            .collect::<Vec<_>>(),
        "the binary carries exactly the transcripts of the checkout"
    );
    if let Ok(filter) = std::env::var("POXIDE_CONFORMANCE_FILTER") {
        transcripts.retain(|t| t.header.name.contains(&filter));
    }
    assert!(!transcripts.is_empty(), "no transcripts found");

    let mut reports: Vec<Report> = Vec::new();
    for chunk in transcripts.chunks(PARALLEL) {
        let runs = chunk.iter().cloned().map(|t| tokio::spawn(run(t)));
        for run in runs.collect::<Vec<_>>() {
            reports.push(run.await.expect("scenario task"));
        }
    }

    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Passed => None,
            Outcome::Failed(why) | Outcome::Skipped(why) => Some(format!("{}: {why}", r.name)),
        })
        .collect();

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let mut changed = Vec::new();
    settings.bind(|| {
        let snapshotted = |r: &&Report| {
            r.outcome == Outcome::Passed
                && transcripts
                    .iter()
                    .any(|t| t.header.name == r.name && t.header.snapshot)
        };
        for report in reports.iter().filter(snapshotted) {
            let log = report.log.join("\n");
            let result =
                std::panic::catch_unwind(|| insta::assert_snapshot!(report.name.clone(), log));
            if result.is_err() {
                changed.push(report.name.clone());
            }
        }
    });

    println!(
        "{} passed, {} failed",
        reports.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} scenarios failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        changed.is_empty(),
        "snapshots differ for: {}",
        changed.join(", ")
    );
}

//! Replays every transcript in `conformance/transcripts/` against an in-process poxide and
//! compares each scenario's normalized exchange with its snapshot under `snapshots/`.

use std::path::Path;

use poxide::conformance::{
    features,
    grade::{grade, Options, Report as GradeReport},
    run_in_cluster, run_in_process,
    runner::{Credentials, Outcome, Report, Target},
    transcript::{Level, Transcript},
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

fn shared_server_config() -> poxide::Config {
    poxide::Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        apps: vec![
            poxide::AppConfig::default(),
            poxide::conformance::second_app(),
        ],
        metrics: None,
        ..poxide::Config::default()
    }
}

fn target_of(server: &poxide::RunningServer) -> Target {
    let creds = |app: &poxide::AppConfig| Credentials {
        id: app.id.clone(),
        key: app.key.clone(),
        secret: app.secret.clone(),
    };
    Target {
        ws_urls: vec![server.ws_url()],
        http_url: server.http_url(),
        default_app: creds(&poxide::AppConfig::default()),
        second_app: Some(creds(&poxide::conformance::second_app())),
    }
}

fn options(strict: bool) -> Options {
    Options {
        strict,
        jobs: 8,
        assume_configured: false,
        run_id: "t".into(),
    }
}

/// What `poxide conformance --strict` does against a long-running server: every scenario that
/// needs no settings of its own, eight at a time on one server, each in its own namespace. They
/// all pass at both levels, so no scenario sees another's channels, members or users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_by_side_on_one_shared_server_every_scenario_passes_at_both_levels() {
    let transcripts = Transcript::embedded().expect("embedded transcripts parse");
    let server = poxide::Server::new(shared_server_config())
        .start()
        .await
        .expect("server starts");
    let results = grade(&transcripts, &target_of(&server), &options(true)).await;
    let report = GradeReport::new(&results, true, &features());
    let failures: Vec<String> = results
        .iter()
        .flat_map(|g| {
            [("protocol", &g.protocol), ("poxide", &g.poxide)]
                .into_iter()
                .filter_map(move |(level, o)| match o {
                    Some(Outcome::Failed(why)) => Some(format!("{} [{level}]: {why}", g.name)),
                    _ => None,
                })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let configured = transcripts.iter().filter(|t| t.header.app.is_some());
    let protocol_configured = configured
        .clone()
        .filter(|t| t.header.level == Level::Protocol)
        .count();
    let protocol_total = transcripts
        .iter()
        .filter(|t| t.header.level == Level::Protocol)
        .count();
    assert_eq!(report.protocol.skipped, protocol_configured);
    assert_eq!(report.protocol.total(), protocol_total);
    let poxide = report.poxide.expect("strict grades poxide's choices");
    assert_eq!(poxide.total(), transcripts.len());
    assert_eq!(poxide.skipped, configured.count());
    server.shutdown().await.expect("server stops");
}

/// A server whose wording differs fails only the poxide level; one whose error code differs
/// fails the protocol level. Shown by grading poxide against altered copies of one scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wording_fails_only_strictly_and_a_wrong_code_fails_the_protocol() {
    let original = Transcript::embedded()
        .expect("embedded transcripts parse")
        .into_iter()
        .find(|t| t.header.name == "connection-unknown-key-rejected")
        .expect("the scenario exists");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("conformance/transcripts/connection-unknown-key-rejected.jsonl"),
    )
    .expect("transcript reads");
    assert_eq!(original.header.level, Level::Protocol);
    // Named to sort after the original, as the results are.
    let altered = |name: &str, from: &str, to: &str| {
        assert!(text.contains(from), "the scenario has {from}");
        let text = text
            .replace(from, to)
            .replace("connection-unknown-key-rejected", name);
        Transcript::parse(Path::new(&format!("{name}.jsonl")), &text)
            .expect("altered transcript parses")
    };
    let reworded = altered(
        "x-reworded",
        "\"Application does not exist\"}",
        "\"No such app\"}",
    );
    let wrong_code = altered("y-wrong-code", "\"code\": 4001}", "\"code\": 4999}");
    let server = poxide::Server::new(shared_server_config())
        .start()
        .await
        .expect("server starts");
    let target = target_of(&server);
    let results = grade(&[original, reworded, wrong_code], &target, &options(true)).await;
    let outcomes: Vec<(bool, bool)> = results
        .iter()
        .map(|g| {
            (
                g.protocol == Some(Outcome::Passed),
                g.poxide == Some(Outcome::Passed),
            )
        })
        .collect();
    assert_eq!(outcomes, [(true, true), (true, false), (false, false)]);
    let report = GradeReport::new(&results, true, &features());
    assert_eq!(report.protocol.failed, 1);
    assert_eq!(report.poxide.map(|c| c.failed), Some(2));
    assert!(report.text().ends_with(
        "protocol: 2 passed, 1 failed, 0 skipped\npoxide: 1 passed, 2 failed, 0 skipped\n"
    ));
    server.shutdown().await.expect("server stops");
}

/// Every scenario names a feature the report knows (a heading of `BEHAVIOUR.md`), and every
/// protocol-level one cites where the protocol says so.
#[test]
fn every_scenario_has_a_known_feature_and_a_level() {
    let known = features();
    for t in Transcript::embedded().expect("embedded transcripts parse") {
        assert!(
            known.contains(&t.header.feature.as_str()),
            "{}: feature {:?} is not a heading of conformance/BEHAVIOUR.md",
            t.header.name,
            t.header.feature
        );
        if t.header.level == Level::Protocol {
            assert!(t.header.source.is_some(), "{}", t.header.name);
        }
    }
}

/// The client scenarios built into the binary are exactly those of the checkout, every one
/// parses, names a feature of the client report and, at protocol level, its source.
#[test]
fn every_client_scenario_parses_with_a_known_feature() {
    use poxide::conformance::clients::{scenario::Scenario, FEATURES};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/clients");
    let on_disk = Scenario::load_dir(&dir).expect("client scenarios load");
    let embedded = Scenario::embedded().expect("embedded client scenarios parse");
    let names = |s: &[Scenario]| s.iter().map(|s| s.header.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&embedded), names(&on_disk));
    assert!(embedded.len() >= 40, "{} scenarios", embedded.len());
    for s in &embedded {
        assert!(
            FEATURES.contains(&s.header.feature.as_str()),
            "{}: feature {:?}",
            s.header.name,
            s.header.feature
        );
    }
}

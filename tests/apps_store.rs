//! Apps from a database, SQLite and a real PostgreSQL: edited with `poxide apps` (the binary)
//! while a server runs, each change reaching new and open connections and the REST API within
//! the refresh interval; unknown keys never reaching the database; a database that stops
//! leaving the known apps served.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{close_code, next_json, postgres::Postgres, send, test_config, Api, Ws};
use futures_util::StreamExt;
use poxide::{config::AppsStoreConfig, config::MetricsConfig, RunningServer, Server};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(20);

/// `poxide apps --database-url URL ARGS…`: exit code, stdout, stderr.
fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    cli_with(url, args, &[])
}

fn cli_with(url: &str, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .args(["apps", "--database-url", url])
        .args(args)
        .env_remove("POXIDE_APPS_DATABASE_URL")
        .env_remove("SSL_CERT_FILE")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(url: &str, args: &[&str]) -> String {
    let (code, out, err) = cli(url, args);
    assert_eq!(code, 0, "poxide apps {args:?}: {err}");
    out
}

async fn start(url: &str, refresh: Duration) -> RunningServer {
    let mut config = test_config();
    config.apps_store = Some(AppsStoreConfig {
        url: url.to_string(),
        refresh,
    });
    config.metrics = Some(MetricsConfig {
        host: [127, 0, 0, 1].into(),
        port: 0,
    });
    Server::new(config).start().await.unwrap()
}

/// Connects with `key`: the connection, or the close code it was refused with.
async fn open(server: &RunningServer, key: &str) -> Result<Ws, u16> {
    open_at(&server.ws_url(), key).await
}

async fn open_at(ws_url: &str, key: &str) -> Result<Ws, u16> {
    open_with_id(ws_url, key).await.map(|(ws, _)| ws)
}

/// [`open_at`], with the socket id.
async fn open_with_id(ws_url: &str, key: &str) -> Result<(Ws, String), u16> {
    let url = format!("{ws_url}/app/{key}?protocol=7");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = next_json(&mut ws).await;
    if first["event"] == "pusher:connection_established" {
        let data: Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
        return Ok((ws, data["socket_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(first["event"], "pusher:error", "{first}");
    let (code, _) = close_code(&mut ws).await;
    assert_eq!(
        first["data"]["code"], code,
        "the error names the close code"
    );
    Err(code)
}

/// Polls `check` until it gives a value, for at most the deadline.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not in time: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn credential(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name}= in {out:?}"))
        .to_string()
}

async fn publish(api: &Api, app: &str, channel: &str) -> (u16, String) {
    let body = json!({"name": "e", "channel": channel, "data": "1"});
    api.call("POST", &format!("/apps/{app}/events"), Some(&body))
        .await
}

async fn store_reads(server: &RunningServer, outcome: &str) -> u64 {
    let url = format!("http://{}/metrics", server.metrics_addr().unwrap());
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let name = format!("poxide_apps_store_reads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .map_or(0, |n| n.parse().unwrap())
}

/// Every live change, made with the admin CLI while the server runs.
async fn live_changes(url: &str) {
    let added = cli_ok(url, &["add", "--id", "1", "--key", "k1", "--secret", "s1"]);
    assert_eq!(added, "id=1\nkey=k1\nsecret=s1\n");
    let server = start(url, Duration::from_millis(100)).await;
    let http = server.http_url();

    let (mut first, first_id) = open_with_id(&server.ws_url(), "k1")
        .await
        .expect("a stored app is served");
    assert_eq!(open(&server, "nope").await.unwrap_err(), 4001);
    send(
        &mut first,
        json!({"event": "pusher:subscribe", "data": {"channel": "c"}}),
    )
    .await;
    assert_eq!(
        next_json(&mut first).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let old = Api::with_credentials(&http, "k1", "s1");
    assert_eq!(publish(&old, "1", "c").await.0, 200);
    assert_eq!(next_json(&mut first).await["event"], "e");

    // Added: served without a restart.
    let out = cli_ok(url, &["add", "--id", "2", "--key", "k2"]);
    let secret2 = credential(&out, "secret");
    assert_eq!(secret2.len(), 20);
    let mut second = eventually("app 2 served", || async { open(&server, "k2").await.ok() }).await;
    let api2 = Api::with_credentials(&http, "k2", &secret2);
    assert_eq!(publish(&api2, "2", "c").await.0, 200);

    // Secret rotated: the old one is refused, the new one accepted.
    let out = cli_ok(url, &["set", "1", "--rotate-secret"]);
    let rotated = credential(&out, "secret");
    assert_ne!(rotated, "s1");
    let (status, body) = eventually("the old secret refused", || async {
        let (status, body) = publish(&old, "1", "c").await;
        (status == 401).then_some((status, body))
    })
    .await;
    assert!(body.contains("Invalid signature"), "{status} {body}");
    let new = Api::with_credentials(&http, "k1", &rotated);
    assert_eq!(publish(&new, "1", "c").await.0, 200);
    assert_eq!(
        next_json(&mut first).await["event"],
        "e",
        "open connections kept"
    );
    // The open connection checks channel signatures with the new secret too.
    let private = |secret: &str| {
        let auth = poxide::signature::channel_auth("k1", secret, &first_id, "private-p", None);
        json!({"event": "pusher:subscribe", "data": {"channel": "private-p", "auth": auth}})
    };
    send(&mut first, private("s1")).await;
    let refused = loop {
        let frame = next_json(&mut first).await;
        if frame["event"] != "e" {
            break frame;
        }
    };
    assert_eq!(refused["event"], "pusher:error", "{refused}");
    assert!(refused["data"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid signature"));
    assert_eq!(
        next_json(&mut first).await["event"],
        "pusher:subscription_error"
    );
    send(&mut first, private(&rotated)).await;
    assert_eq!(
        next_json(&mut first).await["event"],
        "pusher_internal:subscription_succeeded"
    );

    // A limit changed: with one connection open, a second is over quota.
    cli_ok(url, &["set", "1", "max_connections=1"]);
    eventually("max_connections=1 applied", || async {
        (open(&server, "k1").await.err() == Some(4004)).then_some(())
    })
    .await;

    // Disabled: the open connection is closed with 4003, new ones refused, REST 403.
    cli_ok(url, &["set", "1", "enabled=false"]);
    // Past the events published while the old secret was still accepted.
    let error = loop {
        let frame = next_json(&mut first).await;
        if frame["event"] != "e" {
            break frame;
        }
    };
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4003);
    assert_eq!(error["data"]["message"], "Application is disabled");
    assert_eq!(
        close_code(&mut first).await,
        (4003, "Application is disabled".into())
    );
    assert_eq!(open(&server, "k1").await.unwrap_err(), 4003);
    assert_eq!(
        publish(&new, "1", "c").await,
        (403, "Application is disabled: 1".into())
    );
    assert_eq!(
        publish(&old, "1", "c").await.0,
        401,
        "the old secret learns nothing"
    );

    // Enabled again.
    cli_ok(url, &["set", "1", "enabled=true", "max_connections=null"]);
    eventually("app 1 enabled again", || async {
        open(&server, "k1").await.ok()
    })
    .await;

    // Removed: its connection is closed with 4001, and the key is unknown.
    assert_eq!(cli_ok(url, &["remove", "2"]), "removed 2\n");
    assert_eq!(
        close_code(&mut second).await,
        (4001, "Application does not exist".into())
    );
    assert_eq!(open(&server, "k2").await.unwrap_err(), 4001);
    assert_eq!(publish(&api2, "2", "c").await.0, 404);

    let listed = cli_ok(url, &["list"]);
    assert_eq!(listed, "1\tk1\tenabled\t{}\n");
    server.shutdown().await.unwrap();
}

/// The admin CLI's refusals: exit code 2 for a mistake in the command, 1 for the store's.
fn cli_refusals(url: &str) {
    cli_ok(url, &["add", "--id", "a", "--key", "ka"]);
    let (code, _, err) = cli(url, &["add", "--id", "a", "--key", "other"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("poxide apps: another app has this id or key"),
        "{err}"
    );
    let (code, _, err) = cli(url, &["set", "a", "max_conections=3"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `max_conections`"), "{err}");
    let (code, _, err) = cli(url, &["set", "a", "payload_limit=0"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "poxide apps: invalid value for apps[0].payload_limit: \"0\" (a positive integer)\n"
    );
    let (code, _, err) = cli(url, &["remove", "zzz"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "poxide apps: no app with id \"zzz\"\n")
    );
    let json: Value = serde_json::from_str(&cli_ok(url, &["list", "--json"])).unwrap();
    let a = json
        .as_array()
        .unwrap()
        .iter()
        .find(|app| app["id"] == "a")
        .expect("listed");
    assert_eq!(a["key"], "ka");
    assert_eq!(a["payload_limit"], 10240, "every setting, defaults too");
    cli_ok(url, &["remove", "a"]);
}

/// A flood of unknown keys and ids is answered from memory: the database is read only when
/// the follower checks it, never per lookup.
async fn unknown_keys_stay_in_memory(url: &str) {
    cli_ok(url, &["add", "--id", "f", "--key", "kf", "--secret", "sf"]);
    // No periodic check during the test: every read counted is one the flood caused.
    let server = start(url, Duration::from_secs(3600)).await;
    server.reload_apps();
    eventually("the forced check counted", || async {
        (store_reads(&server, "ok").await == 2).then_some(())
    })
    .await;
    let api = Api::with_credentials(&server.http_url(), "kf", "sf");
    for i in 0..200 {
        assert_eq!(
            open(&server, &format!("unknown-{i}")).await.unwrap_err(),
            4001
        );
        assert_eq!(publish(&api, &format!("no-such-app-{i}"), "c").await.0, 404);
    }
    assert!(open(&server, "kf").await.is_ok());
    assert_eq!(
        store_reads(&server, "ok").await,
        2,
        "no read for any lookup"
    );
    assert_eq!(store_reads(&server, "error").await, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn sqlite_apps_change_live() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("apps.db").display());
    live_changes(&url).await;
    cli_refusals(&url);
    unknown_keys_stay_in_memory(&url).await;
}

#[tokio::test]
async fn postgres_apps_change_live() {
    let pg = Postgres::start();
    live_changes(&pg.url()).await;
    cli_refusals(&pg.url());
    unknown_keys_stay_in_memory(&pg.url()).await;
}

/// While the database cannot be read the known apps are served and changes wait; once it is
/// back, the change made meanwhile arrives.
async fn outage(url: &str, stop: impl FnOnce(), resume: impl FnOnce()) {
    cli_ok(url, &["add", "--id", "o", "--key", "ko", "--secret", "so"]);
    let server = start(url, Duration::from_millis(100)).await;
    let mut open_before = open(&server, "ko").await.unwrap();
    stop();
    eventually("the outage noticed", || async {
        (store_reads(&server, "error").await > 0).then_some(())
    })
    .await;
    assert!(
        open(&server, "ko").await.is_ok(),
        "a known app is still served"
    );
    assert_eq!(open(&server, "nope").await.unwrap_err(), 4001);
    let api = Api::with_credentials(&server.http_url(), "ko", "so");
    assert_eq!(publish(&api, "o", "c").await.0, 200);
    resume();
    cli_ok(url, &["set", "o", "enabled=false"]);
    let (code, _) = close_code(&mut open_before).await;
    assert_eq!(code, 4003, "the change made after the outage arrived");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sqlite_file_that_cannot_be_read_leaves_the_apps_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("apps.db");
    let away = dir.path().join("apps.db.away");
    let url = format!("sqlite://{}", db.display());
    let (db2, away2) = (db.clone(), away.clone());
    outage(
        &url,
        move || {
            std::fs::rename(&db, &away).unwrap();
            // A directory where the file was: opening it fails.
            std::fs::create_dir(&db).unwrap();
        },
        move || {
            std::fs::remove_dir(&db2).unwrap();
            std::fs::rename(&away2, &db2).unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn a_postgres_that_stops_leaves_the_apps_served() {
    let pg = Postgres::start();
    outage(&pg.url(), || pg.stop(), || pg.resume()).await;
}

#[tokio::test]
async fn a_newer_schema_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("apps.db").display());
    cli_ok(&url, &["list"]);
    // As a later poxide would leave it.
    rusqlite::Connection::open(dir.path().join("apps.db"))
        .unwrap()
        .execute(
            "INSERT INTO poxide_schema_migrations (version) VALUES (99)",
            [],
        )
        .unwrap();
    let mut config = test_config();
    config.apps_store = Some(AppsStoreConfig {
        url: url.clone(),
        refresh: Duration::from_millis(100),
    });
    let err = Server::new(config).start().await.err().expect("refused");
    assert_eq!(
        err.to_string(),
        "apps database schema version 99 is newer than this poxide knows (1): upgrade poxide"
    );
    let (code, _, stderr) = cli(&url, &["list"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("schema version 99 is newer"), "{stderr}");
}

/// Frames on an open connection keep flowing after an unrelated app changes.
#[tokio::test]
async fn an_unrelated_change_leaves_connections_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("apps.db").display());
    cli_ok(&url, &["add", "--id", "1", "--key", "k1", "--secret", "s1"]);
    cli_ok(&url, &["add", "--id", "2", "--key", "k2", "--secret", "s2"]);
    let server = start(&url, Duration::from_millis(100)).await;
    let mut ws = open(&server, "k1").await.unwrap();
    cli_ok(&url, &["set", "2", "enabled=false"]);
    eventually("app 2 disabled", || async {
        (open(&server, "k2").await.err() == Some(4003)).then_some(())
    })
    .await;
    send(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(next_json(&mut ws).await["event"], "pusher:pong");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), ws.next())
            .await
            .is_err(),
        "nothing else was sent to app 1's connection"
    );
    server.shutdown().await.unwrap();
}

fn apps_toml(apps: &[(&str, &str, &str)]) -> String {
    apps.iter()
        .map(|(id, key, secret)| {
            format!("[[apps]]\nid = \"{id}\"\nkey = \"{key}\"\nsecret = \"{secret}\"\n")
        })
        .collect()
}

/// The configuration file is a store too: read again when it changes and on SIGHUP; a file
/// that fails validation is refused with one line and the running apps stay.
#[tokio::test]
async fn the_config_file_is_read_again_when_it_changes_and_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poxide.toml");
    std::fs::write(&path, apps_toml(&[("a", "ka", "sa")])).unwrap();
    let (child, lines) = common::binary::spawn_with(&["--config", path.to_str().unwrap()], &[]);
    let ws = format!("ws://{}", common::binary::listening_addr(&lines));
    let mut a = open_at(&ws, "ka").await.unwrap();

    // Changed on disk: noticed without a signal.
    std::fs::write(&path, apps_toml(&[("a", "ka", "sa2"), ("b", "kb", "sb")])).unwrap();
    eventually("app b served", || async { open_at(&ws, "kb").await.ok() }).await;
    let line = common::binary::wait_line(&lines, "apps changed");
    assert!(
        line.ends_with(&format!(
            "apps changed ({}): added b; removed none; changed a",
            path.display()
        )),
        "{line}"
    );
    send(&mut a, json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(
        next_json(&mut a).await["event"],
        "pusher:pong",
        "a's connection kept"
    );

    // Rewritten with its old modification time: only SIGHUP can tell.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(
        &path,
        apps_toml(&[("a", "ka", "sa2"), ("b", "kb", "sb"), ("c", "kc", "sc")]),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    common::binary::wait_line(&lines, "SIGHUP: reading the apps again");
    eventually("app c served", || async { open_at(&ws, "kc").await.ok() }).await;

    // Invalid: refused in one line, nothing changes.
    std::fs::write(&path, apps_toml(&[("a", "ka", "sa2"), ("d", "ka", "sd")])).unwrap();
    let line = common::binary::wait_line(&lines, "the running apps are unchanged");
    assert!(
        line.contains("invalid value for apps[1].key: \"ka\" (a key no other app uses)"),
        "{line}"
    );
    assert!(open_at(&ws, "kc").await.is_ok());
    assert_eq!(open_at(&ws, "kd").await.unwrap_err(), 4001);

    // Removed from the file: its connection is closed with 4001.
    let mut b = open_at(&ws, "kb").await.unwrap();
    std::fs::write(&path, apps_toml(&[("a", "ka", "sa2")])).unwrap();
    assert_eq!(
        close_code(&mut b).await,
        (4001, "Application does not exist".into())
    );
    drop(child);
}

/// An outage is said once (the checks go on every 100 ms, the line at most every 30 s), and so
/// is its end.
#[tokio::test]
async fn an_unreadable_database_is_logged_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("apps.db");
    let url = format!("sqlite://{}", db.display());
    cli_ok(&url, &["add", "--id", "l", "--key", "kl", "--secret", "sl"]);
    let (child, lines) = common::binary::spawn(&[
        ("POXIDE_APPS_DATABASE_URL", &url),
        ("POXIDE_APPS_REFRESH_MS", "100"),
    ]);
    let ws = format!("ws://{}", common::binary::listening_addr(&lines));
    let away = dir.path().join("apps.db.away");
    std::fs::rename(&db, &away).unwrap();
    std::fs::create_dir(&db).unwrap();
    let line = common::binary::wait_line(&lines, "apps database unavailable");
    assert!(
        line.contains("serving the apps last read, retrying every 100 ms"),
        "{line}"
    );
    // Ten more failed checks, at least, while the app is still served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(open_at(&ws, "kl").await.is_ok());
    std::fs::remove_dir(&db).unwrap();
    std::fs::rename(&away, &db).unwrap();
    let mut between = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).expect("the recovery is logged");
        if line.contains("apps database reachable again") {
            break;
        }
        between.push(line);
    }
    assert!(
        !between.iter().any(|l| l.contains("unavailable")),
        "said once: {between:?}"
    );
    drop(child);
}

/// TLS to PostgreSQL as `sslmode` says, the certificate checked against the system's roots
/// plus `SSL_CERT_FILE`. The server here refuses unencrypted TCP.
#[tokio::test]
async fn postgres_over_tls_checks_the_certificate() {
    let ca = common::tls::Ca::new();
    let leaf = ca.leaf("pg");
    let pg = Postgres::start_tls(&leaf.cert, &leaf.key);
    let trusted = [("SSL_CERT_FILE", ca.cert.to_str().unwrap())];
    for mode in ["require", "prefer"] {
        let url = format!("{}?sslmode={mode}", pg.url());
        let (code, _, err) = cli_with(&url, &["add", "--id", mode, "--key", mode], &trusted);
        assert_eq!(code, 0, "sslmode={mode}: {err}");
    }
    let (code, out, err) = cli_with(&pg.url(), &["list"], &trusted);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    // An unknown issuer is refused, and so is a connection without TLS.
    let (code, _, err) = cli(&format!("{}?sslmode=require", pg.url()), &["list"]);
    assert_eq!(code, 1);
    assert!(err.contains("UnknownIssuer"), "{err}");
    let (code, _, err) = cli_with(
        &format!("{}?sslmode=disable", pg.url()),
        &["list"],
        &trusted,
    );
    assert_eq!(code, 1);
    assert!(err.contains("no encryption"), "{err}");
}

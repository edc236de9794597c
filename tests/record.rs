//! `--record DIR`: what clients and the REST API did becomes transcripts that the conformance
//! runner replays green against another server.

mod common;

use common::{connect, next_json, send, subscribe, test_config, Api};
use poxide::{
    conformance::{
        runner::{self, Credentials, Outcome, Target},
        transcript::Transcript,
    },
    signature, Config, Server,
};
use serde_json::json;

#[tokio::test]
async fn a_recorded_session_replays_green_on_a_fresh_server() {
    let dir = tempfile::tempdir().unwrap();
    let recording = Server::new(Config {
        record: Some(dir.path().to_path_buf()),
        ..test_config()
    })
    .start()
    .await
    .unwrap();
    let (mut alice, alice_id) = connect(&recording.ws_url()).await;
    let auth = signature::channel_auth("app_key", "secret", &alice_id, "private-chat", None);
    subscribe(&mut alice, json!({"channel": "private-chat", "auth": auth})).await;
    let (mut bob, bob_id) = connect(&recording.ws_url()).await;
    let auth = signature::channel_auth("app_key", "secret", &bob_id, "private-chat", None);
    subscribe(&mut bob, json!({"channel": "private-chat", "auth": auth})).await;
    send(
        &mut alice,
        json!({"event": "client-hi", "channel": "private-chat", "data": {"from": "alice"}}),
    )
    .await;
    assert_eq!(next_json(&mut bob).await["event"], "client-hi");
    let api = Api::new(&recording.http_url());
    let trigger =
        json!({"name": "news", "channel": "private-chat", "data": "x", "socket_id": bob_id});
    assert_eq!(
        api.call("POST", "/apps/app_id/events", Some(&trigger))
            .await
            .0,
        200
    );
    assert_eq!(next_json(&mut alice).await["event"], "news");
    common::disconnect(alice).await;
    common::disconnect(bob).await;
    recording.shutdown().await.unwrap();

    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        files.len(),
        1,
        "one group of overlapping connections, one file"
    );
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(
        !text.contains(&alice_id) && !text.contains(&bob_id),
        "socket ids are placeholders:\n{text}"
    );
    assert!(
        text.contains(r#"{"sign_channel":{"client":"c1","channel":"private-chat"},"as":"auth1"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"\"socket_id\":\"{{socket_id:c2}}\""#),
        "the REST body's exclusion: {text}"
    );
    assert!(
        !text.contains("auth_signature"),
        "REST calls are signed afresh: {text}"
    );

    let replaying = Server::new(test_config()).start().await.unwrap();
    let target = Target {
        ws_urls: vec![replaying.ws_url()],
        http_url: replaying.http_url(),
        default_app: Credentials {
            id: "app_id".into(),
            key: "app_key".into(),
            secret: "secret".into(),
        },
        second_app: None,
    };
    let transcripts = Transcript::load_dir(dir.path()).unwrap();
    let report = runner::run(&transcripts[0], &target, &runner::Mode::strict()).await;
    assert_eq!(report.outcome, Outcome::Passed, "{}", report.log.join("\n"));
    replaying.shutdown().await.unwrap();
}

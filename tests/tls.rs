//! The TLS listener: wss:// and https:// with a certificate made here, a new certificate taken
//! without dropping connections (on a file change and on SIGHUP), clear errors for bad files,
//! hints for clients on the wrong port, and https:// webhook receivers.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{
    binary::{listening_addr, spawn, wait_line},
    next_json, subscribe, test_config,
    tls::{der, presented, Ca, Leaf},
    Api, Ws,
};
use poxide::{config::TlsConfig, Config, Server};
use serde_json::{json, Value};
use tokio_tungstenite::Connector;

fn tls_config(leaf: &Leaf) -> Config {
    Config {
        tls: Some(TlsConfig {
            cert: leaf.cert.clone(),
            key: leaf.key.clone(),
            chain: None,
            port: 0,
            only: false,
        }),
        ..test_config()
    }
}

async fn connect_wss(ca: &Ca, addr: std::net::SocketAddr) -> (Ws, String) {
    let url = format!("wss://localhost:{}/app/app_key?protocol=7", addr.port());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(Connector::Rustls(ca.client_config())),
    )
    .await
    .expect("wss connects");
    let established = next_json(&mut ws).await;
    assert_eq!(established["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    (ws, data["socket_id"].as_str().unwrap().to_string())
}

/// Publishes over https and checks the subscriber gets exactly that event.
async fn publish_and_receive(ca: &Ca, tls: std::net::SocketAddr, ws: &mut Ws, channel: &str) {
    let api = Api::with_client(
        &format!("https://localhost:{}", tls.port()),
        ca.http_client(),
    );
    let (status, body) = api
        .call(
            "POST",
            "/apps/app_id/events",
            Some(&json!({"name": "over-tls", "channels": [channel], "data": "{\"n\":1}"})),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(
        next_json(ws).await,
        json!({"event": "over-tls", "channel": channel, "data": "{\"n\":1}"})
    );
}

#[tokio::test]
async fn wss_and_https_serve_the_protocol_next_to_the_plain_listener() {
    let ca = Ca::new();
    let leaf = ca.leaf("server");
    let server = Server::new(tls_config(&leaf)).start().await.unwrap();
    let tls = server.tls_addr().expect("a TLS listener");
    assert_ne!(tls, server.local_addr());
    let (mut ws, _) = connect_wss(&ca, tls).await;
    subscribe(&mut ws, json!({"channel": "secure"})).await;
    publish_and_receive(&ca, tls, &mut ws, "secure").await;
    // The plain listener still serves.
    let (mut plain, _) = common::connect(&server.ws_url()).await;
    subscribe(&mut plain, json!({"channel": "secure"})).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_only_serves_no_plain_listener() {
    let ca = Ca::new();
    let leaf = ca.leaf("server");
    let mut config = tls_config(&leaf);
    config.tls.as_mut().unwrap().only = true;
    let server = Server::new(config).start().await.unwrap();
    let tls = server.tls_addr().unwrap();
    assert_eq!(server.local_addr(), tls);
    assert!(server.ws_url().starts_with("wss://"), "{}", server.ws_url());
    assert!(server.http_url().starts_with("https://"));
    let (mut ws, _) = connect_wss(&ca, tls).await;
    subscribe(&mut ws, json!({"channel": "only"})).await;
    publish_and_receive(&ca, tls, &mut ws, "only").await;
    server.shutdown().await.unwrap();
}

/// Replaces the pair's files by a rename, as deployment tools do.
fn replace(target: &Leaf, fresh: &Leaf) {
    for (from, to) in [(&fresh.cert, &target.cert), (&fresh.key, &target.key)] {
        let staged = to.with_extension("staged");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
}

async fn wait_presented(ca: &Ca, addr: std::net::SocketAddr, wanted: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(ca, addr).await != wanted {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_changed_certificate_is_served_to_new_connections_while_old_ones_go_on() {
    let ca = Ca::new();
    let leaf = ca.leaf("server");
    let server = Server::new(tls_config(&leaf)).start().await.unwrap();
    let tls = server.tls_addr().unwrap();
    assert_eq!(presented(&ca, tls).await, der(&leaf.cert));
    let (mut ws, _) = connect_wss(&ca, tls).await;
    subscribe(&mut ws, json!({"channel": "renewed"})).await;

    let renewed = ca.leaf("renewed");
    assert_ne!(der(&renewed.cert), der(&leaf.cert));
    replace(&leaf, &renewed);
    wait_presented(&ca, tls, &der(&renewed.cert)).await;
    // The connection made with the old certificate is still served.
    publish_and_receive(&ca, tls, &mut ws, "renewed").await;
    server.shutdown().await.unwrap();
}

/// `… listening on 127.0.0.1:P (ws://, http://); TLS (wss://, https://) on 127.0.0.1:T …`
fn ports(listening: &str) -> (u16, u16) {
    let port_after = |marker: &str| -> u16 {
        let rest = listening.split(marker).nth(1).unwrap();
        let addr = rest.split_whitespace().next().unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    };
    (
        port_after("listening on "),
        port_after("TLS (wss://, https://) on "),
    )
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_clients_on_the_wrong_port_get_a_hint() {
    let ca = Ca::new();
    let leaf = ca.leaf("server");
    // Poxa's names, as a Poxa deployment has them.
    let (child, lines) = spawn(&[
        ("POXA_SSL", "true"),
        ("SSL_PORT", "0"),
        ("SSL_CERTFILE", leaf.cert.to_str().unwrap()),
        ("SSL_KEYFILE", leaf.key.to_str().unwrap()),
    ]);
    let (plain, tls) = ports(&wait_line(&lines, "listening on"));
    let tls_addr = std::net::SocketAddr::from(([127, 0, 0, 1], tls));
    assert_eq!(presented(&ca, tls_addr).await, der(&leaf.cert));

    // New files with the old modification times: only the signal can tell.
    let renewed = ca.leaf("renewed");
    let times: Vec<_> = [&leaf.cert, &leaf.key]
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    replace(&leaf, &renewed);
    for (path, time) in [&leaf.cert, &leaf.key].iter().zip(times) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }
    Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    wait_line(&lines, "TLS certificate reloaded (SIGHUP)");
    assert_eq!(presented(&ca, tls_addr).await, der(&renewed.cert));

    // Plain HTTP on the TLS port: a plain answer saying so, and a hint in the log.
    let answer = reqwest::get(format!("http://127.0.0.1:{tls}/ping"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(
        answer.text().await.unwrap(),
        "This port serves TLS: use https:// or wss://.\n"
    );
    wait_line(&lines, &format!("plain HTTP arrived on the TLS port {tls}"));
    // A TLS handshake on the plain port: the connection is closed, and a hint.
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", plain))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
    wait_line(
        &lines,
        &format!("a TLS handshake arrived on the plain port {plain}: point wss:// and https:// clients at the TLS port {tls}"),
    );
    drop(child);
}

/// Runs the binary to its exit; returns the code and what it wrote to stderr.
fn run_to_exit(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .args(["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"])
        .env_remove("PORT")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_or_wrong_certificate_is_one_line_and_exit_code_2() {
    let ca = Ca::new();
    let leaf = ca.leaf("server");
    let other = ca.leaf("other");
    let missing = ca.dir.path().join("missing.pem");
    let not_pem = ca.dir.path().join("san.ext");
    let cert = leaf.cert.to_str().unwrap();
    let key = leaf.key.to_str().unwrap();
    for (envs, expected) in [
        (
            vec![("POXIDE_TLS_CERT", missing.to_str().unwrap()), ("POXIDE_TLS_KEY", key)],
            format!("poxide: cannot read TLS file {}: No such file or directory (os error 2)\n", missing.display()),
        ),
        (
            vec![("POXIDE_TLS_CERT", not_pem.to_str().unwrap()), ("POXIDE_TLS_KEY", key)],
            format!("poxide: no PEM certificate in {}\n", not_pem.display()),
        ),
        (
            vec![("POXIDE_TLS_CERT", cert), ("POXIDE_TLS_KEY", cert)],
            format!("poxide: no PEM private key in {cert} (PKCS#8, PKCS#1 or SEC1 expected)\n"),
        ),
        (
            vec![("POXIDE_TLS_CERT", cert), ("POXIDE_TLS_KEY", other.key.to_str().unwrap())],
            format!(
                "poxide: the private key in {} does not belong to the certificate in {cert}\n",
                other.key.display()
            ),
        ),
        (
            vec![("POXA_SSL", "true")],
            "poxide: invalid value for tls.cert: \"\" (a PEM file: TLS needs a certificate and its key (POXIDE_TLS_CERT and POXIDE_TLS_KEY, or Poxa's SSL_CERTFILE and SSL_KEYFILE))\n".to_string(),
        ),
    ] {
        let (code, stderr) = run_to_exit(&envs);
        assert_eq!((code, stderr), (Some(2), expected), "{envs:?}");
    }
}

/// A TLS front for `backend` with `leaf`'s certificate: an https:// receiver for webhooks.
async fn tls_proxy(leaf: &Leaf, backend: std::net::SocketAddr) -> std::net::SocketAddr {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(&leaf.cert).unwrap();
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn webhooks_go_to_https_receivers_trusted_through_ssl_cert_file() {
    use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};
    let ca = Ca::new();
    let leaf = ca.leaf("receiver");
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let front = tls_proxy(&leaf, *receiver.address()).await;
    let url = format!("https://localhost:{}/hook", front.port());
    let (child, lines) = spawn(&[
        ("POXIDE_WEBHOOK_URL", url.as_str()),
        ("SSL_CERT_FILE", ca.cert.to_str().unwrap()),
        ("SSL_CERT_DIR", ""),
    ]);
    let addr = listening_addr(&lines);
    let (mut ws, _) = common::connect(&format!("ws://{addr}")).await;
    subscribe(&mut ws, json!({"channel": "hooked"})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body: Value = loop {
        let requests = receiver.received_requests().await.unwrap_or_default();
        if let Some(request) = requests.first() {
            break serde_json::from_slice(&request.body).unwrap();
        }
        assert!(Instant::now() < deadline, "no webhook within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        body["events"],
        json!([{"name": "channel_occupied", "channel": "hooked"}])
    );
    drop(child);
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_closed_at_the_header_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new();
    let leaf = ca.leaf("server");
    let mut config = tls_config(&leaf);
    config.http_header_timeout = Duration::from_millis(300);
    let server = Server::new(config).start().await.unwrap();
    let tls = server.tls_addr().unwrap();
    // Nothing at all, and a handshake that stops after its first byte.
    for opening in [&b""[..], &[0x16][..]] {
        let mut tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
        tcp.write_all(opening).await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
            .await
            .expect("the server closes the connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{opening:?}: {read:?}");
    }
    server.shutdown().await.unwrap();
}

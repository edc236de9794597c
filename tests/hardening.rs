//! Every resource a client can claim is bounded: each test plays the hostile client (raw TCP,
//! so nothing in a client library can soften it) and waits, with a generous deadline, for the
//! server to end what it started.

mod common;

use std::{
    io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{connect, next_json, subscribe, subscribe_presence, test_config, Api};
use poxide::{signature, Config, RunningServer, Server};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::{timeout, Instant},
};

const DEADLINE: Duration = Duration::from_secs(20);

async fn start(config: Config) -> RunningServer {
    Server::new(config).start().await.unwrap()
}

/// A TCP connection with a small receive buffer, so a client that does not read fills it soon.
async fn tcp(server: &RunningServer) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(server.local_addr()).await.unwrap()
}

/// Reads until the server closes the connection (EOF or reset); what it sent before.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let read = timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await
        .expect("the server closed the connection in time");
    all
}

/// A WebSocket handshake by hand; returns the stream positioned after the 101 response.
async fn upgrade(server: &RunningServer, path: &str) -> TcpStream {
    let mut stream = tcp(server).await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked client frame.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// The status code of the close frame among the server frames in `bytes`.
fn close_code_in(bytes: &[u8]) -> Option<u16> {
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0F;
        let (len, header) = match bytes[at + 1] & 0x7F {
            126 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 => return None,
            n => (n as usize, 2),
        };
        let payload = bytes.get(at + header..at + header + len)?;
        if opcode == 0x8 {
            return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
        at += header + len;
    }
    None
}

#[tokio::test]
async fn a_client_that_floods_pings_and_never_reads_is_dropped() {
    let mut config = test_config();
    config.write_timeout = Duration::from_millis(500);
    let server = start(config).await;
    let mut stream = upgrade(&server, "/app/app_key?protocol=7").await;
    let ping = client_frame(0x89, &[b'p'; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 100)
        .collect();
    let started = Instant::now();
    let outcome: io::Result<()> = async {
        loop {
            stream.write_all(&burst).await?;
            assert!(
                started.elapsed() < DEADLINE,
                "still accepting pings from a peer that reads nothing"
            );
        }
    }
    .await;
    assert!(outcome.is_err(), "the server ended the connection");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn framing_errors_close_with_the_rfc_codes() {
    let mut config = test_config();
    config.apps[0].payload_limit = 1000;
    let server = start(config).await;
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("reserved opcode", client_frame(0x83, b"x"), 1002),
        ("invalid UTF-8", client_frame(0x81, &[0xC3, 0x28]), 1007),
        // A header announcing more than twice the frame limit: refused before any payload.
        (
            "oversized",
            client_frame(0x81, &vec![b'x'; 5000])[..8].to_vec(),
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut stream = upgrade(&server, "/app/app_key?protocol=7").await;
        stream.write_all(&bytes).await.unwrap();
        let received = read_until_closed(&mut stream).await;
        assert_eq!(close_code_in(&received), Some(code), "{what}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unfinished_message_cannot_outgrow_the_cap() {
    let mut config = test_config();
    config.apps[0].payload_limit = 1000;
    let server = start(config).await;
    let mut stream = upgrade(&server, "/app/app_key?protocol=7").await;
    // Fragments of one text message, never finished: the cap counts them all.
    let fragment = client_frame(0x01, &[b'x'; 1500]);
    stream.write_all(&fragment).await.unwrap();
    let more = client_frame(0x00, &[b'x'; 1500]);
    let outcome: io::Result<()> = async {
        for _ in 0..100 {
            stream.write_all(&more).await?;
        }
        Ok(())
    }
    .await;
    let received = if outcome.is_ok() {
        read_until_closed(&mut stream).await
    } else {
        Vec::new()
    };
    if outcome.is_ok() {
        assert_eq!(close_code_in(&received), Some(1009));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_and_byte_by_byte_http_connections_are_closed() {
    let mut config = test_config();
    config.http_header_timeout = Duration::from_millis(300);
    let server = start(config).await;
    // Sends nothing at all.
    let mut idle = tcp(&server).await;
    // Sends a header a byte at a time, never finishing it.
    let mut slow = tcp(&server).await;
    let dribble = async {
        for byte in b"GET /apps/app_id/channels HTTP/1.1\r\nHost: x\r\nX-Slow: " {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        read_until_closed(&mut slow).await;
    };
    let (_, ()) = tokio::join!(read_until_closed(&mut idle), async {
        timeout(DEADLINE, dribble)
            .await
            .expect("the slow header was cut off");
    });
    server.shutdown().await.unwrap();
}

fn signed_query(method: &str, path: &str, body: &[u8]) -> String {
    signed_query_as("app_key", "secret", method, path, body)
}

/// The signed query of a request by the app with this key and secret.
fn signed_query_as(key: &str, secret: &str, method: &str, path: &str, body: &[u8]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let params = signature::sign_rest_request(key, secret, method, path, now, body, &[]);
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish()
}

#[tokio::test]
async fn a_stalled_rest_body_times_out_with_408() {
    let mut config = test_config();
    config.http_body_timeout = Duration::from_millis(300);
    let server = start(config).await;
    let body = json!({"name": "e", "channel": "c", "data": "x".repeat(900)}).to_string();
    let query = signed_query("POST", "/apps/app_id/events", body.as_bytes());
    let mut stream = tcp(&server).await;
    let head = format!(
        "POST /apps/app_id/events?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = timeout(DEADLINE, stream.read(&mut response))
        .await
        .expect("answered in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.ends_with("Request body not received within 300 ms"),
        "{response}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unsigned_request_is_refused_before_its_body_is_read() {
    let server = start(test_config()).await;
    let mut stream = tcp(&server).await;
    // A body of 1 MiB is announced and never sent: the answer cannot wait for it.
    let head = "POST /apps/app_id/events?auth_key=app_key&auth_timestamp=1&auth_version=1.0&\
                auth_signature=00 HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = timeout(DEADLINE, stream.read(&mut response))
        .await
        .expect("answered without the body")
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn cleartext_http2_is_not_served() {
    let server = start(test_config()).await;
    let mut stream = tcp(&server).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream).await;
    // No SETTINGS frame (HTTP/2 would answer with one): an HTTP/1.1 error or nothing.
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 "),
        "{received:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn liveness_is_checked_while_writes_to_a_client_are_blocked() {
    let mut config = test_config();
    config.activity_timeout = Duration::from_secs(1);
    config.pong_timeout = Duration::from_millis(500);
    config.write_timeout = Duration::from_secs(600);
    config.outbox_capacity = 100_000;
    config.outbox_bytes = 256 << 20;
    let server = start(config).await;
    let (mut watcher, watcher_id) = connect(&server.ws_url()).await;
    subscribe_presence(&mut watcher, &watcher_id, "presence-room", "watcher").await;

    // The stuck client joins, then reads nothing while the server writes to it.
    let mut stuck = upgrade(&server, "/app/app_key?protocol=7").await;
    let mut first = vec![0u8; 512];
    let n = stuck.read(&mut first).await.unwrap();
    let established: serde_json::Value = serde_json::from_slice(&first[2..n]).unwrap();
    let data: serde_json::Value =
        serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap();
    let channel_data = json!({"user_id": "stuck"}).to_string();
    let auth = signature::channel_auth(
        "app_key",
        "secret",
        socket_id,
        "presence-room",
        Some(&channel_data),
    );
    let subscribe_frame = json!({"event": "pusher:subscribe", "data": {
        "channel": "presence-room", "auth": auth, "channel_data": channel_data}});
    stuck
        .write_all(&client_frame(0x81, subscribe_frame.to_string().as_bytes()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut watcher).await["event"],
        "pusher_internal:member_added"
    );
    // The watcher keeps answering the server's pings and waits for the stuck one to leave.
    let watching = tokio::spawn(async move {
        loop {
            let frame = next_json(&mut watcher).await;
            match frame["event"].as_str() {
                Some("pusher:ping") => {
                    common::send(&mut watcher, json!({"event": "pusher:pong", "data": {}})).await
                }
                Some("pusher_internal:member_removed") => return frame,
                _ => {}
            }
        }
    });
    // Far more than the socket buffers hold, far less than the queue's bounds.
    let api = Api::new(&server.http_url());
    let item = json!({"name": "e", "channel": "presence-room", "data": "x".repeat(10_000)});
    let batch = json!({"batch": vec![item; 10]});
    for _ in 0..100 {
        let (status, _) = api
            .call("POST", "/apps/app_id/batch_events", Some(&batch))
            .await;
        assert_eq!(status, 200);
    }
    // After the stuck client misses its pong, the watcher sees its departure.
    let gone = timeout(DEADLINE, watching)
        .await
        .expect("the stuck member was removed")
        .unwrap();
    assert_eq!(gone["data"], json!({"user_id": "stuck"}).to_string());
    drop(stuck);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_connection_is_capped_in_channels() {
    let mut config = test_config();
    config.apps[0].max_channels_per_connection = 3;
    let server = start(config).await;
    let (mut ws, _) = connect(&server.ws_url()).await;
    for name in ["a", "b", "c"] {
        let reply = subscribe(&mut ws, json!({"channel": name})).await;
        assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    }
    let error = subscribe(&mut ws, json!({"channel": "d"})).await;
    assert_eq!(
        error,
        json!({"event": "pusher:error", "data": {
            "message": "Cannot subscribe to d: a connection may subscribe to at most 3 channels",
            "code": null}})
    );
    assert_eq!(next_json(&mut ws).await["data"]["type"], "LimitReached");
    server.shutdown().await.unwrap();
}

/// The `poxide` binary on a free port with a clean environment; its port and log lines.
async fn spawn_binary(
    shell_prefix: &str,
) -> (
    tokio::process::Child,
    u16,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) {
    use tokio::io::AsyncBufReadExt;
    let bin = env!("CARGO_BIN_EXE_poxide");
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{shell_prefix} exec {bin} --host 127.0.0.1 --port 0"
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "poxide=info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port = timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("poxide started");
            if let Some(at) = line.find("listening on 127.0.0.1:") {
                let digits: String = line[at + 23..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                return digits.parse::<u16>().unwrap();
            }
        }
    })
    .await
    .expect("poxide reported its port");
    (child, port, lines)
}

#[tokio::test]
async fn running_out_of_descriptors_backs_off_and_reports_once_per_interval() {
    let (mut child, port, mut log) = spawn_binary("ulimit -n 64 &&").await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // The first failure is reported at once, the next ones as a count per interval.
    let mut reports = Vec::new();
    timeout(DEADLINE, async {
        while reports.len() < 3 {
            let line = log.next_line().await.unwrap().expect("poxide is running");
            if line.contains("accept failed") {
                reports.push(line);
            }
        }
    })
    .await
    .expect("accept failures were reported");
    let failures = |line: &str| -> u64 {
        let at = line.find("failures=").expect("a count") + 9;
        line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    for line in &reports[1..] {
        // Backing off from 10 ms to 1 s, a second holds a handful of tries; a spin, thousands.
        assert!(failures(line) <= 20, "{line}");
    }
    drop(clients);
    // Descriptors free again: a new client is served.
    let url = format!("ws://127.0.0.1:{port}");
    let served = timeout(DEADLINE, async {
        loop {
            if let Ok(Ok((mut ws, _))) = timeout(
                Duration::from_secs(2),
                tokio_tungstenite::connect_async(format!("{url}/app/app_key?protocol=7")),
            )
            .await
            {
                return common::next_json(&mut ws).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("served again");
    assert_eq!(served["event"], "pusher:connection_established");
    child.kill().await.unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Opens `n` subscribed connections, then closes them all; the server's RSS at the peak.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

async fn burst(url: &str, pid: u32, n: usize) -> u64 {
    let idle = descriptors(pid);
    let mut clients = Vec::new();
    for i in 0..n {
        let (mut ws, _) = connect(url).await;
        subscribe(&mut ws, json!({"channel": format!("burst-{}", i % 100)})).await;
        clients.push(ws);
    }
    let peak = rss_kib(pid);
    drop(clients);
    // Every server-side connection is gone once the descriptors are back to idle.
    timeout(DEADLINE, async {
        while descriptors(pid) > idle {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the server closed its side");
    peak
}

#[tokio::test]
async fn memory_freed_by_a_closed_burst_is_reused_not_grown() {
    let (mut child, port, _log) = spawn_binary("").await;
    let pid = child.id().unwrap();
    let url = format!("ws://127.0.0.1:{port}");
    let baseline = rss_kib(pid);
    let first = burst(&url, pid, 3000).await;
    assert!(
        first > baseline + 3000,
        "the burst took memory: {baseline} -> {first} KiB"
    );
    let mut peaks = vec![first];
    for _ in 0..4 {
        peaks.push(burst(&url, pid, 3000).await);
    }
    // A leak of a quarter of what each burst takes would, after four more bursts, have added
    // the first burst's growth again; the allocator's own variation is far below that.
    let last = *peaks.last().unwrap();
    assert!(
        last <= first + (first - baseline),
        "RSS {baseline} KiB at start, peaks {peaks:?}: memory grows with each burst"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn memory_a_closed_burst_freed_goes_back_to_the_system() {
    let (mut child, port, _log) = spawn_binary("").await;
    let pid = child.id().unwrap();
    let url = format!("ws://127.0.0.1:{port}");
    let baseline = rss_kib(pid);
    let peak = burst(&url, pid, 3000).await;
    let grown = peak.saturating_sub(baseline);
    assert!(
        grown > 3000,
        "the burst took memory: {baseline} -> {peak} KiB"
    );
    // Idle workers collect their heaps every few seconds (`src/allocator.rs`): all but a
    // quarter of what the burst took is returned, well within the deadline.
    let target = baseline + grown / 4;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = rss_kib(pid);
        if now <= target {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "RSS {baseline} KiB before, {peak} KiB at the peak, still {now} KiB after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().await.unwrap();
}

/// A signed console path for one app.
fn console_path(key: &str, secret: &str) -> String {
    format!(
        "/console?{}",
        signed_query_as(key, secret, "GET", "/console", b"")
    )
}

#[tokio::test]
async fn a_console_that_stops_reading_is_dropped_and_its_seat_given_back() {
    let mut config = test_config();
    config.write_timeout = Duration::from_millis(500);
    config.apps.push(poxide::AppConfig {
        id: "quiet".into(),
        key: "quiet-key".into(),
        secret: "quiet-secret".into(),
        ..poxide::AppConfig::default()
    });
    let server = start(config).await;
    let mut stalled = upgrade(&server, &console_path("app_key", "secret")).await;
    // The other 15 seats go to consoles of an app with nothing to say: no backlog, no stall.
    let quiet_url = || {
        let path = console_path("quiet-key", "quiet-secret");
        format!("ws://{}{path}", server.local_addr())
    };
    let mut quiet = Vec::new();
    for _ in 0..15 {
        quiet.push(
            tokio_tungstenite::connect_async(quiet_url())
                .await
                .unwrap()
                .0,
        );
    }
    assert!(
        tokio_tungstenite::connect_async(quiet_url()).await.is_err(),
        "all 16 seats are taken"
    );
    // Far more than the console's queue, its high-water mark and the socket buffers hold.
    let api = Api::new(&server.http_url());
    let data = "x".repeat(9000);
    for _ in 0..600 {
        let event = json!({"name": "bulk", "channel": "c", "data": data});
        assert_eq!(
            api.call("POST", "/apps/app_id/events", Some(&event))
                .await
                .0,
            200
        );
    }
    let deadline = Instant::now() + DEADLINE;
    let seated = loop {
        match tokio_tungstenite::connect_async(quiet_url()).await {
            Ok((ws, _)) => break ws,
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the stalled console kept its seat"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    read_until_closed(&mut stalled).await;
    // The consoles that had nothing to write were left alone.
    let quiet_api = Api::with_credentials(&server.http_url(), "quiet-key", "quiet-secret");
    let event = json!({"name": "hello", "channel": "q", "data": "1"});
    assert_eq!(
        quiet_api
            .call("POST", "/apps/quiet/events", Some(&event))
            .await
            .0,
        200
    );
    quiet.push(seated);
    for console in &mut quiet {
        assert_eq!(next_json(console).await["type"], "API Message");
    }
}

#[tokio::test]
async fn a_console_message_over_1_kib_closes_it_with_1009() {
    let server = start(test_config()).await;
    let mut console = upgrade(&server, &console_path("app_key", "secret")).await;
    // What the page sends is ignored, up to the cap.
    console
        .write_all(&client_frame(0x81, &[b'x'; 1024]))
        .await
        .unwrap();
    let (_client, _) = connect(&server.ws_url()).await;
    let mut head = [0u8; 2];
    console.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x81, "the console still writes events");
    let len = match head[1] {
        126 => {
            let mut ext = [0u8; 2];
            console.read_exact(&mut ext).await.unwrap();
            u16::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut event = vec![0u8; len];
    console.read_exact(&mut event).await.unwrap();
    let event: serde_json::Value = serde_json::from_slice(&event).unwrap();
    assert_eq!(event["type"], "Connection");
    console
        .write_all(&client_frame(0x81, &[b'x'; 1025]))
        .await
        .unwrap();
    let rest = read_until_closed(&mut console).await;
    assert_eq!(close_code_in(&rest), Some(1009));
}

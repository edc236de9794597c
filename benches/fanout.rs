//! Fan-out benchmark: N WebSocket subscribers on one channel, events published through the
//! signed REST API, every delivery timed from publish to receipt. The server is the release
//! binary in its own process, so its CPU time is measured apart from the clients'. Clients and
//! server share this machine's cores, so the rates are a floor.
//!
//! `cargo bench --bench fanout` (env: SUBSCRIBERS, EVENTS, PAYLOAD_BYTES)

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn micros_since_epoch() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

#[tokio::main]
async fn main() {
    let subscribers = env_or("SUBSCRIBERS", 1000);
    let events = env_or("EVENTS", 200);
    let payload = env_or("PAYLOAD_BYTES", 100);

    let server = ServerProcess::start(events + 16);
    let url = format!("ws://{}/app/app_key?protocol=7", server.addr);

    let ready = Arc::new(Barrier::new(subscribers + 1));
    let mut clients = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let ready = ready.clone();
        clients.push(tokio::spawn(async move {
            ws.next().await; // connection_established
            ws.send(Message::text(
                r#"{"event":"pusher:subscribe","data":{"channel":"bench"}}"#,
            ))
            .await
            .unwrap();
            ws.next().await; // subscription_succeeded
            ready.wait().await;
            let mut latencies = Vec::with_capacity(events);
            while latencies.len() < events {
                let Some(Ok(Message::Text(text))) = ws.next().await else {
                    break;
                };
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                let data = frame["data"].as_str().unwrap();
                let sent: u128 = data[..data.find(':').unwrap()].parse().unwrap();
                latencies.push((micros_since_epoch() - sent) as u64);
            }
            latencies
        }));
    }
    ready.wait().await;

    let api = common::Api::new(&format!("http://{}", server.addr));
    let cpu_before = server.cpu_seconds();
    let filler = "x".repeat(payload);
    let start = Instant::now();
    for _ in 0..events {
        let data = format!("{}:{filler}", micros_since_epoch());
        let body = serde_json::json!({"name": "tick", "channel": "bench", "data": data});
        let (status, _) = api.call("POST", "/apps/app_id/events", Some(&body)).await;
        assert_eq!(status, 200);
    }
    let published = start.elapsed();

    let mut all = Vec::with_capacity(subscribers * events);
    for client in clients {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), client)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let elapsed = start.elapsed();
    let server_cpu = server.cpu_seconds() - cpu_before;
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!("fanout: {subscribers} subscribers x {events} events of {payload} bytes");
    println!(
        "  delivered       {} of {}",
        all.len(),
        subscribers * events
    );
    println!(
        "  publish rate    {:.0} REST triggers/s",
        events as f64 / published.as_secs_f64()
    );
    println!(
        "  delivery rate   {:.0} messages/s",
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency (ms)    p50 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  server CPU      {:.2} s in all, {:.1} µs per delivered message",
        server_cpu,
        server_cpu * 1e6 / all.len() as f64
    );
    assert_eq!(
        all.len(),
        subscribers * events,
        "every subscriber got every event"
    );
}

/// The release binary on a free loopback port, stopped on drop.
struct ServerProcess {
    child: std::process::Child,
    addr: String,
}

impl ServerProcess {
    fn start(outbox_capacity: usize) -> Self {
        use std::io::{BufRead, BufReader};
        let dir = std::env::temp_dir().join(format!("poxide-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("bench.toml");
        std::fs::write(
            &config,
            format!("host = \"127.0.0.1\"\nport = 0\noutbox_capacity = {outbox_capacity}\n"),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poxide"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "poxide=info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server log").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ServerProcess { child, addr }
    }

    /// User plus system CPU seconds of the server process so far (Linux, 100 ticks a second).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

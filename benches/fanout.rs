//! Benchmarks of the release binary in its own process, so its CPU time and memory are measured
//! apart from the clients'. Clients and server share this machine's cores, so rates are a floor;
//! `../shared/tools/compare.sh` pins each to its own core for A/B figures.
//!
//! `cargo bench --bench fanout` runs, by `SCENARIO`:
//! - `fanout` (default): SUBSCRIBERS on one channel, EVENTS published through the signed REST
//!   API (at RATE events/s when set, else flat out), PAYLOAD_BYTES each; every delivery timed
//!   from publish to receipt: deliveries/s, p50/p99, server CPU per delivery.
//! - `idle`: CONNECTIONS idle connections (raise `ulimit -n` first): server RSS per connection.
//! - `startup`: time from spawning the binary to its first accepted connection, 20 runs.

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
    match std::env::var("SCENARIO").as_deref().unwrap_or("fanout") {
        "fanout" => fanout().await,
        "idle" => idle().await,
        "startup" => startup().await,
        other => panic!("unknown SCENARIO {other}: fanout, idle or startup"),
    }
}

async fn idle() {
    let connections = env_or("CONNECTIONS", 10_000);
    let server = ServerProcess::start(1024);
    let url = format!("ws://{}/app/app_key?protocol=7", server.addr);
    let (warm, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws.next().await; // connection_established
        clients.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    println!("idle: {connections} connections");
    println!(
        "  server RSS      {before} KiB -> {after} KiB: {:.1} KiB per connection",
        (after - before) as f64 / connections as f64
    );
    println!("  kernel socket memory is not in RSS: see /proc/net/sockstat (`mem`, in pages)");
}

async fn startup() {
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let server = ServerProcess::start(1024);
        loop {
            if std::net::TcpStream::connect(&server.addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(started.elapsed());
    }
    times.sort();
    println!("startup: spawn to first accepted connection, 20 runs");
    println!(
        "  median {:.1} ms, max {:.1} ms (includes reading the listening line from the log)",
        times[10].as_secs_f64() * 1e3,
        times[19].as_secs_f64() * 1e3
    );
}

async fn fanout() {
    let subscribers = env_or("SUBSCRIBERS", 1000);
    let rate = env_or("RATE", 0);
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
    let pace = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    for i in 0..events {
        if let Some(pace) = pace {
            tokio::time::sleep_until((start + pace * i as u32).into()).await;
        }
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
    let pace = if rate > 0 {
        format!("at {rate} events/s")
    } else {
        "flat out".to_string()
    };
    println!("fanout: {subscribers} subscribers x {events} events of {payload} bytes, {pace}");
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

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
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

//! Real poxide processes on a cluster, so that a node can be killed or paused.

use std::{
    io::Write,
    net::TcpListener,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub use crate::common::redis::Redis;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One poxide process in the cluster.
pub struct Node {
    pub port: u16,
    child: Child,
    _config: tempfile::NamedTempFile,
}

/// Settings every node of a test shares.
#[derive(Clone)]
pub struct Cluster {
    pub redis_url: String,
    pub prefix: String,
    pub node_timeout_ms: u64,
    /// Extra TOML for the `[[apps]]` entry of the default app.
    pub app_toml: String,
    pub grace_ms: u64,
    /// Extra TOML for `[webhook_delivery]`.
    pub delivery_toml: String,
    /// Extra environment of every node.
    pub env: Vec<(String, String)>,
}

impl Cluster {
    pub fn new(redis: &Redis, prefix: &str) -> Cluster {
        Cluster {
            redis_url: redis.url(),
            prefix: prefix.to_string(),
            node_timeout_ms: 1500,
            app_toml: String::new(),
            grace_ms: 3000,
            delivery_toml: String::new(),
            env: Vec::new(),
        }
    }

    /// A node that has joined the cluster.
    pub async fn node(&self) -> Node {
        let node = self.node_unready().await;
        node.wait_ready().await;
        node
    }

    /// A node whose HTTP port answers, joined or not.
    pub async fn node_unready(&self) -> Node {
        let mut config = tempfile::NamedTempFile::new().unwrap();
        write!(
            config,
            "[cluster]\nredis_url = \"{}\"\nprefix = \"{}\"\nnode_timeout_ms = {}\n\n\
             [webhook_delivery]\ngrace_ms = {}\nbatch_ms = 20\n{}\n\n\
             [[apps]]\nid = \"app_id\"\nkey = \"app_key\"\nsecret = \"secret\"\n{}\n",
            self.redis_url,
            self.prefix,
            self.node_timeout_ms,
            self.grace_ms,
            self.delivery_toml,
            self.app_toml
        )
        .unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_poxide"))
            .arg("--config")
            .arg(config.path())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env_remove("POXIDE_REDIS_URL")
            .env_remove("PORT")
            .env("RUST_LOG", "poxide=info")
            .envs(self.env.iter().cloned())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Keep draining its log so it never blocks on a full pipe; echo it for failures.
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[node {port}] {line}");
            }
        });
        let node = Node {
            port,
            child,
            _config: config,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while node.ready_status().await.is_none() {
            assert!(Instant::now() < deadline, "node did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        node
    }
}

impl Node {
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn ready_status(&self) -> Option<u16> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        client
            .get(format!("{}/ready", self.http_url()))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Waits (generously) until the node accepts connections.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ready_status().await != Some(200) {
            assert!(Instant::now() < deadline, "node did not become ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait().await;
    }

    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// SIGTERM, and waits for the exit.
    pub async fn terminate(mut self) {
        self.signal("-TERM");
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

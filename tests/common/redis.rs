//! A throwaway redis-server for the tests that need one (each test its own).

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server without persistence, so a restart loses the state.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = free_port();
        let child = Self::spawn(port).await;
        Redis { port, child }
    }

    async fn spawn(port: u16) -> Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (ci/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops and starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.child = Self::spawn(self.port).await;
    }

    /// Runs redis-cli against it.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

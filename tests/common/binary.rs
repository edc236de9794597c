//! The binary as a child process: killed when dropped, its log lines read as they come.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

/// Killed when dropped, so a failed test leaves no server behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with the given environment, and its log lines.
pub fn spawn(envs: &[(&str, &str)]) -> (Running, Receiver<String>) {
    spawn_with(&[], envs)
}

/// The same with more arguments (`--config FILE`).
pub fn spawn_with(args: &[&str], envs: &[(&str, &str)]) -> (Running, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_poxide"))
        .args(["--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PORT")
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Running(child), rx)
}

/// Waits for a log line containing `needle`.
pub fn wait_line(lines: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with {needle:?}: {e}"),
        }
    }
}

/// The address of the first line saying where the server listens.
pub fn listening_addr(lines: &Receiver<String>) -> String {
    let line = wait_line(lines, "listening on ");
    let rest = line.split("listening on ").nth(1).expect("an address");
    rest.split_whitespace()
        .next()
        .expect("an address")
        .to_string()
}

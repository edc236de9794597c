//! The driver process: the command a library's author gives, started once per scenario, with
//! commands written to its stdin and reports read from its stdout, one JSON object per line.

use std::{
    collections::VecDeque,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Map, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};

/// The longest line read from a driver; a longer one ends its output.
const MAX_LINE: u64 = 1024 * 1024;
/// Reports queued before the driver is made to wait for the harness.
const QUEUED_REPORTS: usize = 1024;
/// Lines of the driver's stderr kept for the failure message.
const STDERR_LINES: usize = 20;
/// How long a driver may take to exit once told to.
const EXIT_GRACE: Duration = Duration::from_secs(2);

pub struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    reports: mpsc::Receiver<Value>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    next_id: u64,
    /// The driver's process group (its pid).
    group: Option<u32>,
}

/// Reads `input` line by line (each at most `MAX_LINE` bytes) until it ends.
async fn lines(input: impl AsyncRead + Unpin, mut each: impl FnMut(String) -> bool) {
    let mut reader = BufReader::new(input);
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with(b"\n") && line.len() as u64 == MAX_LINE => return,
            Ok(_) => {
                if !each(String::from_utf8_lossy(&line).trim().to_string()) {
                    return;
                }
            }
        }
    }
}

impl Driver {
    /// Starts `command` with `sh -c`.
    pub fn spawn(command: &str) -> Result<Driver, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so that what `sh` starts goes with it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the driver {command:?}: {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, reports) = mpsc::channel(QUEUED_REPORTS);
        tokio::spawn(lines(stdout, move |line| {
            if line.is_empty() {
                return true;
            }
            // A line that is not a JSON object is shown as what it is, and fails the step
            // waiting for a report.
            let report = match serde_json::from_str::<Value>(&line) {
                Ok(v @ Value::Object(_)) => v,
                _ => serde_json::json!({"report": "not_json", "line": line}),
            };
            tx.try_send(report).is_ok() || !tx.is_closed()
        }));
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        let keep = kept.clone();
        tokio::spawn(lines(stderr, move |line| {
            let mut kept = keep.lock().expect("stderr lines");
            if kept.len() == STDERR_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
            true
        }));
        Ok(Driver {
            group: child.id(),
            stdin: child.stdin.take(),
            child,
            reports,
            stderr: kept,
            next_id: 1,
        })
    }

    /// Writes one command: `{"cmd": cmd, "id": N, …fields}`.
    pub async fn command(&mut self, cmd: &str, fields: Map<String, Value>) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = Map::new();
        line.insert("cmd".into(), cmd.into());
        line.insert("id".into(), id.into());
        line.extend(fields);
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let stdin = self.stdin.as_mut().ok_or("the driver's stdin is closed")?;
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("writing to the driver: {e} (it exited?)"))?;
        stdin
            .flush()
            .await
            .map_err(|e| format!("writing to the driver: {e}"))?;
        Ok(id)
    }

    /// The next report, if one comes before `deadline`.
    pub async fn next_report(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        tokio::time::timeout_at(deadline, self.reports.recv())
            .await
            .ok()
            .flatten()
    }

    /// A report already received, without waiting.
    pub fn pending_report(&mut self) -> Option<Value> {
        self.reports.try_recv().ok()
    }

    /// The last lines the driver wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let kept = self.stderr.lock().expect("stderr lines");
        kept.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Tells the driver to exit, closes its stdin, and kills it if it is still running after a
    /// grace period.
    pub async fn finish(mut self) {
        let _ = self.command("exit", Map::new()).await;
        self.stdin = None;
        let _ = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await;
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Whatever of the group is left (a library's reconnect timer keeps Node alive).
        if let Some(pid) = self.group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

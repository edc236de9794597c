//! Log lines whose cause a client controls (failed signatures, refused connections, clients on
//! the wrong port) are throttled: at most one per interval, saying how many were left out, so
//! nobody can fill the disk through the log. Webhook drops are throttled the same way.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Throttle {
    interval_secs: u64,
    /// Seconds since the Unix epoch of the last line; 0 for never.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub const fn new(interval_secs: u64) -> Self {
        Throttle {
            interval_secs,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Calls `line` with the number of lines left out since the last one, unless the last one
    /// was less than the interval ago.
    pub fn log(&self, line: impl FnOnce(u64)) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1));
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + self.interval_secs;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            line(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

static SIGNATURES: Throttle = Throttle::new(1);
static REFUSALS: Throttle = Throttle::new(10);

/// A signature did not verify: `from` is the socket id or the remote address.
pub fn signature_failed(app: &str, from: &dyn std::fmt::Display, what: &dyn std::fmt::Display) {
    SIGNATURES.log(|left_out| {
        tracing::warn!(app, %from, left_out, "signature failed: {what}");
    });
}

/// A WebSocket connection was refused at its start.
pub fn connection_refused(why: &dyn std::fmt::Display) {
    REFUSALS.log(|left_out| tracing::warn!(left_out, "connection refused: {why}"));
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn one_line_an_interval_with_the_count_left_out() {
        let throttle = Throttle::new(3600);
        let mut lines = Vec::new();
        for _ in 0..5 {
            throttle.log(|left_out| lines.push(left_out));
        }
        assert_eq!(lines, vec![0]);
        // Due again: the next line carries the count.
        throttle.last.store(1, std::sync::atomic::Ordering::Relaxed);
        throttle.log(|left_out| lines.push(left_out));
        assert_eq!(lines, vec![0, 4]);
    }
}

//! The standard `process_*` metrics, read from `/proc` at each scrape (Linux; elsewhere they
//! are left out).

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

/// Linux reports CPU time in ticks of `USER_HZ`, 100 on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default)]
pub struct Process;

struct Readings {
    cpu_seconds: f64,
    start_time: f64,
    resident_bytes: i64,
    open_fds: i64,
    max_fds: Option<i64>,
}

fn read() -> Option<Readings> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // `fields[0]` is field 3 of proc(5): utime is 14, stime 15, starttime 22.
    let ticks = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu_seconds = (ticks(14)? + ticks(15)?) / TICKS_PER_SECOND;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let start_time = boot + ticks(22)? / TICKS_PER_SECOND;
    let resident_kib: i64 = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        });
    Some(Readings {
        cpu_seconds,
        start_time,
        resident_bytes: resident_kib * 1024,
        open_fds,
        max_fds,
    })
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let mut gauges = vec![
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                ConstGauge::new(r.start_time),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes",
                ConstGauge::new(r.resident_bytes as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                ConstGauge::new(r.open_fds as f64),
            ),
        ];
        if let Some(max) = r.max_fds {
            gauges.push((
                "process_max_fds",
                "Most file descriptors the process may open",
                ConstGauge::new(max as f64),
            ));
        }
        for (name, help, gauge) in gauges {
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

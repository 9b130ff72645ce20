//! `keel-bench <suite>` (also `keel bench <suite>`): benchmarks that start
//! what they measure (Keel members as real `keel server` processes of the
//! `keel` binary beside this one, etcd 3.4 as the baseline) on
//! loopback ports, drive them with one load generator, sample every
//! process's memory and CPU while they run, and stop everything they started.
//!
//! - [`store`]: puts and reads, Keel's store against etcd, beside the
//!   disk's own fsync ceiling ([`disk`]) and with leader changes counted
//!   from the members' metrics ([`leaders`]).
//! - [`api`]: ConfigMap verbs through the Kubernetes REST API.
//! - [`watch`]: watch delivery latency with many watchers, Keel (API and
//!   store) against etcd.
//! - [`scale`]: nodes and pods at scale: LIST latencies, memory and disk
//!   against etcd holding the same objects.
//! - [`failover`]: time to the first acknowledged write after `kill -9` of the
//!   leader, Keel against etcd.
//! - [`restart`]: time until a restarted member with a long log serves reads,
//!   Keel against etcd.
//! - [`replay`]: backup and restore of a member against etcd's snapshots, and
//!   how fast Keel's event archive replays (point-in-time restore).

pub mod api;
pub mod cluster;
pub mod disk;
pub mod failover;
pub mod http;
pub mod leaders;
pub mod replay;
pub mod restart;
pub mod scale;
pub mod store;
pub mod watch;

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::Value;

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// The value at quantile `q` of sorted latencies in microseconds, in
/// milliseconds (nearest rank).
pub fn percentile(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

/// Microseconds of a duration, saturating (latency samples).
pub fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// A process the benchmark started; killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port for a server the bench is about to start: free now, not
/// handed out before in this run, and below Linux's ephemeral range, where the
/// bench's own clients (thousands of connections) could take it first.
pub fn free_port() -> Result<u16> {
    static STATE: Mutex<(u64, Vec<u16>)> = Mutex::new((0, Vec::new()));
    let mut state = STATE.lock().unwrap();
    if state.0 == 0 {
        state.0 = u64::from(std::process::id()) | 1;
    }
    for _ in 0..10_000 {
        state.0 = state
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20_000 + ((state.0 >> 33) % 12_768) as u16;
        if !state.1.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            state.1.push(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port between 20000 and 32767")
}

/// (RSS bytes, CPU seconds) of a process from /proc.
pub fn proc_usage(pid: u32) -> (u64, f64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start after ')'.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

/// Summed (RSS bytes, CPU seconds) of processes.
pub fn usage(pids: &[u32]) -> (u64, f64) {
    pids.iter()
        .map(|p| proc_usage(*p))
        .fold((0, 0.0), |(r, c), (r2, c2)| (r + r2, c + c2))
}

/// Bytes of every file under a directory.
pub fn disk_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Peak memory and CPU of each system's processes, sampled ten times a
/// second on a thread of its own while a suite runs. Suites tell it which
/// processes belong to a system whenever they start or restart one.
pub struct Sampler {
    pids: Arc<Mutex<BTreeMap<String, Vec<u32>>>>,
    stats: Arc<Mutex<BTreeMap<String, Usage>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the sampler saw of one system.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    pub peak_rss_mib: f64,
    /// CPU seconds used while sampled (per process: last sample − first).
    pub cpu_secs: f64,
    #[serde(skip)]
    cpu_first: BTreeMap<u32, f64>,
    #[serde(skip)]
    cpu_last: BTreeMap<u32, f64>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Sampler {
        let pids: Arc<Mutex<BTreeMap<String, Vec<u32>>>> = Arc::default();
        let stats: Arc<Mutex<BTreeMap<String, Usage>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (pids, stats, stop) = (pids.clone(), stats.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let systems = pids.lock().unwrap().clone();
                    for (system, ps) in systems {
                        let mut rss = 0;
                        let mut cpus = Vec::new();
                        for p in ps {
                            let (r, c) = proc_usage(p);
                            rss += r;
                            if r > 0 {
                                cpus.push((p, c));
                            }
                        }
                        let mut all = stats.lock().unwrap();
                        let u = all.entry(system).or_default();
                        u.peak_rss_mib = u.peak_rss_mib.max(rss as f64 / (1 << 20) as f64);
                        for (p, c) in cpus {
                            u.cpu_first.entry(p).or_insert(c);
                            u.cpu_last.insert(p, c);
                        }
                        u.cpu_secs = u
                            .cpu_last
                            .iter()
                            .map(|(p, c)| c - u.cpu_first.get(p).copied().unwrap_or(*c))
                            .sum();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Sampler {
            pids,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// The processes of `system` from now on.
    pub fn track(&self, system: &str, pids: Vec<u32>) {
        self.pids.lock().unwrap().insert(system.to_string(), pids);
    }

    /// Forget what was seen so far (a new step begins).
    pub fn reset(&self) {
        self.stats.lock().unwrap().clear();
    }

    /// What was seen of `system` since the last reset.
    pub fn usage(&self, system: &str) -> Usage {
        self.stats
            .lock()
            .unwrap()
            .get(system)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Retry `f` until it succeeds or `timeout` passes.
pub async fn ready<F, Fut, T>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                bail!("{what} not ready after {timeout:?}: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Run `f(client, i)` in a loop on `clients` concurrent tasks for
/// `duration` (or until a task's `f` answers `Ok(false)`: nothing left to
/// do). Returns the sorted latencies (µs) of successful calls, the number of
/// errors and the elapsed time.
pub async fn drive<F, Fut>(clients: usize, duration: Duration, f: F) -> (Vec<u32>, u64, Duration)
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<bool>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let mut i = 0;
            while Instant::now() < deadline {
                let began = Instant::now();
                match f(c, i).await {
                    Ok(true) => lat.push(micros(began.elapsed())),
                    Ok(false) => break,
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    (all, errors, elapsed)
}

/// A progress line on stderr: `[bench <suite>] <msg>`.
pub fn progress(suite: &str, msg: &str) {
    eprintln!("[bench {suite}] {msg}");
}

/// One table of a suite's results: named columns, rows of values.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Table {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    /// Plain-text rendering with aligned columns.
    pub fn render(&self) -> String {
        let cell = |v: &Value| match v {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(0.0);
                if f.abs() >= 100.0 {
                    format!("{f:.0}")
                } else {
                    format!("{f:.2}")
                }
            }
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r.get(i).map_or(0, String::len))
                    .chain([c.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |items: &[String]| {
            items
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{s:>w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = format!("{}\n{}\n", self.title, line(&self.columns));
        for r in &cells {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// A number rounded for tables and JSON.
pub fn num(v: f64) -> Value {
    serde_json::json!((v * 1000.0).round() / 1000.0)
}

/// Print a suite's tables (or one JSON document with them).
pub fn print_tables(suite: &str, tables: &[Table], json: bool) -> Result<()> {
    if json {
        let doc = serde_json::json!({"suite": suite, "machine": machine(), "tables": tables});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("keel bench {suite} ({})", machine());
        for t in tables {
            println!();
            print!("{}", t.render());
        }
    }
    Ok(())
}

/// The machine the numbers came from.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb as f64 / (1 << 20) as f64)
        .unwrap_or(0.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores, {mem:.1} GiB memory, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let lat: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&lat, 0.5), 500.0);
        assert_eq!(percentile(&lat, 0.99), 990.0);
        assert_eq!(percentile(&lat, 0.999), 999.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7000], 0.999), 7.0);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn tables_render_aligned() {
        let mut t = Table::new("t", &["step", "ops/s"]);
        t.push(vec![Value::from("put"), num(1234.5678)]);
        t.push(vec![Value::from("get"), num(12.3456)]);
        let text = t.render();
        assert!(text.contains("\nstep  ops/s\n put   1235\n"), "{text}");
        assert!(text.ends_with(" get  12.35\n"), "{text}");
    }
}

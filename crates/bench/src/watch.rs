//! `field sync --watch` as a long-running process: what it costs while
//! idle (CPU and wake-ups, online and in the first minutes after the
//! server went away) and how soon a record logged offline is stored once
//! the server is back.
//!
//! Each figure comes from one window, not from `--runs` repetitions.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::DateTime;
use sync_core::Store;

use crate::harness::{Binaries, FieldDir, ServerProcess, Worker};
use crate::local::CELL;
use crate::stats::Runs;
use crate::table::{Row, Target};
use crate::{Sizes, progress};

const WORKER: &str = "w-watch";
/// Linux reports thread CPU times in these ticks (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds of the whole process (exited threads included) and the
/// context switches of its live threads.
fn usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok((ticks / TICKS_PER_SEC, switches))
}

/// CPU as a percentage of one core and wake-ups a minute over `window`.
fn idle_cost(pid: u32, window: Duration) -> Result<(f64, f64)> {
    let (cpu0, sw0) = usage(pid)?;
    let start = Instant::now();
    std::thread::sleep(window);
    let (cpu1, sw1) = usage(pid)?;
    let secs = start.elapsed().as_secs_f64();
    Ok(((cpu1 - cpu0) / secs * 100.0, (sw1 - sw0) as f64 * 60.0 / secs))
}

struct Watcher(Child);

impl Watcher {
    /// Its JSON log lines go to `log`.
    fn start(field: &FieldDir, log: &Path) -> Result<Watcher> {
        let child = Command::new(&field.bin)
            .arg("--data-dir")
            .arg(field.dir.path())
            .args(["sync", "--watch", "--json"])
            .env("FIELD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("cannot start the watcher")?;
        Ok(Watcher(child))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the watcher last wrote to `watch.json`.
fn state(dir: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(dir.join("watch.json")).ok()?).ok()
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<Instant> {
    let end = Instant::now() + limit;
    while !done() {
        ensure!(Instant::now() < end, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Instant::now())
}

fn unsynced(dir: &Path) -> Result<u64> {
    Ok(Store::open(dir)?.summary()?.unsynced_incidents as u64)
}

pub fn figures(bins: &Binaries, sizes: &Sizes) -> Result<Vec<Row>> {
    let window = sizes.watch_window;
    let mut server = ServerProcess::start(bins, &[Worker::grid_worker(WORKER, &[CELL.to_owned()])])?;
    let field = FieldDir::enrolled(bins, &server, WORKER, None)?;
    let dir = field.dir.path().to_owned();
    let log_dir = tempfile::Builder::new().prefix("bench-watch-log-").tempdir()?;
    let log = log_dir.path().join("watch.log");
    let watcher = Watcher::start(&field, &log)?;
    let pid = watcher.0.id();
    wait_until(Duration::from_secs(30), "the watcher's first sync", || {
        state(&dir).is_some_and(|s| s["last_success_at"].is_string())
    })?;
    progress(&format!("watch: idle and online for {} s", window.as_secs()));
    let online = idle_cost(pid, window)?;
    progress(&format!("watch: the server goes away; idle for {} s", window.as_secs()));
    server.kill();
    field.run(&["report", "--category", "clutter", "--desc", "离线时记录"])?;
    let rounds_before = rounds(&log);
    let offline = idle_cost(pid, window)?;
    let offline_rounds = (rounds(&log) - rounds_before) as f64 * 60.0 / window.as_secs_f64();
    let scheduled = state(&dir)
        .and_then(|s| DateTime::parse_from_rfc3339(s["next_try_at"].as_str()?).ok())
        .context("the watcher wrote no next try")?;
    progress("watch: the server comes back");
    let synced_before = synced_at(&log).len();
    server.restart(bins)?;
    let back_at = chrono::Local::now().fixed_offset();
    wait_until(Duration::from_secs(400), "the watcher's next sync", || {
        synced_at(&log).len() > synced_before
    })?;
    drop(watcher);
    ensure!(
        unsynced(&dir)? == 0,
        "the watcher synced but the offline record still waits"
    );
    let stored = *synced_at(&log).last().context("a synced line")?;
    let took = (stored - back_at).num_milliseconds() as f64;
    let probe_in = (scheduled - back_at).num_milliseconds().max(0) as f64;
    show_last_lines(&log);
    Ok(rows(
        window,
        online,
        (offline.0, offline.1, offline_rounds),
        took,
        probe_in,
    ))
}

/// When each sync the watcher logged ended (its commit came just before).
fn synced_at(log: &Path) -> Vec<DateTime<chrono::FixedOffset>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "synced")
        .filter_map(|v| DateTime::parse_from_rfc3339(v["at"].as_str()?).ok())
        .collect()
}

/// Rounds the watcher logged so far.
fn rounds(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"next_in_s\":") && !l.contains("\"next_in_s\":null"))
        .count()
}

/// The watcher's last lines, for whoever reads the bench's output.
fn show_last_lines(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev() {
        progress(&format!(
            "watch: the watcher logged {}",
            line.chars().take(160).collect::<String>()
        ));
    }
}

fn rows(window: Duration, online: (f64, f64), offline: (f64, f64, f64), took: f64, probe_in: f64) -> Vec<Row> {
    let secs = window.as_secs();
    let on = format!("{secs} s idle, server answering, pull every 600 s");
    let off = format!("the first {secs} s after the server went away (probes back off from 5 s)");
    let one = |v: f64| Runs::new(vec![v]);
    vec![
        Row::new(
            crate::WATCH_CPU_ONLINE,
            on.clone(),
            "% of a core",
            one(online.0),
            Target::AtMost(1.0),
        ),
        Row::new(
            crate::WATCH_WAKE_ONLINE,
            on,
            "per minute",
            one(online.1),
            Target::AtMost(6.0),
        )
        .target_text("a few (≤ 6)"),
        Row::new(
            crate::WATCH_CPU_OFFLINE,
            off.clone(),
            "% of a core",
            one(offline.0),
            Target::AtMost(1.0),
        ),
        Row::new(
            crate::WATCH_WAKE_OFFLINE,
            off.clone(),
            "per minute",
            one(offline.1),
            Target::None,
        ),
        Row::new(
            crate::WATCH_PROBES_OFFLINE,
            off,
            "per minute",
            one(offline.2),
            Target::None,
        ),
        Row::new(
            crate::WATCH_BACK,
            format!(
                "server back after {secs} s away; the watcher's next probe was due {:.1} s later",
                probe_in / 1e3
            ),
            "ms",
            one(took),
            Target::None,
        ),
        Row::new(
            crate::WATCH_BACK_BEYOND,
            "the same, less the wait to the probe the watcher had scheduled",
            "ms",
            one(took - probe_in),
            Target::AtMost(1000.0),
        )
        .target_text("one round trip (≤ 1,000)"),
    ]
}

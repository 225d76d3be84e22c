//! `field sync --watch`: a long-running loop that syncs when the server can
//! be reached. While it cannot, it probes `/healthz` with exponential
//! backoff and jitter; when it can, it sends the manifest first (a few
//! hundred bytes, so the center's reconciliation is right at once), then
//! syncs, with photo tiers chosen by the link's measured speed. Then it
//! sleeps until `field report` or `field update` wakes it (`crate::wake`),
//! the pull interval passes, or SIGTERM/SIGINT stops it.

pub mod plan;
pub mod state;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use sync_core::sync::PhotoLevel;

use crate::app::{load_token, now};
use crate::client::{CallError, Client};
use crate::lock;
use crate::sync::{PhotoPlan, Summary};
use crate::wake::{Listener, Wake};
use plan::{Backoff, Link};
use state::WatchState;

pub struct Options {
    /// How far up the photo tiers it may go on a fast link.
    pub cap: PhotoLevel,
    pub pull_every: Duration,
    /// The first and the longest wait between probes of a silent server.
    pub retry: (Duration, Duration),
    pub json: bool,
}

/// After a wake, news arriving within this long joins the same sync.
const SETTLE: Duration = Duration::from_secs(1);
/// A burst of wakes delays a sync by at most this.
const SETTLE_AT_MOST: Duration = Duration::from_secs(10);
/// When another sync holds the device, look again after this long.
const STEP_ASIDE: Duration = Duration::from_secs(10);
/// Attempts per request inside a round; the backoff does the rest.
const RETRIES: u32 = 1;

/// How one round ended.
enum Outcome {
    Synced(Box<Summary>),
    Unreachable(String),
    /// Another `field sync` of this device was running.
    Busy,
    /// The server refused, or something on the device failed; logged, and
    /// tried again after the pull interval.
    Failed(String),
}

pub fn run(data_dir: &Path, opts: &Options) -> Result<()> {
    let _watching = lock::try_take(data_dir, lock::WATCH_LOCK)?.ok_or_else(|| already_running(data_dir))?;
    load_token(data_dir)?;
    let listener = Listener::bind(data_dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(data_dir, stop.clone())?;
    let mut link = Link::known(WatchState::load(data_dir).and_then(|s| s.link_bytes_per_sec));
    let mut state = WatchState {
        pid: std::process::id(),
        started_at: now().to_rfc3339(),
        link_bytes_per_sec: link.bytes_per_sec(),
        ..WatchState::default()
    };
    state.save(data_dir)?;
    log(opts.json, "started", None, &format!("watching {}", data_dir.display()));
    let mut backoff = Backoff::new(opts.retry.0, opts.retry.1);
    let mut offline = true;
    while !stop.load(Ordering::Relaxed) {
        let outcome = round(data_dir, opts, link, offline, &stop);
        let wait = match &outcome {
            Outcome::Synced(summary) => {
                link = Link::known(summary.link_bytes_per_sec.or(link.bytes_per_sec()));
                backoff.reset();
                opts.pull_every
            }
            Outcome::Unreachable(_) => backoff.next(unit_random()),
            Outcome::Busy => STEP_ASIDE,
            Outcome::Failed(_) => opts.pull_every,
        };
        offline = matches!(outcome, Outcome::Unreachable(_));
        record(&mut state, &outcome, link, wait);
        state.save(data_dir)?;
        report(opts.json, &outcome, wait);
        if wait_for_news(&listener, wait)? {
            break;
        }
    }
    state.stopped_at = Some(now().to_rfc3339());
    state.save(data_dir)?;
    log(opts.json, "stopped", None, "stopped");
    Ok(())
}

fn already_running(data_dir: &Path) -> anyhow::Error {
    match WatchState::load(data_dir) {
        Some(s) => anyhow!(
            "a watcher already runs for this data dir (pid {}, since {})",
            s.pid,
            s.started_at
        ),
        None => anyhow!("a watcher already runs for this data dir"),
    }
}

/// SIGTERM and SIGINT set `stop` and wake the loop, which ends after the
/// request in flight.
fn stop_on_signals(data_dir: &Path, stop: Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).context("cannot listen for signals")?;
    let dir = data_dir.to_owned();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            stop.store(true, Ordering::Relaxed);
            crate::wake::send(&dir, Wake::Stop);
        }
    });
    Ok(())
}

/// A number in [0, 1) for the backoff's jitter.
fn unit_random() -> f64 {
    getrandom::u64().map_or(0.5, |x| (x >> 11) as f64 / (1u64 << 53) as f64)
}

fn round(data_dir: &Path, opts: &Options, link: Link, offline: bool, stop: &AtomicBool) -> Outcome {
    match try_round(data_dir, opts, link, offline, stop) {
        Ok(outcome) => outcome,
        Err(e) => match e.chain().find_map(|c| c.downcast_ref::<CallError>()) {
            Some(CallError::Unreachable(m)) => Outcome::Unreachable(m.clone()),
            _ => Outcome::Failed(format!("{e:#}")),
        },
    }
}

fn try_round(data_dir: &Path, opts: &Options, link: Link, offline: bool, stop: &AtomicBool) -> Result<Outcome> {
    let mut client = Client::for_device(data_dir, 0)?;
    client.call(reqwest::Method::GET, "/healthz", Vec::new())?;
    let Some(_one_at_a_time) = lock::try_take(data_dir, lock::SYNC_LOCK)? else {
        return Ok(Outcome::Busy);
    };
    if offline {
        crate::sync::manifest_first(data_dir, &mut client)?;
    }
    let plan = PhotoPlan::ByLink { cap: opts.cap, link };
    let summary = crate::sync::sync(data_dir, plan, RETRIES, stop)?;
    Ok(Outcome::Synced(Box::new(summary)))
}

fn record(state: &mut WatchState, outcome: &Outcome, link: Link, wait: Duration) {
    let at = now();
    state.last_try_at = Some(at.to_rfc3339());
    state.next_try_at = chrono::TimeDelta::from_std(wait).ok().map(|d| (at + d).to_rfc3339());
    state.link_bytes_per_sec = link.bytes_per_sec();
    state.online = !matches!(outcome, Outcome::Unreachable(_));
    state.last_error = match outcome {
        Outcome::Synced(_) => {
            state.last_success_at = Some(at.to_rfc3339());
            None
        }
        Outcome::Unreachable(m) => Some(format!("the server could not be reached: {m}")),
        Outcome::Busy => None,
        Outcome::Failed(m) => Some(m.clone()),
    };
}

/// Sleeps until news, a stop or `wait`; true when it should stop.
fn wait_for_news(listener: &Listener, wait: Duration) -> Result<bool> {
    match listener.wait(wait)? {
        Some(Wake::Stop) => return Ok(true),
        Some(Wake::Changed) => {}
        None => return Ok(false),
    }
    let deadline = std::time::Instant::now() + SETTLE_AT_MOST;
    while std::time::Instant::now() < deadline {
        match listener.wait(SETTLE)? {
            Some(Wake::Stop) => return Ok(true),
            Some(Wake::Changed) => continue,
            None => break,
        }
    }
    Ok(false)
}

/// One log line per round.
#[derive(Serialize)]
struct Line<'a> {
    at: String,
    event: &'a str,
    message: &'a str,
    next_in_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a Summary>,
}

fn report(json: bool, outcome: &Outcome, wait: Duration) {
    let (event, message, summary) = match outcome {
        Outcome::Synced(s) => ("synced", s.line(), Some(&**s)),
        Outcome::Unreachable(m) => ("unreachable", format!("the server could not be reached: {m}"), None),
        Outcome::Busy => (
            "stepped-aside",
            "another sync of this device is running; this round steps aside".to_owned(),
            None,
        ),
        Outcome::Failed(m) => ("failed", m.clone(), None),
    };
    let line = Line {
        at: now().to_rfc3339(),
        event,
        message: &message,
        next_in_s: Some(wait.as_secs()),
        summary,
    };
    print_line(json, &line);
}

fn log(json: bool, event: &str, next: Option<Duration>, message: &str) {
    let line = Line {
        at: now().to_rfc3339(),
        event,
        message,
        next_in_s: next.map(|d| d.as_secs()),
        summary: None,
    };
    print_line(json, &line);
}

fn print_line(json: bool, line: &Line<'_>) {
    if json {
        if let Ok(text) = serde_json::to_string(line) {
            eprintln!("{text}");
        }
        return;
    }
    match line.next_in_s {
        Some(s) => eprintln!("{} {}; next round within {s} s", line.at, line.message),
        None => eprintln!("{} {}", line.at, line.message),
    }
}

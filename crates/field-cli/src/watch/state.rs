//! What a watcher tells `field status`: `watch.json` in the data dir,
//! rewritten whole after every round, and the watcher lock, which says
//! whether it still runs.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sync_core::files::{Access, write_whole};

use crate::lock;

const FILE: &str = "watch.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchState {
    pub pid: u32,
    pub started_at: String,
    /// The last round, whatever came of it.
    pub last_try_at: Option<String>,
    /// The last sync that went through.
    pub last_success_at: Option<String>,
    /// Why the last round did not sync, if it did not.
    pub last_error: Option<String>,
    /// Whether the server answered the last probe.
    pub online: bool,
    pub next_try_at: Option<String>,
    /// The link's upload speed as photo uploads last measured it.
    pub link_bytes_per_sec: Option<f64>,
    pub stopped_at: Option<String>,
}

impl WatchState {
    /// What the last watcher of `data_dir` wrote, if anything readable.
    pub fn load(data_dir: &Path) -> Option<WatchState> {
        let text = std::fs::read(data_dir.join(FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(FILE);
        let text = serde_json::to_vec_pretty(self).context("cannot encode the watcher's state")?;
        write_whole(&path, &text, Access::OwnerOnly).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The watcher as `field status` shows it.
#[derive(Debug, Serialize)]
pub struct Watcher {
    pub running: bool,
    #[serde(flatten)]
    pub state: Option<WatchState>,
}

impl Watcher {
    pub fn of(data_dir: &Path) -> Result<Watcher> {
        Ok(Watcher {
            running: lock::is_held(data_dir, lock::WATCH_LOCK)?,
            state: WatchState::load(data_dir),
        })
    }

    /// One line for `field status`.
    pub fn line(&self) -> String {
        let last = |s: &WatchState| match &s.last_success_at {
            Some(t) => format!("last synced {t}"),
            None => "has not synced yet".to_owned(),
        };
        match (&self.state, self.running) {
            (None, false) => "not running".to_owned(),
            (None, true) => "running, starting up".to_owned(),
            (Some(s), true) => {
                let mut line = format!("running since {} (pid {}), {}", s.started_at, s.pid, last(s));
                if let (false, Some(e)) = (s.online, &s.last_error) {
                    line.push_str(&format!("; offline: {e}"));
                }
                line
            }
            (Some(s), false) => match &s.stopped_at {
                Some(t) => format!("not running; the last watcher stopped at {t} and {}", last(s)),
                None => format!(
                    "not running; the last watcher (pid {}) was killed and {}",
                    s.pid,
                    last(s)
                ),
            },
        }
    }
}

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use sync_core::Profile;
use sync_core::store::StatusSummary;

use crate::app::{Session, count, emit, print_json};
use crate::watch::state::Watcher;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    data_dir: String,
    profile: &'a Profile,
    #[serde(flatten)]
    summary: &'a StatusSummary,
    server: Option<&'a str>,
    last_sync: Option<&'a str>,
    /// Incidents the server refused, kept here and offered again after the next local edit.
    refused: Vec<Refused>,
    /// Whether `field sync --watch` runs, and what it last did.
    watcher: Watcher,
}

#[derive(Serialize)]
struct Refused {
    id: String,
    code: String,
    reason: String,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    let session = Session::open(data_dir)?;
    let summary = session.store.summary()?;
    let sync = session.store.sync_state()?;
    let refused: Vec<Refused> = session
        .store
        .held()?
        .into_iter()
        .map(|(id, code, reason)| Refused { id, code, reason })
        .collect();
    let watcher = Watcher::of(data_dir)?;
    if args.json {
        return print_json(&Report {
            data_dir: data_dir.display().to_string(),
            profile: &session.profile,
            summary: &summary,
            server: sync.server.as_deref(),
            last_sync: sync.last_sync.as_deref(),
            refused,
            watcher,
        });
    }
    let p = &session.profile;
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "worker     {}{}",
        p.worker,
        p.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
    );
    let _ = writeln!(out, "device     {}", p.device);
    let _ = writeln!(out, "grid cells {}", p.grids.join(", "));
    let _ = writeln!(out, "data dir   {}", data_dir.display());
    let _ = writeln!(out, "incidents  {}", summary.total);
    for (status, n) in &summary.by_status {
        let _ = writeln!(out, "  {:<12} {n:>6}  {}", status.as_str(), status.name_zh());
    }
    let _ = writeln!(
        out,
        "unsynced   {}, {}",
        count(summary.unsynced_incidents as u64, "incident", "incidents"),
        count(summary.unsynced_blobs as u64, "photo file", "photo files")
    );
    let _ = writeln!(out, "server     {}", sync.server.as_deref().unwrap_or("not enrolled"));
    let _ = writeln!(out, "last sync  {}", sync.last_sync.as_deref().unwrap_or("never"));
    let _ = writeln!(out, "watcher    {}", watcher.line());
    for r in &refused {
        let _ = writeln!(out, "refused    {} ({}): {}", r.id, r.code, r.reason);
    }
    emit(out.as_bytes())
}

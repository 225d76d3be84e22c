use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use sync_core::Profile;
use sync_core::store::StatusSummary;

use crate::app::{Session, emit, print_json};

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
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    let session = Session::open(data_dir)?;
    let summary = session.store.summary()?;
    if args.json {
        return print_json(&Report {
            data_dir: data_dir.display().to_string(),
            profile: &session.profile,
            summary: &summary,
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
        "unsynced   {} incidents, {} photo files",
        summary.unsynced_incidents, summary.unsynced_blobs
    );
    let _ = writeln!(out, "last sync  {}", summary.last_sync.as_deref().unwrap_or("never"));
    emit(out.as_bytes())
}

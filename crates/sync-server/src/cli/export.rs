//! `sync-server export`: every community, on the data dir.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use sync_core::Taxonomy;
use sync_core::export::{self, Format};
use sync_core::files::{Access, write_whole};
use sync_server::export::{ExportError, FilterInput, select};
use sync_server::storage::{AuditKind, Scope};

use super::{Place, audit_local, classify};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_parser = ["csv", "geojson", "json"])]
    format: String,
    /// Write to this file instead of standard output (replaced whole, never half-written).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    filter: Filters,
}

/// The filters, as flags.
#[derive(Debug, clap::Args)]
struct Filters {
    /// First day to include, YYYY-MM-DD, in each community's time zone.
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: Option<String>,
    /// Last day to include (inclusive).
    #[arg(long, value_name = "YYYY-MM-DD")]
    to: Option<String>,
    /// Only this community (an id from the grid file, e.g. HLT-CX-HX).
    #[arg(long)]
    community: Option<String>,
    /// Only this grid cell.
    #[arg(long, value_name = "CELL")]
    grid: Option<String>,
    /// Only this status (reported, dispatched, in_progress, resolved, verified, closed, rejected, duplicate).
    #[arg(long)]
    status: Option<String>,
    /// Only this category code.
    #[arg(long)]
    category: Option<String>,
}

impl From<&Filters> for FilterInput {
    fn from(f: &Filters) -> FilterInput {
        FilterInput {
            from: f.from.clone(),
            to: f.to.clone(),
            community: f.community.clone(),
            grid: f.grid.clone(),
            status: f.status.clone(),
            category: f.category.clone(),
        }
    }
}

pub fn run(place: &Place<'_>, args: &Args) -> anyhow::Result<()> {
    let format = Format::parse(&args.format).expect("clap checked the format");
    let grids = place.grids()?;
    let taxonomy = Taxonomy::builtin();
    let filter = FilterInput::from(&args.filter)
        .parse(&grids, taxonomy)
        .map_err(|e| classify(ExportError::from(e)))?;
    let storage = place.storage()?;
    let selected = select(&*storage, &grids, &Scope::All, &filter).map_err(classify)?;
    for id in &selected.unreadable {
        eprintln!("warning: incident {id} cannot be read and is left out of the export");
    }
    let (incidents, extras) = (selected.incidents, selected.extras);
    let detail = format!(
        "sync-server export --format {}: {} incidents",
        args.format,
        incidents.len()
    );
    audit_local(&*storage, AuditKind::Export, None, None, &detail)?;
    let bytes = export::render(format, &incidents, taxonomy, &extras)?;
    match &args.out {
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("cannot write to standard output");
                }
                _ => {}
            }
        }
        Some(path) => {
            write_whole(path, &bytes, Access::Default).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} incidents to {}", incidents.len(), path.display());
        }
    }
    Ok(())
}

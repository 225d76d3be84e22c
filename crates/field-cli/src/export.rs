use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sync_core::export;
use sync_core::files::{Access, write_whole};

use crate::app::{Session, count, emit};
use crate::list::Filter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Csv,
    Geojson,
    Json,
}

impl From<Format> for export::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Csv => export::Format::Csv,
            Format::Geojson => export::Format::Geojson,
            Format::Json => export::Format::Json,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Write to this file instead of standard output (replaced whole, never half-written).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    filter: Filter,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    let mut filter = args.filter.parse()?;
    let session = Session::open(data_dir)?;
    Filter::check(&mut filter, &session)?;
    let incidents = session.store.incidents(&filter, &session.profile.actor())?;
    // A device knows its own worker's name; the server's export has them all.
    let mut extras = export::Extras::default();
    if let Some(name) = &session.profile.name {
        extras.names.insert(session.profile.worker.clone(), name.clone());
    }
    let bytes = export::render(args.format.into(), &incidents, &session.taxonomy, &extras)?;
    match &args.out {
        None => emit(&bytes),
        Some(path) => {
            write_whole(path, &bytes, Access::Default).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} to {}",
                count(incidents.len() as u64, "incident", "incidents"),
                path.display()
            );
            Ok(())
        }
    }
}

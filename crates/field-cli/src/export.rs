use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sync_core::export;

use crate::app::{Session, emit};
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
    let filter = args.filter.parse()?;
    let session = Session::open(data_dir)?;
    Filter::check(&filter, &session)?;
    let incidents = session.store.incidents(&filter, &session.profile.actor())?;
    let bytes = export::render(args.format.into(), &incidents, &session.taxonomy)?;
    match &args.out {
        None => emit(&bytes)?,
        Some(path) => write_atomically(path, &bytes)?,
    }
    if let Some(path) = &args.out {
        eprintln!("wrote {} incidents to {}", incidents.len(), path.display());
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sync_core::account::check_worker_id;
use sync_core::taxonomy::{DEFAULT_CATEGORIES_JSON, DEFAULT_GRIDS_JSON};
use sync_core::{Store, StoreError};

use crate::app::{UsageError, emit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The grid worker's id, as the center knows it (letters, digits, `.`, `_`, `-`).
    #[arg(long, value_name = "ID")]
    worker: String,
    /// A grid cell this worker patrols; repeat for several.
    #[arg(long = "grid", value_name = "CELL", required = true)]
    grids: Vec<String>,
    /// The worker's name, for the center's reports.
    #[arg(long)]
    name: Option<String>,
    /// Use this categories file instead of the built-in list.
    #[arg(long, value_name = "FILE")]
    categories: Option<PathBuf>,
    /// Use this grid hierarchy file instead of the built-in one.
    #[arg(long = "grid-map", value_name = "FILE")]
    grid_map: Option<PathBuf>,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    check_worker_id(&args.worker).map_err(|e| UsageError(e.to_string()))?;
    let read = |path: &Option<PathBuf>, default: &str| -> Result<String> {
        match path {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())),
            None => Ok(default.to_owned()),
        }
    };
    let categories = read(&args.categories, DEFAULT_CATEGORIES_JSON)?;
    let grid_map = read(&args.grid_map, DEFAULT_GRIDS_JSON)?;
    let mut seen = std::collections::HashSet::new();
    let mut grids = args.grids.clone();
    grids.retain(|g| seen.insert(g.clone()));

    // Check the cells before touching the data dir.
    let map = sync_core::GridMap::from_json(&grid_map)?;
    for g in &grids {
        map.require_cell(g).map_err(|e| UsageError(e.to_string()))?;
    }
    let mut store = Store::open(data_dir).with_context(|| format!("cannot open {}", data_dir.display()))?;
    let profile = match store.init(
        &args.worker,
        args.name.as_deref(),
        &grids,
        uuid::Uuid::now_v7(),
        &categories,
        &grid_map,
    ) {
        Ok(p) => p,
        Err(e @ StoreError::Taxonomy(sync_core::taxonomy::TaxonomyError::UnknownCell { .. })) => {
            return Err(UsageError(e.to_string()).into());
        }
        Err(e) => return Err(e.into()),
    };
    // The key that signs every change this device makes (kept on re-init).
    store.ensure_key(crate::app::random_seed()?)?;
    emit(
        format!(
            "device {} is set up for worker {}{} in {}\n",
            profile.device,
            profile.worker,
            profile.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
            profile.grids.join(", ")
        )
        .as_bytes(),
    )
}

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sync_core::account::{check_label, check_worker_id};
use sync_core::taxonomy::{DEFAULT_CATEGORIES_JSON, DEFAULT_GRIDS_JSON};
use sync_core::{Profile, Store, StoreError};

use crate::app::{UsageError, emit, usage};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The grid worker's id, as the center knows it (letters, digits, `.`, `_`, `-`).
    #[arg(long, value_name = "ID")]
    worker: String,
    /// A grid cell this worker patrols; repeat for several (needed the first time).
    #[arg(long = "grid", value_name = "CELL")]
    grids: Vec<String>,
    /// The worker's name, for the center's reports.
    #[arg(long)]
    name: Option<String>,
    /// What to call this device in the operator's device list ("李华's phone").
    #[arg(long)]
    label: Option<String>,
    /// Use this categories file instead of the built-in list.
    #[arg(long, value_name = "FILE")]
    categories: Option<PathBuf>,
    /// Use this grid hierarchy file instead of the built-in one.
    #[arg(long = "grid-map", value_name = "FILE")]
    grid_map: Option<PathBuf>,
    /// On a device set up already, make the changes this command would make.
    #[arg(long)]
    change: bool,
}

/// The set-up this command asks for, with what it leaves out taken from
/// the existing set-up.
struct Wanted {
    name: Option<String>,
    label: Option<String>,
    grids: Vec<String>,
    categories: String,
    grid_map: String,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    check_worker_id(&args.worker).map_err(|e| UsageError(e.to_string()))?;
    if let Some(label) = &args.label {
        check_label(label)
            .map_err(|_| UsageError("--label is 1 to 64 characters of text, without control characters".into()))?;
    }
    let existing = existing_setup(data_dir)?;
    let wanted = wanted(&args, existing.as_ref())?;
    // Check the cells before touching the data dir.
    let map = sync_core::GridMap::from_json(&wanted.grid_map)?;
    for g in &wanted.grids {
        map.require_cell(g).map_err(|e| UsageError(e.to_string()))?;
    }
    if let Some(existing) = &existing
        && !may_change(existing, &wanted, &args)?
    {
        return emit(format!("{}; nothing changed\n", set_up(&existing.0)).as_bytes());
    }
    let mut store = Store::open(data_dir).with_context(|| format!("cannot open {}", data_dir.display()))?;
    let profile = store
        .init(
            &args.worker,
            wanted.name.as_deref(),
            &wanted.grids,
            uuid::Uuid::now_v7(),
            &wanted.categories,
            &wanted.grid_map,
        )
        .map_err(|e| match e {
            e @ StoreError::Taxonomy(sync_core::taxonomy::TaxonomyError::UnknownCell { .. }) => {
                UsageError(e.to_string()).into()
            }
            e => anyhow::Error::from(e),
        })?;
    let label = wanted.label.clone();
    store.change_profile(|p| p.label = label)?;
    // The key that signs every change this device makes (kept on re-init).
    store.ensure_key(crate::app::random_seed()?)?;
    emit(
        format!(
            "{}\n",
            set_up(&Profile {
                label: wanted.label,
                ..profile
            })
        )
        .as_bytes(),
    )
}

/// On a device set up already: false when nothing would change, an error
/// when something would and `--change` was not given (or the server keeps
/// the cells), true to go on.
fn may_change(existing: &(Profile, String, String), wanted: &Wanted, args: &Args) -> Result<bool> {
    let (profile, categories, grid_map) = existing;
    if profile.worker != args.worker {
        return Err(StoreError::OtherWorker {
            existing: profile.worker.clone(),
            requested: args.worker.clone(),
        }
        .into());
    }
    let changes = differences(profile, categories, grid_map, wanted);
    if changes.is_empty() {
        return Ok(false);
    }
    if profile.role.is_some() && profile.grids != wanted.grids {
        return usage(format!(
            "this device is enrolled, and the server keeps {}'s cells ({}); the operator changes them with `sync-server worker update`",
            profile.worker,
            profile.grids.join(", ")
        ));
    }
    if !args.change {
        return usage(format!(
            "this device is set up already; this would {}. Run it again with --change to do so",
            changes.join(", ")
        ));
    }
    Ok(true)
}

/// The profile and set-up files of a device set up already.
fn existing_setup(data_dir: &Path) -> Result<Option<(Profile, String, String)>> {
    if !data_dir.join(sync_core::store::DB_FILE).exists() {
        return Ok(None);
    }
    let store = Store::open(data_dir).with_context(|| format!("cannot open {}", data_dir.display()))?;
    let profile = match store.profile() {
        Ok(p) => p,
        Err(StoreError::NotInitialised) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let categories = store.meta("taxonomy")?.unwrap_or_default();
    let grid_map = store.meta("grids")?.unwrap_or_default();
    Ok(Some((profile, categories, grid_map)))
}

fn wanted(args: &Args, existing: Option<&(Profile, String, String)>) -> Result<Wanted> {
    let read = |path: &Option<PathBuf>, kept: Option<&String>, default: &str| -> Result<String> {
        match path {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())),
            None => Ok(kept.cloned().unwrap_or_else(|| default.to_owned())),
        }
    };
    let profile = existing.map(|e| &e.0);
    let mut grids = match (args.grids.is_empty(), profile) {
        (false, _) => args.grids.clone(),
        (true, Some(p)) => p.grids.clone(),
        (true, None) => return usage("say which cells this worker patrols with --grid (repeat for several)"),
    };
    let mut seen = std::collections::HashSet::new();
    grids.retain(|g| seen.insert(g.clone()));
    Ok(Wanted {
        name: args.name.clone().or_else(|| profile.and_then(|p| p.name.clone())),
        label: args
            .label
            .as_deref()
            .map(|l| l.trim().to_owned())
            .or_else(|| profile.and_then(|p| p.label.clone())),
        grids,
        categories: read(&args.categories, existing.map(|e| &e.1), DEFAULT_CATEGORIES_JSON)?,
        grid_map: read(&args.grid_map, existing.map(|e| &e.2), DEFAULT_GRIDS_JSON)?,
    })
}

/// What re-running init would change, in words.
fn differences(profile: &Profile, categories: &str, grid_map: &str, wanted: &Wanted) -> Vec<String> {
    let mut out = Vec::new();
    let dropped: Vec<&str> = profile
        .grids
        .iter()
        .filter(|g| !wanted.grids.contains(g))
        .map(String::as_str)
        .collect();
    let added: Vec<&str> = wanted
        .grids
        .iter()
        .filter(|g| !profile.grids.contains(g))
        .map(String::as_str)
        .collect();
    if !dropped.is_empty() {
        out.push(format!("drop cell {}", dropped.join(", ")));
    }
    if !added.is_empty() {
        out.push(format!("add cell {}", added.join(", ")));
    }
    if wanted.name != profile.name {
        out.push(format!(
            "change the name to {}",
            wanted.name.as_deref().unwrap_or("none")
        ));
    }
    if wanted.label != profile.label {
        out.push(format!(
            "change the label to {}",
            wanted.label.as_deref().unwrap_or("none")
        ));
    }
    if wanted.categories != categories {
        out.push("replace the categories list".to_owned());
    }
    if wanted.grid_map != grid_map {
        out.push("replace the grid map".to_owned());
    }
    out
}

/// `device … is set up for worker w-li (李华) in A, B`.
fn set_up(p: &Profile) -> String {
    format!(
        "device {}{} is set up for worker {}{} in {}",
        p.device,
        p.label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default(),
        p.worker,
        p.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
        p.grids.join(", ")
    )
}

//! What the subcommands share: opening the store, the clock, photos from
//! disk, names for categories, and how errors become exit codes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, FixedOffset, NaiveDate};
use sync_core::files::{Access, write_whole};
use sync_core::store::PreparedPhoto;
use sync_core::{GridMap, Profile, Status, Store, Taxonomy, calendar, photo};

/// A mistake in how the command was called: exit code 2, like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(UsageError(msg.into()).into())
}

pub fn report_error(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    if e.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

pub fn default_data_dir() -> Result<PathBuf> {
    directories::ProjectDirs::from("org", "gridsync", "field")
        .map(|d| d.data_dir().to_owned())
        .context("no home folder to keep the incident log in; pass --data-dir or set FIELD_DATA_DIR")
}

/// The device clock, with the device's UTC offset.
pub fn now() -> DateTime<FixedOffset> {
    use chrono::{DurationRound, TimeDelta};
    let t = chrono::Local::now().fixed_offset();
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// An open store of a device that has been set up.
pub struct Session {
    pub store: Store,
    pub profile: Profile,
    pub taxonomy: Taxonomy,
    pub grids: GridMap,
}

impl Session {
    pub fn open(data_dir: &Path) -> Result<Session> {
        if !data_dir.join(sync_core::store::DB_FILE).exists() {
            return Err(sync_core::StoreError::NotInitialised.into());
        }
        let store =
            Store::open(data_dir).with_context(|| format!("cannot open the incident log in {}", data_dir.display()))?;
        let profile = store.profile()?;
        let taxonomy = store.taxonomy()?;
        let grids = store.grid_map()?;
        Ok(Session {
            store,
            profile,
            taxonomy,
            grids,
        })
    }

    /// "井盖破损 Broken manhole cover", or the bare code for a category this
    /// device's list does not know (one synced from a newer list).
    pub fn category_label(&self, code: &str) -> String {
        match self.taxonomy.get(code) {
            Some(c) => format!("{} {}", c.name_zh, c.name_en),
            None => code.to_owned(),
        }
    }

    /// The category code for what the worker typed: a code, or its
    /// Chinese or English name.
    pub fn category_code(&self, input: &str) -> Result<String> {
        let category = self.taxonomy.resolve(input).map_err(|e| UsageError(e.to_string()))?;
        Ok(category.code.clone())
    }

    /// Reads, checks and stages photos. Any bad photo fails the whole
    /// command before anything is stored.
    pub fn prepare_photos(&self, paths: &[PathBuf], now: DateTime<FixedOffset>) -> Result<Vec<PreparedPhoto>> {
        let mut processed = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read photo {}", path.display()))?;
            let p = photo::process(&bytes).with_context(|| format!("photo {} was not added", path.display()))?;
            processed.push((bytes, p));
        }
        processed
            .iter()
            .map(|(bytes, p)| Ok(self.store.prepare_photo(bytes, p, &self.profile.worker, now)?))
            .collect()
    }
}

/// 32 bytes from the operating system's RNG, for a new signing key.
pub fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the system's random number source failed: {e}"))?;
    Ok(seed)
}

/// Refuses a text over its limit before anything is stored, in the words
/// a worker can act on (the server would refuse it at every sync).
pub fn check_text(flag: &str, text: &str, limit: usize) -> Result<()> {
    if text.len() <= limit {
        return Ok(());
    }
    usage(format!(
        "{flag} is {} characters ({} bytes); the limit is {limit} bytes, about {} Chinese characters",
        text.chars().count(),
        text.len(),
        limit / 3
    ))
}

/// A position as `--lat` and `--lon` give it, in range.
pub fn check_point(lat: f64, lon: f64) -> Result<()> {
    if !(-90.0..=90.0).contains(&lat) {
        return usage(format!("--lat {lat} is outside -90..90"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return usage(format!("--lon {lon} is outside -180..180"));
    }
    Ok(())
}

/// A warning on stderr: the command goes on.
pub fn warn(msg: impl fmt::Display) {
    eprintln!("warning: {msg}");
}

/// Warns of a point that lies outside the cell it is filed under.
pub fn warn_outside(grids: &GridMap, cell: &str, point: Option<(f64, f64)>) {
    let Some((lat, lon)) = point else {
        return;
    };
    if grids.cell_contains(cell, lat, lon) != Some(false) {
        return;
    }
    let inside: Vec<String> = grids
        .cells_containing(lat, lon)
        .iter()
        .map(|p| p.cell.id.clone())
        .collect();
    let there = match inside.as_slice() {
        [] => "in none of the known cells".to_owned(),
        cells => format!("in {}", cells.join(", ")),
    };
    warn(format!(
        "the position {lat}, {lon} lies outside cell {cell} ({there}); the record keeps both"
    ));
}

pub fn parse_status(s: &str) -> Result<Status> {
    Status::from_input(s).map_err(|e| UsageError(e.to_string()).into())
}

pub fn parse_date(s: &str) -> Result<NaiveDate> {
    calendar::parse_day(s).map_err(|_| UsageError(format!("`{s}` is not a date; use YYYY-MM-DD")).into())
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot write JSON")?;
    text.push('\n');
    emit(text.as_bytes())
}

/// Writes a result to standard output. A reader that went away (`field
/// list | head`) is not an error.
pub fn emit(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(()),
    }
}

/// `1 incident`, `2 incidents`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A table with no borders that lines up Chinese and Latin text.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(header.iter().copied());
    t
}

/// `2026-11-20 09:15` in the time's own offset.
pub fn short_time(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

const TOKEN_FILE: &str = "device.token";

/// Keeps the device token in the data dir, readable by its owner only.
pub fn save_token(data_dir: &Path, token: &str) -> Result<()> {
    let path = data_dir.join(TOKEN_FILE);
    write_whole(&path, token.as_bytes(), Access::OwnerOnly).with_context(|| format!("cannot write {}", path.display()))
}

pub fn load_token(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("this device is not enrolled; run `field enroll --server URL --code CODE` first")
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

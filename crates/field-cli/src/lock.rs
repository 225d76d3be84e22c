//! One sync at a time per data dir, and one watcher: advisory locks on
//! files in the data dir, released by the kernel when the process ends,
//! however it ends (a SIGKILL leaves no stale lock behind).

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::{Context, Result};
use sync_core::files::private_file;

/// Held while a sync runs.
pub const SYNC_LOCK: &str = "sync.lock";
/// Held while a watcher runs.
pub const WATCH_LOCK: &str = "watch.lock";

/// An exclusive lock on one of the data dir's lock files.
#[derive(Debug)]
pub struct Held {
    _file: File,
}

fn open(data_dir: &Path, name: &str) -> Result<File> {
    let path = data_dir.join(name);
    private_file(&path).with_context(|| format!("cannot create {}", path.display()))?;
    File::options()
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The lock `name` if nobody holds it, `None` if someone does.
pub fn try_take(data_dir: &Path, name: &str) -> Result<Option<Held>> {
    let file = open(data_dir, name)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Held { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {name} in {}", data_dir.display())),
    }
}

/// The lock `name`, waiting for whoever holds it.
pub fn take(data_dir: &Path, name: &str) -> Result<Held> {
    let file = open(data_dir, name)?;
    file.lock()
        .with_context(|| format!("cannot lock {name} in {}", data_dir.display()))?;
    Ok(Held { _file: file })
}

/// Whether someone holds `name` now (it is taken and let go at once).
pub fn is_held(data_dir: &Path, name: &str) -> Result<bool> {
    Ok(try_take(data_dir, name)?.is_none())
}

//! Garage, the S3-compatible object store sync-server's PostgreSQL suite
//! keeps photos in. Debian does not package it, so it is built from
//! crates.io (`cargo install garage --locked`, 10–20 minutes on two cores)
//! once per machine into a cache outside any checkout, where every later
//! run (and every clean clone CI makes) finds it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The release the tests are written against.
const VERSION: &str = "2.5.0";

/// `$XDG_CACHE_HOME/grid-sync/garage-VERSION`, or under `~/.cache`.
fn root() -> Result<PathBuf, String> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set, so there is no cache for Garage")?;
    Ok(cache.join("grid-sync").join(format!("garage-{VERSION}")))
}

fn runs(bin: &PathBuf) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Garage binary, built first if the cache has none.
pub fn ensure() -> Result<PathBuf, String> {
    let root = root()?;
    let bin = root.join("bin").join("garage");
    if runs(&bin) {
        eprintln!("xtask: Garage {VERSION} ({}): found", bin.display());
        return Ok(bin);
    }
    eprintln!(
        "xtask: Garage {VERSION}: missing, needed by sync-server's PostgreSQL suite (photos in an object store); \
         building it once into {} (10–20 minutes)",
        root.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "garage", "--locked", "--version", VERSION, "--root"])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run cargo install ({e})"))?;
    match status.success() && runs(&bin) {
        true => Ok(bin),
        false => Err(format!("building Garage {VERSION} failed ({status})")),
    }
}

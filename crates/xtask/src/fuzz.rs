//! `cargo xtask fuzz-smoke`: every fuzz target of `fuzz/` (cargo-fuzz,
//! libFuzzer) for a bounded time, from its seeds, failing on a crash. The
//! long runs and their figures are in `docs/fuzzing.md`.
//!
//! cargo-fuzz needs nightly flags (`-Z sanitizer`, sanitizer coverage); the
//! machines have only a stable toolchain, so it runs with RUSTC_BOOTSTRAP=1.
//! cargo-fuzz itself is installed with `cargo install --root` into a cache
//! folder under the target dir, like any program built from crates.io.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::{shown, workspace_root};

/// The targets, in `fuzz/Cargo.toml`'s order.
pub const TARGETS: &[&str] = &["decode_message", "read_document", "photo_pipeline", "server_sync"];
/// The cargo-fuzz release the smoke run installs.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Each target's bound: whichever of these comes first.
const RUNS: u32 = 20_000;
const SECONDS: u32 = 20;

/// Installs cargo-fuzz if needed, runs each target, and fails naming every
/// target that crashed (going on past the first, like `cargo xtask test`).
pub fn smoke() -> Result<ExitCode, String> {
    let target = target_dir();
    let cargo_fuzz = cargo_fuzz(&target.join("tools"))?;
    let mut failed = Vec::new();
    for name in TARGETS {
        if !run_target(&cargo_fuzz, &target, name)? {
            failed.push(*name);
        }
    }
    if failed.is_empty() {
        eprintln!("xtask: every fuzz target ran {RUNS} inputs or {SECONDS} s without a crash");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "xtask: these fuzz targets crashed: {}; the input is in fuzz/artifacts/<target>/ \
         (keep it under fixtures/fuzz/<target>/, see docs/fuzzing.md)",
        failed.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

/// The workspace's target dir: `CARGO_TARGET_DIR` when set, as cargo does.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// The cargo-fuzz binary under `tools/bin`, installed there first if missing.
fn cargo_fuzz(tools: &Path) -> Result<PathBuf, String> {
    let bin = tools.join("bin").join("cargo-fuzz");
    if bin.is_file() {
        return Ok(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = install_args(tools);
    eprintln!("xtask: running cargo {}", shown(&args));
    let status = Command::new(&cargo)
        .args(&args)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !status.success() || !bin.is_file() {
        return Err(format!("installing cargo-fuzz into {} failed", tools.display()));
    }
    Ok(bin)
}

fn install_args(tools: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
        "--root",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(tools.into());
    args
}

/// Runs one target from its seeds into a scratch corpus under the target
/// dir; true when it ended without a crash.
fn run_target(cargo_fuzz: &Path, target: &Path, name: &str) -> Result<bool, String> {
    let root = workspace_root();
    let corpus = target.join("fuzz-corpus").join(name);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
    // Built on its own first, so that code that does not compile is told
    // apart from a crash.
    let build: Vec<OsString> = vec![
        "fuzz".into(),
        "build".into(),
        "--target-dir".into(),
        target.join("fuzz").into(),
        name.into(),
    ];
    if !cargo_fuzz_ok(cargo_fuzz, &build)? {
        return Err(format!(
            "the fuzz target {name} does not build (cargo fuzz build failed, see above)"
        ));
    }
    let args = run_args(name, &target.join("fuzz"), &corpus, &root.join("fuzz/seeds").join(name));
    cargo_fuzz_ok(cargo_fuzz, &args)
}

/// Runs cargo-fuzz from the workspace root; whether it succeeded.
fn cargo_fuzz_ok(cargo_fuzz: &Path, args: &[OsString]) -> Result<bool, String> {
    eprintln!("xtask: running cargo {}", shown(args));
    let status = Command::new(cargo_fuzz)
        .args(args)
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo_fuzz.display()))?;
    Ok(status.success())
}

/// `cargo fuzz run` for one target: the corpus it grows first, then the
/// seeds it only reads, then libFuzzer's bounds.
fn run_args(name: &str, build_dir: &Path, corpus: &Path, seeds: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["fuzz".into(), "run".into(), "--target-dir".into(), build_dir.into()];
    args.extend([name.into(), corpus.into(), seeds.into(), "--".into()]);
    args.extend([format!("-runs={RUNS}"), format!("-max_total_time={SECONDS}")].map(OsString::from));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_and_a_file() {
        let fuzz = workspace_root().join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for name in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "{name} is not in fuzz/Cargo.toml"
            );
            let seeds = std::fs::read_dir(fuzz.join("seeds").join(name))
                .map(|d| d.count())
                .unwrap_or(0);
            assert!(seeds > 0, "{name} has no seeds in fuzz/seeds/{name}/");
        }
    }

    #[test]
    fn a_run_reads_the_seeds_and_grows_a_scratch_corpus() {
        let args = run_args(
            "read_document",
            Path::new("/t/fuzz"),
            Path::new("/t/c"),
            Path::new("/s"),
        );
        assert_eq!(
            shown(&args),
            "fuzz run --target-dir /t/fuzz read_document /t/c /s -- -runs=20000 -max_total_time=20"
        );
        assert_eq!(
            shown(&install_args(Path::new("/t/tools"))),
            "install cargo-fuzz --locked --version 0.13.2 --root /t/tools"
        );
    }
}

//! Replays the `server_sync` fuzz target's inputs (`fuzz/`, see
//! `docs/fuzzing.md`): its seeds in `fuzz/seeds/server_sync/` and every
//! crasher kept in `fixtures/fuzz/server_sync/`, through the very code the
//! target runs (its files are included below): `sync_server::sync::sync` on
//! a fresh copy of a small store, which must not panic, must answer well
//! formed, and must leave every stored incident readable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use docs::OpenFindings;
use server_input::World;

#[allow(dead_code, reason = "shared with the fuzz targets, which use the rest")]
#[path = "../../../../fuzz/src/docs.rs"]
mod docs;
#[path = "../../../../fuzz/src/server_input.rs"]
mod server_input;

/// Crashers of findings 1 to 3 (`docs/fuzzing.md`, "Findings"), replayed
/// by their own test below.
const OPEN: &[&str] = &["orphan-bad-checksum", "mismatching-heads", "has-change-panics"];

/// Runs `files` on fresh copies of one template store, returning those that
/// panicked and how many the server answered.
fn run_files(files: &[PathBuf]) -> (Vec<String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(dir.path());
    let mut panicked = Vec::new();
    let mut answered = 0;
    for file in files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        match catch_unwind(AssertUnwindSafe(|| {
            server_input::run(&world, &data, OpenFindings::Fail)
        })) {
            Ok(ok) => answered += usize::from(ok),
            Err(_) => panicked.push(file.display().to_string()),
        }
    }
    (panicked, answered)
}

#[test]
fn server_sync_inputs_replay_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (seeds, crashers) = docs::replay_files(&root, "server_sync");
    let open = |f: &PathBuf| OPEN.iter().any(|o| f.file_name().is_some_and(|n| n == *o));
    let closed: Vec<PathBuf> = crashers.into_iter().filter(|f| !open(f)).collect();
    let (mut panicked, answered) = run_files(&seeds);
    panicked.extend(run_files(&closed).0);
    assert!(panicked.is_empty(), "these inputs panic: {panicked:#?}");
    assert!(
        answered > 0,
        "no seed got an answer from the server, so the replay checks little"
    );
}

/// Findings 1 to 3 (docs/fuzzing.md), fixed: the rules never apply a change
/// whose dependencies are missing, and the merged document is saved and
/// loaded back inside `catch_unwind` before it is stored.
#[test]
fn server_findings_replay_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzz/server_sync");
    let files: Vec<PathBuf> = OPEN.iter().map(|f| root.join(f)).collect();
    let (panicked, _) = run_files(&files);
    assert!(panicked.is_empty(), "these open findings still panic: {panicked:#?}");
}

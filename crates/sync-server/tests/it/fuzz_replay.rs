//! Replays the `server_sync` fuzz target's inputs (`fuzz/`, see
//! `docs/fuzzing.md`): its seeds in `fuzz/seeds/server_sync/` and every
//! crasher kept in `fixtures/fuzz/server_sync/`, through the very code the
//! target runs (its files are included below): `sync_server::sync::sync` on
//! a fresh copy of a small store, which must not panic, must answer well
//! formed, and must leave every stored incident readable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use server_input::World;

#[allow(dead_code, reason = "shared with the fuzz targets, which use the rest")]
#[path = "../../../../fuzz/src/docs.rs"]
mod docs;
#[path = "../../../../fuzz/src/server_input.rs"]
mod server_input;

/// Runs `files` on fresh copies of one template store, returning those that
/// panicked and how many the server answered.
fn run_files(files: &[PathBuf]) -> (Vec<String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(dir.path());
    let mut panicked = Vec::new();
    let mut answered = 0;
    for file in files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        match catch_unwind(AssertUnwindSafe(|| server_input::run(&world, &data))) {
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
    let (mut panicked, answered) = run_files(&seeds);
    panicked.extend(run_files(&crashers).0);
    assert!(panicked.is_empty(), "these inputs panic: {panicked:#?}");
    assert!(
        answered > 0,
        "no seed got an answer from the server, so the replay checks little"
    );
}

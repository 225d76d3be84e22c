//! What each fuzz target does with one input, apart from libFuzzer, so the
//! replay tests of `sync-core` and `sync-server` run the same code on the
//! crashers in `fixtures/fuzz/` and the seeds in `fuzz/seeds/` (they
//! include these files with `#[path]`).

pub mod core_inputs;
pub mod docs;
pub mod panics;
pub mod photo_input;
pub mod server_input;

use std::path::{Path, PathBuf};

/// A folder of this process's own for the server target's stores: under
/// /dev/shm where there is one, since those stores fsync every commit.
pub fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("sync-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder can be made");
    dir
}

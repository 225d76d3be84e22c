#![no_main]

//! One `sync_server::sync::sync` call per input (see `server_input.rs`);
//! panics the server catches are not crashes (see `panics.rs`).

use std::sync::OnceLock;

use sync_fuzz::docs::OpenFindings;
use sync_fuzz::server_input::{World, run};

/// Where open findings of `docs/fuzzing.md` panic: finding 3, a check
/// that Automerge runs only with debug assertions, reached from
/// `IncidentDoc::has_change` outside the server's `catch_unwind`.
const OPEN_PANIC_PLACES: &[&str] = &["automerge-0.12.0/src/op_set2/change/collector.rs:753"];

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World::new(&sync_fuzz::scratch_dir()))
}

libfuzzer_sys::fuzz_target!(init: sync_fuzz::panics::remember(), |data: &[u8]| {
    sync_fuzz::panics::run("server_sync", data, OPEN_PANIC_PLACES, || {
        run(world(), data, OpenFindings::GoOn);
    });
});

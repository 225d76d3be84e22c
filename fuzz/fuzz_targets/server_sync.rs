#![no_main]

//! One `sync_server::sync::sync` call per input (see `server_input.rs`);
//! panics the server catches are not crashes (see `panics.rs`).

use std::sync::OnceLock;

use sync_fuzz::server_input::{World, run};

/// Where open findings of `docs/fuzzing.md` panic, so that a run goes on
/// past them to look for others: none is open.
const OPEN_PANIC_PLACES: &[&str] = &[];

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World::new(&sync_fuzz::scratch_dir()))
}

libfuzzer_sys::fuzz_target!(init: sync_fuzz::panics::remember(), |data: &[u8]| {
    sync_fuzz::panics::run("server_sync", data, OPEN_PANIC_PLACES, || {
        run(world(), data);
    });
});

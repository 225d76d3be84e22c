#![no_main]

//! The server catches the panics Automerge may raise on hostile changes
//! (`catch_unwind` in `sync_server::sync`) and quarantines the push, but
//! libfuzzer-sys's panic hook aborts on every panic, caught or not. This
//! target installs a hook that only remembers the panic: one that escapes
//! `run` is a crash (printed, then abort); one the server caught is said
//! once per place on stderr and, when `SYNC_FUZZ_CAUGHT` names a folder,
//! its input is kept there.

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};

use sync_fuzz::docs::OpenFindings;
use sync_fuzz::server_input::{World, run};

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World::new(&sync_fuzz::scratch_dir()))
}

fn remember_panics() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = format!("{info}\n{}", std::backtrace::Backtrace::force_capture());
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((place, text)));
    }));
}

/// Says a caught panic once per place, and keeps its input if asked to.
fn note_caught(place: &str, text: &str, data: &[u8]) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if !seen.get_or_insert_with(HashSet::new).insert(place.to_owned()) {
        return;
    }
    eprintln!("server_sync: the server caught a panic (not a crash): {text}");
    if let Some(dir) = std::env::var_os("SYNC_FUZZ_CAUGHT") {
        let name = place.replace(['/', ':'], "_");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), data);
    }
}

libfuzzer_sys::fuzz_target!(init: remember_panics(), |data: &[u8]| {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run(world(), data, OpenFindings::GoOn);
    }));
    let last = LAST_PANIC.with(|p| p.borrow_mut().take());
    match (outcome, last) {
        (Err(_), last) => {
            let (_, text) = last.unwrap_or_default();
            eprintln!("server_sync: panic escaped the server: {text}");
            std::process::abort();
        }
        (Ok(()), Some((place, text))) => note_caught(&place, &text, data),
        (Ok(()), None) => {}
    }
});

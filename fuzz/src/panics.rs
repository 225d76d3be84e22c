//! Panics that are not crashes. The product catches the panics Automerge
//! may raise on hostile changes (`catch_unwind` around applying them, in
//! `sync_server::sync`), but libfuzzer-sys's panic hook aborts on every
//! panic, caught or not. [`remember`] installs a hook that only remembers
//! the panic, and [`run`] decides: one that escapes the target is a crash
//! (printed, then abort); one the code caught, or one at the place of an
//! open finding of `docs/fuzzing.md`, is said once per place on stderr and,
//! when `SYNC_FUZZ_CAUGHT` names a folder, its input is kept there.

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Replaces libfuzzer-sys's aborting hook; call it from the target's `init`.
pub fn remember() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = format!("{info}\n{}", std::backtrace::Backtrace::force_capture());
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((place, text)));
    }));
}

/// Runs one input of `target`; aborts on a panic that escapes `f` unless it
/// is at one of `open_places` (ends of `file:line`).
pub fn run(target: &str, data: &[u8], open_places: &[&str], f: impl FnOnce()) {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let last = LAST_PANIC.with(|p| p.borrow_mut().take());
    match (outcome, last) {
        (Err(_), Some((place, text))) if open_places.iter().any(|p| place.ends_with(p)) => {
            note(target, &place, &format!("an open finding, going on: {text}"), data)
        }
        (Err(_), last) => {
            let (_, text) = last.unwrap_or_default();
            eprintln!("{target}: a panic escaped: {text}");
            std::process::abort();
        }
        (Ok(()), Some((place, text))) => note(target, &place, &format!("a panic the code caught: {text}"), data),
        (Ok(()), None) => {}
    }
}

/// Says a panic that is not a crash once per place, and keeps its input if asked to.
fn note(target: &str, place: &str, text: &str, data: &[u8]) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if !seen.get_or_insert_with(HashSet::new).insert(place.to_owned()) {
        return;
    }
    eprintln!("{target}: not a crash: {text}");
    if let Some(dir) = std::env::var_os("SYNC_FUZZ_CAUGHT") {
        let name = format!("{target}-{}", place.replace(['/', ':'], "_"));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), data);
    }
}

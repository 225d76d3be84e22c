//! sync-core's one integration-test binary: the modules beside this file
//! link against the crate once.
//!
//! * `fuzz_replay`: the fuzz targets' seeds and kept crashers, replayed.
//! * `merge`: property tests that incident documents round-trip through
//!   their saved bytes and that concurrent copies converge without losing
//!   anyone's notes, photos or status changes.
//! * `photo`: the photo pipeline on the files in `fixtures/photos/`
//!   (feature `photo`).
//! * `store`: the device store on a real SQLite file in a temporary folder;
//!   the tests that add photos need feature `photo`.

mod fuzz_replay;
mod merge;
#[cfg(feature = "photo")]
mod photo;
mod store;

use chrono::{DateTime, FixedOffset};

/// The bytes of a file in `fixtures/photos/`.
#[track_caller]
fn photo_fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}{name}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/photos/")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"))
}

/// An RFC 3339 time, as a device clock would stamp it.
#[track_caller]
fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("`{s}` is not RFC 3339: {e}"))
}

//! Valid incident documents for the fuzzer to start from, and the one way
//! the targets cut their input into pieces.
//!
//! The replay tests in `crates/*/tests/it/fuzz_replay.rs` include this file
//! with `#[path]`, so a crasher replays through exactly the code the fuzzer
//! ran: it may use only what those test binaries link (sync-core, automerge,
//! chrono, uuid).

use automerge::ActorId;
use chrono::{DateTime, FixedOffset};
use sync_core::{IncidentDoc, IncidentId, Location, NewIncident, Status};

/// The grid cell the fuzzed device may write, and one it may not.
pub const IN_SCOPE: &str = "HLT-CX-HX-02";
pub const OUT_OF_SCOPE: &str = "HLT-CX-HX-01";

/// The enrolled device: its id is this UUID and its Automerge actor the
/// UUID's bytes, as `field init` makes them.
pub fn device_uuid() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00f0)
}

pub fn device_actor() -> ActorId {
    ActorId::from(device_uuid().as_bytes().as_slice())
}

/// A fixed device clock, so every run builds the same bytes.
pub fn at(minute: u32) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(&format!("2026-11-20T09:{minute:02}:00+08:00")).expect("a valid time")
}

/// An incident reported in `grid`, then dispatched, then given a note: three
/// changes by the device, in causal order. `n` tells incidents apart.
pub fn valid_doc(n: u8, grid: &str) -> IncidentDoc {
    let new = NewIncident {
        id: IncidentId::new(1_763_600_000_000 + u64::from(n), [n; 10]),
        category: "manhole-cover".into(),
        description: format!("fuzz seed incident {n}: cover cracked"),
        location: Location {
            lat: Some(41.12),
            lon: Some(122.07),
            accuracy_m: Some(5.0),
            address: Some("和平路 12 号".into()),
        },
        grid: grid.into(),
        reporter: "w-fuzz".into(),
        device: device_uuid().to_string(),
        captured_at: at(0),
        photos: vec![],
        case: None,
    };
    let mut doc = IncidentDoc::create(&new, device_actor()).expect("the seed incident is valid");
    doc.set_status(Status::Dispatched, "w-fuzz", at(1))
        .expect("reported → dispatched is allowed");
    doc.add_note("w-fuzz", "cordoned off", at(2))
        .expect("a note is allowed");
    doc
}

/// The document's changes by the device, oldest first.
pub fn changes_of(doc: &mut IncidentDoc) -> Vec<Vec<u8>> {
    doc.changes_by_since(&device_actor(), &[])
}

/// Cuts `bytes` into pieces, each a little-endian u16 length and then that
/// many bytes (fewer at the end), so the fuzzer can grow, shrink and splice
/// pieces independently.
pub fn pieces(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [a, b, rest @ ..] = bytes {
        let len = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
        let (piece, tail) = rest.split_at(len);
        out.push(piece);
        bytes = tail;
    }
    out
}

/// The inverse of [`pieces`], for writing seeds.
pub fn join_pieces<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let len = u16::try_from(p.len()).expect("a seed piece is under 64 KiB");
        out.extend(len.to_le_bytes());
        out.extend(p);
    }
    out
}

/// The files a replay test runs for `target`, with the repository root at
/// `root`: the seeds (`fuzz/seeds/<target>/`, never empty) and the kept
/// crashers (`fixtures/fuzz/<target>/`, perhaps none).
pub fn replay_files(root: &std::path::Path, target: &str) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    let list = |dir: std::path::PathBuf| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.map(|e| e.expect("a folder entry").path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    };
    let seeds = list(root.join("fuzz/seeds").join(target));
    assert!(!seeds.is_empty(), "no seeds for {target}: the replay would run nothing");
    (seeds, list(root.join("fixtures/fuzz").join(target)))
}

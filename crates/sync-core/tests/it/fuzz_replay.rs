//! Replays the fuzz targets' inputs (`fuzz/`, see `docs/fuzzing.md`): the
//! seeds in `fuzz/seeds/<target>/` and every crasher kept in
//! `fixtures/fuzz/<target>/`, through the very code the target runs (its
//! files are included below), so a crash found once stays fixed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../../../../fuzz/src/core_inputs.rs"]
mod core_inputs;
#[allow(dead_code, reason = "shared with the fuzz targets, which use the rest")]
#[path = "../../../../fuzz/src/docs.rs"]
mod docs;
#[cfg(feature = "photo")]
#[path = "../../../../fuzz/src/photo_input.rs"]
mod photo_input;

/// Runs `files` through `run`, returning those that panicked and how many
/// `run` took in whole.
fn run_files(files: &[PathBuf], run: impl Fn(&[u8]) -> bool) -> (Vec<String>, usize) {
    let mut panicked = Vec::new();
    let mut accepted = 0;
    for file in files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        match catch_unwind(AssertUnwindSafe(|| run(&data))) {
            Ok(ok) => accepted += usize::from(ok),
            Err(_) => panicked.push(file.display().to_string()),
        }
    }
    (panicked, accepted)
}

/// Runs the seeds and the crashers of `target` through `run`; fails
/// naming each file that panicked, or if no seed got through to the
/// target's deepest checks.
#[track_caller]
fn replay(target: &str, run: impl Fn(&[u8]) -> bool + Copy) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (seeds, crashers) = docs::replay_files(&root, target);
    let (mut panicked, accepted) = run_files(&seeds, run);
    panicked.extend(run_files(&crashers, run).0);
    assert!(panicked.is_empty(), "{target}: these inputs panic: {panicked:#?}");
    assert!(
        accepted > 0,
        "{target}: no seed got past the decoder, so the replay checks little"
    );
}

#[test]
fn decode_message_inputs_replay_without_a_panic() {
    replay("decode_message", core_inputs::decode_message);
}

#[test]
fn read_document_inputs_replay_without_a_panic() {
    replay("read_document", core_inputs::read_document);
}

#[cfg(feature = "photo")]
#[test]
fn photo_pipeline_inputs_replay_without_a_panic() {
    replay("photo_pipeline", photo_input::photo_pipeline);
}

/// A feed page as a hostile server would send it: `changes` of the
/// `docs::valid_doc(0, …)` incident, unsigned.
fn page(changes: &[&[u8]]) -> sync_core::protocol::SyncResponse {
    let id = docs::valid_doc(0, docs::IN_SCOPE).read().unwrap().id.to_string();
    sync_core::protocol::SyncResponse {
        epoch: Some("hostile".into()),
        server_time_ms: 0,
        reset: false,
        acks: vec![],
        changes: changes
            .iter()
            .map(|c| sync_core::protocol::FeedChange {
                id: id.clone(),
                change: serde_bytes::ByteBuf::from(c.to_vec()),
                sig: None,
            })
            .collect(),
        cursor: None,
        more: false,
        ask_own: false,
        thumbs: vec![],
        account: None,
    }
}

/// A device of the cell that pulled the `docs::valid_doc(0, …)`
/// incident's first change, and the hash of that change.
fn device_with_first_change(dir: &Path) -> (sync_core::Store, automerge::ChangeHash) {
    let mut store = sync_core::Store::open(dir).unwrap();
    store
        .init(
            "w-li",
            None,
            &[docs::IN_SCOPE.to_owned()],
            uuid::Uuid::from_u128(7),
            sync_core::taxonomy::DEFAULT_CATEGORIES_JSON,
            sync_core::taxonomy::DEFAULT_GRIDS_JSON,
        )
        .unwrap();
    let first = docs::changes_of(&mut docs::valid_doc(0, docs::IN_SCOPE)).remove(0);
    let hash = automerge::Change::from_bytes(first.clone()).unwrap().hash();
    let out = store.next_sync_request(0, 100, 10, 1 << 20).unwrap();
    store.apply_sync_response(&out, &page(&[&first]), now()).unwrap();
    (store, hash)
}

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    crate::t("2026-12-02T10:00:00+08:00")
}

/// Findings 1 and 2 on the device: each crasher's changes, which Automerge
/// applies but whose saved document does not load back as itself, come
/// from a server on top of the incident's first change. The device stores
/// none of them: its copy keeps the one change, loads, and reads as before;
/// the changes are parked, not dropped, and their history is asked for.
#[test]
fn a_device_parks_changes_that_would_not_load_and_keeps_its_copy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzz/read_document");
    for name in ["mismatching-heads", "max-op-below-start-op", "orphan-bad-checksum"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, first) = device_with_first_change(dir.path());
        let id = store.list(&Default::default()).unwrap()[0].id;
        let before = store.load(&id, automerge::ActorId::random()).unwrap().read().unwrap();
        let data = std::fs::read(root.join(name)).unwrap();
        assert_eq!(data[0] % 4, 3, "{name} builds on the first change");
        let out = store.next_sync_request(0, 100, 10, 1 << 20).unwrap();
        let applied = store
            .apply_sync_response(&out, &page(&docs::pieces(&data[1..])), now())
            .unwrap();
        assert_eq!(applied.pulled_changes, 0, "{name}: nothing of it is stored");
        let conn = rusqlite::Connection::open(dir.path().join(sync_core::store::DB_FILE)).unwrap();
        let stored: Vec<u8> = conn
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id.to_string()], |r| {
                r.get(0)
            })
            .unwrap();
        let mut copy = sync_core::IncidentDoc::receiver(Some(&stored))
            .unwrap_or_else(|e| panic!("{name}: the stored copy does not load: {e}"));
        assert_eq!(
            copy.heads(),
            [first],
            "{name}: the stored copy holds only the first change"
        );
        assert_eq!(copy.read().unwrap(), before, "{name}: the incident reads as before");
        let parked: i64 = conn.query_row("SELECT count(*) FROM parked", [], |r| r.get(0)).unwrap();
        assert!(parked > 0, "{name}: the changes are parked");
        let again = store.next_sync_request(0, 100, 10, 1 << 20).unwrap();
        assert_eq!(again.request.want, [id.to_string()], "{name}: the history is asked for");
    }
}

/// Finding 5: bytes on which `Change::from_bytes` itself panics, sent to a
/// device as a hostile server would: the device skips them, keeps its copy
/// and goes on; before `decode_change` the sync fell over.
#[test]
fn a_device_survives_a_change_automerge_panics_on_decoding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzz/read_document");
    let data = std::fs::read(root.join("change-from-bytes-panics")).unwrap();
    let pieces = docs::pieces(&data[1..]);
    assert!(
        pieces
            .iter()
            .any(|p| std::panic::catch_unwind(|| automerge::Change::from_bytes(p.to_vec())).is_err()),
        "the fixture still makes Automerge panic"
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut store, first) = device_with_first_change(dir.path());
    let id = store.list(&Default::default()).unwrap()[0].id;
    let out = store.next_sync_request(0, 100, 10, 1 << 20).unwrap();
    store.apply_sync_response(&out, &page(&pieces), now()).unwrap();
    let mut copy = store.load(&id, automerge::ActorId::random()).unwrap();
    assert_eq!(copy.heads(), [first], "the copy holds only the first change");
    copy.read().expect("the incident still reads");
}

//! The `decode_message` and `read_document` targets: what one input does.
//! `sync-core`'s replay test includes this file with `#[path]` (beside
//! `docs.rs`), so it may use only what that test binary links.

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use automerge::Change;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sync_core::IncidentDoc;
use sync_core::protocol::{self, EnrollRequest, ManifestReport, SyncRequest, SyncResponse};

use super::docs::{self, IN_SCOPE};

/// The first byte picks the message type; the rest is the body. A body
/// that decodes must come back the same through `encode` and `decode`.
/// True when the body decoded.
pub fn decode_message(data: &[u8]) -> bool {
    let Some((kind, body)) = data.split_first() else {
        return false;
    };
    match kind % 4 {
        0 => round_trip::<SyncRequest>(body),
        1 => round_trip::<SyncResponse>(body),
        2 => round_trip::<EnrollRequest>(body),
        _ => round_trip::<ManifestReport>(body),
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(body: &[u8]) -> bool {
    let Ok(value) = protocol::decode::<T>(body) else {
        return false;
    };
    let again: T = protocol::decode(&protocol::encode(&value)).expect("what encode writes decodes");
    assert_eq!(again, value, "a decoded message survives encode and decode");
    true
}

/// Saved bytes of a valid incident: whole (`.0`), and with only its first
/// change (`.1`), so pushed-looking changes have something to apply to.
fn saved() -> &'static (Vec<u8>, Vec<u8>) {
    static SAVED: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    SAVED.get_or_init(|| {
        let mut doc = docs::valid_doc(0, IN_SCOPE);
        let first = docs::changes_of(&mut doc).remove(0);
        let mut start = IncidentDoc::receiver(None).expect("an empty receiver");
        start
            .apply_changes(vec![Change::from_bytes(first).expect("a valid change decodes")])
            .expect("the first change applies");
        (doc.save(), start.save())
    })
}

/// The first byte picks the mode: 0 reads the rest as saved bytes; 1, 2
/// and 3 cut it into [`docs::pieces`], decode each as a change and apply
/// them to an empty receiver, a valid incident, or its first change (a
/// panic while applying is caught, as the server does). A document that
/// reads is sealed as the server and the device seal it before storing
/// it (`IncidentDoc::seal`); sealed bytes must read the same after a load.
/// True when the document read as an incident and sealed.
pub fn read_document(data: &[u8]) -> bool {
    let Some((mode, rest)) = data.split_first() else {
        return false;
    };
    let saved = saved();
    let mut doc = match mode % 4 {
        0 => return IncidentDoc::read_saved(rest).is_ok(),
        1 => IncidentDoc::receiver(None),
        2 => IncidentDoc::receiver(Some(&saved.0)),
        _ => IncidentDoc::receiver(Some(&saved.1)),
    }
    .expect("a receiver of valid saved bytes opens");
    let changes = docs::pieces(rest)
        .into_iter()
        .filter_map(|p| sync_core::incident::decode_change(p.to_vec()).ok())
        .collect();
    // Automerge may panic on hostile changes; the server applies pushed
    // ones inside `catch_unwind` and refuses them then (`sync::merge`), so
    // does this. A panic anywhere else is a finding.
    let applied = catch_unwind(AssertUnwindSafe(|| doc.apply_changes(changes).is_ok()));
    if !matches!(applied, Ok(true)) {
        return false;
    }
    let Ok(read) = doc.read() else {
        return false;
    };
    // Refusing to seal is how both sides turn such changes away.
    let Ok(sealed) = doc.seal() else {
        return false;
    };
    match IncidentDoc::read_saved(&sealed.bytes) {
        Ok(again) => assert_eq!(again, read, "a sealed document reads the same after a load"),
        Err(e) => panic!("a sealed document does not read after a load: {e}"),
    }
    true
}

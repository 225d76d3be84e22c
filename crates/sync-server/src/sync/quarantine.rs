//! What the operator does with quarantined changes: relayed changes of
//! devices this server does not know (kept, never dropped, until a person
//! decides) and bytes that made Automerge fail.

use std::panic::{AssertUnwindSafe, catch_unwind};

use sync_core::rules::{Admission, Author};
use sync_core::{IncidentDoc, IncidentId, Taxonomy};

use super::write_of;
use crate::clock::ServerTime;
use crate::storage::{NewChange, QuarantineRow, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("there is no quarantined item {0}; `sync-server quarantine list` shows them")]
    NoItem(i64),
    #[error("item {0} is not one relayed change (its bytes made Automerge fail); it can only be dropped")]
    NotAChange(i64),
    #[error("there is no worker `{0}`")]
    NoWorker(String),
    #[error("the change of item {id} cannot be accepted: {reason}")]
    Refused { id: i64, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl QuarantineError {
    pub fn is_caller_mistake(&self) -> bool {
        match self {
            QuarantineError::Storage(e) => e.is_caller_mistake(),
            _ => true,
        }
    }
}

pub fn list(storage: &dyn Storage) -> Result<Vec<QuarantineRow>, StorageError> {
    storage.quarantined()
}

/// Drops one item for good; false when there was none by that id.
pub fn drop_item(storage: &dyn Storage, id: i64) -> Result<bool, StorageError> {
    storage.unquarantine(id)
}

/// Admits a quarantined change into its incident as made by `worker`
/// (whose device it was, as the operator knows), by the same rules as any
/// push, then takes it out of quarantine.
pub fn accept(storage: &dyn Storage, id: i64, worker: &str) -> Result<(), QuarantineError> {
    let row = storage
        .quarantined()?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(QuarantineError::NoItem(id))?;
    let (Some(incident), Some(_)) = (row.incident.clone(), row.hash.as_ref()) else {
        return Err(QuarantineError::NotAChange(id));
    };
    let who = storage
        .worker(worker)?
        .ok_or_else(|| QuarantineError::NoWorker(worker.to_owned()))?;
    let refused = |reason: String| QuarantineError::Refused { id, reason };
    let change = sync_core::incident::decode_change(row.bytes.clone()).map_err(|e| refused(e.to_string()))?;
    let incident_id: IncidentId = incident
        .parse()
        .map_err(|e: sync_core::incident::ParseIncidentIdError| refused(e.to_string()))?;
    // A device's actor is its id's 16 bytes.
    let actor = change.actor_id().to_bytes();
    let device =
        uuid::Uuid::from_slice(actor).map_or_else(|_| change.actor_id().to_string(), |u| u.hyphenated().to_string());
    // The device is unknown here (that is why the change waited), so its
    // number is too: the case-number rule checks only that the device that
    // made the incident gave it.
    let author = Author {
        account: &who.id,
        device: &device,
        role: who.role,
        number: None,
        department: who.department.as_deref(),
    };
    super::retry_merge(
        || admit_row(storage, &row, (&incident, incident_id), change.clone(), author),
        |e| matches!(e, QuarantineError::Storage(StorageError::Conflict(_))),
    )?;
    storage.unquarantine(id)?;
    Ok(())
}

/// Merges the quarantined change into the stored incident and commits it.
fn admit_row(
    storage: &dyn Storage,
    row: &QuarantineRow,
    (incident, incident_id): (&str, IncidentId),
    change: automerge::Change,
    author: Author<'_>,
) -> Result<(), QuarantineError> {
    let refused = |reason: String| QuarantineError::Refused { id: row.id, reason };
    let existing = storage.incident_doc(incident)?;
    let run = catch_unwind(AssertUnwindSafe(|| -> Result<_, String> {
        let receiver = IncidentDoc::receiver(existing.as_ref().map(|s| s.doc.as_slice())).map_err(|e| e.to_string())?;
        let mut admission = Admission::new(receiver, incident_id, Taxonomy::builtin()).map_err(|e| e.to_string())?;
        let admitted = admission
            .admit_all(vec![change], |_| Some(author))
            .map_err(|e| e.to_string())?;
        let read = admission.incident().cloned();
        let sealed = admission.into_doc().seal().map_err(|e| e.to_string())?;
        Ok((sealed, admitted, read))
    }));
    let (sealed, admitted, read) = match run {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(refused(e)),
        Err(_) => return Err(refused("applying it panicked".into())),
    };
    let Some(read) = read.filter(|_| admitted.waiting.is_empty()) else {
        return Err(refused("it builds on changes this server does not have yet".into()));
    };
    let hash: [u8; 32] = row.hash.clone().unwrap_or_default().try_into().unwrap_or([0; 32]);
    let new = vec![NewChange {
        hash,
        bytes: row.bytes.clone(),
        sig: row.sig.clone(),
    }];
    let write = write_of(incident, existing.as_ref(), sealed, &read, new);
    storage.commit_push(&[write], &row.device, &ServerTime::now().text)?;
    Ok(())
}

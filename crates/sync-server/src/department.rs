//! What a department account (城管, 市政 …) reads: the cases of its
//! community whose last dispatch names its department. The edit rule that
//! keeps its changes to those cases is `sync_core::rules::check_department`;
//! this is the read side of the same line, for the dashboard and photos.

use chrono::{DateTime, FixedOffset};
use sync_core::{BlobHash, GridMap, Incident, IncidentDoc, Status};

use crate::accounts::scope_of;
use crate::storage::{Device, IncidentFilter, Role, Storage, StorageError, Worker};

/// Whether `reader` may see `incident` (already in its scope): every role
/// but a department sees all its scope holds; a department only the cases
/// dispatched to it.
pub fn sees(reader: &Worker, incident: &Incident) -> bool {
    if reader.role != Role::Department {
        return true;
    }
    let named = incident.dispatch().map(|d| d.department.as_str());
    named.is_some() && named == reader.department.as_deref()
}

/// A department's cases: those still to do, soonest deadline first, and
/// those it has finished, most recently dispatched first.
#[derive(Debug, Default)]
pub struct Cases {
    pub open: Vec<Incident>,
    pub done: Vec<Incident>,
    /// Incidents of the community that do not read; they are left out.
    pub unreadable: Vec<String>,
}

/// The cases dispatched to `reader`'s department in its community.
pub fn cases(storage: &dyn Storage, grids: &GridMap, reader: &Device) -> Result<Cases, StorageError> {
    let filter = IncidentFilter {
        grids: scope_of(reader, grids).cells().map(<[String]>::to_vec),
        // A case never dispatched is still `reported`: not read at all.
        statuses: Status::ALL.into_iter().filter(|s| *s != Status::Reported).collect(),
        ..IncidentFilter::default()
    };
    let mut out = Cases::default();
    for row in storage.incidents(&filter)? {
        match IncidentDoc::read_saved(&row.doc) {
            Ok(i) if !sees(&reader.worker, &i) => {}
            Ok(i) if matches!(i.status, Status::Dispatched | Status::InProgress) => out.open.push(i),
            Ok(i) => out.done.push(i),
            Err(e) => {
                tracing::error!(incident = %row.id, error = %e, "stored incident does not read");
                out.unreadable.push(row.id);
            }
        }
    }
    let deadline = |i: &Incident| i.dispatch().map(|d| d.deadline);
    out.open.sort_by_key(deadline);
    out.done.sort_by_key(|i| std::cmp::Reverse(dispatched_at(i)));
    Ok(out)
}

/// When the case was last dispatched.
fn dispatched_at(i: &Incident) -> Option<DateTime<FixedOffset>> {
    i.status_history
        .iter()
        .rev()
        .find(|h| h.dispatch.is_some())
        .map(|h| h.at)
}

/// Whether a department `reader` reaches this photo through one of its
/// cases (a verified, proven reference); other readers are not asked.
pub fn reaches_photo(
    storage: &dyn Storage,
    grids: &GridMap,
    reader: &Device,
    hash: &BlobHash,
) -> Result<bool, StorageError> {
    if reader.worker.role != Role::Department {
        return Ok(true);
    }
    let cases = cases(storage, grids, reader)?;
    let ids: Vec<String> = cases.open.iter().chain(&cases.done).map(|i| i.id.to_string()).collect();
    let hex = hash.to_hex();
    Ok(storage.photo_refs(&ids)?.iter().any(|r| r.verified && r.hash == hex))
}

//! The server's half of a sync round trip: check and merge what a device
//! pushed, then page the change feed back to it. No HTTP here: errors are
//! [`SyncError`]s that the HTTP layer turns into status codes.

mod manifest;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{Change, ChangeHash};
pub use manifest::{ManifestStatus, manifest_status, report_manifest};
use sync_core::protocol::{
    Ack, Cursor, FeedChange, Hash32, MAX_BODY, MAX_CHANGE, MAX_PULL, MAX_PUSH_DOCS, PROTOCOL_VERSION, PushDoc,
    SyncRequest, SyncResponse,
};
use sync_core::{Incident, IncidentDoc, IncidentId};

use crate::clock::ServerTime;
use crate::storage::{
    BlobKind, BlobRef, Device, FeedQuery, IncidentWrite, NewChange, Quarantined, Scope, Storage, StorageError,
    StoredDoc, SyncRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{reason}")]
    Forbidden { incident: Option<String>, reason: String },
    #[error("{reason}")]
    Invalid { incident: Option<String>, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The most change bytes one pull page carries: half of what a client
/// accepts in one body, leaving room for the envelope and thumbnails. A
/// change is at most `MAX_CHANGE` (1 MiB), so every page carries one.
pub const MAX_PULL_BYTES: usize = MAX_BODY / 2;

fn check_version(version: u32) -> Result<(), SyncError> {
    if version == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(SyncError::BadRequest(format!(
        "protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
    )))
}

/// The device the request came from, the cells it may touch, and the server clock.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub device: &'a Device,
    pub scope: &'a Scope,
    pub now: &'a ServerTime,
}

/// Runs one sync round trip.
pub fn sync(storage: &dyn Storage, caller: &Caller<'_>, req: &SyncRequest) -> Result<SyncResponse, SyncError> {
    check_request(req)?;
    let epoch = storage.epoch()?;
    let reset = needs_reset(storage, req, &epoch)?;
    let acks = if reset || req.push.is_empty() {
        Vec::new()
    } else {
        ingest(storage, caller, &req.push)?
    };
    let after = if reset {
        0
    } else {
        req.cursor.map(|c| c.seq).unwrap_or(0)
    };
    let page = pull(storage, caller, after, req.pull_limit)?;
    let manifest = manifest::record_of(&req.manifest);
    storage.record_sync(&SyncRecord {
        device: &caller.device.id,
        manifest: &manifest,
        clock_offset_ms: manifest::clock_offset(&req.manifest, req.device_time_ms, caller.now.ms),
        at: &caller.now.text,
    })?;
    Ok(SyncResponse {
        epoch,
        server_time_ms: caller.now.ms,
        reset,
        acks,
        changes: page.changes,
        cursor: page.cursor,
        more: page.more,
        thumbs: page.thumbs,
    })
}

/// Refuses a request no device should send, before anything is read.
fn check_request(req: &SyncRequest) -> Result<(), SyncError> {
    check_version(req.version)?;
    if req.push.len() > MAX_PUSH_DOCS {
        return Err(SyncError::BadRequest(format!(
            "{} incidents in one push; the limit is {MAX_PUSH_DOCS}",
            req.push.len()
        )));
    }
    let mut seen = HashSet::with_capacity(req.push.len());
    if let Some(doc) = req.push.iter().find(|d| !seen.insert(d.id.as_str())) {
        return Err(SyncError::BadRequest(format!(
            "incident {} appears twice in one push; send each incident's changes once",
            doc.id
        )));
    }
    Ok(())
}

/// Whether the device talks to another store than it last did (a new
/// epoch, or a cursor the feed no longer has): it then starts again.
fn needs_reset(storage: &dyn Storage, req: &SyncRequest, epoch: &str) -> Result<bool, SyncError> {
    let cursor_ok = match req.cursor {
        None => true,
        Some(c) if c.seq == 0 => true,
        Some(c) => storage.change_at(c.seq)? == Some(c.hash.0),
    };
    Ok(req.epoch.as_deref().is_some_and(|e| e != epoch) || !cursor_ok)
}

/// Checks and merges every pushed incident, then commits them in one transaction.
fn ingest(storage: &dyn Storage, caller: &Caller<'_>, push: &[PushDoc]) -> Result<Vec<Ack>, SyncError> {
    let mut writes = Vec::with_capacity(push.len());
    let mut acks = Vec::with_capacity(push.len());
    for doc in push {
        let (write, ack) = merge_push(storage, caller, doc)?;
        writes.extend(write);
        acks.push(ack);
    }
    storage.commit_push(&writes, &caller.device.id, &caller.now.text)?;
    Ok(acks)
}

/// A page of the feed for the device.
struct Page {
    changes: Vec<FeedChange>,
    cursor: Option<Cursor>,
    more: bool,
    thumbs: Vec<String>,
}

fn pull(storage: &dyn Storage, caller: &Caller<'_>, after: u64, pull_limit: u32) -> Result<Page, SyncError> {
    let limit = pull_limit.clamp(1, MAX_PULL);
    let page = storage.feed(&FeedQuery {
        after,
        scope: caller.scope,
        exclude_device: &caller.device.id,
        limit,
        max_bytes: MAX_PULL_BYTES,
    })?;
    let more = page.cut;
    let last = if more {
        page.rows.last().map(|r| r.seq).unwrap_or(after)
    } else {
        page.max_seq.max(after)
    };
    let cursor = if last == 0 {
        None
    } else {
        storage.change_at(last)?.map(|h| Cursor {
            seq: last,
            hash: Hash32(h),
        })
    };
    let mut incidents: Vec<String> = page.rows.iter().map(|r| r.incident_id.clone()).collect();
    incidents.dedup();
    let thumbs = storage.thumbs_of(&incidents)?;
    let changes = page
        .rows
        .into_iter()
        .map(|r| FeedChange {
            id: r.incident_id,
            change: serde_bytes::ByteBuf::from(r.bytes),
        })
        .collect();
    Ok(Page {
        changes,
        cursor,
        more,
        thumbs,
    })
}

/// One pushed incident on its way in: its id, its raw changes and who sent them.
struct Incoming<'a> {
    storage: &'a dyn Storage,
    caller: &'a Caller<'a>,
    doc: &'a PushDoc,
}

impl Incoming<'_> {
    fn id(&self) -> Option<String> {
        Some(self.doc.id.clone())
    }

    fn invalid(&self, reason: String) -> SyncError {
        SyncError::Invalid {
            incident: self.id(),
            reason,
        }
    }

    fn out_of_scope(&self, grid: &str) -> SyncError {
        SyncError::Forbidden {
            incident: self.id(),
            reason: format!(
                "incident {} is in grid cell {grid}, outside this device's cells",
                self.doc.id
            ),
        }
    }

    /// Keeps the pushed bytes aside for the operator, with the reason.
    fn quarantine(&self, reason: &str, bytes: &[u8]) -> Result<(), SyncError> {
        self.storage.quarantine(&Quarantined {
            device: &self.caller.device.id,
            incident: Some(&self.doc.id),
            reason,
            bytes,
            at: &self.caller.now.text,
        })?;
        Ok(())
    }

    /// Quarantines every change of the push and refuses it as invalid.
    fn refuse_all(&self, reason: &str, answer: String) -> SyncError {
        let all: Vec<u8> = self.doc.changes.iter().flat_map(|c| c.iter().copied()).collect();
        match self.quarantine(reason, &all) {
            Ok(()) => self.invalid(answer),
            Err(e) => e,
        }
    }
}

/// Pushed changes, decoded and checked for their author.
struct Decoded {
    changes: Vec<Change>,
    /// Changes the server already holds, somewhere: they may come back from
    /// any device, but only into the incident they belong to.
    known: Vec<ChangeHash>,
}

/// Checks one pushed incident and merges it into the server's copy.
fn merge_push(
    storage: &dyn Storage,
    caller: &Caller<'_>,
    doc: &PushDoc,
) -> Result<(Option<IncidentWrite>, Ack), SyncError> {
    let inc = Incoming { storage, caller, doc };
    doc.id
        .parse::<IncidentId>()
        .map_err(|e| SyncError::BadRequest(e.to_string()))?;
    let decoded = decode_changes(&inc)?;
    let existing = storage.incident_doc(&doc.id)?;
    if let Some(StoredDoc { grid, .. }) = &existing
        && !caller.scope.allows(grid)
    {
        return Err(inc.out_of_scope(grid));
    }
    let hashes: Vec<ChangeHash> = decoded.changes.iter().map(|c| c.hash()).collect();
    let mut merged = merge(&inc, existing.as_ref(), decoded)?;
    // Changes whose dependencies the server lacks wait inside Automerge
    // unapplied; only applied ones join the feed. Usually nothing waits,
    // which one call tells without looking up each change.
    let applied: Vec<ChangeHash> = if merged.waits_for_dependencies() {
        hashes.iter().copied().filter(|h| merged.has_change(h)).collect()
    } else {
        hashes.clone()
    };
    let stored = doc.heads.iter().all(|h| merged.has_change(&ChangeHash::from(*h)));
    let ack = Ack {
        id: doc.id.clone(),
        heads: if stored { doc.heads.clone() } else { vec![] },
        need_full: applied.len() < hashes.len() || !stored,
    };
    if applied.is_empty() && existing.is_none() {
        // Nothing usable yet (a first push missing its own start).
        return Ok((None, ack));
    }
    let read = validate(&inc, &mut merged)?;
    let new_changes = new_changes(&inc, &applied, &hashes)?;
    Ok((Some(write_of(&doc.id, merged, &read, new_changes)), ack))
}

/// Decodes each change alone, bounded and inside `catch_unwind`, and checks
/// that it is the device's own or one the server already holds.
fn decode_changes(inc: &Incoming<'_>) -> Result<Decoded, SyncError> {
    let doc = inc.doc;
    let mut out = Decoded {
        changes: Vec::with_capacity(doc.changes.len()),
        known: Vec::new(),
    };
    for raw in &doc.changes {
        if raw.len() > MAX_CHANGE {
            return Err(SyncError::BadRequest(format!(
                "a change of incident {} is {} bytes; the limit is {MAX_CHANGE}",
                doc.id,
                raw.len()
            )));
        }
        let change = match catch_unwind(AssertUnwindSafe(|| Change::from_bytes(raw.to_vec()))) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(SyncError::BadRequest(format!(
                    "a change of incident {} cannot be decoded: {e}",
                    doc.id
                )));
            }
            Err(_) => {
                inc.quarantine("change decoding panicked", raw)?;
                return Err(inc.invalid("a change could not be decoded".into()));
            }
        };
        let is_known = inc.storage.has_change(&change.hash().0)?;
        if is_known {
            out.known.push(change.hash());
        }
        if change.actor_id().to_bytes() != inc.caller.device.actor.as_slice() && !is_known {
            return Err(SyncError::Forbidden {
                incident: inc.id(),
                reason: format!(
                    "incident {} carries a change made by another device that this server has not seen",
                    doc.id
                ),
            });
        }
        out.changes.push(change);
    }
    Ok(out)
}

/// Applies the decoded changes to the server's copy (or a new one), inside
/// `catch_unwind`; anything that cannot be applied is quarantined.
fn merge(inc: &Incoming<'_>, existing: Option<&StoredDoc>, decoded: Decoded) -> Result<IncidentDoc, SyncError> {
    let merged = catch_unwind(AssertUnwindSafe(|| -> Result<IncidentDoc, String> {
        let mut doc = IncidentDoc::receiver(existing.map(|s| s.doc.as_slice())).map_err(|e| e.to_string())?;
        if let Some(h) = decoded.known.iter().find(|h| !doc.has_change(h)) {
            return Err(format!("it carries change {h}, which belongs to another incident"));
        }
        doc.apply_changes(decoded.changes).map_err(|e| e.to_string())?;
        Ok(doc)
    }));
    let id = &inc.doc.id;
    match merged {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(inc.refuse_all(&e, format!("the changes of incident {id} cannot be applied: {e}"))),
        Err(_) => Err(inc.refuse_all(
            "applying changes panicked",
            format!("the changes of incident {id} cannot be applied"),
        )),
    }
}

/// Reads the merged document whole: it must be a valid incident, the one it
/// was pushed as, in a cell the device may touch.
fn validate(inc: &Incoming<'_>, merged: &mut IncidentDoc) -> Result<Incident, SyncError> {
    let id = &inc.doc.id;
    let read = match merged.read() {
        Ok(r) => r,
        Err(e) => return Err(inc.refuse_all(&e.to_string(), format!("incident {id}: {e}"))),
    };
    if read.id.to_string() != *id {
        return Err(inc.refuse_all(
            "document id does not match",
            format!("the document pushed as {id} says it is {}", read.id),
        ));
    }
    if !inc.caller.scope.allows(&read.grid) {
        return Err(inc.out_of_scope(&read.grid));
    }
    Ok(read)
}

/// The applied changes the server does not hold yet, as the device sent
/// them: the bytes decoded to this hash, so there is no need to re-encode.
fn new_changes(inc: &Incoming<'_>, applied: &[ChangeHash], hashes: &[ChangeHash]) -> Result<Vec<NewChange>, SyncError> {
    let mut out = Vec::new();
    for h in applied {
        if !inc.storage.has_change(&h.0)?
            && let Some(i) = hashes.iter().position(|x| x == h)
        {
            out.push(NewChange {
                hash: h.0,
                bytes: inc.doc.changes[i].to_vec(),
            });
        }
    }
    Ok(out)
}

/// The merged document, its projected columns and its photo references.
fn write_of(id: &str, mut merged: IncidentDoc, read: &Incident, new_changes: Vec<NewChange>) -> IncidentWrite {
    let mut heads = merged.heads();
    heads.sort();
    let blob_refs = read
        .photos
        .iter()
        .flat_map(|p| {
            [
                (&p.original, BlobKind::Original),
                (&p.display, BlobKind::Display),
                (&p.thumb, BlobKind::Thumb),
            ]
        })
        .map(|(hash, kind)| BlobRef {
            hash: hash.to_hex(),
            kind,
        })
        .collect();
    IncidentWrite {
        id: id.to_owned(),
        doc: merged.save(),
        heads: heads.iter().flat_map(|h| h.0).collect(),
        grid: read.grid.clone(),
        category: read.category.clone(),
        status: read.status,
        reporter: read.reporter.clone(),
        device: read.device.clone(),
        captured_at: sync_core::incident::rfc3339(&read.captured_at),
        lat: read.location.lat,
        lon: read.location.lon,
        new_changes,
        blob_refs,
    }
}

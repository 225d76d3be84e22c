//! The server's half of a sync round trip: check and merge what a device
//! pushed, then page the change feed back to it. No HTTP here: errors are
//! [`SyncError`]s that the HTTP layer turns into status codes.

mod authors;
pub mod center;
mod manifest;
pub mod quarantine;

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{Change, ChangeHash};
pub use manifest::{ManifestStatus, manifest_status, report_manifest};
use sync_core::incident::Sealed;
use sync_core::protocol::{
    Account, Ack, Cursor, FeedChange, MAX_BODY, MAX_CHANGE, MAX_PULL, MAX_PUSH_DOCS, MAX_PUSH_INFLATED, MAX_WANT,
    PROTOCOL_VERSION, PushDoc, Refusal, SyncRequest, SyncResponse, Tag8,
};
use sync_core::rules::{Admission, Rule, RuleBroken, limits};
use sync_core::{Incident, IncidentDoc, IncidentId, Taxonomy};

use self::authors::{Authors, Owners, Verdict};
use crate::clock::ServerTime;
use crate::storage::{
    BlobKind, BlobRef, Device, FeedQuery, IncidentWrite, NewChange, Quarantined, Scope, Storage, StorageError,
    StoredDoc, SyncRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The request as a whole cannot be served.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How one pushed incident fails: refused (its ack says why, and the
/// other incidents go on), or the storage failed (the request fails).
#[derive(Debug)]
enum PushError {
    Refused(Refusal),
    Storage(StorageError),
}

impl From<StorageError> for PushError {
    fn from(e: StorageError) -> Self {
        PushError::Storage(e)
    }
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
    // A scope that grew since the last sync (a cell joined the device's
    // community) pages the feed from the start once: the new cells'
    // incidents may lie below the cursor. The device keeps what it has.
    let grew = caller
        .device
        .scope_seen
        .as_deref()
        .is_some_and(|seen| caller.scope.grew_since(seen));
    let after = if reset || grew {
        0
    } else {
        req.cursor.map(|c| c.seq).unwrap_or(0)
    };
    let scope = caller.scope.seen();
    let mut page = pull(storage, caller, after, req.pull_limit)?;
    page.changes.extend(histories(storage, caller, &req.want)?);
    let (manifest, ask_own) = manifest::record_of(&req.manifest, caller.device.manifest.as_ref());
    storage.record_sync(&SyncRecord {
        device: &caller.device.id,
        manifest: &manifest,
        clock_offset_ms: manifest::clock_offset(&req.manifest, req.device_time_ms, caller.now.ms),
        scope: Some(&scope),
        at: &caller.now.text,
    })?;
    Ok(SyncResponse {
        epoch: says_epoch(req, &epoch, reset).then_some(epoch),
        server_time_ms: caller.now.ms,
        reset,
        acks,
        changes: page.changes,
        cursor: page.cursor,
        more: page.more,
        ask_own,
        thumbs: page.thumbs,
        account: Some(account_of(caller)).filter(|a| req.account != Some(a.tag())),
    })
}

/// The caller's account as its devices are told it: the server is the
/// authority for a device's role, name and cells.
fn account_of(caller: &Caller<'_>) -> Account {
    let w = &caller.device.worker;
    Account {
        role: w.role.as_str().to_owned(),
        name: w.name.clone(),
        grids: caller.scope.cells().map(<[String]>::to_vec).unwrap_or_default(),
        number: caller.device.number,
    }
}

/// Whether the answer names the epoch: on a reset, when the device named
/// another, or when it named none and has no cursor either. A device with
/// a cursor leaves the epoch out, since a cursor that matches the feed's
/// chain can only be this same database's.
fn says_epoch(req: &SyncRequest, epoch: &str, reset: bool) -> bool {
    let has_cursor = req.cursor.is_some_and(|c| c.seq > 0);
    reset || req.epoch.as_deref().map_or(!has_cursor, |e| e != epoch)
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
        Some(c) => storage
            .change_at(c.seq)?
            .is_some_and(|chain| Tag8::of(&chain) == c.hash),
    };
    Ok(req.epoch.as_deref().is_some_and(|e| e != epoch) || !cursor_ok)
}

/// How many times a push is merged afresh when another writer (a node, a
/// dashboard action) changed one of its incidents between read and commit.
const MERGE_ATTEMPTS: usize = 8;

/// Runs `attempt` again, up to [`MERGE_ATTEMPTS`] times in all, while its
/// commit meets a concurrent write ([`StorageError::Conflict`]): the
/// commit stored nothing, and merging from the new document is right.
pub(crate) fn retry_merge<T, E>(
    mut attempt: impl FnMut() -> Result<T, E>,
    conflict: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut left = MERGE_ATTEMPTS;
    loop {
        match attempt() {
            Err(e) if left > 1 && conflict(&e) => {
                tracing::info!(
                    attempts_left = left - 1,
                    "another writer changed an incident first; merging again"
                );
                left -= 1;
            }
            done => return done,
        }
    }
}

/// Checks and merges every pushed incident, then commits the ones that
/// pass in one transaction, merging again if another writer came first.
/// Answers only the ones not stored, each with why; the device takes every
/// other pushed incident as stored.
fn ingest(storage: &dyn Storage, caller: &Caller<'_>, push: &[PushDoc]) -> Result<Vec<Ack>, SyncError> {
    // Decoded once: what the changes are does not depend on what is stored.
    let mut decoded = Vec::with_capacity(push.len());
    let mut budget = MAX_PUSH_INFLATED;
    for doc in push {
        decoded.push(match (Incoming { storage, caller, doc }).decode_all(&mut budget) {
            Ok(changes) => Ok(changes),
            Err(PushError::Refused(r)) => Err(r),
            Err(PushError::Storage(e)) => return Err(e.into()),
        });
    }
    retry_merge(
        || ingest_once(storage, caller, push, &decoded),
        |e| matches!(e, SyncError::Storage(StorageError::Conflict(_))),
    )
}

/// A pushed incident's changes decoded, or why it is refused.
type Decoding = Result<Vec<Change>, Refusal>;

/// What one attempt at a push reads in bulk before it merges anything, so
/// that a push is a few storage calls whatever its size: the stored
/// documents of its incidents, which of its changes are stored already,
/// and the devices behind its changes (looked up once each).
struct Batch {
    docs: HashMap<String, StoredDoc>,
    held: HashSet<[u8; 32]>,
    authors: Authors,
}

impl Batch {
    fn read(storage: &dyn Storage, push: &[PushDoc], decoded: &[Decoding]) -> Result<Batch, StorageError> {
        let ids: Vec<String> = push.iter().map(|d| d.id.clone()).collect();
        let hashes: Vec<[u8; 32]> = decoded.iter().flatten().flatten().map(|c| c.hash().0).collect();
        Ok(Batch {
            docs: storage.incident_docs(&ids)?,
            held: storage.held_changes(&hashes)?,
            authors: Authors::default(),
        })
    }
}

fn ingest_once(
    storage: &dyn Storage,
    caller: &Caller<'_>,
    push: &[PushDoc],
    decoded: &[Decoding],
) -> Result<Vec<Ack>, SyncError> {
    let mut batch = Batch::read(storage, push, decoded)?;
    let mut writes = Vec::with_capacity(push.len());
    let mut acks = Vec::new();
    for (doc, changes) in push.iter().zip(decoded) {
        let inc = Incoming { storage, caller, doc };
        let merged = match changes {
            Ok(changes) => merge_push(&inc, changes.clone(), &mut batch),
            Err(r) => Err(PushError::Refused(r.clone())),
        };
        match merged {
            Ok((write, ack)) => {
                writes.extend(write);
                if !ack.stored() {
                    acks.push(ack);
                }
            }
            Err(PushError::Refused(r)) => {
                tracing::warn!(device = %caller.device.id, incident = %doc.id, code = %r.code, reason = %r.message, "incident refused");
                acks.push(Ack {
                    id: doc.id.clone(),
                    need_full: false,
                    refused: Some(r),
                });
            }
            Err(PushError::Storage(e)) => return Err(e.into()),
        }
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
            hash: Tag8::of(&h),
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
            sig: r.sig.map(serde_bytes::ByteBuf::from),
        })
        .collect();
    Ok(Page {
        changes,
        cursor,
        more,
        thumbs,
    })
}

/// The whole history of each incident the device asks for that is in its
/// scope, as feed changes, up to half a page's bytes (the device asks again
/// for the rest).
fn histories(storage: &dyn Storage, caller: &Caller<'_>, want: &[String]) -> Result<Vec<FeedChange>, SyncError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for id in want.iter().take(MAX_WANT) {
        let Some(stored) = storage.incident_doc(id)? else {
            continue;
        };
        if !caller.scope.allows(&stored.grid) || bytes >= MAX_PULL_BYTES / 2 {
            continue;
        }
        let Ok(mut doc) = IncidentDoc::receiver(Some(&stored.doc)) else {
            continue;
        };
        for mut change in doc.all_changes() {
            bytes += change.raw_bytes().len();
            out.push(FeedChange {
                id: id.clone(),
                sig: storage.change_sig(&change.hash().0)?.map(serde_bytes::ByteBuf::from),
                change: serde_bytes::ByteBuf::from(change.bytes().into_owned()),
            });
        }
    }
    Ok(out)
}

/// One pushed incident on its way in: its id, its raw changes and who sent them.
struct Incoming<'a> {
    storage: &'a dyn Storage,
    caller: &'a Caller<'a>,
    doc: &'a PushDoc,
}

impl Incoming<'_> {
    fn refuse(&self, code: &str, rule: Option<Rule>, message: String) -> PushError {
        PushError::Refused(Refusal {
            code: code.to_owned(),
            rule: rule.map(|r| r.code().to_owned()),
            message,
        })
    }

    fn out_of_scope(&self, grid: &str) -> PushError {
        let message = format!(
            "incident {} is in grid cell {grid}, outside this device's cells",
            self.doc.id
        );
        self.refuse("out_of_scope", None, message)
    }

    fn rule_broken(&self, e: RuleBroken) -> PushError {
        let message = format!("incident {}: {e}", self.doc.id);
        self.refuse("rule_broken", Some(e.rule), message)
    }

    /// Keeps bytes that made Automerge fail aside for the operator, and
    /// refuses the incident.
    fn quarantine(&self, reason: &str, bytes: &[u8]) -> PushError {
        let kept = self.storage.quarantine(&Quarantined {
            device: &self.caller.device.id,
            incident: Some(&self.doc.id),
            reason,
            bytes,
            at: &self.caller.now.text,
            hash: None,
            sig: None,
        });
        match kept {
            Ok(()) => self.refuse(
                "invalid_incident",
                None,
                format!("the changes of incident {} cannot be applied", self.doc.id),
            ),
            Err(e) => e.into(),
        }
    }

    /// Keeps a relayed change of a device this server does not know (one
    /// enrolled after the backup it was restored from, say) for the
    /// operator: `sync-server quarantine list|accept|drop`.
    fn hold_unknown(&self, change: &Change, raw: &[u8], sig: Option<&[u8]>) -> Result<(), PushError> {
        tracing::warn!(incident = %self.doc.id, change = %change.hash(), "a change of an unknown device, quarantined");
        self.storage.quarantine(&Quarantined {
            device: &self.caller.device.id,
            incident: Some(&self.doc.id),
            reason: "made by a device this server does not know",
            bytes: raw,
            at: &self.caller.now.text,
            hash: Some(change.hash().0),
            sig,
        })?;
        Ok(())
    }
}

/// Checks one pushed incident (its changes decoded) and merges it into the
/// server's copy.
fn merge_push(
    inc: &Incoming<'_>,
    changes: Vec<Change>,
    batch: &mut Batch,
) -> Result<(Option<IncidentWrite>, Ack), PushError> {
    let (caller, doc) = (inc.caller, inc.doc);
    let id = doc
        .id
        .parse::<IncidentId>()
        .map_err(|e| inc.refuse("bad_change", None, e.to_string()))?;
    let existing = batch.docs.get(&doc.id).cloned();
    if let Some(StoredDoc { grid, .. }) = &existing
        && !caller.scope.allows(grid)
    {
        return Err(inc.out_of_scope(grid));
    }
    let decoded = sort_changes(inc, changes, batch)?;
    let merged = admit(inc, id, existing.as_ref(), decoded.changes, &decoded.owners)?;
    let ack = Ack {
        id: doc.id.clone(),
        need_full: merged.waiting || !merged.stored || decoded.held,
        refused: None,
    };
    let Some((read, sealed)) = merged.result else {
        // Nothing usable yet (a first push missing its own start).
        return Ok((None, ack));
    };
    if !caller.scope.allows(&read.grid) {
        return Err(inc.out_of_scope(&read.grid));
    }
    let new_changes = new_changes(inc, &merged.applied, &decoded.raw_at, &batch.held);
    let write = write_of(&doc.id, existing.as_ref(), sealed, &read, new_changes);
    if write.doc.len() > limits::MAX_DOC {
        let size = write.doc.len();
        return Err(inc.rule_broken(RuleBroken {
            rule: Rule::Limit,
            detail: format!("the document would be {size} bytes; the limit is {}", limits::MAX_DOC),
        }));
    }
    Ok((Some(write), ack))
}

/// Pushed changes, decoded, where each one's bytes are in the push, and
/// who made them.
struct Decoded {
    changes: Vec<Change>,
    raw_at: HashMap<ChangeHash, usize>,
    owners: Owners,
    /// Some change was kept in quarantine, so the server's copy lacks it.
    held: bool,
}

/// Checks each decoded change's author signature. A change the server
/// holds is skipped (any device may pass one on); one of a device the
/// server does not know is kept in quarantine, never dropped; a forged one
/// refuses the incident.
fn sort_changes(inc: &Incoming<'_>, changes: Vec<Change>, batch: &mut Batch) -> Result<Decoded, PushError> {
    let doc = inc.doc;
    let mut out = Decoded {
        changes: Vec::with_capacity(doc.changes.len()),
        raw_at: HashMap::with_capacity(doc.changes.len()),
        owners: Owners::new(),
        held: false,
    };
    for (at, change) in changes.into_iter().enumerate() {
        if batch.held.contains(&change.hash().0) {
            continue;
        }
        let raw = &doc.changes[at];
        let sig = doc.sigs.get(at).map(|s| s.as_slice()).filter(|s| !s.is_empty());
        match batch.authors.verdict(inc.storage, inc.caller.device, &change, sig)? {
            Verdict::By(owner) => {
                out.owners.insert(change.actor_id().clone(), owner);
                out.raw_at.insert(change.hash(), at);
                out.changes.push(change);
            }
            Verdict::Unknown => {
                inc.hold_unknown(&change, raw, sig)?;
                out.held = true;
            }
            Verdict::Forged(why) => {
                let message = format!("incident {}: rule `author`: {why}", doc.id);
                return Err(inc.refuse("rule_broken", Some(Rule::Author), message));
            }
        }
    }
    Ok(out)
}

impl Incoming<'_> {
    /// Every pushed change of the incident, each decoded alone, bounded
    /// and inside `catch_unwind`; the first that fails refuses the incident.
    /// `budget` is what the request's changes may still inflate to: the
    /// decoded changes of every incident are held until the commit.
    fn decode_all(&self, budget: &mut usize) -> Result<Vec<Change>, PushError> {
        self.doc
            .changes
            .iter()
            .map(|raw| decode_one(self, raw, budget))
            .collect()
    }
}

/// One change, bounded in size, checked to be a change chunk before
/// Automerge sees it (`sync_core::chunk`), and decoded inside
/// `catch_unwind`.
fn decode_one(inc: &Incoming<'_>, raw: &[u8], budget: &mut usize) -> Result<Change, PushError> {
    let id = &inc.doc.id;
    if raw.len() > MAX_CHANGE {
        let message = format!(
            "a change of incident {id} is {} bytes; the limit is {MAX_CHANGE}",
            raw.len()
        );
        return Err(inc.refuse("bad_change", None, message));
    }
    let size = sync_core::chunk::change_size(raw, MAX_CHANGE)
        .map_err(|e| inc.refuse("bad_change", None, format!("a change of incident {id} is refused: {e}")))?;
    *budget = budget.checked_sub(size).ok_or_else(|| {
        let message =
            format!("the changes of this request inflate to over {MAX_PUSH_INFLATED} bytes (at incident {id})");
        inc.refuse("bad_change", None, message)
    })?;
    match catch_unwind(AssertUnwindSafe(|| Change::from_bytes(raw.to_vec()))) {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(inc.refuse(
            "bad_change",
            None,
            format!("a change of incident {id} cannot be decoded: {e}"),
        )),
        Err(_) => Err(inc.quarantine("change decoding panicked", raw)),
    }
}

/// What admitting one push made of the server's copy.
struct Merged {
    /// The changes newly applied.
    applied: Vec<ChangeHash>,
    /// Some pushed changes wait for dependencies the server lacks.
    waiting: bool,
    /// The server's copy holds every head the device pushed.
    stored: bool,
    /// The incident as it now reads, and its checked saved bytes; `None`
    /// while it has no change.
    result: Option<(Incident, Sealed)>,
}

/// Admits the decoded changes into the server's copy (or a new one) by
/// the rules, and seals the result, all inside `catch_unwind`: what makes
/// Automerge fail is quarantined.
fn admit(
    inc: &Incoming<'_>,
    id: IncidentId,
    existing: Option<&StoredDoc>,
    changes: Vec<Change>,
    owners: &Owners,
) -> Result<Merged, PushError> {
    let pushed: Vec<ChangeHash> = changes.iter().map(Change::hash).collect();
    let run = catch_unwind(AssertUnwindSafe(|| -> Result<Result<Merged, String>, RuleBroken> {
        let receiver = IncidentDoc::receiver(existing.map(|s| s.doc.as_slice())).map_err(|e| RuleBroken {
            rule: Rule::Schema,
            detail: format!("the server's copy cannot be read: {e}"),
        })?;
        let mut admission = Admission::new(receiver, id, Taxonomy::builtin())?;
        let admitted = admission.admit_all(changes, |a| owners.get(a).map(|o| o.author()))?;
        let read = admission.incident().cloned();
        let stored = pushed.iter().all(|h| admission.holds(h));
        let mut doc = admission.into_doc();
        let result = match read {
            None => None,
            Some(read) => match doc.seal() {
                Ok(sealed) => Some((read, sealed)),
                Err(e) => return Ok(Err(e.to_string())),
            },
        };
        Ok(Ok(Merged {
            applied: admitted.applied,
            waiting: !admitted.waiting.is_empty(),
            stored,
            result,
        }))
    }));
    let all = || -> Vec<u8> { inc.doc.changes.iter().flat_map(|c| c.iter().copied()).collect() };
    match run {
        Ok(Ok(Ok(done))) => Ok(done),
        Ok(Ok(Err(why))) => Err(inc.quarantine(&why, &all())),
        Ok(Err(e)) => Err(inc.rule_broken(e)),
        Err(_) => Err(inc.quarantine("applying changes panicked", &all())),
    }
}

/// The applied changes the server does not hold yet, as the device sent
/// them: the bytes decoded to this hash, so there is no need to re-encode.
fn new_changes(
    inc: &Incoming<'_>,
    applied: &[ChangeHash],
    raw_at: &HashMap<ChangeHash, usize>,
    held: &HashSet<[u8; 32]>,
) -> Vec<NewChange> {
    let mut out = Vec::new();
    for h in applied {
        if !held.contains(&h.0)
            && let Some(&at) = raw_at.get(h)
        {
            out.push(NewChange {
                hash: h.0,
                bytes: inc.doc.changes[at].to_vec(),
                sig: inc.doc.sigs.get(at).filter(|s| !s.is_empty()).map(|s| s.to_vec()),
            });
        }
    }
    out
}

/// The merged document, its projected columns and its photo references.
pub fn write_of(
    id: &str,
    base: Option<&StoredDoc>,
    sealed: Sealed,
    read: &Incident,
    new_changes: Vec<NewChange>,
) -> IncidentWrite {
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
        base: base.map(|b| b.heads.clone()),
        doc: sealed.bytes,
        heads: sealed.heads.iter().flat_map(|h| h.0).collect(),
        grid: read.grid.clone(),
        category: read.category.clone(),
        status: read.status,
        reporter: read.reporter.clone(),
        device: read.device.clone(),
        captured_at: sync_core::incident::rfc3339(&read.captured_at),
        lat: read.location.lat,
        lon: read.location.lon,
        case_no: read.case.as_ref().map(ToString::to_string),
        new_changes,
        blob_refs,
    }
}

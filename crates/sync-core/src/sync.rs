//! The device's half of the sync protocol, as steps on the store.
//!
//! A driver (the `field sync` command) loops: [`Store::next_sync_request`]
//! → send it → [`Store::apply_sync_response`], until nothing is pending and
//! the server says no more. Each step is one SQLite transaction, so a
//! crash or a cut connection at any point leaves the store consistent, and
//! the next sync resumes: the outbox is cleared only for what the server
//! acknowledged, and the cursor moves only with the changes it covers.
//! Nothing here ever deletes an incident.

use std::collections::BTreeMap;

use automerge::{Change, ChangeHash};
use chrono::{DateTime, FixedOffset};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::account::Role;
use crate::blob::BlobHash;
use crate::incident::{Incident, IncidentDoc, IncidentId, OutChange, Sealed, decode_change, rfc3339};
use crate::protocol::{
    Account, Ack, Cursor, FeedChange, MAX_PUSH_INFLATED, MAX_WANT, Manifest, OwnDigest, PROTOCOL_VERSION, PushDoc,
    SyncRequest, SyncResponse,
};
use crate::store::{Profile, Store, StoreError, heads_from_bytes, heads_to_bytes, write_incident};

/// How far photo uploads go on this sync, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoLevel {
    None,
    Thumbs,
    Display,
    All,
}

impl PhotoLevel {
    fn kinds(self) -> &'static [&'static str] {
        match self {
            PhotoLevel::None => &[],
            PhotoLevel::Thumbs => &["thumb"],
            PhotoLevel::Display => &["thumb", "display"],
            PhotoLevel::All => &["thumb", "display", "original"],
        }
    }

    /// Whether a photo file of `kind` ("thumb", "display", "original") goes at this level.
    pub fn includes(self, kind: &str) -> bool {
        self.kinds().contains(&kind)
    }
}

/// What the device remembers about its server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub server: Option<String>,
    pub epoch: Option<String>,
    pub cursor: Option<Cursor>,
    pub last_sync: Option<String>,
    /// What the server holds of this device's manifest, which later
    /// requests need not repeat (see [`Manifest::against`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Manifest>,
}

/// A request ready to send, and what it carries.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub request: SyncRequest,
    pushed: Vec<(IncidentId, Vec<ChangeHash>)>,
    /// Bytes of Automerge changes in the request.
    pub change_bytes: usize,
}

impl Outgoing {
    pub fn pushed_docs(&self) -> usize {
        self.pushed.len()
    }
}

/// What one response did to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub acknowledged: usize,
    pub pulled_changes: usize,
    pub new_incidents: usize,
    pub reset: bool,
    /// Whether the server has more feed pages or the device more to push.
    pub more: bool,
    /// The account as the server now has it, when it differed from the
    /// device's copy; the profile has taken it in.
    pub account: Option<Account>,
}

/// A photo blob waiting to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBlob {
    pub hash: BlobHash,
    pub kind: String,
    pub size: u64,
}

/// The meta key of the account as the server last sent it.
const ACCOUNT: &str = "account";

/// Takes in the server's account: the role, the name and (when the server
/// lists any) the cells replace the profile's; kept as sent, so the next
/// request's tag matches.
fn take_account(tx: &rusqlite::Transaction<'_>, mut profile: Profile, a: &Account) -> Result<(), StoreError> {
    profile.role = Role::parse(&a.role).or(profile.role);
    if !a.name.is_empty() {
        profile.name = Some(a.name.clone());
    }
    if !a.grids.is_empty() {
        profile.grids = a.grids.clone();
    }
    profile.number = a.number.or(profile.number);
    let put = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)";
    tx.execute(
        put,
        params!["profile", serde_json::to_string(&profile).expect("profile serialises")],
    )?;
    tx.execute(
        put,
        params![ACCOUNT, serde_json::to_string(a).expect("account serialises")],
    )?;
    Ok(())
}

/// The meta key of the last measured clock offset.
const CLOCK_OFFSET: &str = "clock_offset_ms";

impl Store {
    pub fn sync_state(&self) -> Result<SyncState, StoreError> {
        match self.meta("sync")? {
            None => Ok(SyncState::default()),
            Some(json) => serde_json::from_str(&json).map_err(|e| StoreError::Meta {
                what: "sync state",
                reason: e.to_string(),
            }),
        }
    }

    fn put_sync_state(tx: &rusqlite::Transaction<'_>, state: &SyncState) -> Result<(), StoreError> {
        tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('sync', ?1)",
            [serde_json::to_string(state).expect("sync state serialises")],
        )?;
        Ok(())
    }

    /// Records the server after enrolment. A different server than before
    /// gets everything pushed again; incidents refused before are retried.
    pub fn set_server(&mut self, url: &str, epoch: &str) -> Result<(), StoreError> {
        let mut state = self.sync_state()?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if state.server.as_deref() != Some(url) || state.epoch.as_deref() != Some(epoch) {
            reset_for_new_server(&tx)?;
            state.cursor = None;
            state.reported = None;
        }
        tx.execute("UPDATE outbox SET held_code = NULL, held_reason = NULL", [])?;
        state.server = Some(url.to_owned());
        state.epoch = Some(epoch.to_owned());
        Self::put_sync_state(&tx, &state)?;
        tx.commit()?;
        Ok(())
    }

    /// Incidents in the device's log.
    pub fn incident_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM incidents", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The summary of the device's log that each sync carries, in full.
    pub fn manifest(&self) -> Result<Manifest, StoreError> {
        let count = |sql: &str| -> Result<u64, StoreError> {
            let n: i64 = self.conn.query_row(sql, [], |r| r.get(0))?;
            Ok(n as u64)
        };
        let own: Vec<String> = {
            let device = self.profile()?.device.to_string();
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id FROM incidents WHERE device = ?1 ORDER BY id")?;
            stmt.query_map([device], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        Ok(Manifest {
            own: Some(OwnDigest::of(own.iter().map(String::as_str))),
            pending_docs: count("SELECT count(*) FROM outbox WHERE held_code IS NULL")?,
            refused_docs: count("SELECT count(*) FROM outbox WHERE held_code IS NOT NULL")?,
            pending_photos: count("SELECT count(*) FROM blobs WHERE uploaded_at IS NULL")?,
            clock_offset_ms: self.meta(CLOCK_OFFSET)?.and_then(|v| v.parse().ok()),
        })
    }

    /// Keeps the device clock's offset against the server, as measured by
    /// the last sync, for the next manifest to report.
    pub fn set_clock_offset(&mut self, offset_ms: i64) -> Result<(), StoreError> {
        self.set_meta(CLOCK_OFFSET, &offset_ms.to_string())
    }

    /// Builds the next request: up to `max_docs` pending incidents (fewer
    /// once `max_bytes` of changes are reached), and a pull.
    pub fn next_sync_request(
        &mut self,
        device_time_ms: i64,
        pull_limit: u32,
        max_docs: usize,
        max_bytes: usize,
    ) -> Result<Outgoing, StoreError> {
        let state = self.sync_state()?;
        let actor = self.profile()?.actor();
        let pending: Vec<(String, Vec<u8>)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT incident_id, acked_heads FROM outbox WHERE held_code IS NULL ORDER BY queued_at, incident_id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut push = Vec::new();
        let mut pushed = Vec::new();
        let mut change_bytes = 0;
        // What the server counts against `MAX_PUSH_INFLATED`.
        let mut inflated = 0;
        for (id, acked) in pending {
            let full = change_bytes >= max_bytes || inflated >= MAX_PUSH_INFLATED / 2;
            if push.len() >= max_docs || (full && !push.is_empty()) {
                break;
            }
            let id: IncidentId = id.parse().map_err(|_| StoreError::NotFound(id.clone()))?;
            let mut doc = self.load(&id, actor.clone())?;
            let heads = doc.heads();
            // Every change the server has not acknowledged, whoever made
            // it, with its author's signature: after a restore, a device
            // brings back its colleagues' changes too.
            let out = doc.changes_since(&heads_from_bytes(&acked));
            inflated += out.iter().map(|c| c.raw_len).sum::<usize>();
            let (changes, sigs) = signed_changes(&self.conn, out)?;
            change_bytes += changes.iter().map(|c| c.len()).sum::<usize>();
            push.push(PushDoc {
                id: id.to_string(),
                changes,
                sigs,
            });
            pushed.push((id, heads));
        }
        // The manifest tells how things stand once this push is
        // acknowledged, so the last round of a sync leaves it current.
        let mut manifest = self.manifest()?;
        manifest.pending_docs = manifest.pending_docs.saturating_sub(push.len() as u64);
        Ok(Outgoing {
            request: SyncRequest {
                want: wanted_histories(&self.conn)?,
                version: PROTOCOL_VERSION,
                // A measured offset says more than the clock's reading.
                device_time_ms: manifest.clock_offset_ms.is_none().then_some(device_time_ms),
                manifest: manifest.against(state.reported.as_ref()),
                // A cursor on the feed's chain names the database already.
                epoch: state.epoch.filter(|_| !state.cursor.is_some_and(|c| c.seq > 0)),
                cursor: state.cursor,
                pull_limit,
                push,
                account: self.account()?.map(|a| a.tag()),
            },
            pushed,
            change_bytes,
        })
    }

    /// Applies a response in one transaction: acknowledgements clear the
    /// outbox, feed changes merge into local documents, the cursor moves.
    pub fn apply_sync_response(
        &mut self,
        out: &Outgoing,
        resp: &SyncResponse,
        now: DateTime<FixedOffset>,
    ) -> Result<Applied, StoreError> {
        let mut state = self.sync_state()?;
        let profile = self.profile()?;
        let mut applied = Applied {
            reset: resp.reset,
            ..Applied::default()
        };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if resp.reset
            || resp
                .epoch
                .as_ref()
                .is_some_and(|e| state.epoch.as_ref().is_some_and(|mine| mine != e))
        {
            // A new or restored server: offer it everything again.
            reset_for_new_server(&tx)?;
            applied.reset = true;
        } else {
            for (id, heads) in &out.pushed {
                let id = id.to_string();
                let ack = resp.acks.iter().find(|a| a.id == id);
                if apply_ack(&tx, &id, heads, ack)? {
                    applied.acknowledged += 1;
                }
            }
        }
        let parked = |tx: &rusqlite::Transaction<'_>| -> Result<i64, StoreError> {
            Ok(tx.query_row("SELECT count(*) FROM parked", [], |r| r.get(0))?)
        };
        let parked_before = parked(&tx)?;
        for (id, changes) in feed_by_incident(&tx, &resp.changes)? {
            if let Some(pulled) = merge_pulled(&tx, id, changes, now)? {
                applied.pulled_changes += pulled.changes;
                applied.new_incidents += usize::from(pulled.new);
            }
        }
        // Newly parked changes make the next request ask for their
        // incidents' whole histories, in this same sync.
        let newly_parked = parked(&tx)? > parked_before;
        applied.more = advance(&tx, &mut state, resp, applied.reset, &out.request.manifest, now)? || newly_parked;
        if let Some(account) = &resp.account {
            take_account(&tx, profile, account)?;
            applied.account = Some(account.clone());
        }
        tx.commit()?;
        Ok(applied)
    }

    /// Takes in the account the server sent at enrolment, as a sync's
    /// answer would.
    pub fn adopt_account(&mut self, account: &Account) -> Result<(), StoreError> {
        let profile = self.profile()?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        take_account(&tx, profile, account)?;
        tx.commit()?;
        Ok(())
    }

    /// The account as the server last sent it, if it has.
    pub fn account(&self) -> Result<Option<Account>, StoreError> {
        match self.meta(ACCOUNT)? {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| StoreError::Meta {
                what: "account",
                reason: e.to_string(),
            }),
        }
    }

    /// Thumbnails of others' incidents that this device still lacks.
    pub fn wanted_thumbs(&self) -> Result<Vec<BlobHash>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM wanted WHERE kind = 'thumb' ORDER BY incident_id")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(h) = row?.parse() {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// Sets an incident the server refused aside, so the rest can sync. A
    /// later local edit, or a new enrolment, offers it again.
    pub fn hold(&mut self, id: &str, code: &str, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET held_code = ?2, held_reason = ?3 WHERE incident_id = ?1",
            params![id, code, reason],
        )?;
        Ok(())
    }

    /// Incidents the server refused: (id, code, reason).
    pub fn held(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT incident_id, held_code, held_reason FROM outbox WHERE held_code IS NOT NULL ORDER BY incident_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Blobs not yet on the server, thumbnails first, then display copies,
    /// then originals, up to `level`.
    pub fn pending_uploads(&self, level: PhotoLevel) -> Result<Vec<PendingBlob>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash, kind, size FROM blobs WHERE uploaded_at IS NULL
             ORDER BY CASE kind WHEN 'thumb' THEN 0 WHEN 'display' THEN 1 ELSE 2 END, created_at, hash",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, kind, size) = row?;
            if !level.kinds().contains(&kind.as_str()) {
                continue;
            }
            let hash = hash.parse().map_err(|_| StoreError::Meta {
                what: "blob rows",
                reason: format!("`{hash}` is not a hash"),
            })?;
            out.push(PendingBlob {
                hash,
                kind,
                size: size as u64,
            });
        }
        Ok(out)
    }

    pub fn mark_uploaded(&mut self, hash: &BlobHash, now: DateTime<FixedOffset>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE blobs SET uploaded_at = ?2 WHERE hash = ?1 AND uploaded_at IS NULL",
            params![hash.to_hex(), rfc3339(&now)],
        )?;
        Ok(())
    }

    /// Stores a blob fetched from the server, after checking its hash.
    /// Returns false when the bytes do not match.
    pub fn add_fetched_blob(
        &mut self,
        expected: &BlobHash,
        bytes: &[u8],
        kind: &str,
        now: DateTime<FixedOffset>,
    ) -> Result<bool, StoreError> {
        if BlobHash::of(bytes) != *expected {
            return Ok(false);
        }
        let (width, height) = image_size(bytes);
        self.blobs.stage(bytes)?;
        self.conn.execute(
            "INSERT OR IGNORE INTO blobs (hash, size, kind, mime, width, height, created_at, uploaded_at)
             VALUES (?1, ?2, ?3, 'image/jpeg', ?4, ?5, ?6, ?6)",
            params![
                expected.to_hex(),
                bytes.len() as i64,
                kind,
                width,
                height,
                rfc3339(&now)
            ],
        )?;
        self.blobs.publish(expected)?;
        self.conn
            .execute("DELETE FROM wanted WHERE hash = ?1", [expected.to_hex()])?;
        Ok(true)
    }
}

// The steps of `Store::apply_sync_response`, each inside its transaction.

/// Records what the server did with one pushed incident: `ack` is its
/// entry in the answer, if it has one; a pushed incident the answer does
/// not list is stored. Returns whether it counts as acknowledged: not for
/// one refused, nor for one the server asks to have in full.
fn apply_ack(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    heads: &[ChangeHash],
    ack: Option<&Ack>,
) -> Result<bool, StoreError> {
    if let Some(r) = ack.and_then(|a| a.refused.as_ref()) {
        tx.prepare_cached("UPDATE outbox SET held_code = ?2, held_reason = ?3 WHERE incident_id = ?1")?
            .execute(params![id, r.code, r.message])?;
        return Ok(false);
    }
    if ack.is_some_and(|a| a.need_full) {
        tx.prepare_cached("UPDATE outbox SET acked_heads = X'' WHERE incident_id = ?1")?
            .execute([id])?;
        return Ok(false);
    }
    let pushed = heads_to_bytes(heads);
    let current: Vec<u8> = tx
        .prepare_cached("SELECT heads FROM incidents WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    if current == pushed {
        tx.prepare_cached("DELETE FROM outbox WHERE incident_id = ?1")?
            .execute([id])?;
    } else {
        tx.prepare_cached("UPDATE outbox SET acked_heads = ?2 WHERE incident_id = ?1")?
            .execute(params![id, pushed])?;
    }
    Ok(true)
}

/// The feed's changes decoded and grouped by incident, their signatures
/// kept; an undecodable change is skipped.
fn feed_by_incident<'f>(
    tx: &rusqlite::Transaction<'_>,
    feed: &'f [FeedChange],
) -> Result<BTreeMap<&'f str, Vec<Change>>, StoreError> {
    let mut by_incident: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
    let mut keep = tx.prepare_cached("INSERT OR IGNORE INTO change_sigs (hash, sig) VALUES (?1, ?2)")?;
    for fc in feed {
        match decode_change(fc.change.to_vec()) {
            Ok(c) => {
                if let Some(sig) = &fc.sig {
                    keep.execute(params![c.hash().0.to_vec(), sig.as_slice()])?;
                }
                by_incident.entry(fc.id.as_str()).or_default().push(c)
            }
            Err(e) => tracing::warn!(incident = %fc.id, error = %e, "server sent an undecodable change; skipped"),
        }
    }
    Ok(by_incident)
}

/// Pairs each change with the signature this device holds for it.
fn signed_changes(
    conn: &rusqlite::Connection,
    changes: Vec<OutChange>,
) -> Result<(Vec<serde_bytes::ByteBuf>, Vec<serde_bytes::ByteBuf>), StoreError> {
    let mut get = conn.prepare_cached("SELECT sig FROM change_sigs WHERE hash = ?1")?;
    let mut out = (Vec::with_capacity(changes.len()), Vec::with_capacity(changes.len()));
    for OutChange { hash, bytes, .. } in changes {
        let sig: Option<Vec<u8>> = get.query_row([hash.0.to_vec()], |r| r.get(0)).optional()?;
        out.0.push(serde_bytes::ByteBuf::from(bytes));
        out.1.push(serde_bytes::ByteBuf::from(sig.unwrap_or_default()));
    }
    if out.1.iter().all(|s| s.is_empty()) {
        out.1.clear(); // a device without a key sends no signatures at all
    }
    Ok(out)
}

/// What merging one incident's feed changes did.
struct Pulled {
    changes: usize,
    new: bool,
}

/// Merges the server's changes to one incident, with any parked before,
/// into the local copy (or a new one) and stores it when the result is a
/// whole, valid incident of that id whose saved bytes load back. Changes
/// that cannot be applied or stored yet are parked, never dropped.
fn merge_pulled(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    mut changes: Vec<Change>,
    now: DateTime<FixedOffset>,
) -> Result<Option<Pulled>, StoreError> {
    let existing: Option<Vec<u8>> = tx
        .query_row("SELECT doc FROM incidents WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let mut doc = IncidentDoc::receiver(existing.as_deref()).map_err(|e| StoreError::Corrupt {
        id: id.to_owned(),
        source: Box::new(e),
    })?;
    let parked = parked_of(tx, id)?;
    let had_parked = !parked.is_empty();
    changes.extend(parked);
    // Automerge may panic on hostile bytes, here or in a debug self-check
    // of a later lookup, so everything that touches the copy runs inside.
    let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| merge_into(&mut doc, id, &changes)));
    let Ok(Some(merged)) = merged else {
        tracing::warn!(incident = %id, "could not apply the server's changes; parked");
        park(tx, id, &changes)?;
        return Ok(None);
    };
    let (done, waiting): (Vec<Change>, Vec<Change>) =
        changes.into_iter().partition(|c| !merged.waiting.contains(&c.hash()));
    park(tx, id, &waiting)?;
    let Some((incident, sealed)) = merged.stored else {
        park(tx, id, &done)?;
        return Ok(None);
    };
    let hashes: Vec<ChangeHash> = done.iter().map(|c| c.hash()).collect();
    if had_parked {
        unpark(tx, &hashes)?;
    }
    write_incident(tx, &incident, &sealed.bytes, &sealed.heads, now)?;
    mark_known_to_server(tx, id, &hashes)?;
    want_thumbs(tx, &incident)?;
    Ok(Some(Pulled {
        changes: hashes.len(),
        new: existing.is_none(),
    }))
}

/// What applying pulled changes to a copy came to.
struct MergedCopy {
    /// The changes waiting for dependencies that have not arrived.
    waiting: std::collections::HashSet<ChangeHash>,
    /// The incident and its sealed bytes, if the copy is a whole incident
    /// of the right id and its saved bytes load back.
    stored: Option<(Incident, Sealed)>,
}

/// Applies `changes` to `doc`; `None` if Automerge refuses them.
fn merge_into(doc: &mut IncidentDoc, id: &str, changes: &[Change]) -> Option<MergedCopy> {
    doc.apply_changes(changes.to_vec()).ok()?;
    // Usually nothing waits, which one call tells without a lookup per change.
    let waiting = match doc.waits_for_dependencies() {
        true => changes
            .iter()
            .map(Change::hash)
            .filter(|h| !doc.has_change(h))
            .collect(),
        false => Default::default(),
    };
    let stored = match doc.read() {
        Ok(i) if i.id.to_string() != id => {
            tracing::warn!(incident = %id, inside = %i.id, "feed change names another incident; parked");
            None
        }
        // Only bytes that load back are stored (docs/fuzzing.md, findings
        // 1 and 2); the stored copy stays as it was.
        Ok(i) => match doc.seal() {
            Ok(sealed) => Some((i, sealed)),
            Err(e) => {
                tracing::warn!(incident = %id, error = %e, "the server's changes do not load back; parked");
                None
            }
        },
        Err(e) => {
            // The incident's first change has not arrived: the changes wait
            // parked, and the next request asks for its whole history.
            tracing::debug!(incident = %id, error = %e, "incident not complete yet");
            None
        }
    };
    Some(MergedCopy { waiting, stored })
}

/// Changes of `id` parked by an earlier pull.
fn parked_of(tx: &rusqlite::Transaction<'_>, id: &str) -> Result<Vec<Change>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT bytes FROM parked WHERE incident_id = ?1")?;
    let rows = stmt.query_map([id], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for bytes in rows {
        if let Ok(c) = decode_change(bytes?) {
            out.push(c);
        }
    }
    Ok(out)
}

fn park(tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Change]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO parked (hash, incident_id, bytes) VALUES (?1, ?2, ?3)")?;
    for c in changes {
        stmt.execute(params![c.hash().0.to_vec(), id, c.raw_bytes()])?;
    }
    Ok(())
}

fn unpark(tx: &rusqlite::Transaction<'_>, hashes: &[ChangeHash]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached("DELETE FROM parked WHERE hash = ?1")?;
    for h in hashes {
        stmt.execute([h.0.to_vec()])?;
    }
    Ok(())
}

/// Incidents with parked changes, whose whole history the next request
/// asks for: at most [`MAX_WANT`].
fn wanted_histories(conn: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT incident_id FROM parked ORDER BY incident_id LIMIT ?1")?;
    let rows = stmt.query_map([MAX_WANT as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The server has these changes, so they need not be pushed back.
fn mark_known_to_server(tx: &rusqlite::Transaction<'_>, id: &str, hashes: &[ChangeHash]) -> Result<(), StoreError> {
    let acked: Option<Vec<u8>> = tx
        .query_row("SELECT acked_heads FROM outbox WHERE incident_id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    if let Some(mut acked) = acked {
        acked.extend(hashes.iter().flat_map(|h| h.0));
        tx.prepare_cached("UPDATE outbox SET acked_heads = ?2 WHERE incident_id = ?1")?
            .execute(params![id, acked])?;
    }
    Ok(())
}

/// Queues the thumbnails of an incident's photos this device lacks.
fn want_thumbs(tx: &rusqlite::Transaction<'_>, incident: &Incident) -> Result<(), StoreError> {
    let id = incident.id.to_string();
    for photo in &incident.photos {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO wanted (hash, kind, incident_id)
             SELECT ?1, 'thumb', ?2 WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE hash = ?1)",
        )?
        .execute(params![photo.thumb.to_hex(), id])?;
    }
    Ok(())
}

/// Moves the cursor (or drops it after a reset), stamps a finished sync and
/// stores the state. Returns whether the device should ask again: the
/// server has more, a reset means starting over, or pushes still wait.
fn advance(
    tx: &rusqlite::Transaction<'_>,
    state: &mut SyncState,
    resp: &SyncResponse,
    reset: bool,
    sent: &Manifest,
    now: DateTime<FixedOffset>,
) -> Result<bool, StoreError> {
    if let Some(e) = &resp.epoch {
        state.epoch = Some(e.clone());
    }
    state.cursor = if reset { None } else { resp.cursor.or(state.cursor) };
    // What the server now holds of this device's manifest: what it held
    // and what was just sent, unless it lacked some or starts over.
    state.reported = match reset || resp.ask_own {
        true => None,
        false => Some(state.reported.unwrap_or_default().updated_by(sent)),
    };
    let pending: i64 = tx.query_row("SELECT count(*) FROM outbox WHERE held_code IS NULL", [], |r| r.get(0))?;
    // A server that asked for the own digest gets it in the same sync.
    let more = resp.more || reset || pending > 0 || resp.ask_own;
    if !more {
        state.last_sync = Some(rfc3339(&now));
    }
    Store::put_sync_state(tx, state)?;
    Ok(more)
}

/// The pixel size a PNG or JPEG header states, (0, 0) for anything else.
/// Only the header is read: a fetched thumbnail's row needs its size, and
/// decoding it (or linking a decoder) for that would be waste.
fn image_size(bytes: &[u8]) -> (u32, u32) {
    png_size(bytes).or_else(|| jpeg_size(bytes)).unwrap_or((0, 0))
}

/// A PNG starts with its signature and then the IHDR chunk: length,
/// `IHDR`, width and height (big-endian).
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n")?;
    if ihdr.get(4..8)? != b"IHDR" {
        return None;
    }
    let be32 = |at: usize| Some(u32::from_be_bytes(ihdr.get(at..at + 4)?.try_into().ok()?));
    Some((be32(8)?, be32(12)?))
}

/// A JPEG is a chain of marker segments (`FF`, a marker byte, then a
/// big-endian length that counts itself) before the scan data; the first
/// start-of-frame segment holds precision, height and width.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        // Any number of FF fill bytes may come before a marker.
        while *bytes.get(at)? == 0xFF {
            at += 1;
        }
        let marker = bytes[at];
        at += 1;
        match marker {
            // Markers without a length: TEM and the restart markers.
            0x01 | 0xD0..=0xD7 => continue,
            // Start of image again, end of image, or the scan, before any frame.
            0xD8..=0xDA => return None,
            // Start of frame, of every coding: all of C0..=CF except DHT
            // (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let (height, width) = (be16(at + 3)?, be16(at + 5)?);
                return Some((u32::from(width), u32::from(height)));
            }
            _ => {
                let len = usize::from(be16(at)?);
                if len < 2 {
                    return None;
                }
                at += len;
            }
        }
    }
}

/// Queues every incident and every blob to be offered again.
fn reset_for_new_server(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outbox (incident_id, acked_heads, queued_at)
         SELECT id, X'', updated_at FROM incidents WHERE true
         ON CONFLICT(incident_id) DO UPDATE SET acked_heads = X''",
        [],
    )?;
    tx.execute("UPDATE blobs SET uploaded_at = NULL", [])?;
    Ok(())
}

/// For tests: the id of every incident with changes to push.
#[cfg(feature = "test-support")]
pub fn outbox_ids(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut stmt = store
        .conn
        .prepare("SELECT incident_id FROM outbox ORDER BY incident_id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../../fixtures/photos/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    #[track_caller]
    fn check(bytes: &[u8], expected: (u32, u32)) {
        assert_eq!(image_size(bytes), expected);
    }

    #[test]
    fn sizes_come_from_the_header() {
        check(&fixture("manhole-exif.jpg"), (1200, 900));
        // The stored size: EXIF orientation 6 does not turn the header.
        check(&fixture("rotated-exif6.jpg"), (800, 600));
        check(&fixture("wide-2400x1000.jpg"), (2400, 1000));
        check(&fixture("curb.png"), (640, 480));
        // The frame header is near the start, so a cut-off file still has it.
        check(&fixture("truncated.jpg"), (1200, 900));
        check(&fixture("not-an-image.jpg"), (0, 0));
        check(&fixture("zero-bytes.png"), (0, 0));
    }

    #[test]
    fn fill_bytes_standalone_markers_and_other_frame_kinds_are_read() {
        // SOI, a restart marker, fill bytes, an APP0 segment with a
        // two-byte body, then a progressive frame (C2) of 33 × 17 pixels.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xD0, 0xFF, 0xFF, 0xFF, 0xE0, 0x00, 0x04, b'h', b'i', 0xFF, 0xC2, 0x00, 0x11, 0x08, 0x00,
            0x11, 0x00, 0x21, 0x03,
        ];
        check(&jpeg, (33, 17));
        // A Huffman table (C4) is not a frame, though it is in the C0 range.
        let dht_first = [
            0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x02, 0x00, 0x05,
        ];
        check(&dht_first, (5, 2));
    }

    #[test]
    fn headers_that_end_or_lie_give_no_size() {
        for bytes in [
            &[0xFF, 0xD8][..],
            &[0xFF, 0xD8, 0xFF],
            &[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00],
            // The scan starts before any frame header.
            &[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02],
            // A length that does not count itself.
            &[0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01, 0xFF, 0xC0],
            // No marker where a segment should start.
            &[0xFF, 0xD8, 0x00, 0xC0],
            b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0",
            b"\x89PNG\r\n\x1a\n\0\0\0\x0dIDAT\0\0\0\x01\0\0\0\x01",
        ] {
            check(bytes, (0, 0));
        }
        let jpeg = fixture("manhole-exif.jpg");
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline frame header");
        for cut in 0..sof + 9 {
            check(&jpeg[..cut], (0, 0));
        }
        check(&jpeg[..sof + 9], (1200, 900));
    }

    /// The header reader says what the decoder says, on every fixture.
    #[cfg(feature = "photo")]
    #[test]
    fn sizes_agree_with_the_image_crate() {
        for name in [
            "manhole-exif.jpg",
            "rotated-exif6.jpg",
            "wide-2400x1000.jpg",
            "curb.png",
            "truncated.jpg",
        ] {
            let bytes = fixture(name);
            let decoded = image::ImageReader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .unwrap()
                .into_dimensions()
                .unwrap();
            assert_eq!(image_size(&bytes), decoded, "{name}");
        }
    }

    proptest! {
        /// Arbitrary bytes after a JPEG or PNG start never panic or loop.
        #[test]
        fn any_bytes_are_safe(png: bool, tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = if png { b"\x89PNG\r\n\x1a\n".to_vec() } else { vec![0xFF, 0xD8] };
            bytes.extend(tail);
            image_size(&bytes);
        }
    }
}

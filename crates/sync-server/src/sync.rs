//! The server's half of a sync round trip: check and merge what a device
//! pushed, then page the change feed back to it. No HTTP here: errors are
//! [`SyncError`]s that `api.rs` turns into status codes.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{Change, ChangeHash};
use serde::Serialize;
use sync_core::protocol::{
    Ack, Cursor, FeedChange, Hash32, MAX_CHANGE, MAX_PULL, MAX_PUSH_DOCS, Manifest, ManifestReply, ManifestReport,
    OwnDigest, PROTOCOL_VERSION, SyncRequest, SyncResponse,
};
use sync_core::{IncidentDoc, IncidentId};

use crate::storage::{Device, IncidentWrite, Scope, Storage, StorageError};

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

/// Where a device may read and write.
pub fn scope_of(device: &Device, grids: &sync_core::GridMap) -> Scope {
    use crate::storage::Role;
    match device.worker.role {
        Role::Operator => Scope::All,
        Role::Worker => Scope::Grids(device.worker.grids.clone()),
        Role::Center => {
            let community = device.worker.community.as_deref().unwrap_or_default();
            Scope::Grids(grids.community_cells(community))
        }
    }
}

fn check_version(version: u32) -> Result<(), SyncError> {
    if version == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(SyncError::BadRequest(format!(
        "protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
    )))
}

/// Runs one sync round trip. `now_ms` and `now` are the server clock.
pub fn sync(
    storage: &dyn Storage,
    device: &Device,
    scope: &Scope,
    req: &SyncRequest,
    now_ms: i64,
    now: &str,
) -> Result<SyncResponse, SyncError> {
    check_version(req.version)?;
    if req.push.len() > MAX_PUSH_DOCS {
        return Err(SyncError::BadRequest(format!(
            "{} incidents in one push; the limit is {MAX_PUSH_DOCS}",
            req.push.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(req.push.len());
    if let Some(doc) = req.push.iter().find(|d| !seen.insert(d.id.as_str())) {
        return Err(SyncError::BadRequest(format!(
            "incident {} appears twice in one push; send each incident's changes once",
            doc.id
        )));
    }
    let epoch = storage.epoch()?;
    let cursor_ok = match req.cursor {
        None => true,
        Some(c) if c.seq == 0 => true,
        Some(c) => storage.change_at(c.seq)? == Some(c.hash.0),
    };
    let reset = req.epoch.as_deref().is_some_and(|e| e != epoch) || !cursor_ok;

    let mut acks = Vec::new();
    if !reset && !req.push.is_empty() {
        let mut writes = Vec::with_capacity(req.push.len());
        for doc in &req.push {
            let (write, ack) = merge_push(storage, device, scope, doc, now)?;
            writes.extend(write);
            acks.push(ack);
        }
        storage.commit_push(&writes, &device.id, now)?;
    }

    let after = if reset {
        0
    } else {
        req.cursor.map(|c| c.seq).unwrap_or(0)
    };
    let limit = req.pull_limit.clamp(1, MAX_PULL);
    let (rows, max_seq) = storage.feed(after, scope, &device.id, limit)?;
    let more = rows.len() as u32 == limit;
    let last = if more {
        rows.last().map(|r| r.seq).unwrap_or(after)
    } else {
        max_seq.max(after)
    };
    let cursor = if last == 0 {
        None
    } else {
        storage.change_at(last)?.map(|h| Cursor {
            seq: last,
            hash: Hash32(h),
        })
    };
    let mut incidents: Vec<String> = rows.iter().map(|r| r.incident_id.clone()).collect();
    incidents.dedup();
    let thumbs = storage.thumbs_of(&incidents)?;
    let changes = rows
        .into_iter()
        .map(|r| FeedChange {
            id: r.incident_id,
            change: serde_bytes::ByteBuf::from(r.bytes),
        })
        .collect();

    storage.record_sync(
        &device.id,
        &manifest_json(&req.manifest),
        req.device_time_ms.saturating_sub(now_ms),
        now,
    )?;

    Ok(SyncResponse {
        epoch,
        server_time_ms: now_ms,
        reset,
        acks,
        changes,
        cursor,
        more,
        thumbs,
    })
}

/// A manifest as the server keeps it (the `devices.manifest` column).
fn manifest_json(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "incidents": m.incidents,
        "digest": hex(&m.digest.0),
        "pending_docs": m.pending_docs,
        "pending_photos": m.pending_photos,
        "own": { "count": m.own.count, "digest": hex(&m.own.digest.0) },
    })
}

/// A device's latest manifest against what the server holds from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestStatus {
    /// When the manifest arrived (server clock).
    pub last_sync_at: String,
    /// The server holds every incident the device created, and the device
    /// had no records or photos waiting.
    pub in_step: bool,
    /// Incidents with changes the device had not yet pushed.
    pub pending_docs: u64,
    /// Photo files the device had not yet uploaded.
    pub pending_photos: u64,
    /// Incidents the device had created.
    pub device_own: u64,
    /// Of those, the ones the server holds.
    pub server_own: u64,
}

/// `None` when the device has never sent a manifest.
pub fn manifest_status(storage: &dyn Storage, device: &Device) -> Result<Option<ManifestStatus>, StorageError> {
    let (Some(manifest), Some(at)) = (&device.manifest, &device.last_sync_at) else {
        return Ok(None);
    };
    let ids = storage.own_incident_ids(&device.id)?;
    let server = OwnDigest::of(ids.iter().map(String::as_str));
    Ok(Some(compare(manifest, server, at)))
}

fn compare(manifest: &serde_json::Value, server: OwnDigest, at: &str) -> ManifestStatus {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let pending_docs = n(&manifest["pending_docs"]);
    let pending_photos = n(&manifest["pending_photos"]);
    let device_own = n(&manifest["own"]["count"]);
    let same = device_own == server.count && manifest["own"]["digest"].as_str() == Some(hex(&server.digest.0).as_str());
    ManifestStatus {
        last_sync_at: at.to_owned(),
        in_step: same && pending_docs == 0 && pending_photos == 0,
        pending_docs,
        pending_photos,
        device_own,
        server_own: server.count,
    }
}

/// Records a manifest sent on its own, and answers whether the server agrees.
pub fn report_manifest(
    storage: &dyn Storage,
    device: &Device,
    report: &ManifestReport,
    now_ms: i64,
    now: &str,
) -> Result<ManifestReply, SyncError> {
    check_version(report.version)?;
    let json = manifest_json(&report.manifest);
    storage.record_sync(&device.id, &json, report.device_time_ms.saturating_sub(now_ms), now)?;
    let ids = storage.own_incident_ids(&device.id)?;
    let status = compare(&json, OwnDigest::of(ids.iter().map(String::as_str)), now);
    Ok(ManifestReply {
        in_step: status.in_step,
        server_own: status.server_own,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one pushed incident and merges it into the server's copy.
fn merge_push(
    storage: &dyn Storage,
    device: &Device,
    scope: &Scope,
    doc: &sync_core::protocol::PushDoc,
    now: &str,
) -> Result<(Option<IncidentWrite>, Ack), SyncError> {
    let incident = Some(doc.id.clone());
    let invalid = |reason: String| SyncError::Invalid {
        incident: incident.clone(),
        reason,
    };
    doc.id
        .parse::<IncidentId>()
        .map_err(|e| SyncError::BadRequest(e.to_string()))?;

    let mut changes = Vec::with_capacity(doc.changes.len());
    // Changes the server already holds, somewhere: they may come back from
    // any device, but only into the incident they belong to.
    let mut known = Vec::new();
    for raw in &doc.changes {
        if raw.len() > MAX_CHANGE {
            return Err(SyncError::BadRequest(format!(
                "a change of incident {} is {} bytes; the limit is {MAX_CHANGE}",
                doc.id,
                raw.len()
            )));
        }
        let decoded = catch_unwind(AssertUnwindSafe(|| Change::from_bytes(raw.to_vec())));
        let change = match decoded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(SyncError::BadRequest(format!(
                    "a change of incident {} cannot be decoded: {e}",
                    doc.id
                )));
            }
            Err(_) => {
                storage.quarantine(&device.id, Some(&doc.id), "change decoding panicked", raw, now)?;
                return Err(invalid("a change could not be decoded".into()));
            }
        };
        let is_known = storage.has_change(&change.hash().0)?;
        if is_known {
            known.push(change.hash());
        }
        if change.actor_id().to_bytes() != device.actor.as_slice() && !is_known {
            return Err(SyncError::Forbidden {
                incident: incident.clone(),
                reason: format!(
                    "incident {} carries a change made by another device that this server has not seen",
                    doc.id
                ),
            });
        }
        changes.push(change);
    }

    let existing = storage.incident_doc(&doc.id)?;
    if let Some((_, grid)) = &existing
        && !scope.allows(grid)
    {
        return Err(SyncError::Forbidden {
            incident: incident.clone(),
            reason: format!(
                "incident {} is in grid cell {grid}, outside this device's cells",
                doc.id
            ),
        });
    }
    let merged = catch_unwind(AssertUnwindSafe(
        || -> Result<(IncidentDoc, Vec<ChangeHash>), String> {
            let mut am =
                IncidentDoc::receiver(existing.as_ref().map(|(b, _)| b.as_slice())).map_err(|e| e.to_string())?;
            if let Some(h) = known.iter().find(|h| !am.has_change(h)) {
                return Err(format!("it carries change {h}, which belongs to another incident"));
            }
            let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
            am.apply_changes(changes.clone()).map_err(|e| e.to_string())?;
            Ok((am, hashes))
        },
    ));
    let quarantine_all = |reason: &str| -> Result<(), SyncError> {
        let mut all = Vec::new();
        for c in &doc.changes {
            all.extend_from_slice(c);
        }
        storage.quarantine(&device.id, Some(&doc.id), reason, &all, now)?;
        Ok(())
    };
    let (mut am, hashes) = match merged {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            quarantine_all(&e)?;
            return Err(invalid(format!(
                "the changes of incident {} cannot be applied: {e}",
                doc.id
            )));
        }
        Err(_) => {
            quarantine_all("applying changes panicked")?;
            return Err(invalid(format!("the changes of incident {} cannot be applied", doc.id)));
        }
    };
    // Changes whose dependencies the server lacks wait inside Automerge
    // unapplied; only applied ones join the feed. Usually nothing waits,
    // which one call tells without looking up each change.
    let applied: Vec<ChangeHash> = if !am.waits_for_dependencies() {
        hashes.clone()
    } else {
        hashes.iter().copied().filter(|h| am.has_change(h)).collect()
    };
    let need_full = applied.len() < hashes.len();
    let heads: Vec<ChangeHash> = doc.heads.iter().map(|h| ChangeHash::from(*h)).collect();
    let stored = heads.iter().all(|h| am.has_change(h));

    if applied.is_empty() && existing.is_none() {
        // Nothing usable yet (a first push missing its own start).
        return Ok((
            None,
            Ack {
                id: doc.id.clone(),
                heads: vec![],
                need_full: true,
            },
        ));
    }
    let mut idoc = am;
    let read = match idoc.read() {
        Ok(r) => r,
        Err(e) => {
            quarantine_all(&e.to_string())?;
            return Err(invalid(format!("incident {}: {e}", doc.id)));
        }
    };
    if read.id.to_string() != doc.id {
        quarantine_all("document id does not match")?;
        return Err(invalid(format!(
            "the document pushed as {} says it is {}",
            doc.id, read.id
        )));
    }
    if !scope.allows(&read.grid) {
        return Err(SyncError::Forbidden {
            incident: incident.clone(),
            reason: format!(
                "incident {} is in grid cell {}, outside this device's cells",
                doc.id, read.grid
            ),
        });
    }
    let server_heads = idoc.heads();
    // The feed stores each new change as the device sent it: the bytes
    // decoded to this hash, so there is no need to re-encode them.
    let mut new_changes = Vec::new();
    for h in &applied {
        if !storage.has_change(&h.0)?
            && let Some(i) = hashes.iter().position(|x| x == h)
        {
            new_changes.push((h.0, doc.changes[i].to_vec()));
        }
    }
    let mut blob_refs = Vec::new();
    for p in &read.photos {
        blob_refs.push((p.original.to_hex(), "original"));
        blob_refs.push((p.display.to_hex(), "display"));
        blob_refs.push((p.thumb.to_hex(), "thumb"));
    }
    let mut sorted = server_heads.clone();
    sorted.sort();
    let write = IncidentWrite {
        id: doc.id.clone(),
        doc: idoc.save(),
        heads: sorted.iter().flat_map(|h| h.0).collect(),
        grid: read.grid.clone(),
        category: read.category.clone(),
        status: read.status.as_str().to_owned(),
        reporter: read.reporter.clone(),
        device: read.device.clone(),
        captured_at: sync_core::incident::rfc3339(&read.captured_at),
        lat: read.location.lat,
        lon: read.location.lon,
        new_changes,
        blob_refs,
    };
    Ok((
        Some(write),
        Ack {
            id: doc.id.clone(),
            heads: if stored { doc.heads.clone() } else { vec![] },
            need_full: need_full || !stored,
        },
    ))
}

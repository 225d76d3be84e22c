//! The change log, the feed and the merged documents on PostgreSQL.
//!
//! A push is one transaction of a fixed number of statements whatever its
//! size: the new incidents in one insert and the merged ones in one
//! compare-and-swap update (both over arrays), then the sequencer row
//! locked, the changes it does not hold found, numbered and inserted, the
//! photo references inserted, the sequencer row moved on, the commit.

use std::collections::HashSet;

use postgres::Transaction;
use postgres::error::SqlState;
use postgres::types::ToSql;

use super::{PgStorage, damaged};
use crate::storage::{
    ChangeLog, FeedPage, FeedQuery, FeedRow, IncidentWrite, QuarantineRow, Quarantined, StorageError, StoredDoc,
    chain_next,
};

/// Seconds since 1970 of a stored RFC 3339 time, for the indexed columns.
pub(super) fn unix_of(what: &'static str, at: &str) -> Result<i64, StorageError> {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| t.timestamp())
        .map_err(|_| damaged(what, at))
}

/// A commit that lost a race with another writer stored nothing; it is a
/// conflict to merge again, like a compare-and-swap that failed.
fn conflict_of(e: postgres::Error, id: &str) -> StorageError {
    match e.code() {
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE => {
            StorageError::Conflict(id.to_owned())
        }
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StorageError::Conflict(id.to_owned()),
        _ => e.into(),
    }
}

/// The projected columns of some writes, as the arrays a statement
/// unnests ($1 to $13, in this order).
struct Projected<'a> {
    id: Vec<&'a str>,
    doc: Vec<&'a [u8]>,
    heads: Vec<&'a [u8]>,
    grid: Vec<&'a str>,
    category: Vec<&'a str>,
    status: Vec<&'static str>,
    reporter: Vec<&'a str>,
    device: Vec<&'a str>,
    captured_at: Vec<&'a str>,
    captured_unix: Vec<i64>,
    lat: Vec<Option<f64>>,
    lon: Vec<Option<f64>>,
    case_no: Vec<Option<&'a str>>,
}

impl<'a> Projected<'a> {
    fn of(writes: &[&'a IncidentWrite]) -> Result<Projected<'a>, StorageError> {
        Ok(Projected {
            id: writes.iter().map(|w| w.id.as_str()).collect(),
            doc: writes.iter().map(|w| w.doc.as_slice()).collect(),
            heads: writes.iter().map(|w| w.heads.as_slice()).collect(),
            grid: writes.iter().map(|w| w.grid.as_str()).collect(),
            category: writes.iter().map(|w| w.category.as_str()).collect(),
            status: writes.iter().map(|w| w.status.as_str()).collect(),
            reporter: writes.iter().map(|w| w.reporter.as_str()).collect(),
            device: writes.iter().map(|w| w.device.as_str()).collect(),
            captured_at: writes.iter().map(|w| w.captured_at.as_str()).collect(),
            captured_unix: writes
                .iter()
                .map(|w| unix_of("capture time", &w.captured_at))
                .collect::<Result<_, _>>()?,
            lat: writes.iter().map(|w| w.lat).collect(),
            lon: writes.iter().map(|w| w.lon).collect(),
            case_no: writes.iter().map(|w| w.case_no.as_deref()).collect(),
        })
    }

    /// These arrays, then `more` ($14 on).
    fn params<'s>(&'s self, more: &[&'s (dyn ToSql + Sync)]) -> Vec<&'s (dyn ToSql + Sync)> {
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![
            &self.id,
            &self.doc,
            &self.heads,
            &self.grid,
            &self.category,
            &self.status,
            &self.reporter,
            &self.device,
            &self.captured_at,
            &self.captured_unix,
            &self.lat,
            &self.lon,
            &self.case_no,
        ];
        all.extend_from_slice(more);
        all
    }
}

/// The arrays `Projected::params` binds, as `unnest` reads them.
const UNNEST: &str = "unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::bigint[], $11::float8[], $12::float8[], $13::text[]";
const COLUMNS: &str =
    "id, doc, heads, grid, category, status, reporter, device, captured_at, captured_unix, lat, lon, case_no";

/// Stored `n` of `of` writes, else another writer came first.
fn all_stored(n: u64, of: &[&IncidentWrite]) -> Result<(), StorageError> {
    match n as usize == of.len() {
        true => Ok(()),
        false => Err(StorageError::Conflict(of[0].id.clone())),
    }
}

/// Inserts the new incidents; any that exists already means another
/// writer created it first.
fn insert_new(tx: &mut Transaction<'_>, new: &[&IncidentWrite], now: &str) -> Result<(), StorageError> {
    if new.is_empty() {
        return Ok(());
    }
    let cols = Projected::of(new)?;
    let received = unix_of("receipt time", now)?;
    let sql = format!(
        "INSERT INTO incidents ({COLUMNS}, first_received_at, received_unix, updated_at)
         SELECT u.*, $14, $15, $14 FROM {UNNEST}) AS u({COLUMNS})
         ON CONFLICT (id) DO NOTHING"
    );
    let n = tx.execute(&sql, &cols.params(&[&now, &received]))?;
    all_stored(n, new)
}

/// Rewrites each merged incident only while its stored heads are the
/// ones it was merged from; any other means another writer came first.
fn update_merged(tx: &mut Transaction<'_>, merged: &[&IncidentWrite], now: &str) -> Result<(), StorageError> {
    if merged.is_empty() {
        return Ok(());
    }
    let cols = Projected::of(merged)?;
    let base: Vec<&[u8]> = merged.iter().map(|w| w.base.as_deref().unwrap_or_default()).collect();
    let sql = format!(
        "UPDATE incidents i SET doc = u.doc, heads = u.heads, grid = u.grid, category = u.category,
                status = u.status, reporter = u.reporter, device = u.device, captured_at = u.captured_at,
                captured_unix = u.captured_unix, lat = u.lat, lon = u.lon, updated_at = $14, case_no = u.case_no
         FROM {UNNEST}, $15::bytea[]) AS u({COLUMNS}, base)
         WHERE i.id = u.id AND i.heads = u.base"
    );
    let n = tx.execute(&sql, &cols.params(&[&now, &base]))?;
    all_stored(n, merged)
}

/// Numbers the changes the log does not hold yet under the sequencer
/// row's lock, inserts them and moves the row on.
fn append_changes(
    tx: &mut Transaction<'_>,
    writes: &[&IncidentWrite],
    device: &str,
    now: &str,
) -> Result<(), StorageError> {
    let all: Vec<&[u8]> = writes
        .iter()
        .flat_map(|w| w.new_changes.iter().map(|c| &c.hash[..]))
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let head = tx.query_one("SELECT seq, chain FROM feed_head FOR UPDATE", &[])?;
    let (mut seq, mut chain): (i64, Vec<u8>) = (head.try_get(0)?, head.try_get(1)?);
    let held: HashSet<Vec<u8>> = tx
        .query("SELECT hash FROM changes WHERE hash = ANY($1)", &[&all])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut rows = ChangeRows::default();
    let mut seen = HashSet::new();
    for w in writes {
        for c in &w.new_changes {
            if held.contains(&c.hash[..]) || !seen.insert(c.hash) {
                continue;
            }
            seq += 1;
            chain = chain_next(&chain, &c.hash).to_vec();
            rows.push(seq, &w.id, c, &chain);
        }
    }
    tx.execute(
        "INSERT INTO changes (seq, incident_id, hash, bytes, device_id, received_at, chain, sig)
         SELECT u.seq, u.incident_id, u.hash, u.bytes, $5, $6, u.chain, u.sig
         FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $7::bytea[], $8::bytea[])
              AS u(seq, incident_id, hash, bytes, chain, sig)",
        &[
            &rows.seq,
            &rows.incident,
            &rows.hash,
            &rows.bytes,
            &device,
            &now,
            &rows.chain,
            &rows.sig,
        ],
    )?;
    tx.execute("UPDATE feed_head SET seq = $1, chain = $2", &[&seq, &chain])?;
    Ok(())
}

/// The columns of the changes a push appends.
#[derive(Default)]
struct ChangeRows<'a> {
    seq: Vec<i64>,
    incident: Vec<&'a str>,
    hash: Vec<&'a [u8]>,
    bytes: Vec<&'a [u8]>,
    chain: Vec<Vec<u8>>,
    sig: Vec<Option<&'a [u8]>>,
}

impl<'a> ChangeRows<'a> {
    fn push(&mut self, seq: i64, incident: &'a str, c: &'a crate::storage::NewChange, chain: &[u8]) {
        self.seq.push(seq);
        self.incident.push(incident);
        self.hash.push(&c.hash);
        self.bytes.push(&c.bytes);
        self.chain.push(chain.to_vec());
        self.sig.push(c.sig.as_deref());
    }
}

fn insert_refs(tx: &mut Transaction<'_>, writes: &[&IncidentWrite], device: &str) -> Result<(), StorageError> {
    let refs: Vec<(&str, &str, &str)> = writes
        .iter()
        .flat_map(|w| {
            w.blob_refs
                .iter()
                .map(|r| (r.hash.as_str(), w.id.as_str(), r.kind.as_str()))
        })
        .collect();
    if refs.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO blob_refs (hash, incident_id, kind, device_id)
         SELECT u.hash, u.incident_id, u.kind, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(hash, incident_id, kind)
         ON CONFLICT DO NOTHING",
        &[
            &refs.iter().map(|r| r.0).collect::<Vec<_>>(),
            &refs.iter().map(|r| r.1).collect::<Vec<_>>(),
            &refs.iter().map(|r| r.2).collect::<Vec<_>>(),
            &device,
        ],
    )?;
    Ok(())
}

impl PgStorage {
    fn commit_in(&self, writes: &[IncidentWrite], device: &str, now: &str) -> Result<(), StorageError> {
        // Rows locked in one order by every writer cannot deadlock.
        let mut sorted: Vec<&IncidentWrite> = writes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let (new, merged): (Vec<&IncidentWrite>, Vec<&IncidentWrite>) = sorted.iter().partition(|w| w.base.is_none());
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        update_merged(&mut tx, &merged, now)?;
        insert_new(&mut tx, &new, now)?;
        append_changes(&mut tx, &sorted, device, now)?;
        insert_refs(&mut tx, &sorted, device)?;
        tx.commit()?;
        Ok(())
    }
}

impl ChangeLog for PgStorage {
    fn epoch(&self) -> Result<String, StorageError> {
        Ok(self
            .client()?
            .query_one("SELECT value FROM meta WHERE key = 'epoch'", &[])?
            .try_get(0)?)
    }

    fn incident_doc(&self, id: &str) -> Result<Option<StoredDoc>, StorageError> {
        let row = self
            .client()?
            .query_opt("SELECT doc, grid, heads FROM incidents WHERE id = $1", &[&id])?;
        row.map(|r| {
            Ok(StoredDoc {
                doc: r.try_get(0)?,
                grid: r.try_get(1)?,
                heads: r.try_get(2)?,
            })
        })
        .transpose()
    }

    fn has_change(&self, hash: &[u8; 32]) -> Result<bool, StorageError> {
        let row = self
            .client()?
            .query_opt("SELECT 1 FROM changes WHERE hash = $1", &[&&hash[..]])?;
        Ok(row.is_some())
    }

    fn incident_docs(&self, ids: &[String]) -> Result<std::collections::HashMap<String, StoredDoc>, StorageError> {
        let rows = self
            .client()?
            .query("SELECT id, doc, grid, heads FROM incidents WHERE id = ANY($1)", &[&ids])?;
        rows.iter()
            .map(|r| {
                let doc = StoredDoc {
                    doc: r.try_get(1)?,
                    grid: r.try_get(2)?,
                    heads: r.try_get(3)?,
                };
                Ok((r.try_get(0)?, doc))
            })
            .collect()
    }

    fn held_changes(&self, hashes: &[[u8; 32]]) -> Result<HashSet<[u8; 32]>, StorageError> {
        let asked: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        let rows = self
            .client()?
            .query("SELECT hash FROM changes WHERE hash = ANY($1)", &[&asked])?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<_, Vec<u8>>(0).ok()?.try_into().ok())
            .collect())
    }

    fn change_sig(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError> {
        let row = self
            .client()?
            .query_opt("SELECT sig FROM changes WHERE hash = $1", &[&&hash[..]])?;
        Ok(row.map(|r| r.try_get::<_, Option<Vec<u8>>>(0)).transpose()?.flatten())
    }

    fn commit_push(&self, writes: &[IncidentWrite], device: &str, now: &str) -> Result<(), StorageError> {
        let first = writes.first().map_or("", |w| w.id.as_str());
        self.commit_in(writes, device, now).map_err(|e| match e {
            StorageError::Postgres(e) => conflict_of(e, first),
            e => e,
        })
    }

    fn quarantine(&self, q: &Quarantined<'_>) -> Result<(), StorageError> {
        self.client()?.execute(
            "INSERT INTO quarantine (device_id, incident_id, reason, bytes, received_at, hash, sig)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) WHERE hash IS NOT NULL DO NOTHING",
            &[
                &q.device,
                &q.incident,
                &q.reason,
                &q.bytes,
                &q.at,
                &q.hash.as_ref().map(|h| &h[..]),
                &q.sig,
            ],
        )?;
        Ok(())
    }

    fn quarantined(&self) -> Result<Vec<QuarantineRow>, StorageError> {
        let rows = self.client()?.query(
            "SELECT id, device_id, incident_id, reason, bytes, received_at, hash, sig FROM quarantine ORDER BY id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineRow {
                    id: r.try_get(0)?,
                    device: r.try_get(1)?,
                    incident: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    bytes: r.try_get(4)?,
                    at: r.try_get(5)?,
                    hash: r.try_get(6)?,
                    sig: r.try_get(7)?,
                })
            })
            .collect()
    }

    fn unquarantine(&self, id: i64) -> Result<bool, StorageError> {
        Ok(self.client()?.execute("DELETE FROM quarantine WHERE id = $1", &[&id])? == 1)
    }

    fn change_at(&self, seq: u64) -> Result<Option<[u8; 32]>, StorageError> {
        let Ok(seq) = i64::try_from(seq) else { return Ok(None) };
        let row = self
            .client()?
            .query_opt("SELECT chain FROM changes WHERE seq = $1", &[&seq])?;
        let chain: Option<Vec<u8>> = row.map(|r| r.try_get(0)).transpose()?;
        Ok(chain.and_then(|h| h.try_into().ok()))
    }

    fn feed(&self, q: &FeedQuery<'_>) -> Result<FeedPage, StorageError> {
        let mut c = self.client()?;
        // One snapshot, so the high-water mark and the rows agree.
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let max: i64 = tx.query_one("SELECT seq FROM feed_head", &[])?.try_get(0)?;
        let after = i64::try_from(q.after).unwrap_or(i64::MAX);
        let rows = tx.query(
            "SELECT c.seq, c.incident_id, c.hash, c.bytes, c.sig FROM changes c JOIN incidents i ON i.id = c.incident_id
             WHERE c.seq > $1 AND c.device_id <> $2 AND ($3::text[] IS NULL OR i.grid = ANY($3))
             ORDER BY c.seq LIMIT $4",
            &[&after, &q.exclude_device, &q.scope.cells(), &i64::from(q.limit)],
        )?;
        tx.commit()?;
        let (page, cut) = read_page(&rows, q)?;
        Ok(FeedPage {
            rows: page,
            max_seq: max as u64,
            cut,
        })
    }
}

/// Feed rows up to the page's byte budget; whether the page was cut short.
fn read_page(rows: &[postgres::Row], q: &FeedQuery<'_>) -> Result<(Vec<FeedRow>, bool), StorageError> {
    let (mut page, mut bytes) = (Vec::new(), 0usize);
    for r in rows {
        let change: Vec<u8> = r.try_get(3)?;
        if !page.is_empty() && bytes + change.len() > q.max_bytes {
            return Ok((page, true));
        }
        bytes += change.len();
        let hash: Vec<u8> = r.try_get(2)?;
        page.push(FeedRow {
            seq: r.try_get::<_, i64>(0)? as u64,
            incident_id: r.try_get(1)?,
            hash: hash.try_into().unwrap_or([0; 32]),
            bytes: change,
            sig: r.try_get(4)?,
        });
    }
    let full = page.len() as u64 == u64::from(q.limit);
    Ok((page, full))
}

//! What reports, exports, the dashboard and Open311 read, and which photo
//! files incidents name, on PostgreSQL.

use postgres::types::ToSql;
use sync_core::Status;

use super::{PgStorage, damaged};
use crate::storage::{BlobIndex, BlobKind, IncidentFilter, PhotoRef, ReadModel, Scope, StorageError, StoredIncident};

/// SQL: reference `r` was proven by the device whose push brought it in.
const PROVEN: &str = "(r.device_id IS NULL OR EXISTS
    (SELECT 1 FROM blob_proofs p WHERE p.device_id = r.device_id AND p.hash = r.hash))";

type Param = Box<dyn ToSql + Sync>;

/// The WHERE clauses of a filter and their values, only for what it sets,
/// so the planner can use the index on each.
fn filter_sql(f: &IncidentFilter) -> (Vec<String>, Vec<Param>) {
    let mut clauses = vec!["TRUE".to_owned()];
    let mut values: Vec<Param> = Vec::new();
    let mut add = |clause: &str, value: Param, values: &mut Vec<Param>| {
        values.push(value);
        clauses.push(clause.replace('?', &format!("${}", values.len())));
    };
    if let Some(g) = &f.grids {
        add("grid = ANY(?)", Box::new(g.clone()), &mut values);
    }
    if !f.statuses.is_empty() {
        let names: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        add("status = ANY(?)", Box::new(names), &mut values);
    }
    if let Some(c) = &f.category {
        add("category = ?", Box::new(c.clone()), &mut values);
    }
    if let Some((from, to)) = f.captured {
        add("captured_unix >= ?", Box::new(from), &mut values);
        add("captured_unix < ?", Box::new(to), &mut values);
    }
    if let Some((from, to)) = f.received {
        add("received_unix >= ?", Box::new(from), &mut values);
        add("received_unix < ?", Box::new(to), &mut values);
    }
    if let Some(after) = &f.after {
        add("id > ?", Box::new(after.clone()), &mut values);
    }
    (clauses, values)
}

fn status_of(text: String) -> Result<Status, StorageError> {
    text.parse().map_err(|_| damaged("value", text))
}

fn kind_of(text: String) -> Result<BlobKind, StorageError> {
    BlobKind::parse(&text).ok_or_else(|| damaged("value", text))
}

fn incident_of(r: &postgres::Row) -> Result<StoredIncident, StorageError> {
    Ok(StoredIncident {
        id: r.try_get(0)?,
        doc: r.try_get(1)?,
        grid: r.try_get(2)?,
        category: r.try_get(3)?,
        status: status_of(r.try_get(4)?)?,
        reporter: r.try_get(5)?,
        device: r.try_get(6)?,
        captured_at: r.try_get(7)?,
        lat: r.try_get(8)?,
        lon: r.try_get(9)?,
        first_received_at: r.try_get(10)?,
        updated_at: r.try_get(11)?,
    })
}

impl ReadModel for PgStorage {
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<StoredIncident>, StorageError> {
        let (clauses, values) = filter_sql(filter);
        let limit = filter.limit.map_or("ALL".to_owned(), |n| n.to_string());
        let sql = format!(
            "SELECT id, doc, grid, category, status, reporter, device, captured_at, lat, lon,
                    first_received_at, updated_at
             FROM incidents WHERE {} ORDER BY id LIMIT {limit}",
            clauses.join(" AND "),
        );
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        let rows = self.client()?.query(&sql, &params)?;
        rows.iter().map(incident_of).collect()
    }

    fn photo_refs(&self, incidents: &[String]) -> Result<Vec<PhotoRef>, StorageError> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.client()?.query(
            &format!(
                "SELECT r.incident_id, r.hash, r.kind, b.hash IS NOT NULL AND {PROVEN} FROM blob_refs r
                 LEFT JOIN blobs b ON b.hash = r.hash
                 WHERE r.incident_id = ANY($1)
                 ORDER BY r.incident_id, r.kind, r.hash"
            ),
            &[&incidents],
        )?;
        rows.iter()
            .map(|r| {
                Ok(PhotoRef {
                    incident_id: r.try_get(0)?,
                    hash: r.try_get(1)?,
                    kind: kind_of(r.try_get(2)?)?,
                    verified: r.try_get(3)?,
                })
            })
            .collect()
    }

    fn find_incident(&self, given: &str) -> Result<Option<(String, String)>, StorageError> {
        let row = self.client()?.query_opt(
            "SELECT id, grid FROM incidents WHERE id = lower($1) OR case_no = upper($1) LIMIT 1",
            &[&given.trim()],
        )?;
        Ok(row
            .map(|r| Ok::<_, postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()?)
    }

    fn own_incident_ids(&self, device: &str) -> Result<Vec<String>, StorageError> {
        let rows = self
            .client()?
            .query("SELECT id FROM incidents WHERE device = $1 ORDER BY id", &[&device])?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }
}

impl BlobIndex for PgStorage {
    fn blob_named(&self, hash: &str, scope: &Scope) -> Result<bool, StorageError> {
        let row = self.client()?.query_opt(
            "SELECT 1 FROM blob_refs r JOIN incidents i ON i.id = r.incident_id
             WHERE r.hash = $1 AND ($2::text[] IS NULL OR i.grid = ANY($2)) LIMIT 1",
            &[&hash, &scope.cells()],
        )?;
        Ok(row.is_some())
    }

    fn proven_kinds(&self, hash: &str, scope: &Scope) -> Result<Vec<BlobKind>, StorageError> {
        let rows = self.client()?.query(
            &format!(
                "SELECT DISTINCT r.kind FROM blob_refs r JOIN incidents i ON i.id = r.incident_id
                 JOIN blobs b ON b.hash = r.hash
                 WHERE r.hash = $1 AND ($2::text[] IS NULL OR i.grid = ANY($2)) AND {PROVEN}
                 ORDER BY r.kind"
            ),
            &[&hash, &scope.cells()],
        )?;
        rows.iter().map(|r| kind_of(r.try_get(0)?)).collect()
    }

    fn kinds_anywhere(&self, hash: &str) -> Result<Vec<BlobKind>, StorageError> {
        let rows = self.client()?.query(
            "SELECT DISTINCT kind FROM blob_refs WHERE hash = $1 ORDER BY kind",
            &[&hash],
        )?;
        rows.iter().map(|r| kind_of(r.try_get(0)?)).collect()
    }

    fn has_proof(&self, device: &str, hash: &str) -> Result<bool, StorageError> {
        let row = self.client()?.query_opt(
            "SELECT 1 FROM blob_proofs WHERE device_id = $1 AND hash = $2",
            &[&device, &hash],
        )?;
        Ok(row.is_some())
    }

    fn record_upload(&self, hash: &str, size: u64, device: &str, now: &str) -> Result<(), StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        tx.execute(
            "INSERT INTO blobs (hash, size, verified_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&hash, &(size as i64), &now],
        )?;
        tx.execute(
            "INSERT INTO blob_proofs (device_id, hash, proven_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&device, &hash, &now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn thumbs_of(&self, incidents: &[String]) -> Result<Vec<String>, StorageError> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.client()?.query(
            &format!(
                "SELECT DISTINCT r.hash FROM blob_refs r JOIN blobs b ON b.hash = r.hash
                 WHERE r.kind = 'thumb' AND r.incident_id = ANY($1) AND {PROVEN}"
            ),
            &[&incidents],
        )?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }
}

//! [`SqliteStorage`]: every storage trait on one SQLite file, WAL,
//! `synchronous=FULL`. rusqlite's connection is not `Sync`, so each has one
//! owner behind a std mutex: one that writes, and a few read-only ones
//! for the reads that need no write. Scopes and id lists reach SQL as JSON arrays
//! read with `json_each`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sync_core::Status;
use sync_core::sqlite::{Migration, migrate};

use super::{
    Accounts, AuditEvent, AuditKind, AuditLog, AuditRow, BlobIndex, BlobKind, ChangeLog, Device, EnrolOutcome,
    Enrolment, FeedPage, FeedQuery, FeedRow, IncidentFilter, IncidentWrite, NewCode, NewSession, NewToken, PhotoRef,
    QuarantineRow, Quarantined, ReadModel, Role, Scope, Session, Sessions, StorageError, StoredDoc, StoredIncident,
    SyncRecord, WaitingCode, Worker,
};

const MIGRATIONS: &[Migration] = &[
    Migration::sql(
        "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    CREATE TABLE workers (
        id TEXT PRIMARY KEY, name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('worker', 'center', 'operator')),
        community TEXT, created_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE worker_grids (
        worker_id TEXT NOT NULL REFERENCES workers(id), grid TEXT NOT NULL,
        PRIMARY KEY (worker_id, grid)
    ) STRICT;
    CREATE TABLE enrol_codes (
        code_hash TEXT PRIMARY KEY, worker_id TEXT NOT NULL REFERENCES workers(id),
        expires_ms INTEGER NOT NULL, used_at TEXT, created_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE devices (
        id TEXT PRIMARY KEY, worker_id TEXT NOT NULL REFERENCES workers(id),
        actor BLOB NOT NULL, token_hash TEXT NOT NULL UNIQUE,
        enrolled_at TEXT NOT NULL, revoked_at TEXT,
        last_sync_at TEXT, manifest TEXT, clock_offset_ms INTEGER
    ) STRICT;
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY, doc BLOB NOT NULL, heads BLOB NOT NULL,
        grid TEXT NOT NULL, category TEXT NOT NULL, status TEXT NOT NULL,
        reporter TEXT NOT NULL, device TEXT NOT NULL, captured_at TEXT NOT NULL,
        lat REAL, lon REAL, first_received_at TEXT NOT NULL, updated_at TEXT NOT NULL
    ) STRICT;
    CREATE INDEX incidents_grid ON incidents(grid);
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL,
        hash BLOB NOT NULL UNIQUE, bytes BLOB NOT NULL,
        device_id TEXT NOT NULL, received_at TEXT NOT NULL
    );
    CREATE INDEX changes_incident ON changes(incident_id);
    CREATE TABLE blob_refs (
        hash TEXT NOT NULL, incident_id TEXT NOT NULL, kind TEXT NOT NULL,
        PRIMARY KEY (hash, incident_id)
    ) STRICT;
    CREATE INDEX blob_refs_incident ON blob_refs(incident_id);
    CREATE TABLE blobs (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, verified_at TEXT NOT NULL) STRICT;
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, incident_id TEXT,
        reason TEXT NOT NULL, bytes BLOB NOT NULL, received_at TEXT NOT NULL
    ) STRICT;
",
    ),
    Migration {
        sql: "
    -- The feed's hash chain: chain(seq) = blake3(chain(previous seq) || hash).
    -- A cursor names it, so a restored feed that reuses seqs is noticed.
    ALTER TABLE changes ADD COLUMN chain BLOB;
",
        backfill: Some(backfill_chain),
    },
    Migration::sql(
        "
    -- A read-only token (`sync-server token create`) is a devices row of
    -- kind 'token': it can read reports and exports, never push or upload.
    ALTER TABLE devices ADD COLUMN kind TEXT NOT NULL DEFAULT 'device' CHECK (kind IN ('device', 'token'));
",
    ),
    Migration::sql(
        "
    -- Each device's manifest is checked against the incidents it created.
    CREATE INDEX incidents_device ON incidents(device);
",
    ),
    Migration::sql(
        "
    -- A code that may enrol an already enrolled device again (its old token
    -- then stops working); NULL: new devices only.
    ALTER TABLE enrol_codes ADD COLUMN device_id TEXT;
",
    ),
    Migration::sql(
        "
    -- Proof of possession: a photo reference gives access only once the
    -- device whose push brought it in has uploaded the bytes itself.
    -- References from before (device_id NULL) count as proven.
    ALTER TABLE blob_refs ADD COLUMN device_id TEXT;
    CREATE TABLE blob_proofs (
        device_id TEXT NOT NULL, hash TEXT NOT NULL, proven_at TEXT NOT NULL,
        PRIMARY KEY (device_id, hash)
    ) STRICT;
",
    ),
    Migration::sql(
        "
    -- Signed changes: each device's ed25519 public key (registered at
    -- enrolment), each change's author signature, relayed in the feed; and
    -- changes of devices this server does not know, kept for the operator.
    ALTER TABLE devices ADD COLUMN public_key BLOB;
    CREATE INDEX devices_actor ON devices(actor);
    ALTER TABLE changes ADD COLUMN sig BLOB;
    ALTER TABLE quarantine ADD COLUMN hash BLOB;
    ALTER TABLE quarantine ADD COLUMN sig BLOB;
",
    ),
    Migration::sql(
        "
    -- The cells a device could read at its last sync, so a scope that grew
    -- since (a cell joined its community) pages the feed from the start.
    ALTER TABLE devices ADD COLUMN scope_seen TEXT;
",
    ),
    Migration::sql(
        "
    -- The audit log (storage/audit.rs): append-only, refused by triggers
    -- any update or delete.
    CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        kind    TEXT NOT NULL,
        account TEXT,
        device  TEXT,
        client  TEXT NOT NULL,
        detail  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_log_at ON audit_log(at);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    -- Dashboard sessions (storage/session.rs).
    CREATE TABLE sessions (
        id_hash    TEXT PRIMARY KEY,
        device_id  TEXT NOT NULL REFERENCES devices(id),
        csrf       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        ended_at   TEXT
    ) STRICT;
",
    ),
    Migration::sql(
        "
    -- The operator's people (issue: worker list|update|retire, device labels).
    ALTER TABLE workers ADD COLUMN retired_at TEXT;
    ALTER TABLE devices ADD COLUMN label TEXT;
",
    ),
    Migration::sql(
        "
    -- Case numbers (sync_core::case): each field device's number, given at
    -- its first enrolment (devices enrolled before, in enrolment order),
    -- and each incident's case number, projected for lookups.
    ALTER TABLE devices ADD COLUMN number INTEGER;
    UPDATE devices SET number = (
        SELECT count(*) FROM devices d2
        WHERE d2.kind = 'device' AND (d2.enrolled_at, d2.id) <= (devices.enrolled_at, devices.id)
    ) WHERE kind = 'device';
    CREATE UNIQUE INDEX devices_number ON devices(number);
    ALTER TABLE incidents ADD COLUMN case_no TEXT;
    CREATE INDEX incidents_case_no ON incidents(case_no);
",
    ),
    Migration::sql(
        "
    -- The center acting from its dashboard (sync/center.rs): the seed of
    -- the key the server signs a reader token's changes with.
    ALTER TABLE devices ADD COLUMN server_seed TEXT;
",
    ),
    Migration::sql(
        "
    -- Department accounts (role 'department', naming a department of the
    -- taxonomy). The role's CHECK lives in the table, so the table is
    -- rebuilt: dropped first, which leaves the rows that refer to it
    -- dangling until the same rows come back (deferred to the commit).
    PRAGMA defer_foreign_keys = ON;
    CREATE TEMP TABLE workers_before AS
        SELECT id, name, role, community, created_at, retired_at FROM workers;
    DROP TABLE workers;
    CREATE TABLE workers (
        id TEXT PRIMARY KEY, name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('worker', 'center', 'operator', 'department')),
        community TEXT, created_at TEXT NOT NULL, retired_at TEXT,
        department TEXT CHECK ((role = 'department') = (department IS NOT NULL))
    ) STRICT;
    INSERT INTO workers (id, name, role, community, created_at, retired_at)
        SELECT id, name, role, community, created_at, retired_at FROM workers_before;
    DROP TABLE workers_before;
",
    ),
    Migration::sql(
        "
    -- The read model (storage/mod.rs, IncidentFilter): reports, exports
    -- and Open311 ask for a day's incidents by when they were captured or
    -- received, and for the open ones by status, through these indexes
    -- instead of reading every document of a community. Times are kept
    -- as RFC 3339 with the device's offset; unixepoch() makes them instants.
    -- The cell first: every such read is of some cells. The id last, so
    -- that a page of ids comes from the index alone.
    CREATE INDEX incidents_captured ON incidents(grid, unixepoch(captured_at), id);
    CREATE INDEX incidents_received ON incidents(grid, unixepoch(first_received_at));
    CREATE INDEX incidents_status ON incidents(grid, status);
    -- The operator's and public Open311's reads name no cells.
    CREATE INDEX incidents_captured_any ON incidents(unixepoch(captured_at), id);
",
    ),
];

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// SQL: reference `r` was proven by the device whose push brought it in.
const PROVEN: &str = "(r.device_id IS NULL OR EXISTS
    (SELECT 1 FROM blob_proofs p WHERE p.device_id = r.device_id AND p.hash = r.hash))";

/// Read-only connections beside the writer's, so reads never wait behind
/// a write's fsync (WAL lets readers see the last commit meanwhile).
const READERS: usize = 4;

/// Every storage trait on one SQLite file: one connection that writes,
/// and [`READERS`] that only read (reports, exports, Open311, the feed,
/// photo checks, token lookups).
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

impl SqliteStorage {
    /// Opens or creates the database; `new_epoch` is used only on creation.
    pub fn open(path: &Path, new_epoch: &str) -> Result<Self, StorageError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        migrate(&tx, MIGRATIONS)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
            [new_epoch],
        )?;
        tx.commit()?;
        let readers = (0..READERS)
            .map(|_| {
                let r = Connection::open(path)?;
                r.busy_timeout(std::time::Duration::from_secs(10))?;
                r.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(r))
            })
            .collect::<Result<_, StorageError>>()?;
        Ok(SqliteStorage {
            conn: Mutex::new(conn),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A free read-only connection, or the next one in turn if all are busy.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for k in 0..READERS {
            if let Ok(r) = self.readers[(start + k) % READERS].try_lock() {
                return r;
            }
        }
        let r = &self.readers[start % READERS];
        r.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version of the database at `path`, read without
    /// changing it.
    pub fn schema_version(path: &Path) -> Result<i64, StorageError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolled back on drop), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A worker's cells, written afresh.
fn put_grids(tx: &rusqlite::Transaction<'_>, worker: &str, grids: &[String]) -> Result<(), StorageError> {
    for g in grids {
        tx.execute(
            "INSERT OR IGNORE INTO worker_grids (worker_id, grid) VALUES (?1, ?2)",
            params![worker, g],
        )?;
    }
    Ok(())
}

/// The WHERE clauses of a filter and their values, only for what it sets,
/// so that SQLite can use the index on each (`? IS NULL OR …` would keep
/// it from any).
fn incident_filter_sql(f: &IncidentFilter) -> (Vec<&'static str>, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = vec!["1"];
    let mut values = Vec::new();
    if let Some(g) = &f.grids {
        clauses.push("grid IN (SELECT value FROM json_each(?))");
        values.push(Value::Text(json_list(g)));
    }
    if !f.statuses.is_empty() {
        clauses.push("status IN (SELECT value FROM json_each(?))");
        let names: Vec<String> = f.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        values.push(Value::Text(json_list(&names)));
    }
    if let Some(c) = &f.category {
        clauses.push("category = ?");
        values.push(Value::Text(c.clone()));
    }
    if let Some((from, to)) = f.captured {
        clauses.push("unixepoch(captured_at) >= ? AND unixepoch(captured_at) < ?");
        values.extend([Value::Integer(from), Value::Integer(to)]);
    }
    if let Some((from, to)) = f.received {
        clauses.push("unixepoch(first_received_at) >= ? AND unixepoch(first_received_at) < ?");
        values.extend([Value::Integer(from), Value::Integer(to)]);
    }
    if let Some(after) = &f.after {
        clauses.push("id > ?");
        values.push(Value::Text(after.clone()));
    }
    (clauses, values)
}

/// A scope as a query parameter: `NULL` for all, else a JSON array for `json_each`.
fn scope_param(scope: &Scope) -> Option<String> {
    scope.cells().map(json_list)
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("strings serialise")
}

use super::chain_next;

fn last_chain(conn: &Connection) -> Result<Vec<u8>, StorageError> {
    Ok(conn
        .query_row("SELECT chain FROM changes ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
        .optional()?
        .unwrap_or_default())
}

/// Links every change of a feed written before the chain existed.
fn backfill_chain(conn: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT seq, hash FROM changes ORDER BY seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut set = conn.prepare("UPDATE changes SET chain = ?2 WHERE seq = ?1")?;
    let mut prev = Vec::new();
    for (seq, hash) in rows {
        let link = chain_next(&prev, &hash);
        set.execute(params![seq, &link[..]])?;
        prev = link.to_vec();
    }
    Ok(())
}

use super::damaged;

/// A text column parsed into a typed value; a value no version of this
/// server writes is a conversion error naming the column.
fn parsed<T>(r: &rusqlite::Row<'_>, idx: usize, parse: impl Fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = r.get(idx)?;
    parse(&text).ok_or_else(|| {
        let e = damaged("value", text);
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn status_at(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Status> {
    parsed(r, idx, |s| s.parse().ok())
}

fn kind_at(r: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<BlobKind> {
    parsed(r, idx, BlobKind::parse)
}

fn load_worker(conn: &Connection, id: &str) -> Result<Option<Worker>, StorageError> {
    let row = conn
        .query_row(
            "SELECT name, role, community, retired_at, department FROM workers WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((name, role, community, retired_at, department)) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached("SELECT grid FROM worker_grids WHERE worker_id = ?1 ORDER BY grid")?;
    let grids = stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(Some(Worker {
        id: id.to_owned(),
        name,
        role: Role::parse(&role).ok_or_else(|| damaged("worker role", role))?,
        community,
        grids,
        department,
        retired_at,
    }))
}

const DEVICE_COLUMNS: &str = "id, worker_id, actor, enrolled_at, revoked_at, last_sync_at, manifest, \
     clock_offset_ms, kind, public_key, scope_seen, label, number FROM devices";

fn device_from_row(conn: &Connection, r: &rusqlite::Row<'_>) -> Result<Device, StorageError> {
    let worker_id: String = r.get(1)?;
    let worker = load_worker(conn, &worker_id)?.ok_or(StorageError::NoWorker(worker_id))?;
    let manifest: Option<String> = r.get(6)?;
    Ok(Device {
        id: r.get(0)?,
        worker,
        actor: r.get(2)?,
        enrolled_at: r.get(3)?,
        revoked_at: r.get(4)?,
        last_sync_at: r.get(5)?,
        manifest: manifest.and_then(|m| serde_json::from_str(&m).ok()),
        clock_offset_ms: r.get(7)?,
        read_only: r.get::<_, String>(8)? == "token",
        public_key: r.get(9)?,
        scope_seen: r.get(10)?,
        label: r.get(11)?,
        number: r.get(12)?,
    })
}

impl Accounts for SqliteStorage {
    fn add_worker(&self, w: &Worker, now: &str) -> Result<(), StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists = tx
            .query_row("SELECT 1 FROM workers WHERE id = ?1", [&w.id], |_| Ok(()))
            .optional()?;
        if exists.is_some() {
            return Err(StorageError::WorkerExists(w.id.clone()));
        }
        tx.execute(
            "INSERT INTO workers (id, name, role, community, created_at, department)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![w.id, w.name, w.role.as_str(), w.community, now, w.department],
        )?;
        put_grids(&tx, &w.id, &w.grids)?;
        tx.commit()?;
        Ok(())
    }

    fn update_worker(&self, w: &Worker) -> Result<(), StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE workers SET name = ?2, role = ?3, community = ?4, department = ?5 WHERE id = ?1",
            params![w.id, w.name, w.role.as_str(), w.community, w.department],
        )?;
        if n == 0 {
            return Err(StorageError::NoWorker(w.id.clone()));
        }
        tx.execute("DELETE FROM worker_grids WHERE worker_id = ?1", [&w.id])?;
        put_grids(&tx, &w.id, &w.grids)?;
        tx.commit()?;
        Ok(())
    }

    fn retire_worker(&self, id: &str, now: &str) -> Result<(), StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE workers SET retired_at = coalesce(retired_at, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        if n == 0 {
            return Err(StorageError::NoWorker(id.to_owned()));
        }
        tx.execute(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, ?2) WHERE worker_id = ?1",
            params![id, now],
        )?;
        tx.execute(
            "UPDATE sessions SET ended_at = ?2 WHERE ended_at IS NULL
             AND device_id IN (SELECT id FROM devices WHERE worker_id = ?1)",
            params![id, now],
        )?;
        tx.execute(
            "UPDATE enrol_codes SET used_at = ?2 WHERE worker_id = ?1 AND used_at IS NULL",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn token_key(&self, token: &str) -> Result<Option<String>, StorageError> {
        let conn = self.conn();
        let seed = conn
            .query_row(
                "SELECT server_seed FROM devices WHERE id = ?1 AND kind = 'token'",
                [token],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?;
        Ok(seed.flatten())
    }

    fn set_token_key(&self, token: &str, seed_hex: &str, public: &[u8]) -> Result<(), StorageError> {
        let n = self.conn().execute(
            "UPDATE devices SET server_seed = ?2, public_key = ?3
             WHERE id = ?1 AND kind = 'token' AND server_seed IS NULL AND public_key IS NULL",
            params![token, seed_hex, public],
        )?;
        match n {
            0 => Err(StorageError::NoDevice(token.to_owned())),
            _ => Ok(()),
        }
    }

    fn waiting_codes(&self, now_ms: i64) -> Result<Vec<WaitingCode>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT worker_id, device_id, created_at, expires_ms FROM enrol_codes
             WHERE used_at IS NULL AND expires_ms > ?1 ORDER BY created_at, worker_id",
        )?;
        let rows = stmt.query_map([now_ms], |r| {
            Ok(WaitingCode {
                worker: r.get(0)?,
                device: r.get(1)?,
                created_at: r.get(2)?,
                expires_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn worker(&self, id: &str) -> Result<Option<Worker>, StorageError> {
        load_worker(&self.conn(), id)
    }

    fn workers(&self) -> Result<Vec<Worker>, StorageError> {
        let conn = self.conn();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM workers ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(load_worker(&conn, &id)?);
        }
        Ok(out)
    }

    fn add_enrol_code(&self, code: &NewCode<'_>, now: &str) -> Result<(), StorageError> {
        let conn = self.conn();
        match load_worker(&conn, code.worker)? {
            None => return Err(StorageError::NoWorker(code.worker.to_owned())),
            Some(w) if w.retired_at.is_some() => return Err(StorageError::Retired(w.id)),
            Some(_) => {}
        }
        conn.execute(
            "INSERT INTO enrol_codes (code_hash, worker_id, device_id, expires_ms, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![code.code_hash, code.worker, code.device, code.expires_ms, now],
        )?;
        Ok(())
    }

    fn enroll(&self, e: &Enrolment<'_>, now_ms: i64, now: &str) -> Result<EnrolOutcome, StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let code: Option<Option<String>> = tx
            .query_row(
                "SELECT device_id FROM enrol_codes
                 WHERE code_hash = ?1 AND worker_id = ?2 AND used_at IS NULL AND expires_ms > ?3",
                params![e.code_hash, e.worker, now_ms],
                |r| r.get(0),
            )
            .optional()?;
        let Some(code_device) = code else {
            return Ok(EnrolOutcome::BadCode);
        };
        let existing: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT worker_id, revoked_at FROM devices WHERE id = ?1",
                [e.device],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some(outcome) = super::enrol_refusal(existing.as_ref(), code_device.as_deref(), e) {
            return Ok(outcome);
        }
        tx.execute(
            "UPDATE enrol_codes SET used_at = ?2 WHERE code_hash = ?1",
            params![e.code_hash, now],
        )?;
        tx.execute(
            "INSERT INTO devices (id, worker_id, actor, token_hash, enrolled_at, public_key, label, number)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT coalesce(max(number), 0) + 1 FROM devices))
             ON CONFLICT(id) DO UPDATE SET token_hash = excluded.token_hash, enrolled_at = excluded.enrolled_at,
                 public_key = coalesce(excluded.public_key, public_key), label = coalesce(excluded.label, label)",
            params![e.device, e.worker, e.actor, e.token_hash, now, e.public_key, e.label],
        )?;
        let w = load_worker(&tx, e.worker)?.ok_or_else(|| StorageError::NoWorker(e.worker.to_owned()))?;
        tx.commit()?;
        Ok(EnrolOutcome::Enrolled(w))
    }

    fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>, StorageError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!("SELECT {DEVICE_COLUMNS} WHERE token_hash = ?1"))?;
        let mut rows = stmt.query([token_hash])?;
        match rows.next()? {
            Some(r) => Ok(Some(device_from_row(&conn, r)?)),
            None => Ok(None),
        }
    }

    fn device_by_actor(&self, actor: &[u8]) -> Result<Option<Device>, StorageError> {
        let conn = self.conn();
        // A reader token is an author too once the center acts from its
        // dashboard (it then has a key).
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} WHERE actor = ?1 AND (kind = 'device' OR public_key IS NOT NULL)"
        ))?;
        let mut rows = stmt.query([actor])?;
        match rows.next()? {
            Some(r) => Ok(Some(device_from_row(&conn, r)?)),
            None => Ok(None),
        }
    }

    fn device(&self, id: &str) -> Result<Option<Device>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {DEVICE_COLUMNS} WHERE id = ?1"))?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(r) => Ok(Some(device_from_row(&conn, r)?)),
            None => Ok(None),
        }
    }

    fn add_token(&self, t: &NewToken<'_>, now: &str) -> Result<(), StorageError> {
        let conn = self.conn();
        match load_worker(&conn, t.worker)? {
            None => return Err(StorageError::NoWorker(t.worker.to_owned())),
            Some(w) if w.retired_at.is_some() => return Err(StorageError::Retired(w.id)),
            Some(_) => {}
        }
        conn.execute(
            "INSERT INTO devices (id, worker_id, actor, token_hash, enrolled_at, kind) VALUES (?1, ?2, ?3, ?4, ?5, 'token')",
            params![t.id, t.worker, t.actor, t.token_hash, now],
        )?;
        Ok(())
    }

    fn devices(&self) -> Result<Vec<Device>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {DEVICE_COLUMNS} ORDER BY worker_id, enrolled_at"))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(device_from_row(&conn, r)?);
        }
        Ok(out)
    }

    fn revoke_device(&self, id: &str, now: &str) -> Result<(), StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        if n == 0 {
            return Err(StorageError::NoDevice(id.to_owned()));
        }
        tx.execute(
            "UPDATE sessions SET ended_at = ?2 WHERE device_id = ?1 AND ended_at IS NULL",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_sync(&self, r: &SyncRecord<'_>) -> Result<(), StorageError> {
        let manifest = serde_json::to_string(r.manifest).expect("a manifest serialises");
        self.conn().execute(
            "UPDATE devices SET last_sync_at = ?2, manifest = ?3, \
             clock_offset_ms = COALESCE(?4, clock_offset_ms), scope_seen = COALESCE(?5, scope_seen) WHERE id = ?1",
            params![r.device, r.at, manifest, r.clock_offset_ms, r.scope],
        )?;
        Ok(())
    }
}

impl ChangeLog for SqliteStorage {
    fn epoch(&self) -> Result<String, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))?)
    }

    fn incident_doc(&self, id: &str) -> Result<Option<StoredDoc>, StorageError> {
        Ok(self
            .conn()
            .query_row("SELECT doc, grid, heads FROM incidents WHERE id = ?1", [id], |r| {
                Ok(StoredDoc {
                    doc: r.get(0)?,
                    grid: r.get(1)?,
                    heads: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn has_change(&self, hash: &[u8; 32]) -> Result<bool, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?;
        Ok(stmt.query_row([&hash[..]], |_| Ok(())).optional()?.is_some())
    }

    fn change_sig(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT sig FROM changes WHERE hash = ?1")?;
        Ok(stmt.query_row([&hash[..]], |r| r.get(0)).optional()?.flatten())
    }

    fn commit_push(&self, writes: &[IncidentWrite], device: &str, now: &str) -> Result<(), StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut chain = last_chain(&tx)?;
        for w in writes {
            put_incident(&tx, w, now)?;
            let mut put_change = tx.prepare_cached(
                "INSERT OR IGNORE INTO changes (incident_id, hash, bytes, device_id, received_at, chain, sig)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for c in &w.new_changes {
                let link = chain_next(&chain, &c.hash);
                if put_change.execute(params![w.id, &c.hash[..], c.bytes, device, now, &link[..], c.sig])? == 1 {
                    chain = link.to_vec();
                }
            }
            let mut put_ref = tx.prepare_cached(
                "INSERT OR IGNORE INTO blob_refs (hash, incident_id, kind, device_id) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in &w.blob_refs {
                put_ref.execute(params![r.hash, w.id, r.kind.as_str(), device])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn quarantine(&self, q: &Quarantined<'_>) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT INTO quarantine (device_id, incident_id, reason, bytes, received_at, hash, sig)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE ?6 IS NULL OR NOT EXISTS (SELECT 1 FROM quarantine WHERE hash = ?6)",
            params![
                q.device,
                q.incident,
                q.reason,
                q.bytes,
                q.at,
                q.hash.map(|h| h.to_vec()),
                q.sig
            ],
        )?;
        Ok(())
    }

    fn quarantined(&self) -> Result<Vec<QuarantineRow>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, device_id, incident_id, reason, bytes, received_at, hash, sig FROM quarantine ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(QuarantineRow {
                id: r.get(0)?,
                device: r.get(1)?,
                incident: r.get(2)?,
                reason: r.get(3)?,
                bytes: r.get(4)?,
                at: r.get(5)?,
                hash: r.get(6)?,
                sig: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn unquarantine(&self, id: i64) -> Result<bool, StorageError> {
        Ok(self.conn().execute("DELETE FROM quarantine WHERE id = ?1", [id])? == 1)
    }

    fn change_at(&self, seq: u64) -> Result<Option<[u8; 32]>, StorageError> {
        let conn = self.reader();
        let hash: Option<Vec<u8>> = conn
            .query_row("SELECT chain FROM changes WHERE seq = ?1", [seq as i64], |r| r.get(0))
            .optional()?;
        Ok(hash.and_then(|h| h.try_into().ok()))
    }

    fn feed(&self, q: &FeedQuery<'_>) -> Result<FeedPage, StorageError> {
        let mut conn = self.reader();
        // One read transaction, so the high-water mark and the rows agree.
        let tx = conn.transaction()?;
        let max: i64 = tx.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| r.get(0))?;
        let (rows, cut) = {
            let mut stmt = tx.prepare_cached(
                "SELECT c.seq, c.incident_id, c.hash, c.bytes, c.sig FROM changes c JOIN incidents i ON i.id = c.incident_id
                 WHERE c.seq > ?1 AND c.device_id != ?2
                   AND (?3 IS NULL OR i.grid IN (SELECT value FROM json_each(?3)))
                 ORDER BY c.seq LIMIT ?4",
            )?;
            let params = params![q.after as i64, q.exclude_device, scope_param(q.scope), q.limit];
            read_page(stmt.query(params)?, q)?
        };
        tx.commit()?;
        Ok(FeedPage {
            rows,
            max_seq: max as u64,
            cut,
        })
    }
}

/// Reads feed rows up to the page's byte budget; whether the page was cut short.
fn read_page(mut rows: rusqlite::Rows<'_>, q: &FeedQuery<'_>) -> rusqlite::Result<(Vec<FeedRow>, bool)> {
    let (mut page, mut bytes) = (Vec::new(), 0usize);
    while let Some(r) = rows.next()? {
        let change: Vec<u8> = r.get(3)?;
        if !page.is_empty() && bytes + change.len() > q.max_bytes {
            return Ok((page, true));
        }
        bytes += change.len();
        let hash: Vec<u8> = r.get(2)?;
        page.push(FeedRow {
            seq: r.get::<_, i64>(0)? as u64,
            incident_id: r.get(1)?,
            hash: hash.try_into().unwrap_or([0; 32]),
            bytes: change,
            sig: r.get(4)?,
        });
    }
    let full = page.len() as u64 == u64::from(q.limit);
    Ok((page, full))
}

/// Writes an incident's document and rewrites every projected column,
/// only over the document it was merged from: a new incident only if
/// there is none by its id, a merge only while the stored heads are its
/// base. Otherwise another writer came first: [`StorageError::Conflict`].
fn put_incident(tx: &rusqlite::Transaction<'_>, w: &IncidentWrite, now: &str) -> Result<(), StorageError> {
    let sql = match w.base {
        None => {
            "INSERT INTO incidents (id, doc, heads, grid, category, status, reporter, device, captured_at,
                                lat, lon, first_received_at, updated_at, case_no)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13 WHERE ?14 IS NULL
         ON CONFLICT(id) DO NOTHING"
        }
        Some(_) => {
            "UPDATE incidents SET doc = ?2, heads = ?3, grid = ?4, category = ?5, status = ?6, reporter = ?7,
            device = ?8, captured_at = ?9, lat = ?10, lon = ?11, updated_at = ?12, case_no = ?13
         WHERE id = ?1 AND heads = ?14"
        }
    };
    let stored = tx.prepare_cached(sql)?.execute(params![
        w.id,
        w.doc,
        w.heads,
        w.grid,
        w.category,
        w.status.as_str(),
        w.reporter,
        w.device,
        w.captured_at,
        w.lat,
        w.lon,
        now,
        w.case_no,
        w.base
    ])?;
    match stored {
        1 => Ok(()),
        _ => Err(StorageError::Conflict(w.id.clone())),
    }
}

impl BlobIndex for SqliteStorage {
    fn blob_named(&self, hash: &str, scope: &Scope) -> Result<bool, StorageError> {
        Ok(self
            .reader()
            .query_row(
                "SELECT 1 FROM blob_refs r JOIN incidents i ON i.id = r.incident_id
                 WHERE r.hash = ?1 AND (?2 IS NULL OR i.grid IN (SELECT value FROM json_each(?2))) LIMIT 1",
                params![hash, scope_param(scope)],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn proven_kinds(&self, hash: &str, scope: &Scope) -> Result<Vec<BlobKind>, StorageError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT DISTINCT r.kind FROM blob_refs r JOIN incidents i ON i.id = r.incident_id
             JOIN blobs b ON b.hash = r.hash
             WHERE r.hash = ?1 AND (?2 IS NULL OR i.grid IN (SELECT value FROM json_each(?2))) AND {PROVEN}
             ORDER BY r.kind"
        ))?;
        let rows = stmt.query_map(params![hash, scope_param(scope)], |r| kind_at(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn kinds_anywhere(&self, hash: &str) -> Result<Vec<BlobKind>, StorageError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT DISTINCT kind FROM blob_refs WHERE hash = ?1 ORDER BY kind")?;
        let rows = stmt.query_map([hash], |r| kind_at(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn has_proof(&self, device: &str, hash: &str) -> Result<bool, StorageError> {
        Ok(self
            .reader()
            .query_row(
                "SELECT 1 FROM blob_proofs WHERE device_id = ?1 AND hash = ?2",
                [device, hash],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn record_upload(&self, hash: &str, size: u64, device: &str, now: &str) -> Result<(), StorageError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO blobs (hash, size, verified_at) VALUES (?1, ?2, ?3)",
            params![hash, size as i64, now],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO blob_proofs (device_id, hash, proven_at) VALUES (?1, ?2, ?3)",
            params![device, hash, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn thumbs_of(&self, incidents: &[String]) -> Result<Vec<String>, StorageError> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT DISTINCT r.hash FROM blob_refs r JOIN blobs b ON b.hash = r.hash
             WHERE r.kind = 'thumb' AND r.incident_id IN (SELECT value FROM json_each(?1)) AND {PROVEN}"
        ))?;
        Ok(stmt
            .query_map([json_list(incidents)], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }
}

impl ReadModel for SqliteStorage {
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<StoredIncident>, StorageError> {
        let (clauses, values) = incident_filter_sql(filter);
        // The ids first, sorted and cut to the page, then their rows: a
        // sort of whole rows would carry every matching document along.
        let sql = format!(
            "SELECT id, doc, grid, category, status, reporter, device, captured_at, lat, lon,
                    first_received_at, updated_at
             FROM incidents WHERE id IN (SELECT id FROM incidents WHERE {} ORDER BY id LIMIT {})
             ORDER BY id",
            clauses.join(" AND "),
            filter.limit.map_or(-1, |n| n.min(i64::MAX as usize) as i64)
        );
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            Ok(StoredIncident {
                id: r.get(0)?,
                doc: r.get(1)?,
                grid: r.get(2)?,
                category: r.get(3)?,
                status: status_at(r, 4)?,
                reporter: r.get(5)?,
                device: r.get(6)?,
                captured_at: r.get(7)?,
                lat: r.get(8)?,
                lon: r.get(9)?,
                first_received_at: r.get(10)?,
                updated_at: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn photo_refs(&self, incidents: &[String]) -> Result<Vec<PhotoRef>, StorageError> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT r.incident_id, r.hash, r.kind, b.hash IS NOT NULL AND {PROVEN} FROM blob_refs r
             LEFT JOIN blobs b ON b.hash = r.hash
             WHERE r.incident_id IN (SELECT value FROM json_each(?1))
             ORDER BY r.incident_id, r.kind, r.hash"
        ))?;
        let rows = stmt.query_map([json_list(incidents)], |r| {
            Ok(PhotoRef {
                incident_id: r.get(0)?,
                hash: r.get(1)?,
                kind: kind_at(r, 2)?,
                verified: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn find_incident(&self, given: &str) -> Result<Option<(String, String)>, StorageError> {
        let given = given.trim();
        let found = self
            .reader()
            .query_row(
                "SELECT id, grid FROM incidents WHERE id = lower(?1) OR case_no = upper(?1) LIMIT 1",
                [given],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(found)
    }

    fn own_incident_ids(&self, device: &str) -> Result<Vec<String>, StorageError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT id FROM incidents WHERE device = ?1 ORDER BY id")?;
        Ok(stmt.query_map([device], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }
}

impl AuditLog for SqliteStorage {
    fn audit(&self, e: &AuditEvent<'_>, at: &str) -> Result<(), StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "INSERT INTO audit_log (at, kind, account, device, client, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        stmt.execute(params![at, e.kind.as_str(), e.account, e.device, e.client, e.detail])?;
        Ok(())
    }

    fn audit_rows(
        &self,
        since: Option<&str>,
        kind: Option<AuditKind>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, kind, account, device, client, detail FROM audit_log
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR kind = ?2) ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![since, kind.map(AuditKind::as_str), limit], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                account: r.get(3)?,
                device: r.get(4)?,
                client: r.get(5)?,
                detail: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Sessions for SqliteStorage {
    fn start_session(&self, s: &NewSession<'_>, now: &str) -> Result<(), StorageError> {
        self.conn().execute(
            "INSERT INTO sessions (id_hash, device_id, csrf, created_at, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.id_hash, s.device, s.csrf, now, s.expires_ms],
        )?;
        Ok(())
    }

    fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<Session>, StorageError> {
        let found: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT device_id, csrf FROM sessions WHERE id_hash = ?1 AND ended_at IS NULL AND expires_ms > ?2",
                params![id_hash, now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((device, csrf)) = found else { return Ok(None) };
        Ok(self
            .device(&device)?
            .filter(|d| d.revoked_at.is_none())
            .map(|device| Session { device, csrf }))
    }

    fn end_session(&self, id_hash: &str, now: &str) -> Result<(), StorageError> {
        self.conn().execute(
            "UPDATE sessions SET ended_at = coalesce(ended_at, ?2) WHERE id_hash = ?1",
            params![id_hash, now],
        )?;
        Ok(())
    }

    fn link_key(&self, fresh: [u8; 32]) -> Result<[u8; 32], StorageError> {
        let conn = self.conn();
        let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('link_key', ?1)", [hex])?;
        let kept: String = conn.query_row("SELECT value FROM meta WHERE key = 'link_key'", [], |r| r.get(0))?;
        super::link_key_of(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(tx: &rusqlite::Transaction<'_>, sql: &str) -> i64 {
        tx.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A read answers while the writer is in the middle of a write (its
    /// connection held, a transaction open and not committed), and does
    /// not see what that write has not committed.
    #[test]
    fn reads_go_on_beside_an_uncommitted_write_and_do_not_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("s.sqlite3"), "epoch").unwrap();
        let writer = storage.conn();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .execute(
                "INSERT INTO incidents (id, doc, heads, grid, category, status, reporter, device, captured_at,
                                        first_received_at, updated_at)
                 VALUES ('x', X'', X'', 'HLT-CX-HX-01', 'lawn', 'reported', 'w', 'd',
                         '2026-11-20T09:00:00+08:00', '2026-11-20T01:00:00Z', '2026-11-20T01:00:00Z')",
                [],
            )
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let read = std::thread::scope(|s| {
            s.spawn(|| tx.send(storage.incidents(&IncidentFilter::default()).map(|r| r.len())));
            let read = rx.recv_timeout(std::time::Duration::from_secs(10));
            // The write ends either way, so a read stuck behind it ends too.
            writer.execute_batch("COMMIT").unwrap();
            drop(writer);
            read
        });
        assert!(
            matches!(read, Ok(Ok(0))),
            "the read waited for the writer or saw its rows: {read:?}"
        );
        assert_eq!(storage.incidents(&IncidentFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn rebuilding_the_workers_table_keeps_every_account_and_what_refers_to_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let before = &MIGRATIONS[..MIGRATIONS.len() - 1];
        let tx = conn.transaction().unwrap();
        migrate(&tx, before).unwrap();
        tx.execute_batch(
            "INSERT INTO workers (id, name, role, community, created_at, retired_at) VALUES
                ('w-li', '李华', 'worker', NULL, 't0', NULL),
                ('c-hx', '中心', 'center', 'HX', 't0', 't1');
             INSERT INTO worker_grids VALUES ('w-li', 'HLT-CX-HX-01');
             INSERT INTO enrol_codes (code_hash, worker_id, expires_ms, created_at) VALUES ('h', 'w-li', 1, 't0');
             INSERT INTO devices (id, worker_id, actor, token_hash, enrolled_at) VALUES ('d1', 'w-li', x'00', 'th', 't0');",
        )
        .unwrap();
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(migrate(&tx, MIGRATIONS).unwrap(), before.len() as i64);
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(count(&tx, "SELECT count(*) FROM workers WHERE retired_at = 't1'"), 1);
        assert_eq!(
            count(&tx, "SELECT count(*) FROM worker_grids JOIN workers ON id = worker_id"),
            1
        );
        assert_eq!(
            count(&tx, "SELECT count(*) FROM devices JOIN workers w ON w.id = worker_id"),
            1
        );
        assert_eq!(count(&tx, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
        // The references are enforced again, and the new role needs its department.
        let dangling = "INSERT INTO worker_grids VALUES ('nobody', 'HLT-CX-HX-01')";
        assert!(tx.execute(dangling, []).is_err());
        let dept = "INSERT INTO workers (id, name, role, community, created_at, department)
                    VALUES ('d-sz', '市政', 'department', 'HX', 't2', ?1)";
        assert!(tx.execute(dept, [None::<&str>]).is_err());
        tx.execute(dept, [Some("shizheng")]).unwrap();
        let stray =
            "INSERT INTO workers (id, name, role, created_at, department) VALUES ('x', 'x', 'worker', 't', 'shizheng')";
        assert!(tx.execute(stray, []).is_err());
    }

    /// What SQLite plans for a filter's query.
    fn plan(conn: &Connection, filter: &IncidentFilter) -> String {
        let (clauses, values) = incident_filter_sql(filter);
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT id FROM incidents WHERE {}",
            clauses.join(" AND ")
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn a_day_or_a_status_is_read_through_its_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        migrate(&tx, MIGRATIONS).unwrap();
        tx.commit().unwrap();
        let cells = Some(vec!["HLT-CX-HX-01".to_owned()]);
        let day = IncidentFilter {
            grids: cells.clone(),
            captured: Some((1_764_000_000, 1_764_086_400)),
            ..IncidentFilter::default()
        };
        assert!(
            plan(&conn, &day).contains("incidents_captured"),
            "{}",
            plan(&conn, &day)
        );
        let received = IncidentFilter {
            captured: None,
            received: day.captured,
            ..day.clone()
        };
        assert!(
            plan(&conn, &received).contains("incidents_received"),
            "{}",
            plan(&conn, &received)
        );
        let open = IncidentFilter {
            grids: cells,
            statuses: vec![Status::Dispatched, Status::InProgress],
            ..IncidentFilter::default()
        };
        assert!(
            plan(&conn, &open).contains("incidents_status"),
            "{}",
            plan(&conn, &open)
        );
        let everywhere = IncidentFilter { grids: None, ..day };
        let plan_all = plan(&conn, &everywhere);
        assert!(plan_all.contains("incidents_captured_any"), "{plan_all}");
    }
}

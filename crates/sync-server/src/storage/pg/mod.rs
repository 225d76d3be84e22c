//! [`PgStorage`]: every storage trait on a PostgreSQL database, for a
//! city whose sync-server runs on several nodes at once.
//!
//! Nothing here relies on being the only writer. A push stores an
//! incident only over the document it merged from (compare-and-swap on
//! the stored heads, [`super::IncidentWrite::base`]); the feed's order
//! comes from one sequencer row locked by each committing push until its
//! commit (`schema.rs`), so readers never pass an uncommitted change; a
//! push is a fixed number of round trips (arrays, not one statement per
//! change). The client is the blocking `postgres` crate (tokio-postgres
//! underneath) behind an r2d2 pool: the storage traits are blocking, and
//! async callers already run them in `spawn_blocking`.

mod accounts;
mod changes;
mod reads;
mod schema;

use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

pub use schema::PG_SCHEMA_VERSION;

use super::{AuditEvent, AuditKind, AuditLog, AuditRow, NewSession, Session, Sessions, StorageError};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Client = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Connections a node keeps open at most.
const POOL_SIZE: u32 = 16;

/// A lock key only `migrate` takes, so two nodes starting at once do not
/// both migrate.
const MIGRATE_LOCK: i64 = 0x6772_6964_7379_6e63;

/// Every storage trait on a pool of PostgreSQL connections.
pub struct PgStorage {
    /// Always `Some` but while dropping.
    pool: Option<Pool>,
}

impl Drop for PgStorage {
    /// Closing a connection blocks on a runtime of the client's own, which
    /// panics on a thread that drives async tasks (where the server drops
    /// its state); so the pool closes on a thread of its own.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

/// What a database holds before [`PgStorage::open`] decides what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgState {
    /// No server schema at all.
    Empty,
    /// A server schema at this version.
    Server(i64),
}

impl PgStorage {
    /// Connects to `url` (`postgres://user@host:port/db`) without changing anything.
    pub fn connect(url: &str) -> Result<PgStorage, StorageError> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        // One connection first: its error says why (refused, no such
        // database, a wrong password), where the pool's says only that
        // it timed out.
        drop(config.connect(NoTls)?);
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(std::time::Duration::from_secs(10))
            // A failure reaches the caller as the error of `get`; the pool
            // logging each retry as well would say it many times over.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(manager)?;
        Ok(PgStorage { pool: Some(pool) })
    }

    /// Whether the database holds a server, and at which schema version.
    pub fn state(&self) -> Result<PgState, StorageError> {
        let mut c = self.client()?;
        let table: Option<String> = c
            .query_one("SELECT to_regclass('schema_version')::text", &[])?
            .try_get(0)?;
        if table.is_none() {
            return Ok(PgState::Empty);
        }
        let found: Option<i64> = c
            .query_opt("SELECT version FROM schema_version", &[])?
            .map(|r| r.try_get(0))
            .transpose()?;
        Ok(found.map_or(PgState::Empty, PgState::Server))
    }

    /// Runs the migrations the database has not had (under a lock, so
    /// nodes starting together take turns) and writes `new_epoch` if it
    /// has none; returns the version it had. A newer schema is refused
    /// untouched.
    pub fn migrate(&self, new_epoch: &str) -> Result<i64, StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
             INSERT INTO schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version);",
        )?;
        let found: i64 = tx.query_one("SELECT version FROM schema_version", &[])?.try_get(0)?;
        let known = PG_SCHEMA_VERSION;
        if found > known {
            return Err(sync_core::sqlite::MigrationError::TooNew { found, known }.into());
        }
        for sql in &schema::MIGRATIONS[found as usize..] {
            tx.batch_execute(sql)?;
        }
        tx.execute("UPDATE schema_version SET version = $1", &[&known])?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
            &[&new_epoch],
        )?;
        tx.commit()?;
        Ok(found)
    }

    fn client(&self) -> Result<Client, StorageError> {
        Ok(self.pool.as_ref().expect("the pool is there until dropped").get()?)
    }
}

use crate::storage::damaged;

impl AuditLog for PgStorage {
    fn audit(&self, e: &AuditEvent<'_>, at: &str) -> Result<(), StorageError> {
        self.client()?.execute(
            "INSERT INTO audit_log (at, kind, account, device, client, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&at, &e.kind.as_str(), &e.account, &e.device, &e.client, &e.detail],
        )?;
        Ok(())
    }

    fn audit_rows(
        &self,
        since: Option<&str>,
        kind: Option<AuditKind>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StorageError> {
        let rows = self.client()?.query(
            "SELECT id, at, kind, account, device, client, detail FROM audit_log
             WHERE ($1::text IS NULL OR at >= $1) AND ($2::text IS NULL OR kind = $2) ORDER BY id LIMIT $3",
            &[&since, &kind.map(AuditKind::as_str), &i64::from(limit)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    account: r.try_get(3)?,
                    device: r.try_get(4)?,
                    client: r.try_get(5)?,
                    detail: r.try_get(6)?,
                })
            })
            .collect()
    }
}

impl Sessions for PgStorage {
    fn start_session(&self, s: &NewSession<'_>, now: &str) -> Result<(), StorageError> {
        self.client()?.execute(
            "INSERT INTO sessions (id_hash, device_id, csrf, created_at, expires_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&s.id_hash, &s.device, &s.csrf, &now, &s.expires_ms],
        )?;
        Ok(())
    }

    fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<Session>, StorageError> {
        let found = self.client()?.query_opt(
            "SELECT device_id, csrf FROM sessions WHERE id_hash = $1 AND ended_at IS NULL AND expires_ms > $2",
            &[&id_hash, &now_ms],
        )?;
        let Some(row) = found else { return Ok(None) };
        let (device, csrf): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        use super::Accounts;
        Ok(self
            .device(&device)?
            .filter(|d| d.revoked_at.is_none())
            .map(|device| Session { device, csrf }))
    }

    fn end_session(&self, id_hash: &str, now: &str) -> Result<(), StorageError> {
        self.client()?.execute(
            "UPDATE sessions SET ended_at = coalesce(ended_at, $2) WHERE id_hash = $1",
            &[&id_hash, &now],
        )?;
        Ok(())
    }

    fn link_key(&self, fresh: [u8; 32]) -> Result<[u8; 32], StorageError> {
        let mut c = self.client()?;
        let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('link_key', $1) ON CONFLICT (key) DO NOTHING",
            &[&hex],
        )?;
        let kept: String = c
            .query_one("SELECT value FROM meta WHERE key = 'link_key'", &[])?
            .try_get(0)?;
        crate::storage::link_key_of(kept)
    }
}

//! Schema migrations for the SQLite files of the device and the server:
//! numbered by `PRAGMA user_version`, applied in order inside the caller's
//! transaction, so a database is at one version or the one before.

use rusqlite::Transaction;

/// One step of a schema: its SQL, and what fills the new columns of an
/// existing database after it runs.
pub struct Migration {
    pub sql: &'static str,
    pub backfill: Option<fn(&Transaction<'_>) -> rusqlite::Result<()>>,
}

impl Migration {
    pub const fn sql(sql: &'static str) -> Migration {
        Migration { sql, backfill: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the database was written by a newer version (schema {found}, this build knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("the database schema cannot be brought up to date: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Runs the steps `tx`'s database has not had yet; returns the version it had.
pub fn migrate(tx: &Transaction<'_>, steps: &[Migration]) -> Result<i64, MigrationError> {
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = steps.len() as i64;
    if found > known {
        return Err(MigrationError::TooNew { found, known });
    }
    for step in &steps[found as usize..] {
        tx.execute_batch(step.sql)?;
        if let Some(fill) = step.backfill {
            fill(tx)?;
        }
    }
    if found < known {
        tx.pragma_update(None, "user_version", known)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn fill(tx: &Transaction<'_>) -> rusqlite::Result<()> {
        tx.execute("UPDATE t SET b = a * 2", []).map(drop)
    }

    const STEPS: &[Migration] = &[
        Migration::sql("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (21);"),
        Migration {
            sql: "ALTER TABLE t ADD COLUMN b INTEGER;",
            backfill: Some(fill),
        },
    ];

    #[test]
    fn runs_missing_steps_once_and_refuses_newer_schemas() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(migrate(&tx, &STEPS[..1]).unwrap(), 0);
        assert_eq!(migrate(&tx, STEPS).unwrap(), 1);
        assert_eq!(migrate(&tx, STEPS).unwrap(), 2);
        let b: i64 = tx.query_row("SELECT b FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(b, 42);
        let e = migrate(&tx, &STEPS[..1]).unwrap_err();
        assert!(matches!(e, MigrationError::TooNew { found: 2, known: 1 }), "{e}");
    }
}

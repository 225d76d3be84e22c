//! Which database the server under test keeps its records in: the SQLite
//! file of its data dir, or, when `SYNC_TEST_BACKEND=postgres`, a fresh
//! PostgreSQL database of its own on 127.0.0.1 (`SYNC_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, is where databases are
//! made), dropped after the test. `cargo xtask test` runs the suite once
//! on each.
//!
//! The tests' read-only checks (`Server::db`) are SQL over the server's
//! tables; on PostgreSQL they read an in-memory SQLite copy of every table,
//! taken at the call, so the same checks run on both. A test that writes
//! the SQLite file itself or copies it says so with [`sqlite_only`].

use postgres::types::Type;
use postgres::{Client, NoTls};
use rusqlite::types::Value;
pub use testbed::{Bucket, Garage, PgDatabase};

pub fn on_postgres() -> bool {
    std::env::var("SYNC_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// True (and says so) when the running suite is the PostgreSQL one and
/// this test works on the SQLite file itself, so it does not run there.
pub fn sqlite_only(why: &str) -> bool {
    let skip = on_postgres();
    if skip {
        eprintln!("not run on PostgreSQL: {why}");
    }
    skip
}

fn admin_url() -> String {
    std::env::var("SYNC_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database for one test server.
pub fn fresh_database() -> PgDatabase {
    PgDatabase::fresh(&admin_url(), "it").expect("PostgreSQL runs on 127.0.0.1:5432")
}

/// Every table of `pg` copied into an in-memory SQLite database, with the
/// same names and values (bytea as blobs).
pub fn snapshot(pg: &PgDatabase) -> rusqlite::Connection {
    let mut pg = Client::connect(&pg.url, NoTls).expect("the test database is there");
    let copy = rusqlite::Connection::open_in_memory().unwrap();
    let tables: Vec<String> = pg
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in tables {
        copy_table(&mut pg, &copy, &table);
    }
    copy
}

fn copy_table(pg: &mut Client, copy: &rusqlite::Connection, table: &str) {
    let stmt = pg.prepare(&format!("SELECT * FROM {table}")).unwrap();
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    copy.execute_batch(&format!("CREATE TABLE {table} ({})", names.join(", ")))
        .unwrap();
    let marks = vec!["?"; names.len()].join(", ");
    let mut insert = copy.prepare(&format!("INSERT INTO {table} VALUES ({marks})")).unwrap();
    for row in pg.query(&stmt, &[]).unwrap() {
        let values: Vec<Value> = (0..names.len()).map(|i| value_at(&row, i)).collect();
        insert.execute(rusqlite::params_from_iter(values)).unwrap();
    }
}

fn value_at(row: &postgres::Row, i: usize) -> Value {
    let ty = row.columns()[i].type_();
    let v = match *ty {
        Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(Value::Blob),
        Type::INT8 => row.get::<_, Option<i64>>(i).map(Value::Integer),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|n| Value::Integer(n.into())),
        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(Value::Real),
        Type::BOOL => row.get::<_, Option<bool>>(i).map(|b| Value::Integer(b.into())),
        _ => row.get::<_, Option<String>>(i).map(Value::Text),
    };
    v.unwrap_or(Value::Null)
}

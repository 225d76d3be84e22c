//! A PostgreSQL database made for one server and dropped with it.

use postgres::{Client, NoTls};

/// A fresh database on the server `admin` names (a URL whose last part
/// is a database to connect to, such as `postgres`), dropped, connections
/// and all, when this is.
pub struct PgDatabase {
    pub url: String,
    pub name: String,
    admin: String,
}

impl PgDatabase {
    /// Makes a database named `prefix_<random>`.
    pub fn fresh(admin: &str, prefix: &str) -> Result<PgDatabase, postgres::Error> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut client = Client::connect(admin, NoTls)?;
        client.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let server = admin.rsplit_once('/').map_or(admin, |(s, _)| s);
        Ok(PgDatabase {
            url: format!("{server}/{name}"),
            name,
            admin: admin.to_owned(),
        })
    }

    /// Runs one statement; rows changed, or the database's own words.
    pub fn exec(&self, sql: &str) -> Result<u64, String> {
        let mut pg = Client::connect(&self.url, NoTls).map_err(|e| e.to_string())?;
        pg.execute(sql, &[]).map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })
    }

    /// A copy of the whole database, as a backup is (no one may be
    /// connected to it meanwhile: its server is stopped).
    pub fn copy(&self) -> Result<PgDatabase, postgres::Error> {
        let copy = PgDatabase::fresh(&self.admin, "copy")?;
        let mut admin = Client::connect(&self.admin, NoTls)?;
        // One statement per call: DROP and CREATE DATABASE refuse a transaction.
        admin.batch_execute(&format!("DROP DATABASE {}", copy.name))?;
        admin.batch_execute(&format!("CREATE DATABASE {} TEMPLATE {}", copy.name, self.name))?;
        Ok(copy)
    }

    /// Puts `backup` back in place of this database, under the same name.
    pub fn restore_from(&self, backup: &PgDatabase) -> Result<(), postgres::Error> {
        let mut admin = Client::connect(&self.admin, NoTls)?;
        admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))?;
        admin.batch_execute(&format!("CREATE DATABASE {} TEMPLATE {}", self.name, backup.name))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.admin, NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

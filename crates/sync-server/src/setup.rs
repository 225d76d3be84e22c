//! Opening what the server keeps: the data dir's database and photo
//! folder, and the grid hierarchy; `SetupError` says what stopped it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sync_core::GridMap;
use sync_core::files::{private_dir, private_file};
use sync_core::taxonomy::TaxonomyError;

use crate::photos::{LocalPhotos, PhotoStore, S3Location, S3Photos};
use crate::storage::{PgState, PgStorage, SqliteStorage, Storage, StorageError};

/// Everything `serve` needs; the defaults are a folder and nothing else.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A PostgreSQL database (`postgres://…`) for the records instead of
    /// the SQLite file in the data dir; photos stay in the data dir.
    pub database: Option<String>,
    /// An S3-compatible bucket (`s3://BUCKET?endpoint=…&region=…`) for the
    /// photos instead of the data dir's folder.
    pub photos: Option<String>,
    /// A grid hierarchy file other than the built-in one.
    pub grid_map: Option<PathBuf>,
    /// Open311: public or token-only, and the base URL of `media_url`.
    pub open311: Open311Config,
    /// At most this many connections at once (default: what the
    /// descriptor limit allows, after raising the soft limit).
    pub max_connections: Option<usize>,
    /// Serve HTTPS with this certificate chain and key instead of HTTP.
    pub tls: Option<crate::http::TlsFiles>,
    /// Peers whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed
    /// (the TLS proxy in front of the server); nobody else's are.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a request and the pauses in its body may take.
    pub timeouts: Timeouts,
}

/// Bounds on slow clients once a request head has arrived (the head
/// itself must arrive within the listener's fixed header timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A whole request, body included; 408 past it.
    pub request: std::time::Duration,
    /// A request body's longest pause between bytes; 408 past it.
    pub body_idle: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            request: std::time::Duration::from_secs(300),
            body_idle: std::time::Duration::from_secs(30),
        }
    }
}

/// The server database's file name in the data dir.
pub const DB_FILE: &str = "server.sqlite3";

/// What stops the server from starting or an operator command from opening its data.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot create {}: {source}", path.display())]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(
        "{} holds no server database; make one with `sync-server init --data-dir {}`, or give the --data-dir of the existing server",
        .0.display(), .0.display()
    )]
    NoServer(PathBuf),
    #[error("{} holds a server database already; nothing was changed", .0.display())]
    Exists(PathBuf),
    #[error("cannot open the server database in {}: {source}", path.display())]
    Database { path: PathBuf, source: StorageError },
    #[error(
        "{0} holds no server; make one with `sync-server init --database …`, or give the database of the existing server"
    )]
    NoPgServer(String),
    #[error("{0} holds a server already; nothing was changed")]
    PgExists(String),
    #[error("--database `{0}` is not a PostgreSQL URL (postgres://user@host:port/database)")]
    DatabaseUrl(String),
    #[error("cannot open the PostgreSQL database {url}: {cause}")]
    Postgres { url: String, cause: StorageError },
    #[error("cannot open the photo folder in {}: {source}", path.display())]
    Photos { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    PhotoLocation(#[from] crate::photos::BadLocation),
    #[error("cannot open the photo store {bucket}: {cause}")]
    PhotoStore { bucket: String, cause: std::io::Error },
    #[error("cannot read {}: {source}", path.display())]
    GridFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Grids(#[from] TaxonomyError),
    #[error("--public-url `{0}` must start with http:// or https://")]
    PublicUrl(String),
    #[error("cannot serve: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::http::TlsError),
}

impl SetupError {
    /// A mistake in what the operator typed, not a failure of the machine.
    pub fn is_caller_mistake(&self) -> bool {
        matches!(
            self,
            SetupError::PublicUrl(_)
                | SetupError::Grids(_)
                | SetupError::Tls(_)
                | SetupError::NoServer(_)
                | SetupError::Exists(_)
                | SetupError::NoPgServer(_)
                | SetupError::PgExists(_)
                | SetupError::DatabaseUrl(_)
                | SetupError::PhotoLocation(_)
        )
    }
}

/// Makes a new server (`sync-server init`): the data dir if need be, its
/// photo folder, and a database with a new epoch, the SQLite file in the
/// data dir or the PostgreSQL `database`. Refuses a folder or database
/// that already holds a server, which stays untouched.
pub fn create_storage(data_dir: &Path, database: Option<&str>) -> Result<Box<dyn Storage>, SetupError> {
    let Some(url) = database else {
        return Ok(Box::new(create_sqlite_storage(data_dir)?));
    };
    let pg = connect_pg(url)?;
    if pg_state(&pg, url)? != PgState::Empty {
        return Err(SetupError::PgExists(shown_url(url)));
    }
    private_dir(data_dir).map_err(|source| SetupError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    open_photos(data_dir)?;
    migrate_pg(&pg, url)?;
    Ok(Box::new(pg))
}

pub fn create_sqlite_storage(data_dir: &Path) -> Result<SqliteStorage, SetupError> {
    if data_dir.join(DB_FILE).exists() {
        return Err(SetupError::Exists(shown(data_dir)));
    }
    private_dir(data_dir).map_err(|source| SetupError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let storage = open_db(data_dir)?;
    open_photos(data_dir)?;
    Ok(storage)
}

/// Opens the server database of an existing server: the data dir's
/// SQLite file, or the PostgreSQL `database`. One with no server is
/// refused rather than started afresh: a mistyped `--data-dir` or URL must
/// not become a new, empty server with a new epoch.
pub fn open_storage(data_dir: &Path, database: Option<&str>) -> Result<Box<dyn Storage>, SetupError> {
    if let Some(url) = database {
        let pg = connect_pg(url)?;
        if pg_state(&pg, url)? == PgState::Empty {
            return Err(SetupError::NoPgServer(shown_url(url)));
        }
        migrate_pg(&pg, url)?;
        return Ok(Box::new(pg));
    }
    if !data_dir.join(DB_FILE).is_file() {
        return Err(SetupError::NoServer(shown(data_dir)));
    }
    Ok(Box::new(open_db(data_dir)?))
}

/// Whether a server is there already: the data dir's database file, or a
/// server schema in the PostgreSQL `database`.
pub fn server_exists(data_dir: &Path, database: Option<&str>) -> Result<bool, SetupError> {
    match database {
        None => Ok(data_dir.join(DB_FILE).exists()),
        Some(url) => Ok(pg_state(&connect_pg(url)?, url)? != PgState::Empty),
    }
}

fn connect_pg(url: &str) -> Result<PgStorage, SetupError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(SetupError::DatabaseUrl(shown_url(url)));
    }
    PgStorage::connect(url).map_err(|source| pg_failed(url, source))
}

fn pg_state(pg: &PgStorage, url: &str) -> Result<PgState, SetupError> {
    pg.state().map_err(|source| pg_failed(url, source))
}

/// Migrates a PostgreSQL server's schema; returns the version it had.
fn migrate_pg(pg: &PgStorage, url: &str) -> Result<i64, SetupError> {
    let epoch = uuid::Uuid::new_v4().to_string();
    pg.migrate(&epoch).map_err(|source| pg_failed(url, source))
}

fn pg_failed(url: &str, source: StorageError) -> SetupError {
    SetupError::Postgres {
        url: shown_url(url),
        cause: source,
    }
}

/// A database URL as it may be printed: without its password.
fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.chars().take(80).collect();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

/// What `sync-server migrate` did: the schema version before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// Brings an existing server database up to this build's schema (what
/// `serve` and every command also do when they open it) and says from
/// which version; a database written by a newer build is refused untouched.
pub fn migrate_storage(data_dir: &Path, database: Option<&str>) -> Result<Migrated, SetupError> {
    if let Some(url) = database {
        let pg = connect_pg(url)?;
        if pg_state(&pg, url)? == PgState::Empty {
            return Err(SetupError::NoPgServer(shown_url(url)));
        }
        let from = migrate_pg(&pg, url)?;
        return Ok(Migrated {
            from,
            to: crate::storage::PG_SCHEMA_VERSION,
        });
    }
    if !data_dir.join(DB_FILE).is_file() {
        return Err(SetupError::NoServer(shown(data_dir)));
    }
    let database = |source| SetupError::Database {
        path: data_dir.to_owned(),
        source,
    };
    let from = SqliteStorage::schema_version(&data_dir.join(DB_FILE)).map_err(database)?;
    open_db(data_dir)?;
    Ok(Migrated {
        from,
        to: crate::storage::SCHEMA_VERSION,
    })
}

fn open_db(data_dir: &Path) -> Result<SqliteStorage, SetupError> {
    let db = data_dir.join(DB_FILE);
    private_dir(data_dir)
        .and_then(|()| private_file(&db))
        .map_err(|source| SetupError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
    let epoch = uuid::Uuid::new_v4().to_string();
    SqliteStorage::open(&db, &epoch).map_err(|source| SetupError::Database {
        path: data_dir.to_owned(),
        source,
    })
}

/// The folder as the operator should read it: absolute, so a relative
/// `--data-dir` typed in the wrong folder is plain to see.
fn shown(data_dir: &Path) -> PathBuf {
    std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned())
}

/// Opens where the photos are: the bucket `photos` names, or the data
/// dir's folder (finishing uploads a stop interrupted).
pub fn open_photo_store(data_dir: &Path, photos: Option<&str>) -> Result<Box<dyn PhotoStore>, SetupError> {
    let Some(given) = photos else {
        return Ok(Box::new(open_photos(data_dir)?));
    };
    let loc = S3Location::parse(given)?;
    // The data dir keeps nothing of the photos then, but stays the owner's alone.
    private_dir(data_dir).map_err(|source| SetupError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let store = S3Photos::open(&loc).map_err(|cause| SetupError::PhotoStore {
        bucket: loc.bucket.clone(),
        cause,
    })?;
    Ok(Box::new(store))
}

/// Opens the photo folder in `data_dir`, finishing uploads a stop interrupted.
pub fn open_photos(data_dir: &Path) -> Result<LocalPhotos, SetupError> {
    LocalPhotos::open(data_dir).map_err(|source| SetupError::Photos {
        path: data_dir.to_owned(),
        source,
    })
}

/// The grid hierarchy: the file given, or the built-in one.
pub fn load_grids(grid_map: Option<&Path>) -> Result<GridMap, SetupError> {
    match grid_map {
        None => Ok(GridMap::builtin()),
        Some(path) => {
            let json = std::fs::read_to_string(path).map_err(|source| SetupError::GridFile {
                path: path.to_owned(),
                source,
            })?;
            Ok(GridMap::from_json(&json)?)
        }
    }
}

/// How the server offers Open311.
#[derive(Debug, Clone, Default)]
pub struct Open311Config {
    /// Serve requests and photos without a token (read-only, every community).
    pub public: bool,
    /// The base URL clients reach this server at, for `media_url`
    /// (default: http://<listen address>).
    pub public_url: Option<String>,
}

impl Open311Config {
    /// The base of absolute URLs, without a trailing slash.
    pub fn base_url(&self, addr: SocketAddr, tls: bool) -> Result<String, SetupError> {
        let scheme = if tls { "https" } else { "http" };
        match &self.public_url {
            None => Ok(format!("{scheme}://{addr}")),
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(u.trim_end_matches('/').to_owned()),
            Some(u) => Err(SetupError::PublicUrl(u.clone())),
        }
    }
}

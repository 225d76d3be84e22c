//! Opening what the server keeps: the data dir's database and photo
//! folder, and the grid hierarchy; `SetupError` says what stopped it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sync_core::GridMap;
use sync_core::files::{private_dir, private_file};
use sync_core::taxonomy::TaxonomyError;

use crate::photos::LocalPhotos;
use crate::storage::{SqliteStorage, StorageError};

/// Everything `serve` needs; the defaults are a folder and nothing else.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
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
    #[error("cannot open the photo folder in {}: {source}", path.display())]
    Photos { path: PathBuf, source: std::io::Error },
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
        )
    }
}

/// Makes a new server in `data_dir` (`sync-server init`): the folder if
/// need be, a database with a new epoch, and the photo folder. Refuses a
/// folder that already holds a server database, which stays untouched.
pub fn create_storage(data_dir: &Path) -> Result<SqliteStorage, SetupError> {
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

/// Opens the server database of an existing data dir. A folder with no
/// server database is refused rather than started afresh: a mistyped
/// `--data-dir` must not become a new, empty server with a new epoch.
pub fn open_storage(data_dir: &Path) -> Result<SqliteStorage, SetupError> {
    if !data_dir.join(DB_FILE).is_file() {
        return Err(SetupError::NoServer(shown(data_dir)));
    }
    open_db(data_dir)
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
pub fn migrate_storage(data_dir: &Path) -> Result<Migrated, SetupError> {
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

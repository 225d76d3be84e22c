//! The sync server: merges grid workers' device logs, stores photos,
//! enrols devices and scopes every request to the caller's grid cells.
//!
//! `main.rs` only parses the command line; tests bind 127.0.0.1:0 and call
//! [`run`] directly.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

pub mod admin;
pub mod api;
pub mod dashboard;
pub mod export;
pub mod open311;
pub mod photos;
pub mod report;
pub mod storage;
pub mod sync;

use storage::SqliteStorage;

/// Everything `serve` needs; the defaults are a folder and nothing else.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A grid hierarchy file other than the built-in one.
    pub grid_map: Option<PathBuf>,
    /// Open311: public or token-only, and the base URL of `media_url`.
    pub open311: open311::ServeArgs,
}

pub const DB_FILE: &str = "server.sqlite3";

/// Opens (creating if needed) the server database in `data_dir`.
pub fn open_storage(data_dir: &Path) -> Result<SqliteStorage> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let epoch = uuid::Uuid::new_v4().to_string();
    SqliteStorage::open(&data_dir.join(DB_FILE), &epoch)
        .with_context(|| format!("cannot open the server database in {}", data_dir.display()))
}

pub fn load_grids(config: &Config) -> Result<sync_core::GridMap> {
    match &config.grid_map {
        None => Ok(sync_core::GridMap::builtin()),
        Some(path) => {
            let json = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok(sync_core::GridMap::from_json(&json)?)
        }
    }
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let storage = open_storage(&config.data_dir)?;
    let photos = photos::LocalPhotos::open(&config.data_dir).context("cannot open the photo folder")?;
    let state = Arc::new(api::AppState {
        storage: Arc::new(storage),
        photos: Arc::new(photos),
        grids: load_grids(&config)?,
        push_lock: Mutex::new(()),
    });
    let addr = listener.local_addr()?;
    let router = api::router(state.clone())
        .merge(export::routes(state.clone()))
        .merge(open311::routes(state, &config.open311, addr)?);
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the server stopped with an error")
}

/// The server clock: milliseconds since the epoch and RFC 3339.
pub fn clock() -> (i64, String) {
    let now = chrono::Utc::now();
    (
        now.timestamp_millis(),
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// Tokens and codes are stored only as this hash.
pub fn secret_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// A device token: 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS has randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Letters and digits that cannot be misread for one another.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A one-time enrolment code such as `K7QF-M2XD-9PRT`, easy to read out.
pub fn random_code() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("the OS has randomness");
    let chars: Vec<char> = b
        .iter()
        .map(|x| CODE_ALPHABET[*x as usize % CODE_ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Codes are compared without dashes, spaces or case.
pub fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

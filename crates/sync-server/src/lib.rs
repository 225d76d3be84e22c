//! The sync server: merges grid workers' device logs, stores photos,
//! enrols devices and scopes every request to the caller's grid cells.
//!
//! The library is laid out by job: `storage` and `photos` keep records and
//! bytes; `accounts`, `sync`, `report`, `export` and `open311` are the
//! domain, free of HTTP and of the command line; `http` is the one router
//! and its handlers. The `sync-server` binary (`main.rs`, `cli/`) parses
//! the command line and calls the functions here; tests bind 127.0.0.1:0
//! and call [`serve`].

pub mod accounts;
mod clock;
pub mod department;
pub mod export;
mod http;
pub mod open311;
pub mod photos;
pub mod report;
pub mod secrets;
mod setup;
pub mod storage;
pub mod sync;

pub use clock::ServerTime;
pub use http::{TlsError, TlsFiles, serve};
pub use setup::{
    Config, DB_FILE, Migrated, Open311Config, SetupError, Timeouts, create_sqlite_storage, create_storage, load_grids,
    migrate_storage, open_photo_store, open_photos, open_storage, server_exists,
};

//! The part of the grid-worker system that both the device and the server
//! run: incident documents, the device store, content-addressed photos and
//! the photo pipeline (feature `photo`, on by default; the server can do
//! without it).
//!
//! Nothing here is async, opens a socket, or reads the clock or an RNG:
//! times and random bytes come in as parameters, so the binaries decide
//! them and tests can fix them.

pub mod account;
pub mod blob;
pub mod calendar;
pub mod case;
pub mod chunk;
pub mod export;
pub mod files;
pub mod incident;
pub mod names;
#[cfg(feature = "photo")]
pub mod photo;
pub mod protocol;
pub mod rules;
pub mod signing;
pub mod sqlite;
pub mod store;
pub mod sync;
pub mod taxonomy;
#[cfg(feature = "test-support")]
pub mod testing;

pub use blob::{BlobHash, BlobStore};
pub use incident::{Correction, Incident, IncidentDoc, IncidentId, Location, NewIncident, PhotoRef, Status};
pub use store::{ListFilter, Profile, Store, StoreError};
pub use taxonomy::{Category, GridMap, Taxonomy};

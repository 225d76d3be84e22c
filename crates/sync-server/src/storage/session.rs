//! Dashboard sessions: a random id in the browser's cookie, its hash here
//! with its expiry, its CSRF token and the reader token it came from.
//! A session lives only while that token is unrevoked.

use super::{Device, StorageError};

/// A session to start.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// The hash of the id the cookie holds.
    pub id_hash: &'a str,
    /// The reader token (device row) signed in with.
    pub device: &'a str,
    /// The token every form of the session carries.
    pub csrf: &'a str,
    pub expires_ms: i64,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub device: Device,
    pub csrf: String,
}

pub trait Sessions {
    fn start_session(&self, session: &NewSession<'_>, now: &str) -> Result<(), StorageError>;
    /// The session, if it has not ended or expired and its token is not revoked.
    fn session(&self, id_hash: &str, now_ms: i64) -> Result<Option<Session>, StorageError>;
    fn end_session(&self, id_hash: &str, now: &str) -> Result<(), StorageError>;
    /// The key that signs short-lived photo links, made (from `fresh`) the
    /// first time it is asked for and kept from then on.
    fn link_key(&self, fresh: [u8; 32]) -> Result<[u8; 32], StorageError>;
}

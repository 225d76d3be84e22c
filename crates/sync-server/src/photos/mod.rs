//! Photo bytes on the server, behind [`PhotoStore`]; [`LocalPhotos`] keeps
//! them in the data dir. Uploads are resumable and hash-verified: only bytes
//! that hash to the name they were uploaded under are ever served.

mod local;

use std::io;

pub use local::{LocalPhotos, MAX_STAGED_BYTES, MAX_STAGED_UPLOADS, STALE_AFTER};
use sync_core::BlobHash;

#[derive(Debug, PartialEq, Eq)]
pub enum Append {
    /// Stored up to this many bytes; send the rest.
    Partial(u64),
    /// The whole photo is stored and matches its hash.
    Complete,
    /// The chunk does not start where the stored bytes end.
    WrongOffset(u64),
    /// All bytes arrived but they hash to something else; they were discarded.
    Mismatch,
    /// The chunk would run past the declared size.
    TooLong,
    /// The device holds too many unfinished uploads to start another.
    TooManyStaged,
}

/// One chunk of a device's upload.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub hash: &'a BlobHash,
    /// The device sending it: each device's unfinished upload is its own.
    pub uploader: &'a str,
    /// Where the chunk starts.
    pub offset: u64,
    /// The whole photo's declared size.
    pub size: u64,
    pub chunk: &'a [u8],
}

/// How much of a photo the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes stored so far.
    pub received: u64,
    /// The whole photo is stored and verified.
    pub complete: bool,
}

pub trait PhotoStore: Send + Sync + 'static {
    /// The whole photo if the server holds it, else this uploader's part of it.
    fn progress(&self, hash: &BlobHash, uploader: &str) -> io::Result<Progress>;
    fn append(&self, upload: &Upload<'_>) -> io::Result<Append>;
    fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>>;
}

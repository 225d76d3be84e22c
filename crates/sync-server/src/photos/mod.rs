//! Photo bytes on the server, behind [`PhotoStore`]; [`LocalPhotos`] keeps
//! them in the data dir. Uploads are resumable and hash-verified: only bytes
//! that hash to the name they were uploaded under are ever served.

mod local;

use std::io;

pub use local::LocalPhotos;
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
    fn progress(&self, hash: &BlobHash) -> io::Result<Progress>;
    fn append(&self, hash: &BlobHash, offset: u64, chunk: &[u8], size: u64) -> io::Result<Append>;
    fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>>;
}

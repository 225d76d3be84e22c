//! Photo bytes on the server, behind [`PhotoStore`]; [`LocalPhotos`] keeps
//! them in the data dir. Uploads are resumable and hash-verified: only bytes
//! that hash to the name they were uploaded under are ever served.

mod local;
mod s3;

use std::io;

pub use local::{LocalPhotos, MAX_STAGED_BYTES, MAX_STAGED_UPLOADS, STALE_AFTER};
pub use s3::{BadLocation, S3Location, S3Photos};
use sync_core::BlobHash;

#[derive(Debug, PartialEq, Eq)]
pub enum Append {
    /// Stored up to this many bytes; send the rest.
    Partial(u64),
    /// This uploader sent the whole photo and it matches its hash.
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

pub trait PhotoStore: Send + Sync + 'static {
    /// The size of the whole photo, if the server holds it.
    fn stored(&self, hash: &BlobHash) -> io::Result<Option<u64>>;
    /// Bytes of this uploader's unfinished upload of the photo.
    fn progress(&self, hash: &BlobHash, uploader: &str) -> io::Result<u64>;
    /// Appends to the uploader's own upload. Once every byte is there and
    /// hashes right, the photo is stored (once, whoever uploads it).
    fn append(&self, upload: &Upload<'_>) -> io::Result<Append>;
    fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>>;
    /// The photo's bytes as chunks read as the caller takes them (an
    /// answer streams them), so serving a photo holds a chunk at a time.
    /// A photo the store lacks is `NotFound` here, before any chunk.
    fn chunks(&self, hash: &BlobHash) -> io::Result<Chunks>;
}

/// A photo's bytes, a chunk at a time.
pub type Chunks = Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>;

/// Bytes a chunk of a served photo holds at most.
pub const SERVE_CHUNK: usize = 256 * 1024;

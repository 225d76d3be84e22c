//! [`S3Photos`]: photo bytes in an S3-compatible object store, shared by
//! every node (`--photos s3://BUCKET?endpoint=…&region=…`, credentials
//! from the usual `AWS_*` environment), through the `object_store` crate.
//!
//! The same upload rules as [`super::LocalPhotos`], kept in objects so any
//! node can continue what another began: each chunk a device sends is an
//! object `uploads/<device>/<hash>/<offset>` (offset zero-padded, so they
//! list in order); the upload's progress is where the run of chunks from
//! offset 0 ends. When the last byte arrives the chunks are read in order
//! and hashed, one at a time (constant memory); only a match is written,
//! read again chunk by chunk into a multipart upload, to `photos/<hash>`,
//! which appears whole or not at all. Then the chunks are deleted. A
//! mismatch deletes them; a device's chunks untouched for seven days go
//! when it starts another upload. The store's calls are async; the trait's are
//! blocking (callers run them in `spawn_blocking` or a command's own
//! thread), so the store keeps a small runtime of its own to wait on them.

use std::io;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sync_core::BlobHash;

use super::{Append, MAX_STAGED_BYTES, MAX_STAGED_UPLOADS, PhotoStore, STALE_AFTER, Upload};

/// Where the photos live: a bucket, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// `--photos` that is not `s3://BUCKET?endpoint=…&region=…`.
#[derive(Debug, thiserror::Error)]
#[error("--photos `{0}` is not s3://BUCKET with optional ?endpoint=URL&region=NAME")]
pub struct BadLocation(pub String);

impl S3Location {
    pub fn parse(given: &str) -> Result<S3Location, BadLocation> {
        let bad = || BadLocation(given.chars().take(120).collect());
        let rest = given.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains('/') {
            return Err(bad());
        }
        let mut loc = S3Location {
            bucket: bucket.to_owned(),
            endpoint: None,
            region: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) if !v.is_empty() => loc.endpoint = Some(v.to_owned()),
                Some(("region", v)) if !v.is_empty() => loc.region = Some(v.to_owned()),
                _ => return Err(bad()),
            }
        }
        Ok(loc)
    }
}

/// Photos in a bucket.
pub struct S3Photos {
    store: Arc<dyn ObjectStore>,
    /// Always `Some` but while dropping.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for S3Photos {
    /// A runtime may not be dropped where the server drops its state (on
    /// an async thread); shut down in the background instead.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Writes the photo in parts of this size.
const PART: usize = 5 * 1024 * 1024;

fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn photo_path(hash: &BlobHash) -> Path {
    Path::from(format!("photos/{}", hash.to_hex()))
}

/// The uploader's folder of chunks; anything but a plain id is refused.
fn uploads_of(uploader: &str) -> io::Result<Path> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if uploader.is_empty() || uploader.len() > 64 || !uploader.chars().all(plain) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an uploader id"));
    }
    Ok(Path::from(format!("uploads/{uploader}")))
}

fn chunks_of(hash: &BlobHash, uploader: &str) -> io::Result<Path> {
    Ok(uploads_of(uploader)?.join(hash.to_hex()))
}

/// One stored chunk: where it starts, how long it is, its object.
struct Chunk {
    offset: u64,
    len: u64,
    path: Path,
}

impl S3Photos {
    /// Connects to the bucket (nothing is read until the first call).
    pub fn open(loc: &S3Location) -> io::Result<S3Photos> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&loc.bucket);
        if let Some(e) = &loc.endpoint {
            builder = builder
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(r) = &loc.region {
            builder = builder.with_region(r);
        }
        let store = builder.build().map_err(other)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("photo-store")
            .enable_all()
            .build()?;
        Ok(S3Photos {
            store: Arc::new(store),
            rt: Some(rt),
        })
    }

    /// Runs one of the store's futures to its end from a blocking caller.
    fn wait<T>(&self, f: impl Future<Output = object_store::Result<T>>) -> io::Result<T> {
        let rt = self.rt.as_ref().expect("the runtime is there until dropped");
        rt.block_on(f).map_err(other)
    }

    /// The uploader's chunks of this photo, in offset order.
    fn chunks(&self, hash: &BlobHash, uploader: &str) -> io::Result<Vec<Chunk>> {
        let prefix = chunks_of(hash, uploader)?;
        let listed: Vec<_> = self.wait(self.store.list(Some(&prefix)).try_collect())?;
        let mut chunks: Vec<Chunk> = listed
            .into_iter()
            .filter_map(|m| {
                let offset = m.location.filename()?.parse().ok()?;
                Some(Chunk {
                    offset,
                    len: m.size,
                    path: m.location,
                })
            })
            .collect();
        chunks.sort_by_key(|c| c.offset);
        Ok(chunks)
    }

    /// Where the run of chunks from offset 0 ends, and those chunks.
    fn contiguous(&self, hash: &BlobHash, uploader: &str) -> io::Result<(u64, Vec<Chunk>)> {
        let mut end = 0;
        let mut run = Vec::new();
        for c in self.chunks(hash, uploader)? {
            if c.offset != end {
                break;
            }
            end += c.len;
            run.push(c);
        }
        Ok((end, run))
    }

    fn delete_all(&self, chunks: &[Chunk]) -> io::Result<()> {
        for c in chunks {
            match self.wait(self.store.delete(&c.path)) {
                Err(e) if is_not_found(&e) => {}
                done => done?,
            }
        }
        Ok(())
    }

    /// Whether the uploader may start one more upload of `size` bytes;
    /// removes its chunks untouched for [`STALE_AFTER`] first.
    fn room_for(&self, uploader: &str, size: u64) -> io::Result<bool> {
        let prefix = uploads_of(uploader)?;
        let mut listed: Vec<_> = self.wait(self.store.list(Some(&prefix)).try_collect())?;
        let stale_before = chrono::Utc::now() - STALE_AFTER;
        for m in listed.iter().filter(|m| m.last_modified < stale_before) {
            match self.wait(self.store.delete(&m.location)) {
                Err(e) if is_not_found(&e) => {}
                done => done?,
            }
        }
        listed.retain(|m| m.last_modified >= stale_before);
        let mut photos: Vec<String> = listed
            .iter()
            .filter_map(|m| m.location.parts().nth(2).map(|p| p.as_ref().to_owned()))
            .collect();
        photos.sort();
        photos.dedup();
        let bytes: u64 = size + listed.iter().map(|m| m.size).sum::<u64>();
        Ok(photos.len() < MAX_STAGED_UPLOADS && bytes <= MAX_STAGED_BYTES)
    }

    /// Every chunk in order, one at a time, to `each`.
    fn each_chunk(&self, chunks: &[Chunk], mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        for c in chunks {
            let bytes = self.wait(async { self.store.get(&c.path).await?.bytes().await })?;
            each(&bytes)?;
        }
        Ok(())
    }

    /// The upload holds every byte: store the photo if it is the photo.
    fn finish(&self, hash: &BlobHash, chunks: &[Chunk]) -> io::Result<Append> {
        let mut hasher = blake3::Hasher::new();
        self.each_chunk(chunks, |b| {
            hasher.update(b);
            Ok(())
        })?;
        if BlobHash::from_bytes(*hasher.finalize().as_bytes()) != *hash {
            self.delete_all(chunks)?;
            return Ok(Append::Mismatch);
        }
        if self.stored(hash)?.is_none() {
            self.write_photo(hash, chunks)?;
        }
        self.delete_all(chunks)?;
        Ok(Append::Complete)
    }

    /// Copies the chunks into `photos/<hash>` as one multipart upload,
    /// which the store shows only once it is complete.
    fn write_photo(&self, hash: &BlobHash, chunks: &[Chunk]) -> io::Result<()> {
        let upload = self.wait(self.store.put_multipart(&photo_path(hash)))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let written = self.each_chunk(chunks, |b| {
            self.wait(writer.wait_for_capacity(2))?;
            writer.write(b);
            Ok(())
        });
        match written {
            Ok(()) => self.wait(writer.finish()).map(drop),
            Err(e) => {
                let _ = self.wait(writer.abort());
                Err(e)
            }
        }
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<object_store::Error>())
        .is_some_and(|o| matches!(o, object_store::Error::NotFound { .. }))
}

impl PhotoStore for S3Photos {
    fn stored(&self, hash: &BlobHash) -> io::Result<Option<u64>> {
        match self.wait(self.store.head(&photo_path(hash))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn progress(&self, hash: &BlobHash, uploader: &str) -> io::Result<u64> {
        Ok(self.contiguous(hash, uploader)?.0)
    }

    fn append(&self, up: &Upload<'_>) -> io::Result<Append> {
        let (have, chunks) = self.contiguous(up.hash, up.uploader)?;
        if have > up.size {
            // Stored under another declared size: cannot be this photo.
            self.delete_all(&chunks)?;
            return Ok(Append::WrongOffset(0));
        }
        if up.offset != have {
            return Ok(Append::WrongOffset(have));
        }
        if have + up.chunk.len() as u64 > up.size {
            return Ok(Append::TooLong);
        }
        if have == 0 && !self.room_for(up.uploader, up.size)? {
            return Ok(Append::TooManyStaged);
        }
        let mut chunks = chunks;
        if !up.chunk.is_empty() {
            let path = chunks_of(up.hash, up.uploader)?.join(format!("{have:020}"));
            self.wait(self.store.put(&path, PutPayload::from(up.chunk.to_vec())))?;
            chunks.push(Chunk {
                offset: have,
                len: up.chunk.len() as u64,
                path,
            });
        }
        let now = have + up.chunk.len() as u64;
        if now < up.size {
            return Ok(Append::Partial(now));
        }
        self.finish(up.hash, &chunks)
    }

    fn chunks(&self, hash: &BlobHash) -> io::Result<super::Chunks> {
        use futures::StreamExt;
        let got = match self.wait(self.store.get(&photo_path(hash))) {
            Err(e) if is_not_found(&e) => return Err(io::Error::new(io::ErrorKind::NotFound, "no such photo")),
            got => got?,
        };
        let mut stream = got.into_stream();
        let rt = self
            .rt
            .as_ref()
            .expect("the runtime is there until dropped")
            .handle()
            .clone();
        Ok(Box::new(std::iter::from_fn(move || {
            rt.block_on(stream.next())
                .map(|part| part.map(|b| b.to_vec()).map_err(other))
        })))
    }

    fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>> {
        match self.wait(async { self.store.get(&photo_path(hash)).await?.bytes().await }) {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) if is_not_found(&e) => Err(io::Error::new(io::ErrorKind::NotFound, "no such photo")),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_a_bucket_with_an_endpoint_and_a_region_or_is_refused() {
        assert_eq!(
            S3Location::parse("s3://photos?endpoint=http://127.0.0.1:3900&region=garage").unwrap(),
            S3Location {
                bucket: "photos".into(),
                endpoint: Some("http://127.0.0.1:3900".into()),
                region: Some("garage".into()),
            }
        );
        assert_eq!(S3Location::parse("s3://photos").unwrap().endpoint, None);
        for bad in [
            "photos",
            "s3://",
            "s3://a/b",
            "s3://a?colour=red",
            "s3://a?endpoint=",
            "file:///x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }
}

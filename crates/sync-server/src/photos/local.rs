//! [`LocalPhotos`]: photo bytes in the data dir.
//!
//! An upload belongs to the device that started it: it is appended chunk by
//! chunk to `uploads/<device>/<hash>.part` (each chunk fsynced), so a cut
//! connection or a killed server resumes at the byte already stored, and no
//! other device can reset or poison it. When the last byte arrives the
//! whole file is hashed; only a match is renamed to `photos/<aa>/<hash>`
//! (then the folder is fsynced). A mismatch deletes that device's partial
//! file. A server killed between the last chunk and the rename leaves a
//! whole `.part`: opening the store publishes it, and an empty chunk at the
//! end offset finishes it too. A device may hold at most
//! [`MAX_STAGED_UPLOADS`] unfinished uploads of at most [`MAX_STAGED_BYTES`]
//! in all; parts untouched for [`STALE_AFTER`] are removed. Appends to one
//! photo are serialised by a lock per hash stripe, and one device's
//! appends by a file lock (`upload-locks/<device>`), so nodes sharing the
//! folder take turns too; a photo another process published first counts
//! as published.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sync_core::BlobHash;
use sync_core::files::{owner_only, private_dir, sync_folder};

use super::{Append, PhotoStore, Upload};

/// Unfinished uploads one device may hold at once.
pub const MAX_STAGED_UPLOADS: usize = 32;
/// Bytes, declared sizes included, one device's unfinished uploads may take.
pub const MAX_STAGED_BYTES: u64 = 512 * 1024 * 1024;
/// An unfinished upload untouched this long is removed (the device still
/// holds the photo and starts again).
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

const STRIPES: usize = 64;

/// Photos under `photos/<aa>/<hash>`, uploads under `uploads/<device>/<hash>.part`.
pub struct LocalPhotos {
    root: PathBuf,
    stripes: [Mutex<()>; STRIPES],
}

fn part_hash(path: &Path) -> Option<BlobHash> {
    path.file_name()?.to_str()?.strip_suffix(".part")?.parse().ok()
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        removed => removed,
    }
}

fn is_stale(meta: &fs::Metadata, now: SystemTime) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

impl LocalPhotos {
    /// Opens the photo folder, publishes any upload that was complete when
    /// the server stopped, and removes stale ones.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        private_dir(data_dir)?;
        private_dir(&data_dir.join("photos"))?;
        private_dir(&data_dir.join("uploads"))?;
        let store = LocalPhotos {
            root: data_dir.to_owned(),
            stripes: std::array::from_fn(|_| Mutex::new(())),
        };
        store.recover()?;
        Ok(store)
    }

    /// Every device's folder of parts, and the top of `uploads/` where an
    /// earlier version kept parts that no device owned.
    fn recover(&self) -> io::Result<()> {
        let uploads = self.root.join("uploads");
        self.recover_folder(&uploads, true)?;
        for entry in fs::read_dir(&uploads)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                self.recover_folder(&entry.path(), false)?;
            }
        }
        Ok(())
    }

    /// Publishes every `.part` whose bytes already hash to its name; others
    /// stay for their uploads to resume, unless stale or owned by no device.
    /// A part that vanishes meanwhile was finished by another node sharing
    /// the folder.
    fn recover_folder(&self, dir: &Path, unowned: bool) -> io::Result<()> {
        let now = SystemTime::now();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let Some(hash) = part_hash(&path) else { continue };
            let bytes = match fs::read(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                read => read?,
            };
            if BlobHash::of(&bytes) == hash {
                if self.final_path(&hash).exists() {
                    remove_if_there(&path)?;
                } else {
                    self.publish(&path, &hash)?;
                    tracing::info!(%hash, "published a photo whose upload was complete when the server stopped");
                }
            } else if unowned || entry.metadata().is_ok_and(|m| is_stale(&m, now)) {
                remove_if_there(&path)?;
            }
        }
        Ok(())
    }

    fn lock(&self, hash: &BlobHash) -> MutexGuard<'_, ()> {
        let stripe = hash.as_bytes()[0] as usize % STRIPES;
        self.stripes[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, part: &Path, hash: &BlobHash) -> io::Result<()> {
        let target = self.final_path(hash);
        let dir = target.parent().expect("photo paths have a parent");
        private_dir(dir)?;
        match fs::rename(part, &target) {
            // Another node sharing the folder published this part first.
            Err(e) if e.kind() == io::ErrorKind::NotFound && target.exists() => Ok(()),
            renamed => renamed,
        }?;
        sync_folder(dir)
    }

    /// Holds the uploader's file lock until dropped.
    fn lock_uploader(&self, uploader: &str) -> io::Result<fs::File> {
        self.uploads_of(uploader)?;
        let locks = self.root.join("upload-locks");
        if !locks.exists() {
            private_dir(&locks)?;
        }
        let path = locks.join(uploader);
        let file = match owner_only().open(&path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new().write(true).open(&path)?,
            opened => opened?,
        };
        file.lock()?;
        Ok(file)
    }

    fn final_path(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join("photos").join(&hex[..2]).join(hex)
    }

    /// The uploader's folder of parts. Uploaders are device ids; anything
    /// that is not a plain name cannot become a path.
    fn uploads_of(&self, uploader: &str) -> io::Result<PathBuf> {
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if uploader.is_empty() || uploader.len() > 64 || !uploader.chars().all(plain) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an uploader id"));
        }
        Ok(self.root.join("uploads").join(uploader))
    }

    fn part_path(&self, hash: &BlobHash, uploader: &str) -> io::Result<PathBuf> {
        Ok(self.uploads_of(uploader)?.join(format!("{}.part", hash.to_hex())))
    }

    /// Whether the uploader may start one more upload of `size` bytes;
    /// removes its stale parts first.
    fn room_for(&self, uploader: &str, size: u64) -> io::Result<bool> {
        let dir = self.uploads_of(uploader)?;
        let (mut count, mut bytes) = (0usize, size);
        let now = SystemTime::now();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if is_stale(&meta, now) {
                fs::remove_file(entry.path())?;
                continue;
            }
            count += 1;
            bytes += meta.len();
        }
        Ok(count < MAX_STAGED_UPLOADS && bytes <= MAX_STAGED_BYTES)
    }

    /// Writes the chunk at the end of the part, creating it (and its folder) if new.
    fn write_chunk(&self, part: &Path, chunk: &[u8]) -> io::Result<()> {
        let dir = part.parent().expect("parts have a folder");
        if !dir.exists() {
            private_dir(dir)?;
            sync_folder(dir.parent().expect("uploads/ holds the folder"))?;
        }
        let mut f = match owner_only().append(true).open(part) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new().append(true).open(part)?,
            opened => opened?,
        };
        f.write_all(chunk)?;
        f.sync_all()
    }

    /// The part holds every byte: publish it if it is the photo, else drop it.
    fn finish(&self, part: &Path, hash: &BlobHash) -> io::Result<Append> {
        // An empty photo never wrote a part file; give it one to publish.
        if !part.exists() {
            self.write_chunk(part, &[])?;
        }
        if BlobHash::of(&fs::read(part)?) != *hash {
            fs::remove_file(part)?;
            return Ok(Append::Mismatch);
        }
        if self.final_path(hash).exists() {
            // Another device stored it first; this upload proved the same bytes.
            fs::remove_file(part)?;
        } else {
            self.publish(part, hash)?;
        }
        Ok(Append::Complete)
    }
}

impl PhotoStore for LocalPhotos {
    fn stored(&self, hash: &BlobHash) -> io::Result<Option<u64>> {
        match fs::metadata(self.final_path(hash)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn progress(&self, hash: &BlobHash, uploader: &str) -> io::Result<u64> {
        match fs::metadata(self.part_path(hash, uploader)?) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn append(&self, up: &Upload<'_>) -> io::Result<Append> {
        let _guard = self.lock(up.hash);
        let _uploader = self.lock_uploader(up.uploader)?;
        let have = self.progress(up.hash, up.uploader)?;
        let part = self.part_path(up.hash, up.uploader)?;
        if have > up.size {
            // Stored under another declared size: cannot be this photo.
            fs::remove_file(&part)?;
            return Ok(Append::WrongOffset(0));
        }
        if up.offset != have {
            return Ok(Append::WrongOffset(have));
        }
        if have + up.chunk.len() as u64 > up.size {
            return Ok(Append::TooLong);
        }
        if have == 0 && !part.exists() && !self.room_for(up.uploader, up.size)? {
            return Ok(Append::TooManyStaged);
        }
        if !up.chunk.is_empty() {
            self.write_chunk(&part, up.chunk)?;
        }
        let now = have + up.chunk.len() as u64;
        if now < up.size {
            return Ok(Append::Partial(now));
        }
        self.finish(&part, up.hash)
    }

    fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>> {
        fs::read(self.final_path(hash))
    }

    fn chunks(&self, hash: &BlobHash) -> io::Result<super::Chunks> {
        use std::io::Read;
        let mut file = fs::File::open(self.final_path(hash))?;
        Ok(Box::new(std::iter::from_fn(move || {
            let mut buf = vec![0; super::SERVE_CHUNK];
            match file.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some(Ok(buf))
                }
                Err(e) => Some(Err(e)),
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0190a000-0000-7000-8000-00000000000a";
    const B: &str = "0190b000-0000-7000-8000-00000000000b";

    fn up<'a>(hash: &'a BlobHash, uploader: &'a str, offset: u64, chunk: &'a [u8], size: u64) -> Upload<'a> {
        Upload {
            hash,
            uploader,
            offset,
            size,
            chunk,
        }
    }

    #[test]
    fn resumes_verifies_and_discards_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPhotos::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let h = BlobHash::of(&data);
        assert_eq!(
            store.append(&up(&h, A, 0, &data[..4000], 10_000)).unwrap(),
            Append::Partial(4000)
        );
        assert_eq!(
            store.append(&up(&h, A, 0, &data[..10], 10_000)).unwrap(),
            Append::WrongOffset(4000)
        );
        assert_eq!(store.progress(&h, A).unwrap(), 4000);
        assert_eq!(
            store.append(&up(&h, A, 4000, &data[4000..], 10_000)).unwrap(),
            Append::Complete
        );
        assert_eq!(store.read(&h).unwrap(), data);
        assert_eq!(store.stored(&h).unwrap(), Some(10_000));
        assert_eq!(
            store.progress(&h, B).unwrap(),
            0,
            "B still has to prove it holds the photo"
        );

        let wrong = BlobHash::of(b"something else");
        assert_eq!(
            store.append(&up(&wrong, A, 0, &data, 10_000)).unwrap(),
            Append::Mismatch
        );
        assert_eq!(store.progress(&wrong, A).unwrap(), 0);
        assert!(store.progress(&h, "../x").is_err(), "an uploader is never a path");
    }

    #[test]
    fn one_devices_upload_cannot_be_reset_or_poisoned_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPhotos::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..9_000u32).map(|i| (i % 241) as u8).collect();
        let h = BlobHash::of(&data);
        assert_eq!(
            store.append(&up(&h, A, 0, &data[..3000], 9_000)).unwrap(),
            Append::Partial(3000)
        );
        // B sees only its own part: nothing yet, and its garbage stays its own.
        assert_eq!(store.progress(&h, B).unwrap(), 0);
        assert_eq!(
            store.append(&up(&h, B, 3000, &[0; 6000], 9_000)).unwrap(),
            Append::WrongOffset(0)
        );
        assert_eq!(
            store.append(&up(&h, B, 0, &[7; 9_000], 9_000)).unwrap(),
            Append::Mismatch
        );
        assert_eq!(store.append(&up(&h, B, 0, &[], 1)).unwrap(), Append::Partial(0));
        assert_eq!(store.progress(&h, A).unwrap(), 3000);
        assert_eq!(
            store.append(&up(&h, A, 3000, &data[3000..], 9_000)).unwrap(),
            Append::Complete
        );
        assert_eq!(store.read(&h).unwrap(), data);
    }

    #[test]
    fn a_device_holds_a_bounded_number_of_unfinished_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPhotos::open(dir.path()).unwrap();
        let hashes: Vec<BlobHash> = (0..=MAX_STAGED_UPLOADS as u32)
            .map(|i| BlobHash::of(&i.to_le_bytes()))
            .collect();
        for h in &hashes[..MAX_STAGED_UPLOADS] {
            assert_eq!(store.append(&up(h, A, 0, b"ab", 100)).unwrap(), Append::Partial(2));
        }
        let last = &hashes[MAX_STAGED_UPLOADS];
        assert_eq!(
            store.append(&up(last, A, 0, b"ab", 100)).unwrap(),
            Append::TooManyStaged
        );
        assert_eq!(
            store.append(&up(last, B, 0, b"ab", 100)).unwrap(),
            Append::Partial(2),
            "B is not held up"
        );
        // Those already started go on.
        assert_eq!(
            store.append(&up(&hashes[0], A, 2, b"cd", 100)).unwrap(),
            Append::Partial(4)
        );
        // One photo larger than the byte budget cannot start at all.
        let big = BlobHash::of(b"big");
        assert_eq!(
            store.append(&up(&big, B, 0, b"ab", MAX_STAGED_BYTES + 1)).unwrap(),
            Append::TooManyStaged
        );
    }

    #[test]
    fn a_whole_part_left_by_a_stopped_server_is_finished_or_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"a photo whose last chunk landed just before the server stopped".to_vec();
        let h = BlobHash::of(&data);
        let store = LocalPhotos::open(dir.path()).unwrap();
        let part = store.part_path(&h, A).unwrap();
        fs::create_dir_all(part.parent().unwrap()).unwrap();
        fs::write(&part, &data).unwrap();
        let n = data.len() as u64;
        assert_eq!(store.progress(&h, A).unwrap(), n);
        assert_eq!(store.append(&up(&h, A, n, &[], n)).unwrap(), Append::Complete);
        assert_eq!(store.read(&h).unwrap(), data);

        let other = b"another photo, complete in uploads/ at start-up".to_vec();
        let h2 = BlobHash::of(&other);
        fs::write(store.part_path(&h2, A).unwrap(), &other).unwrap();
        let half = BlobHash::of(b"a third photo");
        fs::write(store.part_path(&half, A).unwrap(), b"a third").unwrap();
        // Left by an earlier version at the top of uploads/, owned by no device.
        let legacy = BlobHash::of(b"a fourth photo");
        let legacy_part = dir.path().join("uploads").join(format!("{}.part", legacy.to_hex()));
        fs::write(&legacy_part, b"a fourth").unwrap();
        let reopened = LocalPhotos::open(dir.path()).unwrap();
        assert_eq!(reopened.stored(&h2).unwrap(), Some(other.len() as u64));
        assert_eq!(
            reopened.progress(&half, A).unwrap(),
            7,
            "a partial upload stays to resume"
        );
        assert!(!legacy_part.exists(), "a partial upload of no device is dropped");
    }

    #[test]
    fn a_part_longer_than_the_declared_size_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPhotos::open(dir.path()).unwrap();
        let h = BlobHash::of(b"0123456789");
        let part = store.part_path(&h, A).unwrap();
        fs::create_dir_all(part.parent().unwrap()).unwrap();
        fs::write(&part, b"0123456789xyz").unwrap();
        assert_eq!(store.append(&up(&h, A, 13, b"", 10)).unwrap(), Append::WrongOffset(0));
        assert_eq!(store.progress(&h, A).unwrap(), 0);
    }
}

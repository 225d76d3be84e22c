//! [`LocalPhotos`]: photo bytes in the data dir.
//!
//! An upload is appended chunk by chunk to `uploads/<hash>.part` (each
//! chunk fsynced), so a cut connection or a killed server resumes at the
//! byte already stored. When the last byte arrives the whole file is hashed;
//! only a match is renamed to `photos/<aa>/<hash>` (then the folder is
//! fsynced). A mismatch deletes the partial file. A server killed between
//! the last chunk and the rename leaves a whole `.part`: opening the store
//! publishes it, and an empty chunk at the end offset finishes it too.
//! Appends to one photo are serialised by a lock per hash stripe, so two
//! devices uploading the same photo at once cannot interleave their bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sync_core::BlobHash;
use sync_core::files::sync_folder;

use super::{Append, PhotoStore, Progress};

const STRIPES: usize = 64;

/// Photos under `photos/<aa>/<hash>`, uploads under `uploads/<hash>.part`.
pub struct LocalPhotos {
    root: PathBuf,
    stripes: [Mutex<()>; STRIPES],
}

impl LocalPhotos {
    /// Opens the photo folder and publishes any upload that was complete
    /// when the server stopped.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(data_dir.join("photos"))?;
        fs::create_dir_all(data_dir.join("uploads"))?;
        let store = LocalPhotos {
            root: data_dir.to_owned(),
            stripes: std::array::from_fn(|_| Mutex::new(())),
        };
        store.recover()?;
        Ok(store)
    }

    /// Publishes every `.part` whose bytes already hash to its name; others
    /// stay for their uploads to resume.
    fn recover(&self) -> io::Result<()> {
        for entry in fs::read_dir(self.root.join("uploads"))? {
            let path = entry?.path();
            let Some(hash) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".part"))
                .and_then(|h| h.parse::<BlobHash>().ok())
            else {
                continue;
            };
            if BlobHash::of(&fs::read(&path)?) == hash {
                self.publish(&path, &hash)?;
                tracing::info!(%hash, "published a photo whose upload was complete when the server stopped");
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
        fs::create_dir_all(dir)?;
        fs::rename(part, &target)?;
        sync_folder(dir)
    }

    fn final_path(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join("photos").join(&hex[..2]).join(hex)
    }

    fn part_path(&self, hash: &BlobHash) -> PathBuf {
        self.root.join("uploads").join(format!("{}.part", hash.to_hex()))
    }
}

impl PhotoStore for LocalPhotos {
    fn progress(&self, hash: &BlobHash) -> io::Result<Progress> {
        let at = |received, complete| Ok(Progress { received, complete });
        if let Ok(m) = fs::metadata(self.final_path(hash)) {
            return at(m.len(), true);
        }
        match fs::metadata(self.part_path(hash)) {
            Ok(m) => at(m.len(), false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => at(0, false),
            Err(e) => Err(e),
        }
    }

    fn append(&self, hash: &BlobHash, offset: u64, chunk: &[u8], size: u64) -> io::Result<Append> {
        let _guard = self.lock(hash);
        let Progress {
            received: have,
            complete,
        } = self.progress(hash)?;
        if complete {
            return Ok(Append::Complete);
        }
        let part = self.part_path(hash);
        if have > size {
            // Stored under another declared size: cannot be this photo.
            fs::remove_file(&part)?;
            return Ok(Append::WrongOffset(0));
        }
        if offset != have {
            return Ok(Append::WrongOffset(have));
        }
        if have + chunk.len() as u64 > size {
            return Ok(Append::TooLong);
        }
        if !chunk.is_empty() {
            let mut f = OpenOptions::new().create(true).append(true).open(&part)?;
            f.write_all(chunk)?;
            f.sync_all()?;
        }
        let now = have + chunk.len() as u64;
        if now < size {
            return Ok(Append::Partial(now));
        }
        // An empty photo never wrote a part file; give it one to publish.
        if !part.exists() {
            File::create(&part)?.sync_all()?;
        }
        if BlobHash::of(&fs::read(&part)?) != *hash {
            fs::remove_file(&part)?;
            return Ok(Append::Mismatch);
        }
        self.publish(&part, hash)?;
        Ok(Append::Complete)
    }

    fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>> {
        fs::read(self.final_path(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_verifies_and_discards_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPhotos::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let h = BlobHash::of(&data);
        assert_eq!(
            store.append(&h, 0, &data[..4000], 10_000).unwrap(),
            Append::Partial(4000)
        );
        assert_eq!(
            store.append(&h, 0, &data[..10], 10_000).unwrap(),
            Append::WrongOffset(4000)
        );
        assert_eq!(
            store.progress(&h).unwrap(),
            Progress {
                received: 4000,
                complete: false
            }
        );
        assert_eq!(store.append(&h, 4000, &data[4000..], 10_000).unwrap(), Append::Complete);
        assert_eq!(store.read(&h).unwrap(), data);

        let wrong = BlobHash::of(b"something else");
        assert_eq!(store.append(&wrong, 0, &data, 10_000).unwrap(), Append::Mismatch);
        assert_eq!(
            store.progress(&wrong).unwrap(),
            Progress {
                received: 0,
                complete: false
            }
        );
    }

    #[test]
    fn a_whole_part_left_by_a_stopped_server_is_finished_or_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"a photo whose last chunk landed just before the server stopped".to_vec();
        let h = BlobHash::of(&data);
        let store = LocalPhotos::open(dir.path()).unwrap();
        fs::write(store.part_path(&h), &data).unwrap();
        assert_eq!(
            store.progress(&h).unwrap(),
            Progress {
                received: data.len() as u64,
                complete: false
            }
        );
        let n = data.len() as u64;
        assert_eq!(store.append(&h, n, &[], n).unwrap(), Append::Complete);
        assert_eq!(store.read(&h).unwrap(), data);

        let other = b"another photo, complete in uploads/ at start-up".to_vec();
        let h2 = BlobHash::of(&other);
        fs::write(store.part_path(&h2), &other).unwrap();
        let half = BlobHash::of(b"a third photo");
        fs::write(store.part_path(&half), b"a third").unwrap();
        let reopened = LocalPhotos::open(dir.path()).unwrap();
        assert_eq!(
            reopened.progress(&h2).unwrap(),
            Progress {
                received: other.len() as u64,
                complete: true
            }
        );
        assert_eq!(
            reopened.progress(&half).unwrap(),
            Progress {
                received: 7,
                complete: false
            },
            "a partial upload stays to resume"
        );
    }

    #[test]
    fn a_part_longer_than_the_declared_size_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPhotos::open(dir.path()).unwrap();
        let h = BlobHash::of(b"0123456789");
        fs::write(store.part_path(&h), b"0123456789xyz").unwrap();
        assert_eq!(store.append(&h, 13, b"", 10).unwrap(), Append::WrongOffset(0));
        assert_eq!(
            store.progress(&h).unwrap(),
            Progress {
                received: 0,
                complete: false
            }
        );
    }
}

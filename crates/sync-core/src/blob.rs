//! Content-addressed photo storage on the local file system.
//!
//! A blob's name is the blake3 hash of its bytes, so a photo added twice is
//! stored once and a blob never changes once written. Paths are derived from
//! a parsed [`BlobHash`] only, never from a caller's string.
//!
//! Writing is two-phase so that a crash can never leave a blob visible under
//! a hash that the database does not know, or a blob with the wrong bytes:
//!
//! 1. [`BlobStore::stage`] writes `staging/<hash>.tmp`, fsyncs it, renames it
//!    to `staging/<hash>` and fsyncs the folder.
//! 2. The caller commits its database rows.
//! 3. [`BlobStore::publish`] renames the staged file to `blobs/<aa>/<hash>`
//!    and fsyncs that folder.
//!
//! [`BlobStore::recover`] runs at open, under the store's exclusive lock: it
//! publishes staged blobs the database committed and deletes the rest.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::files;

/// The blake3 hash of a blob's bytes, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash([u8; 32]);

impl BlobHash {
    pub fn of(bytes: &[u8]) -> Self {
        BlobHash(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BlobHash(bytes)
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &self.to_hex()[..12])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a blob hash (64 lowercase hex digits)")]
pub struct ParseBlobHashError(String);

impl FromStr for BlobHash {
    type Err = ParseBlobHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower {
            return Err(ParseBlobHashError(s.chars().take(80).collect()));
        }
        blake3::Hash::from_hex(s)
            .map(|h| BlobHash(*h.as_bytes()))
            .map_err(|_| ParseBlobHashError(s.to_owned()))
    }
}

impl Serialize for BlobHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BlobHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The blob folders inside a data directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Uses `root/blobs` and `root/staging`, creating them if needed.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let store = BlobStore { root: root.to_owned() };
        for dir in [store.blobs_dir(), store.staging_dir()] {
            files::private_dir(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(store)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn staged_path(&self, hash: &BlobHash) -> PathBuf {
        self.staging_dir().join(hash.to_hex())
    }

    /// Where a published blob lives; the file exists only once published.
    pub fn path(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.blobs_dir().join(&hex[..2]).join(hex)
    }

    pub fn contains(&self, hash: &BlobHash) -> bool {
        self.path(hash).is_file()
    }

    pub fn read(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobError> {
        let path = self.path(hash);
        fs::read(&path).map_err(io_err("read", &path))
    }

    /// Writes `bytes` durably into the staging folder; returns their hash.
    pub fn stage(&self, bytes: &[u8]) -> Result<BlobHash, BlobError> {
        let hash = BlobHash::of(bytes);
        let final_path = self.staged_path(&hash);
        if final_path.exists() || self.contains(&hash) {
            return Ok(hash);
        }
        let tmp = self.staging_dir().join(format!("{}.tmp", hash.to_hex()));
        let _ = fs::remove_file(&tmp);
        let mut file = files::owner_only().open(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(bytes).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &final_path).map_err(io_err("rename", &tmp))?;
        sync_dir(&self.staging_dir())?;
        Ok(hash)
    }

    /// Moves a staged blob into place. Publishing one that is already in
    /// place only drops the staged copy.
    pub fn publish(&self, hash: &BlobHash) -> Result<(), BlobError> {
        let staged = self.staged_path(hash);
        let target = self.path(hash);
        if target.is_file() {
            match fs::remove_file(&staged) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &staged)(e)),
            }
            return Ok(());
        }
        let dir = target.parent().expect("blob paths have a parent");
        files::private_dir(dir).map_err(io_err("create", dir))?;
        fs::rename(&staged, &target).map_err(io_err("publish", &staged))?;
        sync_dir(dir)?;
        Ok(())
    }

    /// Hashes of the whole blobs waiting in staging.
    pub fn staged(&self) -> Result<Vec<BlobHash>, BlobError> {
        let dir = self.staging_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            if let Some(hash) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// Finishes or undoes what a crash interrupted. `committed` says whether
    /// the database holds a row for a hash. Returns (published, discarded).
    pub fn recover(&self, committed: impl Fn(&BlobHash) -> bool) -> Result<(usize, usize), BlobError> {
        let dir = self.staging_dir();
        let mut published = 0;
        let mut discarded = 0;
        let entries = fs::read_dir(&dir).map_err(io_err("list", &dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let path = entry.path();
            let keep = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<BlobHash>().ok())
                .filter(|hash| committed(hash));
            match keep {
                Some(hash) => {
                    self.publish(&hash)?;
                    published += 1;
                }
                None => {
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    discarded += 1;
                }
            }
        }
        if discarded > 0 {
            sync_dir(&dir)?;
        }
        Ok((published, discarded))
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_and_rejects_junk() {
        let h = BlobHash::of(b"photo");
        assert_eq!(h.to_string().parse::<BlobHash>().unwrap(), h);
        for bad in [
            "",
            "../../etc/passwd",
            &h.to_string().to_uppercase(),
            &h.to_string()[..63],
        ] {
            assert!(bad.parse::<BlobHash>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn staged_blobs_become_visible_only_when_published_or_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.stage(b"aaa").unwrap();
        let b = store.stage(b"bbb").unwrap();
        fs::write(dir.path().join("staging").join("junk.tmp"), b"half").unwrap();
        assert!(!store.contains(&a));
        let (published, discarded) = store.recover(|h| *h == a).unwrap();
        assert_eq!((published, discarded), (1, 2));
        assert_eq!(store.read(&a).unwrap(), b"aaa");
        assert!(!store.contains(&b));
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
        // Staging what is already published is a no-op.
        assert_eq!(store.stage(b"aaa").unwrap(), a);
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
    }
}

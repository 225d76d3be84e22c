//! Photo bytes on the server, behind [`PhotoStore`]; [`LocalPhotos`] keeps
//! them in the data dir.
//!
//! An upload is appended chunk by chunk to `uploads/<hash>.part` (each
//! chunk fsynced), so a cut connection or a killed server resumes at the
//! byte already stored. When the last byte arrives the whole file is hashed;
//! only a match is renamed to `photos/<aa>/<hash>` (then the folder is
//! fsynced). A mismatch deletes the partial file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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

pub trait PhotoStore: Send + Sync + 'static {
    /// Bytes stored so far and whether the photo is complete.
    fn progress(&self, hash: &BlobHash) -> io::Result<(u64, bool)>;
    fn append(&self, hash: &BlobHash, offset: u64, chunk: &[u8], size: u64) -> io::Result<Append>;
    fn read(&self, hash: &BlobHash) -> io::Result<Vec<u8>>;
}

pub struct LocalPhotos {
    root: PathBuf,
}

impl LocalPhotos {
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(data_dir.join("photos"))?;
        fs::create_dir_all(data_dir.join("uploads"))?;
        Ok(LocalPhotos {
            root: data_dir.to_owned(),
        })
    }

    fn final_path(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join("photos").join(&hex[..2]).join(hex)
    }

    fn part_path(&self, hash: &BlobHash) -> PathBuf {
        self.root.join("uploads").join(format!("{}.part", hash.to_hex()))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl PhotoStore for LocalPhotos {
    fn progress(&self, hash: &BlobHash) -> io::Result<(u64, bool)> {
        if let Ok(m) = fs::metadata(self.final_path(hash)) {
            return Ok((m.len(), true));
        }
        match fs::metadata(self.part_path(hash)) {
            Ok(m) => Ok((m.len(), false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((0, false)),
            Err(e) => Err(e),
        }
    }

    fn append(&self, hash: &BlobHash, offset: u64, chunk: &[u8], size: u64) -> io::Result<Append> {
        let (have, complete) = self.progress(hash)?;
        if complete {
            return Ok(Append::Complete);
        }
        if offset != have {
            return Ok(Append::WrongOffset(have));
        }
        if have + chunk.len() as u64 > size {
            return Ok(Append::TooLong);
        }
        let part = self.part_path(hash);
        let mut f = OpenOptions::new().create(true).append(true).open(&part)?;
        f.write_all(chunk)?;
        f.sync_all()?;
        drop(f);
        let now = have + chunk.len() as u64;
        if now < size {
            return Ok(Append::Partial(now));
        }
        let bytes = fs::read(&part)?;
        if BlobHash::of(&bytes) != *hash {
            fs::remove_file(&part)?;
            return Ok(Append::Mismatch);
        }
        let target = self.final_path(hash);
        let dir = target.parent().expect("photo paths have a parent");
        fs::create_dir_all(dir)?;
        fs::rename(&part, &target)?;
        sync_dir(dir)?;
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
        assert_eq!(store.progress(&h).unwrap(), (4000, false));
        assert_eq!(store.append(&h, 4000, &data[4000..], 10_000).unwrap(), Append::Complete);
        assert_eq!(store.read(&h).unwrap(), data);

        let wrong = BlobHash::of(b"something else");
        assert_eq!(store.append(&wrong, 0, &data, 10_000).unwrap(), Append::Mismatch);
        assert_eq!(store.progress(&wrong).unwrap(), (0, false));
    }
}

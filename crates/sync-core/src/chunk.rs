//! The outer frame of an Automerge chunk, checked before Automerge parses
//! bytes that came from elsewhere.
//!
//! Automerge 0.12's `Change::from_bytes` parses any chunk before it looks
//! at the chunk's type, and parsing allocates as the bytes say: a bundle
//! chunk (type 3) of a few hundred bytes whose run-length columns claim
//! billions of values grows without bound, and a compressed change (type 2)
//! is inflated whole, about a thousand times its size
//! (docs/fuzzing.md, finding 6). So a change's bytes are first read here:
//! they must be a change chunk, plain (type 1) or compressed (type 2), and
//! the change they hold at most a limit, found by inflating at most one
//! byte past it.

use std::io::Read;

use flate2::read::DeflateDecoder;

/// The four bytes every Automerge chunk starts with.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// A change chunk's type byte.
const CHANGE: u8 = 1;
/// A compressed change chunk's type byte: its data is raw DEFLATE.
const COMPRESSED: u8 = 2;

/// Why some bytes are not a change this side will hand to Automerge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("the bytes are not an Automerge chunk")]
    NotAChunk,
    #[error("the chunk is of type {0}, not a change (1) or a compressed change (2)")]
    NotAChange(u8),
    #[error("the chunk says it holds {said} bytes but holds {held}")]
    WrongLength { said: u64, held: usize },
    #[error("the compressed change does not inflate")]
    BadDeflate,
    #[error("the change is over the limit of {limit} bytes (inflated, if compressed)")]
    TooLarge { limit: usize },
}

/// Checks that `bytes` are one change chunk whose change is at most
/// `limit` bytes (inflated, if compressed), and returns that size. Reads
/// no more than `limit + 1` inflated bytes, whatever the input.
pub fn change_size(bytes: &[u8], limit: usize) -> Result<usize, ChunkError> {
    let (kind, data) = frame(bytes)?;
    let size = match kind {
        CHANGE => data.len(),
        COMPRESSED => inflated_size(data, limit)?,
        other => return Err(ChunkError::NotAChange(other)),
    };
    if size > limit {
        return Err(ChunkError::TooLarge { limit });
    }
    Ok(size)
}

/// The chunk's type and its data: magic, a 4-byte checksum, the type, the
/// data's length as unsigned LEB128, then exactly that many bytes.
fn frame(bytes: &[u8]) -> Result<(u8, &[u8]), ChunkError> {
    if bytes.len() < 10 || bytes[..4] != MAGIC {
        return Err(ChunkError::NotAChunk);
    }
    let kind = bytes[8];
    let (said, used) = uleb128(&bytes[9..]).ok_or(ChunkError::NotAChunk)?;
    let data = &bytes[9 + used..];
    if u64::try_from(data.len()).ok() != Some(said) {
        return Err(ChunkError::WrongLength { said, held: data.len() });
    }
    Ok((kind, data))
}

/// An unsigned LEB128 of at most 64 bits at the start of `bytes`, and how
/// many bytes it took.
fn uleb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        let part = u64::from(b & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && part > 1 {
            return None;
        }
        value |= part << shift;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// How many bytes `data` inflates to, counting no further than `limit + 1`.
fn inflated_size(data: &[u8], limit: usize) -> Result<usize, ChunkError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut inflater = DeflateDecoder::new(data).take(cap);
    let n = std::io::copy(&mut inflater, &mut std::io::sink()).map_err(|_| ChunkError::BadDeflate)?;
    usize::try_from(n).map_err(|_| ChunkError::TooLarge { limit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::chunk;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};
    use flate2::{Compression, write::DeflateEncoder};
    use std::io::Write;

    fn change_of(text: &str) -> automerge::Change {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "text", text).unwrap();
        doc.commit();
        doc.get_changes(&[]).into_iter().next().unwrap().clone()
    }

    #[test]
    fn a_plain_and_a_compressed_change_pass_with_their_size() {
        let mut c = change_of(&"井盖破损".repeat(200));
        let plain = c.raw_bytes().to_vec();
        let compressed = c.bytes().into_owned();
        assert_eq!(compressed[8], COMPRESSED, "Automerge compresses a change this large");
        let inner = plain.len() - 9 - uleb128(&plain[9..]).unwrap().1;
        assert_eq!(change_size(&plain, 1 << 20), Ok(inner));
        assert_eq!(change_size(&compressed, 1 << 20), Ok(inner));
        assert_eq!(
            change_size(&compressed, inner - 1),
            Err(ChunkError::TooLarge { limit: inner - 1 })
        );
    }

    #[test]
    fn other_chunk_types_and_broken_frames_are_refused() {
        let plain = change_of("x").raw_bytes().to_vec();
        assert_eq!(
            change_size(&chunk(3, &[1, 2, 3]), 1 << 20),
            Err(ChunkError::NotAChange(3))
        );
        assert_eq!(
            change_size(&chunk(0, &[1, 2, 3]), 1 << 20),
            Err(ChunkError::NotAChange(0))
        );
        assert_eq!(
            change_size(b"garbage, not a chunk", 1 << 20),
            Err(ChunkError::NotAChunk)
        );
        assert!(matches!(
            change_size(&plain[..plain.len() - 1], 1 << 20),
            Err(ChunkError::WrongLength { .. })
        ));
        let mut longer = plain.clone();
        longer.push(0);
        assert!(matches!(
            change_size(&longer, 1 << 20),
            Err(ChunkError::WrongLength { .. })
        ));
        assert_eq!(
            change_size(&chunk(COMPRESSED, b"\xff\xff\xff\xff"), 1 << 20),
            Err(ChunkError::BadDeflate)
        );
        let endless = [&MAGIC[..], &[0, 0, 0, 0, 1], &[0xff; 11]].concat();
        assert_eq!(change_size(&endless, 1 << 20), Err(ChunkError::NotAChunk));
    }

    #[test]
    fn the_bundle_chunk_the_fuzzer_found_is_refused_unparsed() {
        let found = include_bytes!("../../../fixtures/fuzz/server_sync/bundle-chunk-grows-without-bound");
        let bundle = &found[5..138];
        assert_eq!(change_size(bundle, 1 << 20), Err(ChunkError::NotAChange(3)));
        assert!(crate::incident::decode_change(bundle.to_vec()).is_err());
    }

    #[test]
    fn a_deflate_bomb_is_refused_after_limit_plus_one_bytes() {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = chunk(COMPRESSED, &enc.finish().unwrap());
        assert!(
            bomb.len() < 128 * 1024,
            "64 MiB of zeros deflate to {} bytes",
            bomb.len()
        );
        assert_eq!(
            change_size(&bomb, 1 << 20),
            Err(ChunkError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(change_size(&bomb, 64 << 20), Ok(64 << 20));
    }
}

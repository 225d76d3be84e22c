//! The messages devices and the server exchange, and their CBOR encoding.
//!
//! Only types and pure checks live here; who sends what, when, is in
//! `docs/protocol.md`. Every byte string that comes off the wire is decoded
//! with [`decode`], which bounds size and nesting before serde sees it.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to these messages.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request or response body either side accepts, in bytes.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Largest single Automerge change accepted, in bytes.
pub const MAX_CHANGE: usize = 1024 * 1024;
/// Most incidents pushed in one request.
pub const MAX_PUSH_DOCS: usize = 500;
/// Most changes returned by one pull page.
pub const MAX_PULL: u32 = 2000;
/// Most incidents whose whole history one request asks for.
pub const MAX_WANT: usize = 50;
/// Largest chunk of a photo upload, in bytes.
pub const MAX_UPLOAD_CHUNK: usize = 8 * 1024 * 1024;
/// Largest photo file a device adds or the server accepts, in bytes.
pub const MAX_PHOTO_BYTES: usize = 64 * 1024 * 1024;

/// 32 bytes: an Automerge change hash or a digest, as a CBOR byte string.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hash32(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl std::fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl From<automerge::ChangeHash> for Hash32 {
    fn from(h: automerge::ChangeHash) -> Self {
        Hash32(h.0)
    }
}

impl From<Hash32> for automerge::ChangeHash {
    fn from(h: Hash32) -> Self {
        automerge::ChangeHash(h.0)
    }
}

/// Where a device is in the server's change feed. `hash` is the server's
/// hash chain at `seq`, covering every change up to it; a server restored
/// from an older copy has another chain (or no change) there, even where it
/// reuses seqs, which is how a device notices the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub seq: u64,
    pub hash: Hash32,
}

/// A summary of the device's whole log, so the center can see whether the
/// server holds everything the device has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub incidents: u64,
    /// blake3 over the sorted `(id, sorted heads)` of every incident.
    pub digest: Hash32,
    /// Incidents with changes the server has not acknowledged, beyond
    /// those pushed in the request that carries this manifest.
    pub pending_docs: u64,
    /// Photo blobs (originals, display copies, thumbnails) not yet uploaded.
    pub pending_photos: u64,
    /// The incidents created on this device, which the server can check
    /// against what it holds from this device.
    #[serde(default)]
    pub own: OwnDigest,
    /// The device clock minus the server's, in ms, as the device measured
    /// it on its last exchange with the least delay (see [`clock_sample`]);
    /// absent before it has measured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// Incidents the server refused, held on the device with the reason
    /// (not counted in `pending_docs`).
    #[serde(default)]
    pub refused_docs: u64,
}

/// One NTP-style reading of the device clock against the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// Device clock minus server clock, ms.
    pub offset_ms: i64,
    /// The round trip, ms: the smaller, the better the reading.
    pub delay_ms: i64,
}

/// Reads the offset from an exchange sent at `sent_ms` and answered at
/// `received_ms` (device clock) in which the server said `server_ms`: the
/// server's time is taken to be the midpoint of the round trip, so an
/// upload's or a retry's time does not count as offset.
pub fn clock_sample(sent_ms: i64, received_ms: i64, server_ms: i64) -> ClockSample {
    let mid = ((i128::from(sent_ms) + i128::from(received_ms)) / 2) as i64;
    ClockSample {
        offset_ms: mid.saturating_sub(server_ms),
        delay_ms: received_ms.saturating_sub(sent_ms),
    }
}

/// A count and a digest of a set of incident ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnDigest {
    pub count: u64,
    /// blake3 over the ids in ascending order, each followed by a newline.
    pub digest: Hash32,
}

impl OwnDigest {
    /// Digests ids given in ascending order.
    pub fn of<'a>(sorted_ids: impl IntoIterator<Item = &'a str>) -> OwnDigest {
        let mut hasher = blake3::Hasher::new();
        let mut count = 0;
        for id in sorted_ids {
            hasher.update(id.as_bytes());
            hasher.update(b"\n");
            count += 1;
        }
        OwnDigest {
            count,
            digest: Hash32(*hasher.finalize().as_bytes()),
        }
    }
}

/// Only the manifest, without pushing or pulling: a device on a poor link
/// tells the center what it still holds unsynced (`field sync --manifest-only`),
/// and every sync that moved anything ends with one so the server's copy is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestReport {
    pub version: u32,
    pub device_time_ms: i64,
    pub manifest: Manifest,
}

/// The server's view of a device's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestReply {
    /// The server holds every incident the device created, and the device
    /// has no records or photos waiting.
    pub in_step: bool,
    /// Incidents created on this device that the server holds.
    pub server_own: u64,
    /// The server clock when it answered (ms since the epoch; 0 from servers
    /// that do not say).
    #[serde(default)]
    pub server_time_ms: i64,
}

/// The changes of one incident that the server has not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushDoc {
    pub id: String,
    /// The device's heads after these changes.
    pub heads: Vec<Hash32>,
    /// Encoded Automerge changes, in causal order: the device's own and any
    /// others' it holds that the server has not acknowledged.
    pub changes: Vec<serde_bytes::ByteBuf>,
    /// The author's signature of each change, in the same order (an empty
    /// byte string where the device holds none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sigs: Vec<serde_bytes::ByteBuf>,
}

/// One round trip: push what is pending, pull what is new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub version: u32,
    /// The device clock, milliseconds since the Unix epoch.
    pub device_time_ms: i64,
    /// The server epoch this device last synced with.
    pub epoch: Option<String>,
    pub cursor: Option<Cursor>,
    pub pull_limit: u32,
    pub push: Vec<PushDoc>,
    pub manifest: Manifest,
    /// Incidents whose whole history the device asks for: it holds changes
    /// of them it cannot apply, because their first changes passed it by
    /// (a cell joined its scope, an incident moved cells, a restore).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub want: Vec<String>,
}

/// What the server now holds of a pushed incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    pub heads: Vec<Hash32>,
    /// The server lacks earlier changes these depend on (it was restored):
    /// the device should push the incident's whole history.
    pub need_full: bool,
    /// The server kept nothing of this incident's push, and why. The
    /// other incidents of the request are unaffected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// Why the server refused one pushed incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// `rule_broken`, `out_of_scope`, `invalid_incident` or `bad_change`.
    pub code: String,
    /// For `rule_broken`: the rule's code (`chain`, `author`, `workflow` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub message: String,
}

/// One change from the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedChange {
    pub id: String,
    pub change: serde_bytes::ByteBuf,
    /// The author's signature, when the server holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<serde_bytes::ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub epoch: String,
    pub server_time_ms: i64,
    /// The device's cursor did not match this server (new or restored):
    /// it should push everything it has and pull from the start.
    pub reset: bool,
    pub acks: Vec<Ack>,
    pub changes: Vec<FeedChange>,
    pub cursor: Option<Cursor>,
    /// More feed pages wait; ask again.
    pub more: bool,
    /// Thumbnails of incidents in `changes` that the device may fetch.
    pub thumbs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub version: u32,
    pub code: String,
    pub worker: String,
    pub device: String,
    /// The device's ed25519 public key, which verifies its changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<serde_bytes::ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub token: String,
    pub worker: String,
    pub role: String,
    /// Grid cells the device may read and write.
    pub grids: Vec<String>,
    pub epoch: String,
}

/// How far a photo upload has got on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStatus {
    /// Bytes received so far; the next chunk starts here.
    pub received: u64,
    /// Whether the whole blob is stored and verified.
    pub complete: bool,
}

/// The body of every 4xx answer: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// The incident the error is about, when there is one.
    pub incident: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the message is {size} bytes; the limit is {MAX_BODY}")]
    TooLarge { size: usize },
    #[error("the message is not valid CBOR for this protocol: {0}")]
    Malformed(String),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing CBOR into a Vec cannot fail");
    out
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_BODY {
        return Err(WireError::TooLarge { size: bytes.len() });
    }
    ciborium::de::from_reader_with_recursion_limit(bytes, 32).map_err(|e| WireError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_is_read_at_the_middle_of_the_round_trip() {
        // A correct clock, a 4 s upload and an instant answer: 2 s, not 4.
        let s = clock_sample(1_000_000, 1_004_000, 1_002_000);
        assert_eq!(
            s,
            ClockSample {
                offset_ms: 0,
                delay_ms: 4_000
            }
        );
        // A clock 10 minutes fast.
        assert_eq!(clock_sample(600_100, 600_300, 100).offset_ms, 600_100);
        assert_eq!(clock_sample(i64::MAX, i64::MAX, i64::MIN).offset_ms, i64::MAX);
    }

    #[test]
    fn round_trip_and_garbage() {
        let req = SyncRequest {
            version: PROTOCOL_VERSION,
            device_time_ms: 1,
            epoch: Some("e".into()),
            cursor: Some(Cursor {
                seq: 7,
                hash: Hash32([3; 32]),
            }),
            pull_limit: 100,
            push: vec![],
            want: vec![],
            manifest: Manifest {
                clock_offset_ms: None,
                refused_docs: 0,
                incidents: 10_000,
                digest: Hash32([1; 32]),
                pending_docs: 0,
                pending_photos: 0,
                own: OwnDigest::of(["a", "b"]),
            },
        };
        let bytes = encode(&req);
        assert!(bytes.len() < 300, "no-op request is {} bytes", bytes.len());
        assert_eq!(decode::<SyncRequest>(&bytes).unwrap(), req);
        for junk in [&b""[..], b"\xff\xff", &bytes[..bytes.len() / 2]] {
            assert!(decode::<SyncRequest>(junk).is_err());
        }
    }
}

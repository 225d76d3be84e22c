//! The messages devices and the server exchange, and their CBOR encoding.
//!
//! Only types and pure checks live here; who sends what, when, is in
//! `docs/protocol.md`. Every byte string that comes off the wire is decoded
//! with [`decode`], which bounds size and nesting before serde sees it.
//!
//! The messages of every sync (`SyncRequest`, `SyncResponse`,
//! `ManifestReport`, `ManifestReply`) are lean: one-letter map keys, values
//! left out where they are the default, ids and digests as bytes (see
//! [`compact`]). Enrolment and errors keep spelled-out keys: they travel
//! once.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to these messages.
pub const PROTOCOL_VERSION: u32 = 3;
/// Largest request or response body either side accepts, in bytes.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Largest single Automerge change accepted, in bytes.
pub const MAX_CHANGE: usize = 1024 * 1024;
/// Most bytes the changes of one request may inflate to, all together
/// (compressed changes counted inflated, see `chunk`). Devices stop adding
/// incidents to a request at half of it.
pub const MAX_PUSH_INFLATED: usize = 4 * MAX_BODY;
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

/// The first 8 bytes of a blake3 digest (of the feed's hash chain, or of
/// a set of incidents), as a CBOR byte string. It tells copies apart that
/// differ by accident (a restore, a lost record): two different states
/// share a tag with odds of 1 in 2^64. Nothing trusts it against a forger,
/// who could send any value about itself anyway. A reader also takes 16 or
/// 32 bytes and keeps the first 8, as devices stored cursors before.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag8(pub [u8; 8]);

impl Tag8 {
    /// The first 8 bytes of `digest`.
    pub fn of(digest: &[u8; 32]) -> Tag8 {
        let mut t = [0; 8];
        t.copy_from_slice(&digest[..8]);
        Tag8(t)
    }
}

impl std::fmt::Debug for Tag8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for Tag8 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tag8 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        match bytes.len() {
            8 | 16 | 32 => Ok(Tag8(bytes[..8].try_into().expect("8 bytes"))),
            n => Err(serde::de::Error::invalid_length(n, &"8, 16 or 32 bytes")),
        }
    }
}

/// Where a device is in the server's change feed. `hash` is the server's
/// hash chain at `seq` (its first 8 bytes), covering every change up to
/// it; a server restored from an older copy has another chain (or no
/// change) there, even where it reuses seqs, which is how a device notices
/// the restore.
///
/// On the wire and in a device's sync state it is the pair `[seq, hash]`;
/// a reader also takes the map `{s, h}` (or `{seq, hash}`), as devices
/// stored it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    pub hash: Tag8,
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.seq, self.hash).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Pair(u64, Tag8),
            Map {
                #[serde(alias = "seq")]
                s: u64,
                #[serde(alias = "hash")]
                h: Tag8,
            },
        }
        Ok(match Form::deserialize(d)? {
            Form::Pair(seq, hash) | Form::Map { s: seq, h: hash } => Cursor { seq, hash },
        })
    }
}

/// A summary of the device's whole log, so the center can see whether the
/// server holds everything the device has.
///
/// A sync request leaves out what the server already holds from this
/// device (see [`Manifest::against`]); a manifest with nothing to say is
/// left out whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Incidents with changes the server has not acknowledged, beyond
    /// those pushed in the request that carries this manifest.
    #[serde(rename = "p", default, skip_serializing_if = "is_zero")]
    pub pending_docs: u64,
    /// Photo blobs (originals, display copies, thumbnails) not yet uploaded.
    #[serde(rename = "f", default, skip_serializing_if = "is_zero")]
    pub pending_photos: u64,
    /// The incidents created on this device, which the server can check
    /// against what it holds from this device. A sync request leaves it
    /// out when it is the one the server last took from this device (it
    /// changes only when the device logs an incident); a server that has
    /// none on record then says so ([`SyncResponse::ask_own`]).
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnDigest>,
    /// The device clock minus the server's, in ms, as the device measured
    /// it on its last exchange with the least delay (see [`clock_sample`]);
    /// absent before it has measured one, and in a sync request when it is
    /// within [`CLOCK_STEP_MS`] of the one the server holds.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// Incidents the server refused, held on the device with the reason
    /// (not counted in `pending_docs`).
    #[serde(rename = "r", default, skip_serializing_if = "is_zero")]
    pub refused_docs: u64,
}

/// How far a measured clock offset may move before a sync request
/// reports it again: the center reads offsets in seconds.
pub const CLOCK_STEP_MS: i64 = 1000;

impl Manifest {
    /// Whether there is nothing to say: no waiting records, photos or
    /// refusals, and nothing the server does not already hold.
    pub fn is_empty(&self) -> bool {
        *self == Manifest::default()
    }

    /// This manifest as a sync request carries it, to a server that holds
    /// `held` from this device: the own digest left out when it is the
    /// same, the clock offset when it moved less than [`CLOCK_STEP_MS`].
    pub fn against(mut self, held: Option<&Manifest>) -> Manifest {
        let Some(held) = held else { return self };
        if self.own.is_some() && self.own == held.own {
            self.own = None;
        }
        if let (Some(now), Some(then)) = (self.clock_offset_ms, held.clock_offset_ms) {
            if now.saturating_sub(then).abs() < CLOCK_STEP_MS {
                self.clock_offset_ms = None;
            }
        }
        self
    }

    /// What the server holds once it took `sent` on top of `self`: the
    /// values `sent` carries, the held ones where it left them out.
    pub fn updated_by(&self, sent: &Manifest) -> Manifest {
        Manifest {
            own: sent.own.or(self.own),
            clock_offset_ms: sent.clock_offset_ms.or(self.clock_offset_ms),
            ..*sent
        }
    }
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
    #[serde(rename = "n", default, skip_serializing_if = "is_zero")]
    pub count: u64,
    /// blake3 over the ids in ascending order, each followed by a newline.
    #[serde(rename = "d", default)]
    pub digest: Tag8,
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
            digest: Tag8::of(hasher.finalize().as_bytes()),
        }
    }
}

/// Only the manifest, without pushing or pulling: a device on a poor link
/// tells the center what it still holds unsynced (`field sync --manifest-only`),
/// and every sync that moved anything ends with one so the server's copy is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestReport {
    #[serde(rename = "v")]
    pub version: u32,
    #[serde(rename = "t")]
    pub device_time_ms: i64,
    #[serde(rename = "m")]
    pub manifest: Manifest,
}

/// The server's view of a device's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestReply {
    /// The server holds every incident the device created, and the device
    /// has no records or photos waiting.
    #[serde(rename = "s")]
    pub in_step: bool,
    /// Incidents created on this device that the server holds.
    #[serde(rename = "o")]
    pub server_own: u64,
    /// The server clock when it answered (ms since the epoch).
    #[serde(rename = "t")]
    pub server_time_ms: i64,
}

/// The changes of one incident that the server has not acknowledged. On
/// the wire it is the triple `[id, changes, sigs]`: a push is the one
/// message every edit sends, and a triple is six bytes shorter than a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PushWire", into = "PushWire")]
pub struct PushDoc {
    pub id: String,
    /// Encoded Automerge changes, in causal order: the device's own and any
    /// others' it holds that the server has not acknowledged.
    pub changes: Vec<serde_bytes::ByteBuf>,
    /// The author's signature of each change, in the same order (an empty
    /// byte string where the device holds none); empty from a device
    /// without a key.
    pub sigs: Vec<serde_bytes::ByteBuf>,
}

/// [`PushDoc`] as it travels.
#[derive(Serialize, Deserialize)]
struct PushWire(
    #[serde(with = "compact::text")] String,
    Vec<serde_bytes::ByteBuf>,
    #[serde(default)] Vec<serde_bytes::ByteBuf>,
);

impl From<PushWire> for PushDoc {
    fn from(PushWire(id, changes, sigs): PushWire) -> PushDoc {
        PushDoc { id, changes, sigs }
    }
}

impl From<PushDoc> for PushWire {
    fn from(d: PushDoc) -> PushWire {
        PushWire(d.id, d.changes, d.sigs)
    }
}

/// One round trip: push what is pending, pull what is new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    #[serde(rename = "v")]
    pub version: u32,
    /// The device clock, milliseconds since the Unix epoch: sent only
    /// while the manifest has no measured clock offset (`k`), which says
    /// more.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub device_time_ms: Option<i64>,
    /// The server epoch this device last synced with.
    #[serde(
        rename = "e",
        default,
        skip_serializing_if = "Option::is_none",
        with = "compact::opt_text"
    )]
    pub epoch: Option<String>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// Most feed changes to return; left out, [`MAX_PULL`].
    #[serde(rename = "l", default = "max_pull", skip_serializing_if = "is_max_pull")]
    pub pull_limit: u32,
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<PushDoc>,
    #[serde(rename = "m", default, skip_serializing_if = "Manifest::is_empty")]
    pub manifest: Manifest,
    /// Incidents whose whole history the device asks for: it holds changes
    /// of them it cannot apply, because their first changes passed it by
    /// (a cell joined its scope, an incident moved cells, a restore).
    #[serde(
        rename = "w",
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "compact::text_list"
    )]
    pub want: Vec<String>,
    /// The [`Account::tag`] of what the device holds of its account; the
    /// server answers with the account when it differs.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Tag8>,
}

/// What the server holds of a device's account: the authority for its
/// role, its name and the cells it may report in (a center's: its
/// community's; an operator's: none, it sees every cell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(rename = "r")]
    pub role: String,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "g")]
    pub grids: Vec<String>,
    /// The server's number of the calling device, which its case numbers carry.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

impl Account {
    /// A short digest both sides compute, so a sync carries the account
    /// only when the device's copy is out of date.
    pub fn tag(&self) -> Tag8 {
        let mut h = blake3::Hasher::new();
        for part in [&self.role, &self.name].into_iter().chain(&self.grids) {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&self.number.map_or(0, u64::from).to_le_bytes());
        Tag8::of(h.finalize().as_bytes())
    }
}

/// A pushed incident the server did not store, and why. An answer lists
/// only these: every pushed incident it does not list is stored, the
/// server holding every change pushed for it. (An entry with neither
/// `need_full` nor `refused` also means stored; servers leave it out.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(rename = "i", with = "compact::text")]
    pub id: String,
    /// The server lacks earlier changes these depend on (it was restored):
    /// the device should push the incident's whole history.
    #[serde(rename = "n", default, skip_serializing_if = "is_false")]
    pub need_full: bool,
    /// The server kept nothing of this incident's push, and why. The
    /// other incidents of the request are unaffected.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

impl Ack {
    /// The server holds every change pushed for the incident.
    pub fn stored(&self) -> bool {
        !self.need_full && self.refused.is_none()
    }
}

/// Why the server refused one pushed incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// `rule_broken`, `out_of_scope`, `invalid_incident` or `bad_change`.
    #[serde(rename = "c")]
    pub code: String,
    /// For `rule_broken`: the rule's code (`chain`, `author`, `workflow` …).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(rename = "m")]
    pub message: String,
}

/// One change from the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedChange {
    #[serde(rename = "i", with = "compact::text")]
    pub id: String,
    #[serde(rename = "c")]
    pub change: serde_bytes::ByteBuf,
    /// The author's signature, when the server holds one.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<serde_bytes::ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The server's epoch, left out when it is the one the request named.
    #[serde(
        rename = "e",
        default,
        skip_serializing_if = "Option::is_none",
        with = "compact::opt_text"
    )]
    pub epoch: Option<String>,
    #[serde(rename = "t")]
    pub server_time_ms: i64,
    /// The device's cursor did not match this server (new or restored):
    /// it should push everything it has and pull from the start.
    #[serde(rename = "r", default, skip_serializing_if = "is_false")]
    pub reset: bool,
    /// The pushed incidents the server did not store (see [`Ack`]); left
    /// out when it stored them all.
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub acks: Vec<Ack>,
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FeedChange>,
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// More feed pages wait; ask again.
    #[serde(rename = "m", default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// The request left out the manifest's `own` digest, and the server
    /// has none on record from this device: send it next time.
    #[serde(rename = "o", default, skip_serializing_if = "is_false")]
    pub ask_own: bool,
    /// Thumbnails of incidents in `changes` that the device may fetch.
    #[serde(
        rename = "h",
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "compact::text_list"
    )]
    pub thumbs: Vec<String>,
    /// The device's account, when the request's tag showed its copy out
    /// of date (or it sent none).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
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
    /// What the worker calls the device ("李华's phone"), for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub token: String,
    pub worker: String,
    /// The worker's name as the operator keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: String,
    /// Grid cells the device may read and write.
    pub grids: Vec<String>,
    pub epoch: String,
    /// The server's number of this device, which its case numbers carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn max_pull() -> u32 {
    MAX_PULL
}

fn is_max_pull(n: &u32) -> bool {
    *n == MAX_PULL
}

/// Strings that are byte strings in disguise travel as bytes: a
/// hyphenated lower-case UUID (incident ids, epochs) as its 16 bytes, 64
/// lower-case hex digits (blake3 hashes) as their 32. Anything else travels
/// as text, so every string survives. A reader takes either form.
pub mod compact {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use serde::{Deserialize, Serialize};

    /// The bytes `s` stands for, if it is a canonical UUID or hash.
    fn packed(s: &str) -> Option<Vec<u8>> {
        match s.len() {
            36 => uuid::Uuid::try_parse(s)
                .ok()
                .filter(|u| u.hyphenated().to_string() == s)
                .map(|u| u.as_bytes().to_vec()),
            64 if s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Some(
                (0..32)
                    .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn unpacked<E: de::Error>(b: &[u8]) -> Result<String, E> {
        match b.len() {
            16 => Ok(uuid::Uuid::from_slice(b).expect("16 bytes").hyphenated().to_string()),
            32 => Ok(b.iter().map(|x| format!("{x:02x}")).collect()),
            n => Err(E::invalid_length(n, &"16 or 32 bytes, or text")),
        }
    }

    /// One string, as [`text::serialize`] writes it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Compact(pub String);

    impl Serialize for Compact {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            text::serialize(&self.0, s)
        }
    }

    impl<'de> Deserialize<'de> for Compact {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            text::deserialize(d).map(Compact)
        }
    }

    struct Either;

    impl Visitor<'_> for Either {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("text, or 16 or 32 bytes")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<String, E> {
            unpacked(v)
        }
    }

    pub mod text {
        use super::*;
        pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
            match packed(v) {
                Some(b) => s.serialize_bytes(&b),
                None => s.serialize_str(v),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            d.deserialize_any(Either)
        }
    }

    pub mod opt_text {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
            v.as_ref().map(|t| Compact(t.clone())).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            Ok(Option::<Compact>::deserialize(d)?.map(|c| c.0))
        }
    }

    pub mod text_list {
        use super::*;
        pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|t| Compact(t.clone())))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
            Ok(Vec::<Compact>::deserialize(d)?.into_iter().map(|c| c.0).collect())
        }
    }
}

/// The protocol version a body says it speaks, if it is a map with a
/// `v` (or, as version 1 wrote it, `version`) key, whatever else it holds.
pub fn version_of(bytes: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(alias = "version")]
        v: u32,
    }
    decode::<Probe>(bytes).ok().map(|p| p.v)
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
    fn a_sync_request_repeats_nothing_the_server_holds() {
        let own = OwnDigest::of(["a"]);
        let full = Manifest {
            own: Some(own),
            clock_offset_ms: Some(5_400),
            ..Manifest::default()
        };
        // A server that holds nothing gets it all.
        assert_eq!(full.against(None), full);
        let held = Manifest::default().updated_by(&full);
        assert_eq!(held, full);
        // The same digest and an offset that moved under a second: nothing
        // to say, and the request leaves the manifest out.
        let later = Manifest {
            clock_offset_ms: Some(6_399),
            ..full
        };
        assert!(later.against(Some(&held)).is_empty());
        // What did change is sent, and what the server holds follows it.
        let more = Manifest {
            own: Some(OwnDigest::of(["a", "b"])),
            clock_offset_ms: Some(6_400),
            pending_photos: 2,
            ..full
        };
        let sent = more.against(Some(&held));
        assert_eq!(sent, more);
        assert_eq!(held.updated_by(&sent), more);
        let quiet = Manifest {
            pending_photos: 0,
            ..more
        }
        .against(Some(&more));
        assert!(quiet.is_empty());
        assert_eq!(more.updated_by(&quiet).own, more.own, "held values stay when left out");
        assert_eq!(more.updated_by(&quiet).pending_photos, 0, "counts are always current");
    }

    #[test]
    fn a_cursor_is_a_pair_and_a_push_a_triple() {
        let c = Cursor {
            seq: 5,
            hash: Tag8([7; 8]),
        };
        // [5, h'0707070707070707']
        assert_eq!(encode(&c), [&[0x82, 0x05, 0x48][..], &[7; 8]].concat());
        let back: Cursor = decode(&encode(&c)).unwrap();
        assert_eq!(back, c);
        let doc = PushDoc {
            id: "019abf2c-1d2e-7f00-8000-0000000000aa".into(),
            changes: vec![serde_bytes::ByteBuf::from(vec![1, 2])],
            sigs: vec![],
        };
        let bytes = encode(&doc);
        // [h'<16 bytes>', [h'0102'], []]
        assert_eq!(bytes.len(), 1 + 17 + 1 + 3 + 1);
        assert_eq!(bytes[0], 0x83);
        assert_eq!(decode::<PushDoc>(&bytes).unwrap(), doc);
        // A push of two elements, from a device without a key, reads too.
        let short = [&bytes[..1 + 17 + 1 + 3]].concat();
        let mut short = short;
        short[0] = 0x82;
        assert_eq!(decode::<PushDoc>(&short).unwrap(), doc);
    }

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
    fn an_account_tag_changes_with_every_part() {
        let a = Account {
            role: "worker".into(),
            name: "李华".into(),
            grids: vec!["A".into(), "B".into()],
            number: Some(7),
        };
        let mut tags = vec![a.tag()];
        for b in [
            Account {
                role: "center".into(),
                ..a.clone()
            },
            Account {
                name: "李".into(),
                ..a.clone()
            },
            Account {
                grids: vec!["A".into()],
                ..a.clone()
            },
            Account {
                grids: vec!["AB".into()],
                ..a.clone()
            },
            Account {
                grids: vec!["B".into(), "A".into()],
                ..a.clone()
            },
        ] {
            tags.push(b.tag());
        }
        let distinct: std::collections::HashSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), tags.len(), "{tags:?}");
    }

    #[test]
    fn round_trip_and_garbage() {
        let req = SyncRequest {
            version: PROTOCOL_VERSION,
            device_time_ms: Some(1),
            epoch: Some("e".into()),
            cursor: Some(Cursor {
                seq: 7,
                hash: Tag8([3; 8]),
            }),
            pull_limit: 100,
            push: vec![],
            want: vec![],
            manifest: Manifest {
                clock_offset_ms: None,
                refused_docs: 0,
                pending_docs: 0,
                pending_photos: 0,
                own: Some(OwnDigest::of(["a", "b"])),
            },
            account: Some(Tag8([5; 8])),
        };
        let bytes = encode(&req);
        assert!(bytes.len() < 120, "no-op request is {} bytes", bytes.len());
        assert_eq!(decode::<SyncRequest>(&bytes).unwrap(), req);
        for junk in [&b""[..], b"\xff\xff", &bytes[..bytes.len() / 2]] {
            assert!(decode::<SyncRequest>(junk).is_err());
        }
    }

    #[test]
    fn ids_and_hashes_travel_as_bytes_and_every_string_survives() {
        let id = "019abf2c-1d2e-7f00-8000-0000000000aa";
        let hash = "ab".repeat(32);
        let strange = [
            "",
            "019ABF2C-1D2E-7F00-8000-0000000000AA",
            "not an id",
            &"AB".repeat(32),
        ];
        let one = |i: &str| FeedChange {
            id: i.to_owned(),
            change: serde_bytes::ByteBuf::from(vec![1, 2, 3]),
            sig: None,
        };
        // A UUID costs 17 bytes, not 37.
        assert_eq!(encode(&one(id)).len(), 1 + 2 + 17 + 2 + 4);
        for s in strange.iter().copied().chain([id]) {
            assert_eq!(decode::<FeedChange>(&encode(&one(s))).unwrap(), one(s), "{s:?}");
        }
        let resp = SyncResponse {
            epoch: Some(id.into()),
            server_time_ms: 1,
            reset: false,
            acks: vec![],
            changes: vec![],
            cursor: None,
            more: false,
            ask_own: false,
            thumbs: vec![hash.clone(), "x".into()],
            account: Some(Account {
                role: "worker".into(),
                name: "李华".into(),
                grids: vec!["HLT-CX-HX-01".into()],
                number: Some(12),
            }),
        };
        assert_eq!(decode::<SyncResponse>(&encode(&resp)).unwrap(), resp);
        // Bytes of another length are no id.
        // {"i": 15 bytes, "c": h'010203'}
        let mut bad = vec![0xa2, 0x61, b'i', 0x4f];
        bad.extend([7; 15]);
        bad.extend([0x61, b'c', 0x43, 1, 2, 3]);
        assert!(decode::<FeedChange>(&bad).is_err());
        bad[3] = 0x50;
        bad.insert(4, 7);
        assert!(decode::<FeedChange>(&bad).is_ok(), "the same with 16 bytes reads");
    }

    #[test]
    fn a_stored_ack_and_an_idle_answer_are_a_few_bytes() {
        let ack = Ack {
            id: "019abf2c-1d2e-7f00-8000-0000000000aa".into(),
            need_full: false,
            refused: None,
        };
        assert!(ack.stored());
        assert_eq!(encode(&ack).len(), 1 + 2 + 17);
        let idle = SyncResponse {
            epoch: None,
            server_time_ms: 1_764_000_000_000,
            reset: false,
            acks: vec![],
            changes: vec![],
            cursor: Some(Cursor {
                seq: 70_000,
                hash: Tag8([9; 8]),
            }),
            more: false,
            ask_own: false,
            thumbs: vec![],
            account: None,
        };
        // {t: ms, k: [seq, 8 bytes]}
        assert_eq!(encode(&idle).len(), 1 + 2 + 9 + 2 + 1 + 5 + 9);
        // A cursor a device stored with a 32-byte chain still reads.
        let old = serde_json::json!({"seq": 5, "hash": vec![7u8; 32]});
        let c: Cursor = serde_json::from_value(old).unwrap();
        assert_eq!(c.hash, Tag8([7; 8]));
    }
}

//! Where the server keeps its records, behind six traits by concern, and
//! the SQLite implementation of them that runs on the embedded defaults.
//!
//! The traits speak in typed records (workers, devices, changes, incident
//! rows); the protocol logic in `sync.rs` sits above them, so another
//! backend only has to store and query these records. Every method is
//! blocking: async callers run them inside `spawn_blocking`.

mod audit;
mod pg;
mod session;
mod sqlite;

pub use audit::{AuditEvent, AuditKind, AuditLog, AuditRow, LOCAL};
pub use pg::{PG_SCHEMA_VERSION, PgState, PgStorage};
use serde::{Deserialize, Serialize};
pub use session::{NewSession, Session, Sessions};
pub use sqlite::{SCHEMA_VERSION, SqliteStorage};
use sync_core::Status;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the server database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Its words and their causes are in the message (one sentence), not
    /// in a source chain that would say them again.
    #[error("the PostgreSQL database failed: {}", pg_message(.0))]
    Postgres(::postgres::Error),
    #[error("cannot reach the PostgreSQL database: {0}")]
    Pool(r2d2::Error),
    #[error(transparent)]
    Schema(#[from] sync_core::sqlite::MigrationError),
    #[error("no worker `{0}`")]
    NoWorker(String),
    #[error("no device `{0}`")]
    NoDevice(String),
    #[error("worker `{0}` already exists")]
    WorkerExists(String),
    #[error("worker `{0}` is retired")]
    Retired(String),
    /// A stored value that no version of this server writes.
    #[error("the server database holds a damaged {what}: {value}")]
    Damaged { what: &'static str, value: String },
    /// Another writer changed the incident since its document was read:
    /// nothing of the commit was stored, and merging again from the new
    /// document is right (`retry_merge`).
    #[error("incident {0} changed while it was being merged")]
    Conflict(String),
}

impl From<::postgres::Error> for StorageError {
    fn from(e: ::postgres::Error) -> Self {
        StorageError::Postgres(e)
    }
}

impl From<r2d2::Error> for StorageError {
    fn from(e: r2d2::Error) -> Self {
        StorageError::Pool(e)
    }
}

/// A PostgreSQL error with the server's own words when it sent any, else
/// the client's and their causes ("error connecting to server: Connection refused").
fn pg_message(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut words = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        words = format!("{words}: {c}");
        cause = c.source();
    }
    words
}

impl StorageError {
    /// A mistake in what the caller asked for, not a failure of the store.
    pub fn is_caller_mistake(&self) -> bool {
        matches!(
            self,
            StorageError::NoWorker(_)
                | StorageError::NoDevice(_)
                | StorageError::WorkerExists(_)
                | StorageError::Retired(_)
        )
    }
}

fn damaged(what: &'static str, value: impl Into<String>) -> StorageError {
    StorageError::Damaged {
        what,
        value: value.into(),
    }
}

/// The photo link key as stored: 64 hex digits.
fn link_key_of(kept: String) -> Result<[u8; 32], StorageError> {
    let bytes: Vec<u8> = (0..kept.len() / 2)
        .filter_map(|i| u8::from_str_radix(kept.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    bytes.try_into().map_err(|_| damaged("photo link key", kept))
}

/// The next link of the feed's hash chain: chain(seq) = blake3(chain(seq
/// before) || hash), so a cursor names the whole feed up to it.
fn chain_next(prev: &[u8], hash: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(hash);
    *h.finalize().as_bytes()
}

/// Why an enrolment is refused, if it is: `existing` is the device row of
/// that id (its worker, its revocation), `code_device` the device the code
/// may enrol again.
fn enrol_refusal(
    existing: Option<&(String, Option<String>)>,
    code_device: Option<&str>,
    e: &Enrolment<'_>,
) -> Option<EnrolOutcome> {
    match (existing, code_device) {
        // Another worker's device id is refused as a bad code, saying nothing of it.
        (Some((owner, _)), _) if owner != e.worker => Some(EnrolOutcome::BadCode),
        (Some((_, Some(_))), _) => Some(EnrolOutcome::Revoked),
        (Some(_), Some(d)) if d == e.device => None,
        (Some(_), _) => Some(EnrolOutcome::AlreadyEnrolled),
        (None, Some(_)) => Some(EnrolOutcome::BadCode),
        (None, None) => None,
    }
}

/// What a token grants.
pub use sync_core::account::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Worker {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub community: Option<String>,
    pub grids: Vec<String>,
    /// The department (a taxonomy code) a department account speaks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// When the operator retired the account (`sync-server worker
    /// retire`): its devices and tokens are revoked, its name stays on its
    /// incidents.
    pub retired_at: Option<String>,
}

/// A device's last manifest as the server keeps it: what the device said
/// it holds, so the center can see whether it is in step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceManifest {
    /// Incidents with changes the device had not yet pushed.
    pub pending_docs: u64,
    /// Photo files the device had not yet uploaded.
    pub pending_photos: u64,
    /// Incidents the server refused, held on the device with the reason.
    pub refused_docs: u64,
    /// The incidents the device created.
    pub own: OwnRecord,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OwnRecord {
    pub count: u64,
    /// Hex of [`sync_core::protocol::OwnDigest`]'s digest.
    pub digest: String,
}

/// A device as the server knows it, found from its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    pub worker: Worker,
    /// The Automerge actor id bound to this device at enrolment.
    #[serde(skip)]
    pub actor: Vec<u8>,
    pub enrolled_at: String,
    pub revoked_at: Option<String>,
    pub last_sync_at: Option<String>,
    pub manifest: Option<DeviceManifest>,
    pub clock_offset_ms: Option<i64>,
    /// A read-only token for reports and exports, not a field device.
    pub read_only: bool,
    /// The ed25519 key that verifies the device's changes; `None` for a
    /// device enrolled before devices had keys.
    #[serde(skip)]
    pub public_key: Option<Vec<u8>>,
    /// The cells the device could read at its last sync ([`Scope::seen`]).
    #[serde(skip)]
    pub scope_seen: Option<String>,
    /// What the worker called the device at `field init --label`.
    pub label: Option<String>,
    /// The server's number of a field device, given at its first
    /// enrolment and carried by its case numbers; `None` for a token.
    pub number: Option<u32>,
}

impl Device {
    /// The device as the edit rules name a change's author.
    pub fn author(&self) -> sync_core::rules::Author<'_> {
        sync_core::rules::Author {
            account: &self.worker.id,
            device: &self.id,
            role: self.worker.role,
            number: self.number,
            department: self.worker.department.as_deref(),
        }
    }
}

/// A device exchanging a one-time code for a token.
#[derive(Debug, Clone, Copy)]
pub struct Enrolment<'a> {
    /// Hash of the normalised code.
    pub code_hash: &'a str,
    pub worker: &'a str,
    pub device: &'a str,
    /// The device's Automerge actor id, bound to it from now on.
    pub actor: &'a [u8],
    pub token_hash: &'a str,
    /// The device's ed25519 public key, when it sent one.
    pub public_key: Option<&'a [u8]>,
    /// The device's label, when it has one.
    pub label: Option<&'a str>,
}

/// A one-time enrolment code as the server keeps it.
#[derive(Debug, Clone, Copy)]
pub struct NewCode<'a> {
    /// Hash of the normalised code.
    pub code_hash: &'a str,
    pub worker: &'a str,
    /// The enrolled device this code may enrol again (a reinstalled app
    /// that kept its data dir); `None`: new devices only.
    pub device: Option<&'a str>,
    pub expires_ms: i64,
}

/// An enrolment code not yet used (the code itself is kept only as a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaitingCode {
    pub worker: String,
    /// The device a re-enrolment code is for.
    pub device: Option<String>,
    pub created_at: String,
    pub expires_ms: i64,
}

/// What came of a device's enrolment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrolOutcome {
    Enrolled(Worker),
    /// The code is unknown, used or expired, names another worker, or is
    /// for re-enrolling another device.
    BadCode,
    /// The device id is enrolled already and the code is not one for it.
    AlreadyEnrolled,
    /// The device was revoked; it stays revoked.
    Revoked,
}

/// A read-only token (`sync-server token create`).
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub worker: &'a str,
    /// Never used to sign anything: the token cannot push.
    pub actor: &'a [u8],
    pub token_hash: &'a str,
}

/// What the device said when it last synced, and its clock against the server's.
#[derive(Debug, Clone, Copy)]
pub struct SyncRecord<'a> {
    pub device: &'a str,
    pub manifest: &'a DeviceManifest,
    /// `None` when this exchange told nothing of the clock: the last
    /// reading stays.
    pub clock_offset_ms: Option<i64>,
    /// The device's scope as [`Scope::seen`] writes it; `None` keeps the last.
    pub scope: Option<&'a str>,
    pub at: &'a str,
}

/// The three files of a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Original,
    Display,
    Thumb,
}

impl BlobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobKind::Original => "original",
            BlobKind::Display => "display",
            BlobKind::Thumb => "thumb",
        }
    }

    pub fn parse(s: &str) -> Option<BlobKind> {
        [BlobKind::Original, BlobKind::Display, BlobKind::Thumb]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A photo file an incident document names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// blake3, hex.
    pub hash: String,
    pub kind: BlobKind,
}

/// A change new to the server, as the device sent it.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
    /// The author's signature, passed on in the feed.
    pub sig: Option<Vec<u8>>,
}

/// One incident as written after a push: the merged document, its
/// projected columns and the changes that were new to the server.
#[derive(Debug, Clone)]
pub struct IncidentWrite {
    pub id: String,
    /// The heads of the stored document this one was merged from, or
    /// `None` for a new incident: the commit stores the write only while
    /// they are still the stored heads (compare-and-swap), so two writers
    /// never overwrite each other's merge.
    pub base: Option<Vec<u8>>,
    pub doc: Vec<u8>,
    /// Sorted 32-byte head hashes, back to back.
    pub heads: Vec<u8>,
    pub grid: String,
    pub category: String,
    pub status: Status,
    pub reporter: String,
    pub device: String,
    pub captured_at: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub case_no: Option<String>,
    pub new_changes: Vec<NewChange>,
    pub blob_refs: Vec<BlobRef>,
}

/// An incident's merged document and the cell it is in.
#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub doc: Vec<u8>,
    pub grid: String,
    /// Sorted head hashes, back to back: what a write merged from this
    /// document names as its `base`.
    pub heads: Vec<u8>,
}

/// One change from the feed.
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub seq: u64,
    pub incident_id: String,
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
    pub sig: Option<Vec<u8>>,
}

/// A page of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub rows: Vec<FeedRow>,
    /// The highest seq in the whole feed when the page was read.
    pub max_seq: u64,
    /// The page stopped at its count or byte limit; more may follow it.
    pub cut: bool,
}

/// Which part of the feed a device asks for.
#[derive(Debug, Clone, Copy)]
pub struct FeedQuery<'a> {
    pub after: u64,
    pub scope: &'a Scope,
    /// Changes this device sent are not sent back to it.
    pub exclude_device: &'a str,
    pub limit: u32,
    /// The page's changes add up to at most this many bytes, but for a
    /// first change that is larger alone.
    pub max_bytes: usize,
}

/// A change kept aside, never merged, for the operator to look at.
#[derive(Debug, Clone, Copy)]
pub struct Quarantined<'a> {
    pub device: &'a str,
    pub incident: Option<&'a str>,
    pub reason: &'a str,
    pub bytes: &'a [u8],
    pub at: &'a str,
    /// For one relayed change: its hash (kept once) and signature.
    pub hash: Option<[u8; 32]>,
    pub sig: Option<&'a [u8]>,
}

/// A quarantined item as the operator sees it.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    pub id: i64,
    /// The device that sent it.
    pub device: String,
    pub incident: Option<String>,
    pub reason: String,
    pub bytes: Vec<u8>,
    pub at: String,
    pub hash: Option<Vec<u8>>,
    pub sig: Option<Vec<u8>>,
}

/// One incident as the server holds it, for reports and exports.
#[derive(Debug, Clone)]
pub struct StoredIncident {
    pub id: String,
    /// The merged Automerge document.
    pub doc: Vec<u8>,
    pub grid: String,
    pub category: String,
    pub status: Status,
    pub reporter: String,
    /// The device that created it.
    pub device: String,
    /// Device clock, RFC 3339 with the device's offset.
    pub captured_at: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Server clock (UTC, RFC 3339) when its first change arrived.
    pub first_received_at: String,
    /// Server clock when a change to it last arrived.
    pub updated_at: String,
}

/// Which incidents to read. Time filters are left to the caller, since
/// captured times carry each device's own offset.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only these grid cells (`None`: every cell).
    pub grids: Option<Vec<String>>,
    /// Any of these statuses (empty: every status).
    pub statuses: Vec<Status>,
    pub category: Option<String>,
    /// Captured (the device's time, as an instant) within `[from, to)`,
    /// in Unix seconds.
    pub captured: Option<(i64, i64)>,
    /// First received by the server within `[from, to)`, in Unix seconds.
    pub received: Option<(i64, i64)>,
    /// A page: only ids after this one, and at most `limit` rows.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

/// A photo an incident references, and whether the server holds it
/// verified through a proven reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoRef {
    pub incident_id: String,
    pub hash: String,
    pub kind: BlobKind,
    pub verified: bool,
}

/// The grid cells a request may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Grids(Vec<String>),
}

impl Scope {
    /// The scope as a device's record keeps it: `*`, or the cells sorted
    /// and joined by commas.
    pub fn seen(&self) -> String {
        match self {
            Scope::All => "*".to_owned(),
            Scope::Grids(cells) => {
                let mut cells = cells.clone();
                cells.sort();
                cells.join(",")
            }
        }
    }

    /// Whether this scope takes in a cell that `seen` (an earlier
    /// [`Scope::seen`]) did not.
    pub fn grew_since(&self, seen: &str) -> bool {
        match self {
            Scope::All => seen != "*",
            Scope::Grids(cells) => seen != "*" && cells.iter().any(|c| !seen.split(',').any(|s| s == c)),
        }
    }

    pub fn allows(&self, grid: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Grids(g) => g.iter().any(|c| c == grid),
        }
    }

    /// The cells, or `None` for every cell.
    pub fn cells(&self) -> Option<&[String]> {
        match self {
            Scope::All => None,
            Scope::Grids(g) => Some(g),
        }
    }
}

/// Workers, devices, enrolment codes and tokens.
pub trait Accounts {
    fn add_worker(&self, worker: &Worker, now: &str) -> Result<(), StorageError>;
    fn worker(&self, id: &str) -> Result<Option<Worker>, StorageError>;
    /// Every worker and account, by id.
    fn workers(&self) -> Result<Vec<Worker>, StorageError>;
    /// Replaces a worker's name, role, community and cells.
    fn update_worker(&self, worker: &Worker) -> Result<(), StorageError>;
    /// Marks the worker retired and, in the same step, revokes its devices
    /// and tokens, ends its sessions and voids its unused codes.
    fn retire_worker(&self, id: &str, now: &str) -> Result<(), StorageError>;
    fn add_enrol_code(&self, code: &NewCode<'_>, now: &str) -> Result<(), StorageError>;
    /// The signing seed (hex) the server keeps for a reader token's
    /// changes made from the dashboard, once it has made one.
    fn token_key(&self, token: &str) -> Result<Option<String>, StorageError>;
    /// Keeps a reader token's seed and registers its public key, unless it
    /// has one already.
    fn set_token_key(&self, token: &str, seed_hex: &str, public: &[u8]) -> Result<(), StorageError>;
    /// Enrolment codes neither used nor expired at `now_ms`, oldest first.
    fn waiting_codes(&self, now_ms: i64) -> Result<Vec<WaitingCode>, StorageError>;
    /// Uses up a code and registers the device in one step; anything but
    /// `Enrolled` uses nothing up and changes nothing.
    fn enroll(&self, enrolment: &Enrolment<'_>, now_ms: i64, now: &str) -> Result<EnrolOutcome, StorageError>;
    fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>, StorageError>;
    /// The field device whose Automerge actor id this is.
    fn device_by_actor(&self, actor: &[u8]) -> Result<Option<Device>, StorageError>;
    fn device(&self, id: &str) -> Result<Option<Device>, StorageError>;
    fn add_token(&self, token: &NewToken<'_>, now: &str) -> Result<(), StorageError>;
    fn devices(&self) -> Result<Vec<Device>, StorageError>;
    fn revoke_device(&self, id: &str, now: &str) -> Result<(), StorageError>;
    fn record_sync(&self, record: &SyncRecord<'_>) -> Result<(), StorageError>;
}

/// The change feed and the merged documents it projects to.
pub trait ChangeLog {
    /// A random id made when the store was created; a new store means a new epoch.
    fn epoch(&self) -> Result<String, StorageError>;
    fn incident_doc(&self, id: &str) -> Result<Option<StoredDoc>, StorageError>;
    fn has_change(&self, hash: &[u8; 32]) -> Result<bool, StorageError>;
    /// The stored documents of these incidents, by id (one call: a
    /// network database answers them in one round trip).
    fn incident_docs(&self, ids: &[String]) -> Result<std::collections::HashMap<String, StoredDoc>, StorageError> {
        let mut out = std::collections::HashMap::new();
        for id in ids {
            if let Some(doc) = self.incident_doc(id)? {
                out.insert(id.clone(), doc);
            }
        }
        Ok(out)
    }
    /// Which of these changes are stored.
    fn held_changes(&self, hashes: &[[u8; 32]]) -> Result<std::collections::HashSet<[u8; 32]>, StorageError> {
        let mut out = std::collections::HashSet::new();
        for h in hashes {
            if self.has_change(h)? {
                out.insert(*h);
            }
        }
        Ok(out)
    }
    /// The author's signature of a stored change, when it came with one.
    fn change_sig(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Writes every incident of a push in one transaction.
    fn commit_push(&self, writes: &[IncidentWrite], device: &str, now: &str) -> Result<(), StorageError>;
    fn quarantine(&self, item: &Quarantined<'_>) -> Result<(), StorageError>;
    /// Everything in quarantine, oldest first.
    fn quarantined(&self) -> Result<Vec<QuarantineRow>, StorageError>;
    /// Removes one quarantined item; false when there is none by that id.
    fn unquarantine(&self, id: i64) -> Result<bool, StorageError>;
    /// The feed's hash chain at `seq` (covering every change up to it), if any.
    fn change_at(&self, seq: u64) -> Result<Option<[u8; 32]>, StorageError>;
    /// Changes after `query.after` in scope and not sent by the device, at
    /// most `query.limit`, and the highest seq in the whole feed.
    fn feed(&self, query: &FeedQuery<'_>) -> Result<FeedPage, StorageError>;
}

/// What reports, exports, the dashboard and Open311 read.
pub trait ReadModel {
    /// Incidents matching `filter`, ordered by id (creation order, ids are UUIDv7).
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<StoredIncident>, StorageError>;
    /// Every photo these incidents reference.
    fn photo_refs(&self, incidents: &[String]) -> Result<Vec<PhotoRef>, StorageError>;
    /// The incident whose id or case number is `given`, and its cell.
    fn find_incident(&self, given: &str) -> Result<Option<(String, String)>, StorageError>;
    /// Ids of the incidents created on `device`, ascending.
    fn own_incident_ids(&self, device: &str) -> Result<Vec<String>, StorageError>;
}

/// Which photo files incidents name, which the server holds verified, and
/// which device proved it holds which file. A reference is *proven* when
/// the device whose push brought it in has itself uploaded bytes that hash
/// to it (references from before proofs existed count as proven); only
/// proven references give readers access.
pub trait BlobIndex {
    /// Whether an incident in scope names the hash at all: uploads may start.
    fn blob_named(&self, hash: &str, scope: &Scope) -> Result<bool, StorageError>;
    /// The kinds under which incidents in scope name the hash through a
    /// proven reference to a verified file; empty means no access.
    fn proven_kinds(&self, hash: &str, scope: &Scope) -> Result<Vec<BlobKind>, StorageError>;
    /// Every kind any incident names the hash as, proven or not.
    fn kinds_anywhere(&self, hash: &str) -> Result<Vec<BlobKind>, StorageError>;
    /// Whether `device` has uploaded this file whole.
    fn has_proof(&self, device: &str, hash: &str) -> Result<bool, StorageError>;
    /// The file is stored whole and verified, uploaded by `device`.
    fn record_upload(&self, hash: &str, size: u64, device: &str, now: &str) -> Result<(), StorageError>;
    /// Thumbnails of these incidents that the server holds through proven references.
    fn thumbs_of(&self, incidents: &[String]) -> Result<Vec<String>, StorageError>;
}

/// Everything the server keeps. Implementations make each method atomic
/// and durable before it returns.
pub trait Storage: Accounts + ChangeLog + ReadModel + BlobIndex + AuditLog + Sessions + Send + Sync + 'static {}

impl<T: Accounts + ChangeLog + ReadModel + BlobIndex + AuditLog + Sessions + Send + Sync + 'static> Storage for T {}

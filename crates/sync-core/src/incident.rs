//! One incident = one Automerge document.
//!
//! The document layout (schema version 1), every key at the root:
//!
//! | key | type | notes |
//! |---|---|---|
//! | `schema` | uint | 1 |
//! | `id` | str | UUIDv7 made on the device |
//! | `category` | str | a taxonomy code |
//! | `description` | str | may be empty |
//! | `location` | map | `lat`, `lon` (f64, both or neither), `accuracy_m` (f64), `address` (str) |
//! | `grid` | str | grid cell id |
//! | `reporter`, `device` | str | worker id, device id |
//! | `captured_at` | str | device clock, RFC 3339 with offset |
//! | `status` | str | see [`Status`] |
//! | `status_history` | list of maps | `from` (str, absent at creation), `to`, `at`, `by` |
//! | `notes` | list of maps | `author`, `at`, `text`, `kind` (str, absent for a plain note; `correction`) |
//! | `photos` | map | keyed by the original's hash; see [`PhotoRef`] |
//!
//! Every container is created with the document, by one actor, so later
//! concurrent edits only ever insert into lists or maps that both copies
//! share: two notes, two photos or two status changes made on two devices
//! are all kept when the copies merge.
//!
//! **Concurrent status rule.** When two copies set the status concurrently,
//! Automerge keeps both values as a conflict. [`IncidentDoc::read`] picks the
//! one furthest along the workflow, by [`Status::rank`]; the other stays
//! visible in `status_conflicts` and both changes are in the history. The
//! next status change overwrites both values.

use std::fmt;
use std::str::FromStr;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::blob::BlobHash;
use crate::case::CaseNumber;

pub const SCHEMA_VERSION: u64 = 1;

/// How times are written into documents and exports: RFC 3339 with the
/// offset, and a fraction of a second only when there is one.
pub fn rfc3339(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// A UUIDv7: sortable by creation time, unique without coordination.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId(Uuid);

impl IncidentId {
    /// Builds an id from the device clock and ten random bytes, both supplied
    /// by the caller so that this crate reads neither clock nor RNG.
    pub fn new(unix_ms: u64, random: [u8; 10]) -> Self {
        IncidentId(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid())
    }

    /// When the id was made (its UUIDv7 time), in UTC.
    pub fn logged_at(&self) -> Option<DateTime<FixedOffset>> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos).map(|t| t.fixed_offset())
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IncidentId({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an incident id (a UUIDv7)")]
pub struct ParseIncidentIdError(String);

impl FromStr for IncidentId {
    type Err = ParseIncidentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match Uuid::try_parse(s) {
            Ok(u) if u.get_version_num() == 7 => Ok(IncidentId(u)),
            _ => Err(ParseIncidentIdError(s.chars().take(80).collect())),
        }
    }
}

impl TryFrom<String> for IncidentId {
    type Error = ParseIncidentIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IncidentId> for String {
    fn from(id: IncidentId) -> String {
        id.to_string()
    }
}

/// Where an incident stands in the city grid-management workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// 上报: logged by a grid worker.
    Reported,
    /// 派遣: sent to the department that fixes it.
    Dispatched,
    /// 处置中: being handled.
    InProgress,
    /// 已处置: the handler says it is fixed.
    Resolved,
    /// 已核查: a grid worker checked the fix on site.
    Verified,
    /// 结案: closed by the center.
    Closed,
    /// 不予受理: not a case for the grid.
    Rejected,
    /// 重复: already reported as another incident.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("unknown status `{given}`;{hint} valid statuses are: {}", Status::listed())]
    Unknown { given: String, hint: String },
    #[error("cannot move an incident from `{from}` to `{to}`; from `{from}` it can go to: {}", allowed_list(*from))]
    Transition { from: Status, to: Status },
}

fn allowed_list(from: Status) -> String {
    let next = from.next();
    if next.is_empty() {
        "nothing (it is final)".into()
    } else {
        next.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Reported,
        Status::Dispatched,
        Status::InProgress,
        Status::Resolved,
        Status::Verified,
        Status::Closed,
        Status::Rejected,
        Status::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reported => "reported",
            Status::Dispatched => "dispatched",
            Status::InProgress => "in_progress",
            Status::Resolved => "resolved",
            Status::Verified => "verified",
            Status::Closed => "closed",
            Status::Rejected => "rejected",
            Status::Duplicate => "duplicate",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Status::Reported => "已上报",
            Status::Dispatched => "已派遣",
            Status::InProgress => "处置中",
            Status::Resolved => "已处置",
            Status::Verified => "已核查",
            Status::Closed => "已结案",
            Status::Rejected => "不予受理",
            Status::Duplicate => "重复上报",
        }
    }

    pub fn names() -> Vec<&'static str> {
        Status::ALL.iter().map(|s| s.as_str()).collect()
    }

    /// Every status as `code (中文名)`, for messages.
    fn listed() -> String {
        Status::ALL
            .iter()
            .map(|s| format!("{} ({})", s.as_str(), s.name_zh()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statuses an incident may move to from this one.
    ///
    /// A worker may fix a small problem on the spot (`reported → resolved`);
    /// a failed check on site sends the case back (`resolved → in_progress`);
    /// a case can be handed back for another dispatch (`in_progress →
    /// dispatched`). `closed`, `rejected` and `duplicate` are final.
    pub fn next(self) -> &'static [Status] {
        use Status::*;
        match self {
            Reported => &[Dispatched, InProgress, Resolved, Rejected, Duplicate],
            Dispatched => &[InProgress, Rejected, Duplicate],
            InProgress => &[Resolved, Dispatched],
            Resolved => &[Verified, InProgress],
            Verified => &[Closed],
            Closed | Rejected | Duplicate => &[],
        }
    }

    pub fn can_move_to(self, to: Status) -> bool {
        self.next().contains(&to)
    }

    /// How far along the workflow a status is; the higher value wins when two
    /// copies changed the status concurrently. Final states outrank open ones.
    pub fn rank(self) -> u8 {
        match self {
            Status::Reported => 0,
            Status::Dispatched => 1,
            Status::InProgress => 2,
            Status::Resolved => 3,
            Status::Verified => 4,
            Status::Rejected => 5,
            Status::Duplicate => 6,
            Status::Closed => 7,
        }
    }

    /// Open means someone still has to act on it.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Closed | Status::Rejected | Status::Duplicate)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = StatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StatusError::Unknown {
                given: s.to_owned(),
                hint: String::new(),
            })
    }
}

impl Status {
    /// A status as a person types it: the code in any case with `-` or
    /// `_` (`in-progress`), or the Chinese name (`已派遣`). Stored data is
    /// read with the strict `FromStr`.
    pub fn from_input(s: &str) -> Result<Status, StatusError> {
        let key = crate::names::key(s);
        Status::ALL
            .into_iter()
            .find(|st| crate::names::key(st.as_str()) == key || st.name_zh() == s.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = Status::ALL.iter().flat_map(|st| [st.as_str(), st.name_zh()]).collect();
                StatusError::Unknown {
                    given: s.to_owned(),
                    hint: crate::names::did_you_mean(crate::names::nearest(s, &known)),
                }
            })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub accuracy_m: Option<f64>,
    pub address: Option<String>,
}

impl Location {
    pub fn point(&self) -> Option<(f64, f64)> {
        Some((self.lat?, self.lon?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

/// A photo as the incident records it; the bytes live in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoRef {
    pub original: BlobHash,
    pub display: BlobHash,
    pub thumb: BlobHash,
    /// Bytes of the original.
    pub size: u64,
    /// MIME type of the original.
    pub mime: String,
    /// Pixel size of the original as it should be shown (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    /// EXIF capture time: RFC 3339 when the camera gave an offset, else the
    /// camera's local time as `YYYY-MM-DDTHH:MM:SS`.
    pub taken_at: Option<String>,
    pub gps: Option<GeoPoint>,
    pub added_at: DateTime<FixedOffset>,
    pub added_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub author: String,
    pub at: DateTime<FixedOffset>,
    pub text: String,
    #[serde(default, skip_serializing_if = "NoteKind::is_plain")]
    pub kind: NoteKind,
}

/// What a note records. A correction's note says what changed, so the
/// incident keeps the history of its own corrections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    #[default]
    Note,
    Correction,
}

impl NoteKind {
    pub fn is_plain(&self) -> bool {
        *self == NoteKind::Note
    }
}

/// What a correction changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Correction {
    pub category: Option<String>,
    pub description: Option<String>,
    pub location: Option<Location>,
    pub grid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    pub from: Option<Status>,
    pub to: Status,
    pub at: DateTime<FixedOffset>,
    pub by: String,
    /// A dispatch's department and time limit (处置时限).
    #[serde(flatten, skip_serializing_if = "Option::is_none", default)]
    pub dispatch: Option<Dispatch>,
}

/// Where a case was dispatched and by when it is to be handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// A department code of the taxonomy.
    pub department: String,
    pub deadline: DateTime<FixedOffset>,
}

/// What a worker supplies to log a new incident.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub id: IncidentId,
    /// Left out on a device the server has not numbered yet.
    pub case: Option<CaseNumber>,
    pub category: String,
    pub description: String,
    pub location: Location,
    pub grid: String,
    pub reporter: String,
    pub device: String,
    pub captured_at: DateTime<FixedOffset>,
    pub photos: Vec<PhotoRef>,
}

/// A validated, plain-Rust view of an incident document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    /// The case number people use; given at creation, or once later by the
    /// device that made the incident (one logged before its enrolment).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub case: Option<CaseNumber>,
    pub schema: u64,
    pub category: String,
    pub description: String,
    pub location: Location,
    pub grid: String,
    pub reporter: String,
    pub device: String,
    pub captured_at: DateTime<FixedOffset>,
    pub status: Status,
    /// Other statuses set concurrently with `status` and not yet overwritten.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub status_conflicts: Vec<Status>,
    pub status_history: Vec<StatusChange>,
    pub notes: Vec<Note>,
    pub photos: Vec<PhotoRef>,
}

impl Incident {
    /// The last dispatch: its department and deadline.
    pub fn dispatch(&self) -> Option<&Dispatch> {
        self.status_history.iter().rev().find_map(|h| h.dispatch.as_ref())
    }

    /// Dispatched or in progress past its deadline at `now`.
    pub fn overdue(&self, now: DateTime<FixedOffset>) -> bool {
        matches!(self.status, Status::Dispatched | Status::InProgress)
            && self.dispatch().is_some_and(|d| d.deadline < now)
    }
}

/// A document that does not match the incident schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("incident field `{field}` {problem}")]
pub struct SchemaError {
    pub field: String,
    pub problem: String,
}

fn schema_err(field: impl Into<String>, problem: impl Into<String>) -> SchemaError {
    SchemaError {
        field: field.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("the incident document bytes cannot be decoded: {0}")]
    Decode(#[source] automerge::AutomergeError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("the incident documents cannot be merged: {0}")]
    Merge(#[source] automerge::AutomergeError),
    #[error("the merged incident document does not load back as itself: {0}")]
    Unsealed(String),
    #[error("the change cannot be decoded: {0}")]
    BadChange(String),
}

/// Decodes a change made elsewhere. Its frame is checked first
/// ([`crate::chunk`]: a change chunk of at most `MAX_CHANGE` bytes,
/// inflated), since Automerge 0.12 allocates without bound on some hostile
/// chunks (docs/fuzzing.md, finding 6); and Automerge panics inside
/// `Change::from_bytes` on some others (finding 5), which this catches, so
/// what a server or a device sent is refused, never a crash.
pub fn decode_change(bytes: Vec<u8>) -> Result<Change, DocError> {
    crate::chunk::change_size(&bytes, crate::protocol::MAX_CHANGE).map_err(|e| DocError::BadChange(e.to_string()))?;
    match std::panic::catch_unwind(move || Change::from_bytes(bytes)) {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(DocError::BadChange(e.to_string())),
        Err(_) => Err(DocError::BadChange("Automerge failed on its bytes".into())),
    }
}

/// One change of a copy as it travels: its hash, its bytes (compressed
/// when Automerge finds that worth it) and its size uncompressed, which a
/// push counts against `MAX_PUSH_INFLATED`.
#[derive(Debug, Clone)]
pub struct OutChange {
    pub hash: ChangeHash,
    pub bytes: Vec<u8>,
    pub raw_len: usize,
}

/// Saved bytes of a document, checked to load back as the same document.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub bytes: Vec<u8>,
    /// The document's heads, sorted.
    pub heads: Vec<ChangeHash>,
}

/// An incident's Automerge document and the edits the workflow allows on it.
#[derive(Debug, Clone)]
pub struct IncidentDoc {
    doc: AutoCommit,
}

/// Ends one change. It has neither message nor time (Automerge's 0): what
/// it did is in its operations, and when is in the entry it adds (a note's
/// or status move's `at`, a photo's `added_at`, `captured_at`), so either
/// would only travel with it again.
fn commit(doc: &mut AutoCommit) {
    doc.commit_with(CommitOptions::default().with_time(0));
}

/// The containers made with the document, never replaced.
const CONTAINERS: [&str; 4] = ["location", "status_history", "notes", "photos"];
/// Every key the root of an incident document has.
const ROOT_KEYS: [&str; 14] = [
    "schema",
    "id",
    "case",
    "category",
    "description",
    "location",
    "grid",
    "reporter",
    "device",
    "captured_at",
    "status",
    "status_history",
    "notes",
    "photos",
];

/// Every write below goes into an AutoCommit we own, into objects this module
/// created; Automerge only fails such writes on a wrong object id, a bug.
const WRITE: &str = "writing into an object of the incident document";

impl IncidentDoc {
    /// Builds the document of a new incident. Refuses what [`IncidentDoc::read`]
    /// would refuse, so a stored document always reads back.
    pub fn create(new: &NewIncident, actor: ActorId) -> Result<IncidentDoc, SchemaError> {
        check_location(&new.location)?;
        let mut doc = AutoCommit::new().with_actor(actor);
        let d = &mut doc;
        d.put(ROOT, "schema", SCHEMA_VERSION).expect(WRITE);
        d.put(ROOT, "id", new.id.to_string()).expect(WRITE);
        if let Some(case) = &new.case {
            d.put(ROOT, "case", case.to_string()).expect(WRITE);
        }
        d.put(ROOT, "category", new.category.as_str()).expect(WRITE);
        d.put(ROOT, "description", new.description.as_str()).expect(WRITE);
        let loc = d.put_object(ROOT, "location", ObjType::Map).expect(WRITE);
        put_location(d, &loc, &new.location);
        d.put(ROOT, "grid", new.grid.as_str()).expect(WRITE);
        d.put(ROOT, "reporter", new.reporter.as_str()).expect(WRITE);
        d.put(ROOT, "device", new.device.as_str()).expect(WRITE);
        d.put(ROOT, "captured_at", rfc3339(&new.captured_at)).expect(WRITE);
        d.put(ROOT, "status", Status::Reported.as_str()).expect(WRITE);
        let history = d.put_object(ROOT, "status_history", ObjType::List).expect(WRITE);
        put_status_change(d, &history, None, Status::Reported, new.captured_at, &new.reporter);
        d.put_object(ROOT, "notes", ObjType::List).expect(WRITE);
        let photos = d.put_object(ROOT, "photos", ObjType::Map).expect(WRITE);
        let mut seen = std::collections::HashSet::new();
        for photo in new.photos.iter().filter(|p| seen.insert(p.original)) {
            put_photo(d, &photos, photo);
        }
        commit(d);
        Ok(IncidentDoc { doc })
    }

    /// Loads saved bytes and checks them against the schema.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<IncidentDoc, DocError> {
        let doc = AutoCommit::load(bytes).map_err(DocError::Decode)?.with_actor(actor);
        let doc = IncidentDoc { doc };
        doc.read()?;
        Ok(doc)
    }

    /// Decodes saved bytes and reads them, for readers that never edit.
    pub fn read_saved(bytes: &[u8]) -> Result<Incident, DocError> {
        Ok(IncidentDoc::receiver(Some(bytes))?.read()?)
    }

    /// A copy that only takes in changes made elsewhere (a server merging a
    /// push, a device applying the feed): empty, or loaded from saved bytes.
    /// It is not validated; [`IncidentDoc::read`] does that once the changes
    /// are in. Its actor never writes: edits go through [`IncidentDoc::load`].
    pub fn receiver(saved: Option<&[u8]>) -> Result<IncidentDoc, DocError> {
        let doc = match saved {
            Some(bytes) => AutoCommit::load(bytes).map_err(DocError::Decode)?,
            None => AutoCommit::new(),
        };
        Ok(IncidentDoc {
            doc: doc.with_actor(ActorId::from([0u8; 16].as_slice())),
        })
    }

    /// Applies changes that travelled from another copy. A change whose
    /// dependencies this copy lacks waits inside it, unapplied, until they arrive.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<(), DocError> {
        self.doc.apply_changes(changes).map_err(DocError::Merge)
    }

    /// Whether the change is applied in this copy.
    pub fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.doc.get_change_by_hash(hash).is_some()
    }

    /// Whether some applied change still waits for a dependency.
    pub fn waits_for_dependencies(&mut self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }

    /// The hashes of the changes since `heads` that this copy's own actor
    /// made: the ones its device signs.
    pub fn own_changes_since(&mut self, heads: &[ChangeHash]) -> Vec<ChangeHash> {
        let actor = self.doc.get_actor().clone();
        self.doc
            .get_changes(heads)
            .into_iter()
            .filter(|c| *c.actor_id() == actor)
            .map(|c| c.hash())
            .collect()
    }

    /// Every change since `heads`, by any actor, with its hash, for a push.
    pub fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<OutChange> {
        self.doc
            .get_changes(heads)
            .into_iter()
            .map(|mut c| OutChange {
                hash: c.hash(),
                raw_len: c.raw_bytes().len(),
                bytes: c.bytes().into_owned(),
            })
            .collect()
    }

    /// This copy's changes since `heads` that `actor` made, for a push.
    pub fn changes_by_since(&mut self, actor: &ActorId, heads: &[ChangeHash]) -> Vec<Vec<u8>> {
        self.doc
            .get_changes(heads)
            .into_iter()
            .filter(|c| c.actor_id() == actor)
            .map(|mut c| c.bytes().into_owned())
            .collect()
    }

    /// The document's Automerge handle, for tests that forge what a hostile
    /// client could send.
    #[cfg(any(test, feature = "test-support"))]
    pub fn automerge(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// Wraps a document without validating it, for tests.
    #[cfg(any(test, feature = "test-support"))]
    pub fn from_automerge(doc: AutoCommit) -> IncidentDoc {
        IncidentDoc { doc }
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Saves the document and loads the bytes back, checking that they hold
    /// the same heads and read as an incident. Automerge applies changes
    /// whose bytes are not the ones it would write, and keeps a waiting
    /// change without checking its checksum; such a document saves to bytes
    /// that do not load (docs/fuzzing.md, findings 1 and 2). Whatever stores
    /// a document that took in changes made elsewhere stores only sealed
    /// bytes. Call it inside `catch_unwind` when the changes are hostile.
    pub fn seal(&mut self) -> Result<Sealed, DocError> {
        let bytes = self.save();
        let mut heads = self.heads();
        heads.sort();
        let mut back = IncidentDoc::receiver(Some(&bytes)).map_err(|e| DocError::Unsealed(e.to_string()))?;
        let mut again = back.heads();
        again.sort();
        if again != heads {
            return Err(DocError::Unsealed("its heads differ after a load".into()));
        }
        back.read().map_err(|e| DocError::Unsealed(e.to_string()))?;
        Ok(Sealed { bytes, heads })
    }

    /// The changes made since `heads`, as bytes another copy can load.
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    pub fn merge(&mut self, other: &mut IncidentDoc) -> Result<(), DocError> {
        self.doc.merge(&mut other.doc).map_err(DocError::Merge)?;
        Ok(())
    }

    /// Moves the incident along the workflow; refuses moves it does not allow.
    pub fn set_status(&mut self, to: Status, by: &str, now: DateTime<FixedOffset>) -> Result<(), DocError> {
        self.move_to(to, None, by, now)
    }

    /// Dispatches the case to a department with a deadline: a move to
    /// `dispatched` whose history entry names both.
    pub fn dispatch(&mut self, dispatch: &Dispatch, by: &str, now: DateTime<FixedOffset>) -> Result<(), DocError> {
        self.move_to(Status::Dispatched, Some(dispatch), by, now)
    }

    fn move_to(
        &mut self,
        to: Status,
        dispatch: Option<&Dispatch>,
        by: &str,
        now: DateTime<FixedOffset>,
    ) -> Result<(), DocError> {
        let from = self.read()?.status;
        if !from.can_move_to(to) {
            return Err(StatusError::Transition { from, to }.into());
        }
        let d = &mut self.doc;
        // Delete first: when the status holds a conflict, a put of the value
        // Automerge already shows would only drop the other values and make
        // no op of its own, and a concurrent move elsewhere would then
        // replace this one without a trace in `status_conflicts`.
        d.delete(ROOT, "status").expect(WRITE);
        d.put(ROOT, "status", to.as_str()).expect(WRITE);
        let history = existing(d, "status_history")?;
        let entry = put_status_change(d, &history, Some(from), to, now, by);
        if let Some(x) = dispatch {
            d.put(&entry, "department", x.department.as_str()).expect(WRITE);
            d.put(&entry, "deadline", stamp(&x.deadline)).expect(WRITE);
        }
        commit(d);
        Ok(())
    }

    pub fn add_note(&mut self, author: &str, text: &str, now: DateTime<FixedOffset>) -> Result<(), DocError> {
        put_note(&mut self.doc, author, text, NoteKind::Note, now)?;
        commit(&mut self.doc);
        Ok(())
    }

    /// Corrects what the reporter got wrong, in one change with a note of
    /// kind `correction` that says what changed. Returns false, changing
    /// nothing, when every given value is already the incident's.
    pub fn correct(&mut self, c: &Correction, by: &str, now: DateTime<FixedOffset>) -> Result<bool, DocError> {
        let current = self.read()?;
        let mut said = Vec::new();
        let d = &mut self.doc;
        for (key, old, new) in [
            ("category", &current.category, &c.category),
            ("description", &current.description, &c.description),
            ("grid", &current.grid, &c.grid),
        ] {
            if let Some(new) = new.as_ref().filter(|n| *n != old) {
                d.put(ROOT, key, new.as_str()).expect(WRITE);
                // A description is not copied into the note: the earlier
                // text stays in the document's history, and a correction
                // travels at the size of the new text.
                said.push(match key {
                    "description" => "description corrected".to_owned(),
                    _ => format!("{key}: {old} → {new}"),
                });
            }
        }
        if let Some(loc) = c.location.as_ref().filter(|l| **l != current.location) {
            check_location(loc)?;
            put_location(d, &existing(d, "location")?, loc);
            said.push("location corrected".to_owned());
        }
        if said.is_empty() {
            return Ok(false);
        }
        put_note(d, by, &said.join("; "), NoteKind::Correction, now)?;
        commit(d);
        Ok(true)
    }

    /// Gives an incident logged before its device was numbered its case
    /// number; false when it has one already (which never changes).
    pub fn set_case(&mut self, case: &CaseNumber) -> Result<bool, DocError> {
        if self.read()?.case.is_some() {
            return Ok(false);
        }
        self.doc.put(ROOT, "case", case.to_string()).expect(WRITE);
        commit(&mut self.doc);
        Ok(true)
    }

    /// Every change of the document, oldest first.
    pub fn all_changes(&mut self) -> Vec<Change> {
        self.doc.get_changes(&[])
    }

    /// A copy of the document as it was at `heads`.
    pub(crate) fn fork_at(&mut self, heads: &[ChangeHash]) -> Result<IncidentDoc, automerge::AutomergeError> {
        Ok(IncidentDoc {
            doc: self.doc.fork_at(heads)?,
        })
    }

    /// The object ids of the containers and the root keys no incident has.
    pub(crate) fn shape(&self) -> crate::rules::Shape {
        let d = &self.doc;
        let id = |key: &str| match d.get(ROOT, key) {
            Ok(Some((Value::Object(_), id))) => Some(id),
            _ => None,
        };
        crate::rules::Shape {
            containers: CONTAINERS.iter().map(|k| (*k, id(k))).collect(),
            unknown: d.keys(ROOT).filter(|k| !ROOT_KEYS.contains(&k.as_str())).collect(),
        }
    }

    /// Adds photos; one already on the incident (same original) is skipped.
    pub fn add_photos(&mut self, photos: &[PhotoRef]) -> Result<usize, DocError> {
        let d = &mut self.doc;
        let map = existing(d, "photos")?;
        let mut added = 0;
        for photo in photos {
            if d.get(&map, photo.original.to_hex()).ok().flatten().is_none() {
                put_photo(d, &map, photo);
                added += 1;
            }
        }
        if added > 0 {
            commit(d);
        }
        Ok(added)
    }

    /// Reads and validates the whole document.
    pub fn read(&self) -> Result<Incident, SchemaError> {
        let d = &self.doc;
        // Each map is read in one pass, not one lookup per field.
        let root = Fields::of(d, &ROOT);
        let schema = uint(&root, "schema", "schema")?;
        if schema != SCHEMA_VERSION {
            return Err(schema_err(
                "schema",
                format!("is {schema}, but only version {SCHEMA_VERSION} is known"),
            ));
        }
        let id = text(&root, "id", "id")?
            .parse::<IncidentId>()
            .map_err(|e| schema_err("id", e.to_string()))?;
        let location = read_location(d, &root)?;
        let captured_at = time(&root, "captured_at", "captured_at")?;
        // Later times are instants, shown in the offset the device had
        // when it logged the incident.
        let zone = *captured_at.offset();
        let (status, status_conflicts) = read_status(d)?;
        let status_history = read_status_history(d, &root, zone)?;
        let notes = read_notes(d, &root, zone)?;
        let photos = read_photos(d, &root, zone)?;
        let case = opt_text(&root, "case", "case")?
            .map(|c| c.parse::<CaseNumber>().map_err(|e| schema_err("case", e.to_string())))
            .transpose()?;
        Ok(Incident {
            id,
            case,
            schema,
            category: text(&root, "category", "category")?,
            description: text(&root, "description", "description")?,
            location,
            grid: text(&root, "grid", "grid")?,
            reporter: text(&root, "reporter", "reporter")?,
            device: text(&root, "device", "device")?,
            captured_at,
            status,
            status_conflicts,
            status_history,
            notes,
            photos,
        })
    }
}

// The steps of `IncidentDoc::read`, one part of the document each, in the
// order read checks them (so the first bad field named stays the same).

fn read_location(d: &AutoCommit, root: &Fields) -> Result<Location, SchemaError> {
    let loc = Fields::of(d, &field_object(root, "location", "location", ObjType::Map)?);
    let lat = opt_float(&loc, "lat", "location.lat")?;
    let lon = opt_float(&loc, "lon", "location.lon")?;
    if lat.is_some() != lon.is_some() {
        return Err(schema_err("location", "must have both lat and lon or neither"));
    }
    check_range(lat, -90.0, 90.0, "location.lat")?;
    check_range(lon, -180.0, 180.0, "location.lon")?;
    Ok(Location {
        lat,
        lon,
        accuracy_m: opt_float(&loc, "accuracy_m", "location.accuracy_m")?,
        address: opt_text(&loc, "address", "location.address")?,
    })
}

/// The status shown (the one furthest along the workflow when copies set it
/// concurrently) and the other concurrent values.
fn read_status(d: &AutoCommit) -> Result<(Status, Vec<Status>), SchemaError> {
    let mut statuses = Vec::new();
    for (value, _) in d
        .get_all(ROOT, "status")
        .map_err(|e| schema_err("status", e.to_string()))?
    {
        let s = as_text(&value).ok_or_else(|| schema_err("status", "is not a string"))?;
        statuses.push(s.parse::<Status>().map_err(|e| schema_err("status", e.to_string()))?);
    }
    statuses.sort_by_key(|s| std::cmp::Reverse(s.rank()));
    statuses.dedup();
    if statuses.is_empty() {
        return Err(schema_err("status", "is missing"));
    }
    let status = statuses.remove(0);
    Ok((status, statuses))
}

fn read_status_history(d: &AutoCommit, root: &Fields, zone: FixedOffset) -> Result<Vec<StatusChange>, SchemaError> {
    let history = field_object(root, "status_history", "status_history", ObjType::List)?;
    let mut out = Vec::new();
    for i in 0..d.length(&history) {
        let path = format!("status_history[{i}]");
        let entry = Fields::of(d, &object(d, &history, i, &path, ObjType::Map)?);
        let status = |key: &str, s: String| {
            s.parse::<Status>()
                .map_err(|e| schema_err(format!("{path}.{key}"), e.to_string()))
        };
        let from = opt_text(&entry, "from", &format!("{path}.from"))?
            .map(|s| status("from", s))
            .transpose()?;
        let to = status("to", text(&entry, "to", &format!("{path}.to"))?)?;
        let department = opt_text(&entry, "department", &format!("{path}.department"))?;
        let dispatch = match department {
            None => None,
            Some(department) => Some(Dispatch {
                department,
                deadline: instant(&entry, "deadline", &format!("{path}.deadline"), zone)?,
            }),
        };
        out.push(StatusChange {
            from,
            to,
            at: instant(&entry, "at", &format!("{path}.at"), zone)?,
            by: text(&entry, "by", &format!("{path}.by"))?,
            dispatch,
        });
    }
    Ok(out)
}

fn read_notes(d: &AutoCommit, root: &Fields, zone: FixedOffset) -> Result<Vec<Note>, SchemaError> {
    let notes = field_object(root, "notes", "notes", ObjType::List)?;
    let mut out = Vec::new();
    for i in 0..d.length(&notes) {
        let path = format!("notes[{i}]");
        let note = Fields::of(d, &object(d, &notes, i, &path, ObjType::Map)?);
        let kind = match opt_text(&note, "kind", &format!("{path}.kind"))?.as_deref() {
            None => NoteKind::Note,
            Some("correction") => NoteKind::Correction,
            Some(other) => {
                return Err(schema_err(
                    format!("{path}.kind"),
                    format!("is `{other}`, not `correction`"),
                ));
            }
        };
        out.push(Note {
            author: text(&note, "author", &format!("{path}.author"))?,
            at: instant(&note, "at", &format!("{path}.at"), zone)?,
            text: text(&note, "text", &format!("{path}.text"))?,
            kind,
        });
    }
    Ok(out)
}

/// Every photo, oldest first (ties by the original's hash).
fn read_photos(d: &AutoCommit, root: &Fields, zone: FixedOffset) -> Result<Vec<PhotoRef>, SchemaError> {
    let photos = Fields::of(d, &field_object(root, "photos", "photos", ObjType::Map)?);
    let mut out = photos
        .keys()
        .map(|key| read_photo(d, &photos, key, zone))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.added_at.cmp(&b.added_at).then(a.original.cmp(&b.original)));
    Ok(out)
}

/// The photo stored under `key`, which must be its original's hash.
fn read_photo(d: &AutoCommit, photos: &Fields, key: &str, zone: FixedOffset) -> Result<PhotoRef, SchemaError> {
    let path = format!("photos.{key}");
    let p = Fields::of(d, &field_object(photos, key, &path, ObjType::Map)?);
    let field = |name: &str| format!("{path}.{name}");
    let hash = |name: &str| -> Result<BlobHash, SchemaError> {
        text(&p, name, &field(name))?
            .parse()
            .map_err(|e: crate::blob::ParseBlobHashError| schema_err(field(name), e.to_string()))
    };
    let original = hash("original")?;
    if original.to_hex() != key {
        return Err(schema_err(
            field("original"),
            "does not match the key it is stored under",
        ));
    }
    let gps_lat = opt_float(&p, "gps_lat", &field("gps_lat"))?;
    let gps_lon = opt_float(&p, "gps_lon", &field("gps_lon"))?;
    Ok(PhotoRef {
        original,
        display: hash("display")?,
        thumb: hash("thumb")?,
        size: uint(&p, "size", &field("size"))?,
        mime: text(&p, "mime", &field("mime"))?,
        width: small_uint(&p, "width", &field("width"))?,
        height: small_uint(&p, "height", &field("height"))?,
        taken_at: opt_text(&p, "taken_at", &field("taken_at"))?,
        gps: match (gps_lat, gps_lon) {
            (Some(lat), Some(lon)) => Some(GeoPoint { lat, lon }),
            (None, None) => None,
            _ => return Err(schema_err(field("gps_lat"), "must come with gps_lon")),
        },
        added_at: instant(&p, "added_at", &field("added_at"), zone)?,
        added_by: text(&p, "added_by", &field("added_by"))?,
    })
}

/// Refuses a location that [`IncidentDoc::read`] would refuse.
fn check_location(loc: &Location) -> Result<(), SchemaError> {
    if loc.lat.is_some() != loc.lon.is_some() {
        return Err(schema_err("location", "must have both lat and lon or neither"));
    }
    for (v, path) in [
        (loc.lat, "location.lat"),
        (loc.lon, "location.lon"),
        (loc.accuracy_m, "location.accuracy_m"),
    ] {
        if v.is_some_and(|x| !x.is_finite()) {
            return Err(schema_err(path, "is not a finite number"));
        }
    }
    check_range(loc.lat, -90.0, 90.0, "location.lat")?;
    check_range(loc.lon, -180.0, 180.0, "location.lon")
}

/// Writes every field of `loc` into the location map, removing the ones
/// it does not have.
fn put_location(d: &mut AutoCommit, map: &ObjId, loc: &Location) {
    let fields: [(&str, Option<ScalarValue>); 4] = [
        ("lat", loc.point().map(|p| p.0.into())),
        ("lon", loc.point().map(|p| p.1.into())),
        ("accuracy_m", loc.accuracy_m.map(Into::into)),
        ("address", loc.address.as_deref().map(Into::into)),
    ];
    for (key, value) in fields {
        match value {
            Some(v) => d.put(map, key, v).expect(WRITE),
            None if d.get(map, key).ok().flatten().is_some() => d.delete(map, key).expect(WRITE),
            None => {}
        }
    }
}

fn put_note(
    d: &mut AutoCommit,
    author: &str,
    text: &str,
    kind: NoteKind,
    now: DateTime<FixedOffset>,
) -> Result<(), SchemaError> {
    let notes = existing(d, "notes")?;
    let at = d.length(&notes);
    let note = d.insert_object(&notes, at, ObjType::Map).expect(WRITE);
    d.put(&note, "author", author).expect(WRITE);
    d.put(&note, "at", stamp(&now)).expect(WRITE);
    d.put(&note, "text", text).expect(WRITE);
    if kind == NoteKind::Correction {
        d.put(&note, "kind", "correction").expect(WRITE);
    }
    Ok(())
}

fn existing(d: &AutoCommit, key: &str) -> Result<ObjId, SchemaError> {
    let kind = if matches!(key, "photos" | "location") {
        ObjType::Map
    } else {
        ObjType::List
    };
    object(d, &ROOT, key, key, kind)
}

fn put_status_change(
    d: &mut AutoCommit,
    history: &ObjId,
    from: Option<Status>,
    to: Status,
    at: DateTime<FixedOffset>,
    by: &str,
) -> ObjId {
    let idx = d.length(history);
    let entry = d.insert_object(history, idx, ObjType::Map).expect(WRITE);
    if let Some(from) = from {
        d.put(&entry, "from", from.as_str()).expect(WRITE);
    }
    d.put(&entry, "to", to.as_str()).expect(WRITE);
    d.put(&entry, "at", stamp(&at)).expect(WRITE);
    d.put(&entry, "by", by).expect(WRITE);
    entry
}

fn put_photo(d: &mut AutoCommit, photos: &ObjId, photo: &PhotoRef) {
    let p = d
        .put_object(photos, photo.original.to_hex(), ObjType::Map)
        .expect(WRITE);
    d.put(&p, "original", photo.original.to_hex()).expect(WRITE);
    d.put(&p, "display", photo.display.to_hex()).expect(WRITE);
    d.put(&p, "thumb", photo.thumb.to_hex()).expect(WRITE);
    d.put(&p, "size", photo.size).expect(WRITE);
    d.put(&p, "mime", photo.mime.as_str()).expect(WRITE);
    d.put(&p, "width", u64::from(photo.width)).expect(WRITE);
    d.put(&p, "height", u64::from(photo.height)).expect(WRITE);
    if let Some(t) = &photo.taken_at {
        d.put(&p, "taken_at", t.as_str()).expect(WRITE);
    }
    if let Some(g) = photo.gps {
        d.put(&p, "gps_lat", g.lat).expect(WRITE);
        d.put(&p, "gps_lon", g.lon).expect(WRITE);
    }
    d.put(&p, "added_at", stamp(&photo.added_at)).expect(WRITE);
    d.put(&p, "added_by", photo.added_by.as_str()).expect(WRITE);
}

/// The visible keys and values of one map, read in a single pass.
struct Fields {
    items: Vec<(String, Value<'static>, ObjId)>,
}

impl Fields {
    fn of(d: &AutoCommit, obj: &ObjId) -> Fields {
        Fields {
            items: d
                .map_range(obj, ..)
                .map(|item| (item.key.to_string(), Value::from(item.value.clone()), item.id()))
                .collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&(String, Value<'static>, ObjId)> {
        self.items.iter().find(|(k, _, _)| k == key)
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(k, _, _)| k.as_str())
    }
}

fn scalar<'f>(f: &'f Fields, key: &str, path: &str) -> Result<Option<&'f ScalarValue>, SchemaError> {
    match f.get(key) {
        None => Ok(None),
        Some((_, Value::Scalar(s), _)) => Ok(Some(s.as_ref())),
        Some((_, Value::Object(_), _)) => Err(schema_err(path, "is an object where a value was expected")),
    }
}

fn field_object(f: &Fields, key: &str, path: &str, kind: ObjType) -> Result<ObjId, SchemaError> {
    match f.get(key) {
        Some((_, Value::Object(t), id)) if *t == kind => Ok(id.clone()),
        Some(_) => Err(schema_err(path, format!("is not a {kind:?}").to_lowercase())),
        None => Err(schema_err(path, "is missing")),
    }
}

fn as_text(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

fn opt_text(f: &Fields, key: &str, path: &str) -> Result<Option<String>, SchemaError> {
    match scalar(f, key, path)? {
        None => Ok(None),
        Some(ScalarValue::Str(s)) => Ok(Some(s.to_string())),
        Some(_) => Err(schema_err(path, "is not a string")),
    }
}

fn text(f: &Fields, key: &str, path: &str) -> Result<String, SchemaError> {
    opt_text(f, key, path)?.ok_or_else(|| schema_err(path, "is missing"))
}

/// A time as a document stores every one after `captured_at`: an
/// Automerge timestamp (ms since the Unix epoch), about twenty bytes fewer
/// than RFC 3339 text on every note, status move and photo.
fn stamp(t: &DateTime<FixedOffset>) -> ScalarValue {
    ScalarValue::Timestamp(t.timestamp_millis())
}

/// A time after `captured_at`: a timestamp shown in `zone`, or RFC 3339
/// text with its own offset, as documents written before timestamps hold.
fn instant(f: &Fields, key: &str, path: &str, zone: FixedOffset) -> Result<DateTime<FixedOffset>, SchemaError> {
    match scalar(f, key, path)? {
        Some(ScalarValue::Timestamp(ms)) => DateTime::from_timestamp_millis(*ms)
            .map(|t| t.with_timezone(&zone))
            .ok_or_else(|| schema_err(path, format!("is {ms} ms, outside the times a date can hold"))),
        Some(ScalarValue::Str(_)) => time(f, key, path),
        Some(_) => Err(schema_err(path, "is not a time")),
        None => Err(schema_err(path, "is missing")),
    }
}

fn time(f: &Fields, key: &str, path: &str) -> Result<DateTime<FixedOffset>, SchemaError> {
    let s = text(f, key, path)?;
    DateTime::parse_from_rfc3339(&s)
        .map_err(|_| schema_err(path, format!("is `{s}`, not an RFC 3339 time with offset")))
}

fn opt_float(f: &Fields, key: &str, path: &str) -> Result<Option<f64>, SchemaError> {
    match scalar(f, key, path)? {
        None => Ok(None),
        Some(ScalarValue::F64(x)) if x.is_finite() => Ok(Some(*x)),
        Some(ScalarValue::Int(i)) => Ok(Some(*i as f64)),
        Some(ScalarValue::Uint(u)) => Ok(Some(*u as f64)),
        Some(_) => Err(schema_err(path, "is not a finite number")),
    }
}

fn check_range(v: Option<f64>, lo: f64, hi: f64, path: &str) -> Result<(), SchemaError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(schema_err(path, format!("is {x}, outside {lo}..{hi}"))),
        _ => Ok(()),
    }
}

fn uint(f: &Fields, key: &str, path: &str) -> Result<u64, SchemaError> {
    match scalar(f, key, path)? {
        None => Err(schema_err(path, "is missing")),
        Some(ScalarValue::Uint(u)) => Ok(*u),
        Some(ScalarValue::Int(i)) if *i >= 0 => Ok(*i as u64),
        Some(_) => Err(schema_err(path, "is not a non-negative integer")),
    }
}

fn small_uint(f: &Fields, key: &str, path: &str) -> Result<u32, SchemaError> {
    u32::try_from(uint(f, key, path)?).map_err(|_| schema_err(path, "is too large"))
}

fn object(
    d: &AutoCommit,
    obj: &ObjId,
    key: impl Into<automerge::Prop>,
    path: &str,
    kind: ObjType,
) -> Result<ObjId, SchemaError> {
    match d.get(obj, key).map_err(|e| schema_err(path, e.to_string()))? {
        Some((Value::Object(t), id)) if t == kind => Ok(id),
        Some(_) => Err(schema_err(path, format!("is not a {kind:?}").to_lowercase())),
        None => Err(schema_err(path, "is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn new_incident() -> NewIncident {
        NewIncident {
            id: IncidentId::new(1_763_600_000_000, [7; 10]),
            category: "manhole-cover".into(),
            description: "井盖缺了一角".into(),
            location: Location {
                lat: Some(41.1205),
                lon: Some(122.0712),
                accuracy_m: Some(8.0),
                address: Some("鹤乡路12号".into()),
            },
            grid: "HLT-CX-HX-02".into(),
            reporter: "w-li".into(),
            device: "dev-a".into(),
            captured_at: t("2026-11-20T09:15:30+08:00"),
            photos: vec![],
            case: None,
        }
    }

    #[test]
    fn later_times_are_stamps_and_old_text_times_still_read() {
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        let seen = t("2026-11-20T10:00:00.123+08:00");
        doc.add_note("w-li", "看过了", seen).unwrap();
        let d = doc.automerge();
        let notes = d.get(ROOT, "notes").unwrap().unwrap().1;
        let note = d.get(&notes, 0).unwrap().unwrap().1;
        assert_eq!(
            d.get(&note, "at").unwrap().unwrap().0,
            Value::Scalar(std::borrow::Cow::Owned(ScalarValue::Timestamp(seen.timestamp_millis())))
        );
        // A note as documents before stamps hold it, in another offset.
        d.put(&note, "at", "2026-11-20T02:00:00+00:00").unwrap();
        let read = doc.read().unwrap();
        assert_eq!(read.notes[0].at, t("2026-11-20T10:00:00+08:00"));
        // A stamp is shown in the offset of the capture time.
        assert_eq!(rfc3339(&read.status_history[0].at), "2026-11-20T09:15:30+08:00");
        let d = doc.automerge();
        d.put(&note, "at", 7_i64).unwrap();
        let err = doc.read().unwrap_err();
        assert_eq!(err.field, "notes[0].at");
    }

    #[test]
    fn create_save_load_read() {
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        let bytes = doc.save();
        let back = IncidentDoc::load(&bytes, ActorId::from([1u8; 16]))
            .unwrap()
            .read()
            .unwrap();
        assert_eq!(back.status, Status::Reported);
        assert_eq!(back.location.address.as_deref(), Some("鹤乡路12号"));
        assert_eq!(back.status_history.len(), 1);
        assert_eq!(back.captured_at, t("2026-11-20T09:15:30+08:00"));
    }

    #[test]
    fn invalid_transitions_are_refused_with_the_allowed_ones() {
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        let err = doc
            .set_status(Status::Closed, "w-li", t("2026-11-20T10:00:00+08:00"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`reported` to `closed`") && msg.contains("dispatched"),
            "{msg}"
        );
        doc.set_status(Status::Dispatched, "w-li", t("2026-11-20T10:00:00+08:00"))
            .unwrap();
        assert_eq!(doc.read().unwrap().status, Status::Dispatched);
    }

    #[test]
    fn concurrent_status_changes_pick_the_further_one_and_keep_both_in_history() {
        let mut a = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        let mut b = IncidentDoc::load(&a.save(), ActorId::from([2u8; 16])).unwrap();
        a.set_status(Status::Rejected, "center", t("2026-11-20T10:00:00+08:00"))
            .unwrap();
        b.set_status(Status::Resolved, "w-li", t("2026-11-20T10:01:00+08:00"))
            .unwrap();
        let mut ab = a.clone();
        ab.merge(&mut b.clone()).unwrap();
        let mut ba = b.clone();
        ba.merge(&mut a.clone()).unwrap();
        for merged in [ab.read().unwrap(), ba.read().unwrap()] {
            assert_eq!(merged.status, Status::Rejected);
            assert_eq!(merged.status_conflicts, vec![Status::Resolved]);
            let tos: Vec<_> = merged.status_history.iter().map(|h| h.to).collect();
            assert!(tos.contains(&Status::Rejected) && tos.contains(&Status::Resolved));
        }
        assert_eq!(ab.read().unwrap(), ba.read().unwrap());
    }

    #[test]
    fn a_wrongly_typed_field_is_named() {
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        doc.automerge().put(ROOT, "captured_at", 5_i64).unwrap();
        let err = doc.read().unwrap_err();
        assert_eq!(err.field, "captured_at");
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        doc.automerge().delete(ROOT, "grid").unwrap();
        assert_eq!(doc.read().unwrap_err().to_string(), "incident field `grid` is missing");
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        doc.automerge().put(ROOT, "status", "lost").unwrap();
        assert_eq!(doc.read().unwrap_err().field, "status");
        // Nested fields are named by their path.
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        let history = existing(doc.automerge(), "status_history").unwrap();
        let entry = object(doc.automerge(), &history, 0, "status_history[0]", ObjType::Map).unwrap();
        doc.automerge().delete(&entry, "to").unwrap();
        assert_eq!(doc.read().unwrap_err().field, "status_history[0].to");
        let mut doc = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        let location = object(doc.automerge(), &ROOT, "location", "location", ObjType::Map).unwrap();
        doc.automerge().put(&location, "lat", "north").unwrap();
        assert_eq!(doc.read().unwrap_err().field, "location.lat");
    }

    #[test]
    fn a_field_set_on_two_copies_reads_as_automerge_resolves_it() {
        let mut a = IncidentDoc::create(&new_incident(), ActorId::from([1u8; 16])).unwrap();
        let mut b = IncidentDoc::load(&a.save(), ActorId::from([2u8; 16])).unwrap();
        a.automerge().put(ROOT, "description", "from a").unwrap();
        b.automerge().put(ROOT, "description", "from b").unwrap();
        a.merge(&mut b).unwrap();
        let winner = match a.automerge().get(ROOT, "description").unwrap() {
            Some((Value::Scalar(s), _)) => s.as_str().unwrap().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(winner, "from b", "the higher actor wins in Automerge");
        assert_eq!(a.read().unwrap().description, winner);
    }

    #[test]
    fn ids_are_v7_and_parse_back() {
        let id = IncidentId::new(1_763_600_000_000, [9; 10]);
        assert_eq!(id.to_string().parse::<IncidentId>().unwrap(), id);
        assert!("6ba7b810-9dad-11d1-80b4-00c04fd430c8".parse::<IncidentId>().is_err());
    }
}

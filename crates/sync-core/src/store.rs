//! The device's incident log: one SQLite file and a blob folder in a data
//! directory.
//!
//! * WAL with `synchronous=FULL`: a committed transaction survives a power cut.
//! * Each incident row keeps the saved Automerge bytes (the truth) and columns
//!   projected from them for queries.
//! * `outbox` lists incidents with changes no server has acknowledged, with
//!   the heads it last acknowledged (empty: never synced).
//! * `blobs` lists every photo blob; a blob file is only published after the
//!   transaction naming it commits (see [`crate::blob`]).
//! * One process at a time: [`Store::open`] takes an exclusive lock on
//!   `field.lock`, which also makes blob recovery at open safe.

use std::fs::File;
use std::path::{Path, PathBuf};

use automerge::{ActorId, ChangeHash};
use chrono::{DateTime, FixedOffset, NaiveDate};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::Role;
use crate::blob::{BlobError, BlobHash, BlobStore};
use crate::case::CaseNumber;
use crate::files;
use crate::incident::{DocError, Incident, IncidentDoc, IncidentId, PhotoRef, Status, rfc3339};
#[cfg(feature = "photo")]
use crate::photo::ProcessedPhoto;
use crate::rules;
use crate::signing::DeviceKey;
use crate::sqlite::{Migration, MigrationError};
use crate::taxonomy::{GridMap, Taxonomy, TaxonomyError};

pub const DB_FILE: &str = "field.sqlite3";
const LOCK_FILE: &str = "field.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the device database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("this data directory is not set up yet; run `field init --worker ID --grid CELL` first")]
    NotInitialised,
    #[error("this data directory belongs to worker `{existing}`; it cannot be set up again for `{requested}`")]
    OtherWorker { existing: String, requested: String },
    #[error("the database was written by a newer version (schema {found}, this build knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("no incident matches `{0}`")]
    NotFound(String),
    #[error("`{prefix}` matches more than one incident ({examples}); give more of the id")]
    Ambiguous { prefix: String, examples: String },
    #[error("`{0}` is not an incident id or a start or end of one (hex digits and dashes, at least 4)")]
    BadPrefix(String),
    #[error("incident {id} is stored but cannot be read: {source}")]
    Corrupt {
        id: String,
        #[source]
        source: Box<DocError>,
    },
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    #[error("the stored {what} are unreadable: {reason}")]
    Meta { what: &'static str, reason: String },
    /// An edit the server would refuse, so the device does not keep it.
    #[error("{}", .0.detail)]
    Refused(#[from] rules::RuleBroken),
}

/// Who this device belongs to, set by `field init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub worker: String,
    pub name: Option<String>,
    /// A UUID made at init; its bytes are the device's Automerge actor id.
    pub device: Uuid,
    pub grids: Vec<String>,
    /// The server's number of this device (at enrolment), which its case
    /// numbers carry; `None` before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    /// The role the server granted at enrolment; `None` before it. Edits
    /// are checked against the role table once it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// What the worker calls this device (`field init --label`), sent at enrolment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Profile {
    pub fn actor(&self) -> ActorId {
        ActorId::from(self.device.as_bytes())
    }
}

/// A photo whose blobs are staged, ready to be committed with an incident.
#[derive(Debug, Clone)]
pub struct PreparedPhoto {
    pub photo: PhotoRef,
    blobs: Vec<BlobRow>,
}

#[derive(Debug, Clone)]
struct BlobRow {
    hash: BlobHash,
    size: u64,
    kind: &'static str,
    mime: &'static str,
    width: u32,
    height: u32,
}

/// Filters for [`Store::list`]; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub category: Option<String>,
    /// Capture date on the device's own calendar (the offset it recorded).
    pub date: Option<NaiveDate>,
}

/// One line of `field list`, read from the projected columns.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentRow {
    pub id: IncidentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseNumber>,
    pub category: String,
    pub status: Status,
    pub grid: String,
    pub captured_at: DateTime<FixedOffset>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub description: String,
    /// The worker who reported it.
    pub reporter: String,
    pub photos: u32,
    pub notes: u32,
    /// Whether changes wait for a server's acknowledgement.
    pub unsynced: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusSummary {
    pub total: u64,
    pub by_status: Vec<(Status, u64)>,
    pub unsynced_incidents: u64,
    pub photo_blobs: u64,
    pub unsynced_blobs: u64,
}

pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) blobs: BlobStore,
    /// The device's signing key, once `field init` made one.
    pub(crate) key: Option<DeviceKey>,
    root: PathBuf,
    _lock: File,
}

const MIGRATIONS: &[Migration] = &[
    // 1: the first layout.
    Migration::sql(
        "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    CREATE TABLE incidents (
        id            TEXT PRIMARY KEY,
        doc           BLOB NOT NULL,
        category      TEXT NOT NULL,
        status        TEXT NOT NULL,
        grid          TEXT NOT NULL,
        captured_at   TEXT NOT NULL,
        captured_date TEXT NOT NULL,
        captured_ms   INTEGER NOT NULL,
        lat           REAL,
        lon           REAL,
        description   TEXT NOT NULL,
        photos        INTEGER NOT NULL,
        notes         INTEGER NOT NULL,
        updated_at    TEXT NOT NULL,
        heads         BLOB NOT NULL
    ) STRICT;
    CREATE INDEX incidents_status ON incidents(status);
    CREATE INDEX incidents_category ON incidents(category);
    CREATE INDEX incidents_date ON incidents(captured_date);
    CREATE TABLE outbox (
        incident_id TEXT PRIMARY KEY REFERENCES incidents(id),
        acked_heads BLOB NOT NULL,
        queued_at   TEXT NOT NULL,
        held_code   TEXT,
        held_reason TEXT
    ) STRICT;
    CREATE TABLE blobs (
        hash        TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('original', 'display', 'thumb')),
        mime        TEXT NOT NULL,
        width       INTEGER NOT NULL,
        height      INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        uploaded_at TEXT
    ) STRICT;
    -- Photos of other workers' incidents that this device should fetch.
    CREATE TABLE wanted (
        hash        TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        incident_id TEXT NOT NULL
    ) STRICT;
    ",
    ),
    Migration {
        sql: "
    -- The device that created each incident, for the manifest's own digest;
    -- filled from the documents by `backfill_device`.
    ALTER TABLE incidents ADD COLUMN device TEXT NOT NULL DEFAULT '';
    CREATE INDEX incidents_device ON incidents(device);
    ",
        backfill: Some(backfill_device),
    },
    // 3: pulled changes that cannot be applied yet, kept until they can.
    Migration::sql(
        "
    CREATE TABLE parked (
        hash        BLOB PRIMARY KEY,
        incident_id TEXT NOT NULL,
        bytes       BLOB NOT NULL
    ) STRICT;
    CREATE INDEX parked_incident ON parked(incident_id);
    -- Each change's author signature (docs/protocol.md, signed changes):
    -- made here for this device's own changes, kept from the feed for
    -- others', and pushed with them.
    CREATE TABLE change_sigs (
        hash BLOB PRIMARY KEY,
        sig  BLOB NOT NULL
    ) STRICT;
    ",
    ),
    Migration {
        sql: "
    -- Who reported each incident, for `field list`; filled from the
    -- documents by `backfill_reporter`.
    ALTER TABLE incidents ADD COLUMN reporter TEXT NOT NULL DEFAULT '';
    ",
        backfill: Some(backfill_reporter),
    },
    Migration::sql(
        "
    -- Case numbers (case.rs): projected for lookups; the counter of each
    -- day's cases on this device.
    ALTER TABLE incidents ADD COLUMN case_no TEXT;
    CREATE INDEX incidents_case_no ON incidents(case_no);
    CREATE TABLE case_counters (day TEXT PRIMARY KEY, n INTEGER NOT NULL) STRICT;
    ",
    ),
];

impl Store {
    /// Opens (creating if needed) the store in `dir`, waiting for any other
    /// process using it to finish.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        files::private_dir(dir).map_err(|source| StoreError::Io {
            action: "create",
            path: dir.to_owned(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let db_path = dir.join(DB_FILE);
        for path in [&lock_path, &db_path] {
            files::private_file(path).map_err(|source| StoreError::Io {
                action: "create",
                path: path.clone(),
                source,
            })?;
        }
        let lock = File::options()
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                action: "open",
                path: lock_path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| StoreError::Io {
            action: "lock",
            path: lock_path,
            source,
        })?;
        let mut conn = Connection::open(&db_path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The last process to close checkpoints and removes the WAL. Keeping
        // it (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE) saves fsyncs at exit but
        // makes every later open replay the grown WAL: measured p50 of
        // `field report` 4.3 ms with the checkpoint, 11.6 ms without.
        migrate(&mut conn)?;
        let blobs = BlobStore::open(dir)?;
        let key = stored_key(&conn)?;
        let store = Store {
            conn,
            blobs,
            key,
            root: dir.to_owned(),
            _lock: lock,
        };
        // Only blobs still in staging need asking about (usually none).
        let mut committed = std::collections::HashSet::new();
        for hash in store.blobs.staged()? {
            if store.has_blob_row(&hash)? {
                committed.insert(hash);
            }
        }
        let (published, discarded) = store.blobs.recover(|h| committed.contains(h))?;
        if published + discarded > 0 {
            tracing::info!(published, discarded, "finished blob writes a crash interrupted");
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The raw connection, for tests that inspect or damage the database.
    #[cfg(feature = "test-support")]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sets the device up for a worker. Running it again for the same worker
    /// updates the name, grid cells and lists and keeps the device id.
    pub fn init(
        &mut self,
        worker: &str,
        name: Option<&str>,
        grids: &[String],
        new_device: Uuid,
        taxonomy_json: &str,
        grids_json: &str,
    ) -> Result<Profile, StoreError> {
        Taxonomy::from_json(taxonomy_json)?;
        let map = GridMap::from_json(grids_json)?;
        for g in grids {
            map.require_cell(g)?;
        }
        let (device, role, label, number) = match self.profile() {
            Ok(p) if p.worker != worker => {
                return Err(StoreError::OtherWorker {
                    existing: p.worker,
                    requested: worker.to_owned(),
                });
            }
            Ok(p) => (p.device, p.role, p.label, p.number),
            Err(StoreError::NotInitialised) => (new_device, None, None, None),
            Err(e) => return Err(e),
        };
        let profile = Profile {
            worker: worker.to_owned(),
            name: name.map(str::to_owned),
            device,
            grids: grids.to_vec(),
            role,
            label,
            number,
        };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put = tx.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?;
            put.execute(params![
                "profile",
                serde_json::to_string(&profile).expect("profile serialises")
            ])?;
            put.execute(params!["taxonomy", taxonomy_json])?;
            put.execute(params!["grids", grids_json])?;
        }
        tx.commit()?;
        Ok(profile)
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// The device's signing key: the stored one, or one made from `seed`
    /// and stored when there is none yet. A new key also signs every change
    /// this device made before it had one (a store from before keys), in
    /// the same transaction; every later edit is signed as it is saved.
    pub fn ensure_key(&mut self, seed: [u8; 32]) -> Result<DeviceKey, StoreError> {
        if let Some(key) = &self.key {
            return Ok(key.clone());
        }
        let key = DeviceKey::from_seed(seed);
        let actor = self.profile()?.actor();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let docs: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx.prepare("SELECT id, doc FROM incidents")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (id, bytes) in docs {
            match IncidentDoc::load(&bytes, actor.clone()) {
                Ok(mut doc) => sign_new_changes(&tx, &mut doc, &[], &key)?,
                Err(e) => tracing::warn!(incident = %id, error = %e, "a stored incident does not read; not signed"),
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![SIGNING_KEY, key.seed_hex()],
        )?;
        tx.commit()?;
        self.key = Some(key.clone());
        Ok(key)
    }

    /// Keeps the role the server granted at enrolment.
    pub fn set_role(&mut self, role: Role) -> Result<(), StoreError> {
        self.change_profile(|p| p.role = Some(role))
    }

    /// Changes the stored profile in place (the label, or what the
    /// server says of the account); the device id never changes.
    pub fn change_profile(&mut self, change: impl FnOnce(&mut Profile)) -> Result<(), StoreError> {
        let mut profile = self.profile()?;
        let device = profile.device;
        change(&mut profile);
        profile.device = device;
        self.set_meta("profile", &serde_json::to_string(&profile).expect("profile serialises"))
    }

    pub fn profile(&self) -> Result<Profile, StoreError> {
        let json = self.meta("profile")?.ok_or(StoreError::NotInitialised)?;
        serde_json::from_str(&json).map_err(|e| StoreError::Meta {
            what: "device profile",
            reason: e.to_string(),
        })
    }

    pub fn taxonomy(&self) -> Result<Taxonomy, StoreError> {
        let json = self.meta("taxonomy")?.ok_or(StoreError::NotInitialised)?;
        Ok(Taxonomy::from_json(&json)?)
    }

    pub fn grid_map(&self) -> Result<GridMap, StoreError> {
        let json = self.meta("grids")?.ok_or(StoreError::NotInitialised)?;
        Ok(GridMap::from_json(&json)?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    fn has_blob_row(&self, hash: &BlobHash) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM blobs WHERE hash = ?1", [hash.to_hex()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Stages the original, display copy and thumbnail of a processed photo.
    /// Nothing is visible until the incident that names them is committed.
    #[cfg(feature = "photo")]
    pub fn prepare_photo(
        &self,
        original: &[u8],
        processed: &ProcessedPhoto,
        by: &str,
        now: DateTime<FixedOffset>,
    ) -> Result<PreparedPhoto, StoreError> {
        let mime = processed.format.mime();
        let o = self.blobs.stage(original)?;
        let d = self.blobs.stage(&processed.display.bytes)?;
        let t = self.blobs.stage(&processed.thumb.bytes)?;
        let blobs = vec![
            BlobRow {
                hash: o,
                size: original.len() as u64,
                kind: "original",
                mime,
                width: processed.width,
                height: processed.height,
            },
            BlobRow {
                hash: d,
                size: processed.display.bytes.len() as u64,
                kind: "display",
                mime: "image/jpeg",
                width: processed.display.width,
                height: processed.display.height,
            },
            BlobRow {
                hash: t,
                size: processed.thumb.bytes.len() as u64,
                kind: "thumb",
                mime: "image/jpeg",
                width: processed.thumb.width,
                height: processed.thumb.height,
            },
        ];
        Ok(PreparedPhoto {
            photo: PhotoRef {
                original: o,
                display: d,
                thumb: t,
                size: original.len() as u64,
                mime: mime.to_owned(),
                width: processed.width,
                height: processed.height,
                taken_at: processed.exif.taken_at.clone(),
                gps: processed.exif.gps,
                added_at: now,
                added_by: by.to_owned(),
            },
            blobs,
        })
    }

    /// Stores a document (new or edited) and the photos it gained, in one
    /// durable transaction, then publishes the photos' blobs.
    pub fn save(
        &mut self,
        doc: &mut IncidentDoc,
        photos: &[PreparedPhoto],
        now: DateTime<FixedOffset>,
    ) -> Result<Incident, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let incident = save_one(&tx, doc, photos, self.key.as_ref(), now)?;
        tx.commit()?;
        for b in photos.iter().flat_map(|p| &p.blobs) {
            self.blobs.publish(&b.hash)?;
        }
        Ok(incident)
    }

    /// Stores many documents without photos in one durable transaction,
    /// each exactly as [`Store::save`] stores it: row, projected columns
    /// and outbox entry. Either every document is stored or, when one
    /// fails, none is. For loading many incidents at once; a report a
    /// worker makes goes through `save`, one commit each.
    pub fn save_many(
        &mut self,
        docs: &mut [IncidentDoc],
        now: DateTime<FixedOffset>,
    ) -> Result<Vec<Incident>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let incidents = docs
            .iter_mut()
            .map(|doc| save_one(&tx, doc, &[], self.key.as_ref(), now))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(incidents)
    }

    /// Turns what a user typed into an id: a whole id, or a unique start
    /// or end of one (at least 4 characters, any case).
    pub fn resolve(&self, given: &str) -> Result<IncidentId, StoreError> {
        if let Some(id) = self.by_case(given)? {
            return Ok(id);
        }
        let given = given.trim().to_ascii_lowercase();
        if given.len() < 4 || !given.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(StoreError::BadPrefix(given));
        }
        // A unique start or end: ids made minutes apart share their first
        // characters, so the end is often the shorter thing to type.
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM incidents WHERE id >= ?1 AND id < ?1 || 'g'
             UNION SELECT id FROM incidents WHERE substr(id, -length(?1)) = ?1
             ORDER BY id LIMIT 3",
        )?;
        let ids: Vec<String> = stmt.query_map([&given], |r| r.get(0))?.collect::<Result<_, _>>()?;
        match ids.as_slice() {
            [] => Err(StoreError::NotFound(given)),
            [one] => one.parse().map_err(|_| StoreError::NotFound(given)),
            many => Err(StoreError::Ambiguous {
                prefix: given,
                examples: many.join(", "),
            }),
        }
    }

    /// The incident whose case number is `given`, with or without its
    /// community (`HX-261203-7-4`, `261203-7-4`), in any case.
    fn by_case(&self, given: &str) -> Result<Option<IncidentId>, StoreError> {
        let given = given.trim().to_ascii_uppercase();
        if given.split('-').count() < 3 {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM incidents WHERE case_no = ?1 OR substr(case_no, -length(?1) - 1) = '-' || ?1
             ORDER BY id LIMIT 3",
        )?;
        let ids: Vec<String> = stmt.query_map([&given], |r| r.get(0))?.collect::<Result<_, _>>()?;
        match ids.as_slice() {
            [] => Ok(None),
            [one] => Ok(one.parse().ok()),
            many => Err(StoreError::Ambiguous {
                prefix: given,
                examples: many.join(", "),
            }),
        }
    }

    /// The next case number of this device for `day` in `community`, or
    /// `None` before the server has numbered the device. Each number is
    /// taken once, in its own transaction: a report that then fails leaves
    /// a gap, never a number used twice.
    pub fn take_case_number(&mut self, community: &str, day: NaiveDate) -> Result<Option<CaseNumber>, StoreError> {
        let Some(device) = self.profile()?.number else {
            return Ok(None);
        };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n: i64 = tx.query_row(
            "INSERT INTO case_counters (day, n) VALUES (?1, 1)
             ON CONFLICT(day) DO UPDATE SET n = n + 1 RETURNING n",
            [day.to_string()],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(u32::try_from(n)
            .ok()
            .map(|n| CaseNumber::new(community, day, device, n)))
    }

    /// The case number for a new incident in `grid` of `map` (the
    /// store's grid map, which the caller has parsed already), logged at
    /// `now`: the community's day, this device's number and the day's next count.
    pub fn case_for(
        &mut self,
        map: &GridMap,
        grid: &str,
        now: DateTime<FixedOffset>,
    ) -> Result<Option<CaseNumber>, StoreError> {
        let Some(cell) = map.cell(grid) else {
            return Ok(None);
        };
        let tz = crate::calendar::zone(&cell.community.timezone).unwrap_or(crate::calendar::DEFAULT_ZONE);
        let day = now.with_timezone(&tz).date_naive();
        self.take_case_number(&cell.community.id, day)
    }

    /// Gives every incident this device made before the server numbered
    /// it its case number (by the day it was logged); how many it numbered.
    pub fn number_own_cases(&mut self, now: DateTime<FixedOffset>) -> Result<usize, StoreError> {
        let profile = self.profile()?;
        if profile.number.is_none() {
            return Ok(0);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM incidents WHERE case_no IS NULL AND device = ?1 ORDER BY id")?;
        let ids: Vec<String> = stmt
            .query_map([profile.device.to_string()], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        if ids.is_empty() {
            return Ok(0);
        }
        let map = self.grid_map()?;
        let mut numbered = 0;
        for id in ids.iter().filter_map(|i| i.parse::<IncidentId>().ok()) {
            let mut doc = self.load(&id, profile.actor())?;
            let incident = doc.read().map_err(|e| StoreError::Corrupt {
                id: id.to_string(),
                source: Box::new(e.into()),
            })?;
            let logged = id.logged_at().unwrap_or(now);
            let Some(case) = self.case_for(&map, &incident.grid, logged)? else {
                continue;
            };
            doc.set_case(&case).map_err(|e| StoreError::Corrupt {
                id: id.to_string(),
                source: Box::new(e),
            })?;
            self.save(&mut doc, &[], now)?;
            numbered += 1;
        }
        Ok(numbered)
    }

    /// Loads an incident's document, validated.
    pub fn load(&self, id: &IncidentId, actor: ActorId) -> Result<IncidentDoc, StoreError> {
        let bytes: Vec<u8> = self
            .conn
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id.to_string()], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        IncidentDoc::load(&bytes, actor).map_err(|source| StoreError::Corrupt {
            id: id.to_string(),
            source: Box::new(source),
        })
    }

    pub fn list(&self, filter: &ListFilter) -> Result<Vec<IncidentRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.id, i.category, i.status, i.grid, i.captured_at, i.lat, i.lon, i.description,
                    i.photos, i.notes, o.incident_id IS NOT NULL, i.reporter, i.case_no
             FROM incidents i LEFT JOIN outbox o ON o.incident_id = i.id
             WHERE (?1 IS NULL OR i.status = ?1)
               AND (?2 IS NULL OR i.category = ?2)
               AND (?3 IS NULL OR i.captured_date = ?3)
             ORDER BY i.captured_ms, i.id",
        )?;
        let params = params![
            filter.status.map(|s| s.as_str()),
            filter.category,
            filter.date.map(|d| d.to_string())
        ];
        let rows = stmt.query_map(params, |r| {
            Ok(ListedRow {
                id: r.get(0)?,
                category: r.get(1)?,
                status: r.get(2)?,
                grid: r.get(3)?,
                captured_at: r.get(4)?,
                lat: r.get(5)?,
                lon: r.get(6)?,
                description: r.get(7)?,
                photos: r.get(8)?,
                notes: r.get(9)?,
                unsynced: r.get(10)?,
                reporter: r.get(11)?,
                case: r.get(12)?,
            })
        })?;
        rows.map(|row| row?.typed()).collect()
    }

    /// Every incident matching `filter`, read in full from its document.
    pub fn incidents(&self, filter: &ListFilter, actor: &ActorId) -> Result<Vec<Incident>, StoreError> {
        self.list(filter)?
            .iter()
            .map(|row| {
                self.load(&row.id, actor.clone())?
                    .read()
                    .map_err(|e| StoreError::Corrupt {
                        id: row.id.to_string(),
                        source: Box::new(e.into()),
                    })
            })
            .collect()
    }

    pub fn summary(&self) -> Result<StatusSummary, StoreError> {
        let mut by_status = Vec::new();
        let mut total = 0;
        for status in Status::ALL {
            let n: i64 = self.conn.query_row(
                "SELECT count(*) FROM incidents WHERE status = ?1",
                [status.as_str()],
                |r| r.get(0),
            )?;
            let n = n as u64;
            total += n;
            if n > 0 {
                by_status.push((status, n));
            }
        }
        let count = |sql: &str| -> Result<u64, StoreError> {
            let n: i64 = self.conn.query_row(sql, [], |r| r.get(0))?;
            Ok(n as u64)
        };
        Ok(StatusSummary {
            total,
            by_status,
            unsynced_incidents: count("SELECT count(*) FROM outbox")?,
            photo_blobs: count("SELECT count(*) FROM blobs WHERE kind = 'original'")?,
            unsynced_blobs: count("SELECT count(*) FROM blobs WHERE uploaded_at IS NULL")?,
        })
    }
}

/// One document's part of a save, inside the caller's transaction: the
/// validated document with its projected columns, its outbox entry, and
/// the blob rows of its new photos.
/// Signs this device's changes made since `stored` heads.
fn sign_new_changes(
    tx: &rusqlite::Transaction<'_>,
    doc: &mut IncidentDoc,
    stored: &[ChangeHash],
    key: &DeviceKey,
) -> Result<(), StoreError> {
    let mut put = tx.prepare_cached("INSERT OR IGNORE INTO change_sigs (hash, sig) VALUES (?1, ?2)")?;
    for hash in doc.own_changes_since(stored) {
        put.execute(params![hash.0.to_vec(), key.sign(&hash).to_vec()])?;
    }
    Ok(())
}

/// The meta key of the device's signing key (hex of its 32-byte seed).
const SIGNING_KEY: &str = "signing_key";

fn stored_key(conn: &Connection) -> Result<Option<DeviceKey>, StoreError> {
    let hex: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [SIGNING_KEY], |r| r.get(0))
        .optional()?;
    let Some(hex) = hex else { return Ok(None) };
    DeviceKey::from_seed_hex(&hex)
        .map(Some)
        .ok_or_else(|| StoreError::Meta {
            what: "signing key",
            reason: "it is not 64 hex digits".into(),
        })
}

fn save_one(
    tx: &rusqlite::Transaction<'_>,
    doc: &mut IncidentDoc,
    photos: &[PreparedPhoto],
    key: Option<&DeviceKey>,
    now: DateTime<FixedOffset>,
) -> Result<Incident, StoreError> {
    let incident = doc.read().map_err(|e| StoreError::Corrupt {
        id: "(new)".into(),
        source: Box::new(e.into()),
    })?;
    rules::check_limits(&incident)?;
    let bytes = doc.save();
    if bytes.len() > rules::limits::MAX_DOC {
        return Err(StoreError::Refused(rules::RuleBroken {
            rule: rules::Rule::Limit,
            detail: format!(
                "the incident would be {} bytes; the limit is {}",
                bytes.len(),
                rules::limits::MAX_DOC
            ),
        }));
    }
    let heads = doc.heads();
    // An incident without an outbox row holds only changes the server
    // has (acknowledged or pulled), so its stored heads are the
    // acknowledged ones; a new incident has none.
    let known: Vec<u8> = tx
        .prepare_cached("SELECT heads FROM incidents WHERE id = ?1")?
        .query_row([incident.id.to_string()], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    write_incident(tx, &incident, &bytes, &heads, now)?;
    if let Some(key) = key {
        sign_new_changes(tx, doc, &heads_from_bytes(&known), key)?;
    }
    tx.prepare_cached(
        "INSERT INTO outbox (incident_id, acked_heads, queued_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(incident_id) DO UPDATE SET held_code = NULL, held_reason = NULL",
    )?
    .execute(params![incident.id.to_string(), known, rfc3339(&now)])?;
    let mut put = tx.prepare_cached(
        "INSERT OR IGNORE INTO blobs (hash, size, kind, mime, width, height, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for b in photos.iter().flat_map(|p| &p.blobs) {
        put.execute(params![
            b.hash.to_hex(),
            b.size as i64,
            b.kind,
            b.mime,
            b.width,
            b.height,
            rfc3339(&now)
        ])?;
    }
    Ok(incident)
}

/// Writes a document and the columns projected from it.
pub(crate) fn write_incident(
    tx: &rusqlite::Transaction<'_>,
    incident: &Incident,
    bytes: &[u8],
    heads: &[ChangeHash],
    now: DateTime<FixedOffset>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO incidents (id, doc, category, status, grid, captured_at, captured_date, captured_ms,
                                lat, lon, description, photos, notes, updated_at, heads, device, reporter, case_no)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, category = excluded.category,
            status = excluded.status, grid = excluded.grid, captured_at = excluded.captured_at,
            captured_date = excluded.captured_date, captured_ms = excluded.captured_ms,
            lat = excluded.lat, lon = excluded.lon, description = excluded.description,
            photos = excluded.photos, notes = excluded.notes, updated_at = excluded.updated_at,
            heads = excluded.heads, device = excluded.device, reporter = excluded.reporter,
            case_no = excluded.case_no",
    )?
    .execute(params![
        incident.id.to_string(),
        bytes,
        incident.category,
        incident.status.as_str(),
        incident.grid,
        rfc3339(&incident.captured_at),
        incident.captured_at.date_naive().to_string(),
        incident.captured_at.timestamp_millis(),
        incident.location.lat,
        incident.location.lon,
        incident.description,
        incident.photos.len() as i64,
        incident.notes.len() as i64,
        rfc3339(&now),
        heads_to_bytes(heads),
        incident.device,
        incident.reporter,
        incident.case.as_ref().map(ToString::to_string),
    ])?;
    Ok(())
}

/// A row of `Store::list` as SQLite holds it.
struct ListedRow {
    id: String,
    category: String,
    status: String,
    grid: String,
    captured_at: String,
    lat: Option<f64>,
    lon: Option<f64>,
    description: String,
    photos: u32,
    notes: u32,
    unsynced: bool,
    reporter: String,
    case: Option<String>,
}

impl ListedRow {
    fn typed(self) -> Result<IncidentRow, StoreError> {
        let bad = |what: &str| StoreError::Meta {
            what: "incident columns",
            reason: format!("{what} of {} is unreadable", self.id),
        };
        Ok(IncidentRow {
            id: self.id.parse().map_err(|_| bad("the id"))?,
            case: self
                .case
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|_| bad("the case number"))?,
            status: self.status.parse().map_err(|_| bad("the status"))?,
            captured_at: DateTime::parse_from_rfc3339(&self.captured_at).map_err(|_| bad("the capture time"))?,
            category: self.category,
            grid: self.grid,
            lat: self.lat,
            lon: self.lon,
            description: self.description,
            reporter: self.reporter,
            photos: self.photos,
            notes: self.notes,
            unsynced: self.unsynced,
        })
    }
}

/// Fills the `device` column of a store made before it existed.
fn backfill_device(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    backfill_column(tx, "UPDATE incidents SET device = ?2 WHERE id = ?1", |i| i.device)
}

fn backfill_reporter(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    backfill_column(tx, "UPDATE incidents SET reporter = ?2 WHERE id = ?1", |i| i.reporter)
}

/// Fills a new projected column from every stored document with `update`.
fn backfill_column(
    tx: &rusqlite::Transaction<'_>,
    update: &str,
    value: fn(Incident) -> String,
) -> rusqlite::Result<()> {
    let rows: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx.prepare("SELECT id, doc FROM incidents")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (id, doc) in rows {
        // Every stored document passed validation when it was written.
        let v = IncidentDoc::read_saved(&doc).map(value).unwrap_or_default();
        tx.execute(update, params![id, v])?;
    }
    Ok(())
}

/// Heads as one blob: sorted 32-byte hashes, back to back.
pub(crate) fn heads_to_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

pub(crate) fn heads_from_bytes(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .map(|c| ChangeHash(c.try_into().expect("chunks are 32 bytes")))
        .collect()
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    crate::sqlite::migrate(&tx, MIGRATIONS).map_err(|e| match e {
        MigrationError::TooNew { found, known } => StoreError::TooNew { found, known },
        MigrationError::Sqlite(e) => StoreError::Sqlite(e),
    })?;
    tx.commit()?;
    Ok(())
}

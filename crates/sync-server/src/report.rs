//! The community center's daily reconciliation: one model, [`DailyReport`],
//! built from storage by [`daily_report`], and written out as a table, JSON,
//! CSV (here) or HTML (`dashboard.rs`). The CLI (`sync-server reconcile`),
//! `GET /v1/reports/daily` and the `/center` dashboard all start from it.
//!
//! Exact definitions of every figure are in `docs/reconciliation.md`.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use geo::{Distance, Haversine, Point};
use serde::Serialize;
use sync_core::{GridMap, IncidentDoc, Status, Taxonomy};

use crate::api::{self, ApiError, App};
use crate::storage::{Device, IncidentFilter, Role, Storage, StorageError, StoredIncident, Worker};

/// Version of the report's JSON shape.
pub const SCHEMA: u32 = 1;
/// A device clock further off than this is shown.
pub const CLOCK_OFFSET_LIMIT_MS: i64 = 5 * 60 * 1000;
/// A device whose last sync is older than this is flagged.
pub const NO_SYNC_HOURS: i64 = 24;
/// An incident reported, dispatched or in progress for longer is listed.
pub const OPEN_DAYS: i64 = 3;
/// A photo whose EXIF position is further than this from the incident.
pub const PHOTO_DISTANCE_M: f64 = 200.0;
/// Capture times may run ahead of the server's receipt by this much (device
/// clocks drift; offsets up to [`CLOCK_OFFSET_LIMIT_MS`] are not flagged).
pub const FUTURE_TOLERANCE_S: i64 = 5 * 60;
/// Likely duplicates: same category, closer than this, ...
pub const DUPLICATE_DISTANCE_M: f64 = 30.0;
/// ... and captured within this many hours, by different workers.
pub const DUPLICATE_HOURS: i64 = 24;
/// The zone of a community whose grid file names none that parses.
pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown community `{given}`; known communities are: {known}")]
    UnknownCommunity { given: String, known: String },
    #[error("say which community with --community (or community=); the data has workers in: {candidates}")]
    CommunityNeeded { candidates: String },
    #[error("no community has grid workers yet; add workers with `sync-server worker add`")]
    NoCommunity,
    #[error("community `{community}` names time zone `{zone}`, which is not an IANA zone such as Asia/Shanghai")]
    BadTimezone { community: String, zone: String },
    #[error("incident {id} as stored on the server cannot be read: {reason}")]
    BadIncident { id: String, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The daily reconciliation of one community.
#[derive(Debug, Clone, Serialize)]
pub struct DailyReport {
    pub schema: u32,
    pub community: CommunityInfo,
    pub date: NaiveDate,
    /// The day in the community's zone: `[day_start, day_end)`.
    pub day_start: String,
    pub day_end: String,
    /// Server clock when the report was made (UTC).
    pub generated_at: String,
    pub thresholds: Thresholds,
    pub workers: Vec<WorkerRow>,
    /// The day's incidents: captured or received that day.
    pub incidents: Vec<IncidentLine>,
    pub totals: Totals,
    pub open_over_3_days: Vec<OpenIncident>,
    pub anomalies: Vec<Anomaly>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommunityInfo {
    pub id: String,
    pub name_zh: String,
    pub name_en: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub clock_offset_ms: i64,
    pub no_sync_hours: i64,
    pub open_days: i64,
    pub photo_distance_m: f64,
    pub future_tolerance_s: i64,
    pub duplicate_distance_m: f64,
    pub duplicate_hours: i64,
}

/// Something the center should look at, shown beside a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The device's last manifest differs from what the server holds for it.
    NotInStep,
    /// Some of the day's incidents lack photos on the server.
    Incomplete,
    /// The last sync is older than 24 hours.
    NoSync24h,
    /// No device of the worker has ever synced.
    NeverSynced,
    /// A device clock is more than 5 minutes off.
    ClockOffset,
    /// Some of the worker's incidents have anomalies.
    Anomalies,
}

impl Flag {
    pub fn label(self) -> &'static str {
        match self {
            Flag::NotInStep => "not in step 未同步完",
            Flag::Incomplete => "incomplete 缺照片",
            Flag::NoSync24h => "no sync 24 h 超24小时未同步",
            Flag::NeverSynced => "never synced 从未同步",
            Flag::ClockOffset => "clock offset 时钟偏差",
            Flag::Anomalies => "anomalies 异常",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::NotInStep => "not_in_step",
            Flag::Incomplete => "incomplete",
            Flag::NoSync24h => "no_sync_24h",
            Flag::NeverSynced => "never_synced",
            Flag::ClockOffset => "clock_offset",
            Flag::Anomalies => "anomalies",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub name: String,
    pub grids: Vec<String>,
    /// Incidents captured that day by the device clock, in the community's zone.
    pub captured: u64,
    /// Incidents whose first change reached the server that day.
    pub received: u64,
    /// Photos of the worker's incidents of the day.
    pub photos_referenced: u64,
    /// Of those, photos whose original, display copy and thumbnail are all verified on the server.
    pub photos_verified: u64,
    pub incomplete: Vec<Incomplete>,
    /// Latest sync of any of the worker's devices.
    pub last_sync_at: Option<String>,
    /// Every device in step; `None` when no device ever synced.
    pub in_step: Option<bool>,
    /// Records and photo files the devices still hold unsynced, by their last manifests.
    pub pending_docs: u64,
    pub pending_photos: u64,
    pub no_sync_24h: bool,
    /// The largest device clock offset (device − server), only when over 5 minutes.
    pub clock_offset_ms: Option<i64>,
    pub anomalies: u64,
    pub devices: Vec<DeviceRow>,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    pub id: String,
    pub last_sync_at: Option<String>,
    pub in_step: Option<bool>,
    pub pending_docs: u64,
    pub pending_photos: u64,
    pub clock_offset_ms: Option<i64>,
}

/// An incident of the day some of whose photos the server lacks.
#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    pub incident: String,
    pub missing_photos: u64,
    pub photos: Vec<MissingPhoto>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingPhoto {
    /// The original's hash, which names the photo in the incident.
    pub photo: String,
    /// Which files are not verified on the server: original, display, thumb.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentLine {
    pub id: String,
    pub reporter: String,
    pub category: String,
    pub category_zh: String,
    pub category_en: String,
    pub status: String,
    pub grid: String,
    pub captured_at: String,
    pub received_at: String,
    pub captured_today: bool,
    pub received_today: bool,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub description: String,
    pub photos: Vec<PhotoLine>,
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhotoLine {
    pub original: String,
    pub display: String,
    pub thumb: String,
    pub verified: bool,
    /// Whether the thumbnail itself is on the server (it can be shown).
    pub thumb_verified: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub incidents: u64,
    pub by_category: Vec<CategoryTotal>,
    pub by_status: Vec<StatusTotal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryTotal {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusTotal {
    pub status: String,
    pub name_zh: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenIncident {
    pub id: String,
    pub reporter: String,
    pub category: String,
    pub status: String,
    pub captured_at: String,
    /// Whole days from capture to the report's cut-off.
    pub days_open: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// A photo's EXIF position is more than 200 m from the incident's.
    PhotoFar {
        incident: String,
        reporter: String,
        photo: String,
        distance_m: f64,
        incident_lat: f64,
        incident_lon: f64,
        photo_lat: f64,
        photo_lon: f64,
    },
    /// The incident's position lies outside its grid cell's polygon.
    OutsideCell {
        incident: String,
        reporter: String,
        grid: String,
        lat: f64,
        lon: f64,
    },
    /// The device says it was captured after the server received it.
    CapturedAfterReceipt {
        incident: String,
        reporter: String,
        captured_at: String,
        received_at: String,
        ahead_s: i64,
    },
    /// Same category, close in place and time, by two different workers.
    LikelyDuplicate {
        incident: String,
        reporter: String,
        other: String,
        other_reporter: String,
        category: String,
        distance_m: f64,
        minutes_apart: i64,
    },
}

impl Anomaly {
    pub fn incident(&self) -> &str {
        match self {
            Anomaly::PhotoFar { incident, .. }
            | Anomaly::OutsideCell { incident, .. }
            | Anomaly::CapturedAfterReceipt { incident, .. }
            | Anomaly::LikelyDuplicate { incident, .. } => incident,
        }
    }

    pub fn reporter(&self) -> &str {
        match self {
            Anomaly::PhotoFar { reporter, .. }
            | Anomaly::OutsideCell { reporter, .. }
            | Anomaly::CapturedAfterReceipt { reporter, .. }
            | Anomaly::LikelyDuplicate { reporter, .. } => reporter,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::PhotoFar { .. } => "photo_far",
            Anomaly::OutsideCell { .. } => "outside_cell",
            Anomaly::CapturedAfterReceipt { .. } => "captured_after_receipt",
            Anomaly::LikelyDuplicate { .. } => "likely_duplicate",
        }
    }

    /// One sentence with the figures, in English and Chinese.
    pub fn describe(&self) -> String {
        match self {
            Anomaly::PhotoFar { photo, distance_m, .. } => format!(
                "photo {} was taken {distance_m:.0} m from the incident (over {PHOTO_DISTANCE_M:.0} m) 照片位置偏离",
                &photo[..photo.len().min(12)]
            ),
            Anomaly::OutsideCell { grid, lat, lon, .. } => {
                format!("location {lat:.6}, {lon:.6} is outside its cell {grid} 位置不在所属网格")
            }
            Anomaly::CapturedAfterReceipt {
                captured_at,
                received_at,
                ahead_s,
                ..
            } => format!(
                "captured at {captured_at}, {ahead_s} s after the server received it at {received_at} 采集时间晚于接收时间"
            ),
            Anomaly::LikelyDuplicate {
                other,
                other_reporter,
                distance_m,
                minutes_apart,
                ..
            } => format!(
                "likely the same as {other} by {other_reporter}: {distance_m:.0} m and {minutes_apart} min apart 疑似重复上报"
            ),
        }
    }
}

fn known_communities(grids: &GridMap) -> String {
    grids
        .districts
        .iter()
        .flat_map(|d| &d.streets)
        .flat_map(|s| &s.communities)
        .map(|c| format!("{} ({})", c.id, c.name_zh))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Communities with at least one grid worker, in grid-file order.
pub fn communities_with_workers(storage: &dyn Storage, grids: &GridMap) -> Result<Vec<String>, ReportError> {
    let workers = storage.workers()?;
    let mut out = Vec::new();
    for path in grids.cells() {
        let has = workers
            .iter()
            .any(|w| w.role == Role::Worker && w.grids.contains(&path.cell.id));
        if has && !out.contains(&path.community.id) {
            out.push(path.community.id.clone());
        }
    }
    Ok(out)
}

/// The community named, or the only one with workers when none is named.
pub fn resolve_community(storage: &dyn Storage, grids: &GridMap, given: Option<&str>) -> Result<String, ReportError> {
    match given {
        Some(c) => match grids.community(c) {
            Some(c) => Ok(c.id.clone()),
            None => Err(ReportError::UnknownCommunity {
                given: c.chars().take(80).collect(),
                known: known_communities(grids),
            }),
        },
        None => {
            let found = communities_with_workers(storage, grids)?;
            match found.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(ReportError::NoCommunity),
                many => Err(ReportError::CommunityNeeded {
                    candidates: many.join(", "),
                }),
            }
        }
    }
}

/// The community's zone.
pub fn community_zone(grids: &GridMap, community: &str) -> Result<Tz, ReportError> {
    let c = grids
        .community(community)
        .ok_or_else(|| ReportError::UnknownCommunity {
            given: community.to_owned(),
            known: known_communities(grids),
        })?;
    let zone = if c.timezone.is_empty() {
        DEFAULT_TIMEZONE
    } else {
        c.timezone.as_str()
    };
    zone.parse().map_err(|_| ReportError::BadTimezone {
        community: community.to_owned(),
        zone: zone.to_owned(),
    })
}

/// Today's date in the community's zone.
pub fn today(grids: &GridMap, community: &str, now: DateTime<Utc>) -> Result<NaiveDate, ReportError> {
    Ok(now.with_timezone(&community_zone(grids, community)?).date_naive())
}

/// Parses `YYYY-MM-DD`, with a sentence for a person when it is not one.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        format!(
            "`{}` is not a date such as 2026-11-20 (YYYY-MM-DD)",
            s.chars().take(40).collect::<String>()
        )
    })
}

fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Tz> {
    let local = date.and_time(NaiveTime::MIN);
    // Midnight may not exist (a DST jump); the day then starts at the first instant after it.
    // Gaps are whole quarter hours and at most a few hours long.
    (0..=16)
        .find_map(|q| tz.from_local_datetime(&(local + Duration::minutes(15 * q))).earliest())
        .unwrap_or_else(|| tz.from_utc_datetime(&local))
}

fn rfc3339<T: TimeZone>(t: &DateTime<T>) -> String
where
    T::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_time(id: &str, s: &str) -> Result<DateTime<FixedOffset>, ReportError> {
    DateTime::parse_from_rfc3339(s).map_err(|e| ReportError::BadIncident {
        id: id.to_owned(),
        reason: format!("time `{s}`: {e}"),
    })
}

fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}

struct Loaded {
    row: StoredIncident,
    incident: sync_core::Incident,
    captured: DateTime<FixedOffset>,
    received: DateTime<FixedOffset>,
}

/// Builds the reconciliation of `community` for `date` (in its zone), as
/// the server's storage holds it at `now`.
pub fn daily_report(
    storage: &dyn Storage,
    grids: &GridMap,
    community: &str,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<DailyReport, ReportError> {
    let tz = community_zone(grids, community)?;
    let info = grids.community(community).expect("community_zone found it");
    let start = day_start(tz, date);
    let end = day_start(tz, date.succ_opt().unwrap_or(date));
    let cutoff = end.with_timezone(&Utc).min(now);
    let cells = grids.community_cells(community);
    let taxonomy = Taxonomy::builtin();
    let in_day = |t: &DateTime<FixedOffset>| *t >= start && *t < end;

    // Every incident of the community: the day's, and the others for the
    // open-too-long list and for duplicates across midnight.
    let rows = storage.incidents(&IncidentFilter {
        grids: Some(cells.clone()),
        ..Default::default()
    })?;
    let mut all = Vec::with_capacity(rows.len());
    for row in rows {
        let captured = parse_time(&row.id, &row.captured_at)?;
        let received = parse_time(&row.id, &row.first_received_at)?;
        let incident = IncidentDoc::read_saved(&row.doc).map_err(|e| ReportError::BadIncident {
            id: row.id.clone(),
            reason: e.to_string(),
        })?;
        all.push(Loaded {
            row,
            incident,
            captured,
            received,
        });
    }
    let day: Vec<&Loaded> = all
        .iter()
        .filter(|l| in_day(&l.captured) || in_day(&l.received))
        .collect();
    let ids: Vec<String> = day.iter().map(|l| l.row.id.clone()).collect();
    let verified: HashSet<(String, String)> = storage
        .photo_refs(&ids)?
        .into_iter()
        .filter(|r| r.verified)
        .map(|r| (r.incident_id, r.hash))
        .collect();
    let is_verified = |id: &str, hash: &sync_core::BlobHash| verified.contains(&(id.to_owned(), hash.to_hex()));

    // The day's incidents, with their photos.
    let mut incidents = Vec::with_capacity(day.len());
    for l in &day {
        let id = &l.row.id;
        let photos: Vec<PhotoLine> = l
            .incident
            .photos
            .iter()
            .map(|p| PhotoLine {
                original: p.original.to_hex(),
                display: p.display.to_hex(),
                thumb: p.thumb.to_hex(),
                verified: is_verified(id, &p.original) && is_verified(id, &p.display) && is_verified(id, &p.thumb),
                thumb_verified: is_verified(id, &p.thumb),
            })
            .collect();
        let cat = taxonomy.get(&l.row.category);
        incidents.push(IncidentLine {
            id: id.clone(),
            reporter: l.row.reporter.clone(),
            category: l.row.category.clone(),
            category_zh: cat.map(|c| c.name_zh.clone()).unwrap_or_default(),
            category_en: cat.map(|c| c.name_en.clone()).unwrap_or_default(),
            status: l.row.status.clone(),
            grid: l.row.grid.clone(),
            captured_at: l.row.captured_at.clone(),
            received_at: l.row.first_received_at.clone(),
            captured_today: in_day(&l.captured),
            received_today: in_day(&l.received),
            lat: l.row.lat,
            lon: l.row.lon,
            description: l.incident.description.clone(),
            complete: photos.iter().all(|p| p.verified),
            photos,
        });
    }

    let anomalies = find_anomalies(grids, &day, &all);

    // Workers: every grid worker of the community's cells, and anyone else
    // who logged one of the day's incidents there.
    let devices = storage.devices()?;
    let known = storage.workers()?;
    let mut workers: Vec<Worker> = known
        .iter()
        .filter(|w| w.role == Role::Worker && w.grids.iter().any(|g| cells.contains(g)))
        .cloned()
        .collect();
    for l in &day {
        if !workers.iter().any(|w| w.id == l.row.reporter) {
            let w = known
                .iter()
                .find(|w| w.id == l.row.reporter)
                .cloned()
                .unwrap_or_else(|| Worker {
                    id: l.row.reporter.clone(),
                    name: l.row.reporter.clone(),
                    role: Role::Worker,
                    community: None,
                    grids: Vec::new(),
                });
            workers.push(w);
        }
    }
    let mut worker_rows = Vec::with_capacity(workers.len());
    for w in workers {
        let mine: Vec<&IncidentLine> = incidents.iter().filter(|i| i.reporter == w.id).collect();
        let incomplete: Vec<Incomplete> = mine
            .iter()
            .filter(|i| !i.complete)
            .map(|i| {
                let photos: Vec<MissingPhoto> = i
                    .photos
                    .iter()
                    .filter(|p| !p.verified)
                    .map(|p| MissingPhoto {
                        photo: p.original.clone(),
                        files: [("original", &p.original), ("display", &p.display), ("thumb", &p.thumb)]
                            .into_iter()
                            .filter(|(_, h)| !verified.contains(&(i.id.clone(), (*h).clone())))
                            .map(|(k, _)| k.to_owned())
                            .collect(),
                    })
                    .collect();
                Incomplete {
                    incident: i.id.clone(),
                    missing_photos: photos.len() as u64,
                    photos,
                }
            })
            .collect();
        let mut dev_rows = Vec::new();
        for d in devices
            .iter()
            .filter(|d| d.worker.id == w.id && !d.read_only && d.revoked_at.is_none())
        {
            let status = crate::sync::manifest_status(storage, d)?;
            dev_rows.push(DeviceRow {
                id: d.id.clone(),
                last_sync_at: status.as_ref().map(|s| s.last_sync_at.clone()),
                in_step: status.as_ref().map(|s| s.in_step),
                pending_docs: status.as_ref().map_or(0, |s| s.pending_docs),
                pending_photos: status.as_ref().map_or(0, |s| s.pending_photos),
                clock_offset_ms: d.clock_offset_ms,
            });
        }
        let last_sync_at = dev_rows
            .iter()
            .filter_map(|d| d.last_sync_at.as_deref())
            .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
            .max();
        let never = last_sync_at.is_none();
        let in_step = if dev_rows.iter().any(|d| d.in_step.is_some()) {
            Some(dev_rows.iter().all(|d| d.in_step != Some(false)))
        } else {
            None
        };
        let no_sync_24h = last_sync_at.is_none_or(|t| now - t.with_timezone(&Utc) > Duration::hours(NO_SYNC_HOURS));
        let clock_offset_ms = dev_rows
            .iter()
            .filter_map(|d| d.clock_offset_ms)
            .filter(|o| o.unsigned_abs() > CLOCK_OFFSET_LIMIT_MS as u64)
            .max_by_key(|o| o.unsigned_abs());
        let n_anomalies = anomalies.iter().filter(|a| a.reporter() == w.id).count() as u64;
        let mut flags = Vec::new();
        if in_step == Some(false) {
            flags.push(Flag::NotInStep);
        }
        if !incomplete.is_empty() {
            flags.push(Flag::Incomplete);
        }
        if never {
            flags.push(Flag::NeverSynced);
        } else if no_sync_24h {
            flags.push(Flag::NoSync24h);
        }
        if clock_offset_ms.is_some() {
            flags.push(Flag::ClockOffset);
        }
        if n_anomalies > 0 {
            flags.push(Flag::Anomalies);
        }
        let photos_referenced = mine.iter().map(|i| i.photos.len() as u64).sum();
        let photos_verified = mine
            .iter()
            .map(|i| i.photos.iter().filter(|p| p.verified).count() as u64)
            .sum();
        worker_rows.push(WorkerRow {
            captured: mine.iter().filter(|i| i.captured_today).count() as u64,
            received: mine.iter().filter(|i| i.received_today).count() as u64,
            photos_referenced,
            photos_verified,
            incomplete,
            last_sync_at: last_sync_at.map(|t| rfc3339(&t.with_timezone(&Utc))),
            in_step,
            pending_docs: dev_rows.iter().map(|d| d.pending_docs).sum(),
            pending_photos: dev_rows.iter().map(|d| d.pending_photos).sum(),
            no_sync_24h,
            clock_offset_ms,
            anomalies: n_anomalies,
            devices: dev_rows,
            flags,
            id: w.id,
            name: w.name,
            grids: w.grids,
        });
    }
    worker_rows.sort_by(|a, b| a.id.cmp(&b.id));

    // Totals over the day's incidents.
    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_status: HashMap<String, u64> = HashMap::new();
    for i in &incidents {
        *by_category.entry(i.category.clone()).or_default() += 1;
        *by_status.entry(i.status.clone()).or_default() += 1;
    }
    let mut categories: Vec<CategoryTotal> = taxonomy
        .categories
        .iter()
        .filter_map(|c| {
            by_category.remove(&c.code).map(|count| CategoryTotal {
                code: c.code.clone(),
                name_zh: c.name_zh.clone(),
                name_en: c.name_en.clone(),
                count,
            })
        })
        .collect();
    // Codes from another city's taxonomy keep their code as name.
    categories.extend(by_category.into_iter().map(|(code, count)| CategoryTotal {
        name_zh: code.clone(),
        name_en: code.clone(),
        code,
        count,
    }));
    let statuses = Status::ALL
        .iter()
        .filter_map(|s| {
            by_status.get(s.as_str()).map(|&count| StatusTotal {
                status: s.as_str().to_owned(),
                name_zh: s.name_zh().to_owned(),
                count,
            })
        })
        .collect();

    // Open for more than three days at the cut-off (end of day, or now).
    let mut open = Vec::new();
    for l in &all {
        let open_status = matches!(
            l.incident.status,
            Status::Reported | Status::Dispatched | Status::InProgress
        );
        let age = cutoff - l.captured.with_timezone(&Utc);
        if open_status && age > Duration::days(OPEN_DAYS) {
            open.push(OpenIncident {
                id: l.row.id.clone(),
                reporter: l.row.reporter.clone(),
                category: l.row.category.clone(),
                status: l.row.status.clone(),
                captured_at: l.row.captured_at.clone(),
                days_open: age.num_days(),
            });
        }
    }

    Ok(DailyReport {
        schema: SCHEMA,
        community: CommunityInfo {
            id: info.id.clone(),
            name_zh: info.name_zh.clone(),
            name_en: info.name_en.clone(),
            timezone: tz.name().to_owned(),
        },
        date,
        day_start: start.to_rfc3339(),
        day_end: end.to_rfc3339(),
        generated_at: rfc3339(&now),
        thresholds: Thresholds {
            clock_offset_ms: CLOCK_OFFSET_LIMIT_MS,
            no_sync_hours: NO_SYNC_HOURS,
            open_days: OPEN_DAYS,
            photo_distance_m: PHOTO_DISTANCE_M,
            future_tolerance_s: FUTURE_TOLERANCE_S,
            duplicate_distance_m: DUPLICATE_DISTANCE_M,
            duplicate_hours: DUPLICATE_HOURS,
        },
        workers: worker_rows,
        totals: Totals {
            incidents: incidents.len() as u64,
            by_category: categories,
            by_status: statuses,
        },
        incidents,
        open_over_3_days: open,
        anomalies,
    })
}

fn find_anomalies(grids: &GridMap, day: &[&Loaded], all: &[Loaded]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for l in day {
        let id = &l.row.id;
        let reporter = &l.row.reporter;
        let point = l.incident.location.point();
        if let Some(p) = point {
            for photo in &l.incident.photos {
                if let Some(g) = photo.gps {
                    let d = distance_m(p, (g.lat, g.lon));
                    if d > PHOTO_DISTANCE_M {
                        out.push(Anomaly::PhotoFar {
                            incident: id.clone(),
                            reporter: reporter.clone(),
                            photo: photo.original.to_hex(),
                            distance_m: d.round(),
                            incident_lat: p.0,
                            incident_lon: p.1,
                            photo_lat: g.lat,
                            photo_lon: g.lon,
                        });
                    }
                }
            }
            let inside = grids.cell_contains(&l.row.grid, p.0, p.1);
            if inside == Some(false) {
                out.push(Anomaly::OutsideCell {
                    incident: id.clone(),
                    reporter: reporter.clone(),
                    grid: l.row.grid.clone(),
                    lat: p.0,
                    lon: p.1,
                });
            }
        }
        let ahead = (l.captured - l.received).num_seconds();
        if ahead > FUTURE_TOLERANCE_S {
            out.push(Anomaly::CapturedAfterReceipt {
                incident: id.clone(),
                reporter: reporter.clone(),
                captured_at: l.row.captured_at.clone(),
                received_at: l.row.first_received_at.clone(),
                ahead_s: ahead,
            });
        }
        let Some(p) = point else { continue };
        for other in all {
            if other.row.id == *id || other.row.reporter == *reporter || other.row.category != l.row.category {
                continue;
            }
            // A pair of two of the day's incidents is listed once.
            if other.row.id < *id && day.iter().any(|d| d.row.id == other.row.id) {
                continue;
            }
            let Some(q) = other.incident.location.point() else {
                continue;
            };
            let apart = (l.captured - other.captured).abs();
            let d = distance_m(p, q);
            if d <= DUPLICATE_DISTANCE_M && apart <= Duration::hours(DUPLICATE_HOURS) {
                out.push(Anomaly::LikelyDuplicate {
                    incident: id.clone(),
                    reporter: reporter.clone(),
                    other: other.row.id.clone(),
                    other_reporter: other.row.reporter.clone(),
                    category: l.row.category.clone(),
                    distance_m: (d * 10.0).round() / 10.0,
                    minutes_apart: apart.num_minutes(),
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Ways out: a terminal table and CSV here; HTML in `dashboard.rs`.

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "never synced",
    }
}

/// A clock offset as a person reads it: `+7 min 30 s`.
pub fn offset_text(ms: i64) -> String {
    let s = ms / 1000;
    let sign = if s < 0 { "-" } else { "+" };
    let s = s.unsigned_abs();
    if s >= 3600 {
        format!("{sign}{} h {} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{sign}{} min {} s", s / 60, s % 60)
    }
}

/// The report as terminal tables.
pub fn to_table(r: &DailyReport) -> String {
    use comfy_table::Table;
    let mut out = format!(
        "{} {} ({}) — {} ({})\n",
        r.community.name_zh, r.community.name_en, r.community.id, r.date, r.community.timezone
    );
    let mut t = Table::new();
    t.set_header([
        "worker",
        "captured",
        "received",
        "photos ref/verified",
        "incomplete (missing photos)",
        "last sync",
        "in step",
        "pending records/photos",
        "clock",
        "flags",
    ]);
    for w in &r.workers {
        let missing: u64 = w.incomplete.iter().map(|i| i.missing_photos).sum();
        t.add_row([
            format!("{} {}", w.id, w.name),
            w.captured.to_string(),
            w.received.to_string(),
            format!("{}/{}", w.photos_referenced, w.photos_verified),
            format!("{} ({missing})", w.incomplete.len()),
            w.last_sync_at.clone().unwrap_or_else(|| "never".into()),
            yes_no(w.in_step).to_owned(),
            format!("{}/{}", w.pending_docs, w.pending_photos),
            w.clock_offset_ms.map(offset_text).unwrap_or_default(),
            w.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
        ]);
    }
    out.push_str(&t.to_string());
    out.push('\n');

    let mut t = Table::new();
    t.set_header(["category", "类别", "incidents"]);
    for c in &r.totals.by_category {
        t.add_row([c.name_en.clone(), c.name_zh.clone(), c.count.to_string()]);
    }
    t.add_row(["all".to_owned(), "合计".to_owned(), r.totals.incidents.to_string()]);
    out.push_str(&t.to_string());
    out.push('\n');
    let mut t = Table::new();
    t.set_header(["status", "状态", "incidents"]);
    for s in &r.totals.by_status {
        t.add_row([s.status.clone(), s.name_zh.clone(), s.count.to_string()]);
    }
    out.push_str(&t.to_string());
    out.push('\n');

    if !r.open_over_3_days.is_empty() {
        let mut t = Table::new();
        t.set_header(["open > 3 days", "reporter", "category", "status", "days"]);
        for o in &r.open_over_3_days {
            t.add_row([
                o.id.clone(),
                o.reporter.clone(),
                o.category.clone(),
                o.status.clone(),
                o.days_open.to_string(),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    if r.anomalies.is_empty() {
        out.push_str("no anomalies\n");
    } else {
        let mut t = Table::new();
        t.set_header(["anomaly", "incident", "reporter", "figures"]);
        for a in &r.anomalies {
            t.add_row([
                a.kind().to_owned(),
                a.incident().to_owned(),
                a.reporter().to_owned(),
                a.describe(),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

/// A text cell a spreadsheet would not run as a formula.
fn safe_cell(s: &str) -> String {
    sync_core::export::guard_cell(s).into_owned()
}

/// The report as CSV: the per-worker table, then a blank line and the
/// anomalies table. Totals are left to the JSON and table forms.
pub fn to_csv(r: &DailyReport) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    w.write_record([
        "date",
        "community",
        "worker",
        "name",
        "captured",
        "received",
        "photos_referenced",
        "photos_verified",
        "incomplete_incidents",
        "missing_photos",
        "last_sync_at",
        "in_step",
        "pending_records",
        "pending_photos",
        "no_sync_24h",
        "clock_offset_s",
        "anomalies",
        "flags",
    ])?;
    for x in &r.workers {
        w.write_record([
            r.date.to_string(),
            safe_cell(&r.community.id),
            safe_cell(&x.id),
            safe_cell(&x.name),
            x.captured.to_string(),
            x.received.to_string(),
            x.photos_referenced.to_string(),
            x.photos_verified.to_string(),
            x.incomplete.len().to_string(),
            x.incomplete.iter().map(|i| i.missing_photos).sum::<u64>().to_string(),
            x.last_sync_at.clone().unwrap_or_default(),
            x.in_step.map(|b| b.to_string()).unwrap_or_default(),
            x.pending_docs.to_string(),
            x.pending_photos.to_string(),
            x.no_sync_24h.to_string(),
            x.clock_offset_ms.map(|m| (m / 1000).to_string()).unwrap_or_default(),
            x.anomalies.to_string(),
            x.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" "),
        ])?;
    }
    // A truly empty line between the two tables (the csv writer would quote an empty record).
    let mut bytes = w.into_inner().map_err(|e| e.into_error())?;
    bytes.push(b'\n');
    let mut w = csv::Writer::from_writer(bytes);
    w.write_record(["anomaly", "incident", "reporter", "figures"])?;
    for a in &r.anomalies {
        w.write_record([
            a.kind(),
            a.incident(),
            &safe_cell(a.reporter()),
            &safe_cell(&a.describe()),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

// ---------------------------------------------------------------------------
// HTTP: `GET /v1/reports/daily?date=YYYY-MM-DD&community=C`.

pub fn routes() -> Router<App> {
    Router::new().route("/v1/reports/daily", get(http_daily))
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Storage(s) => s.into(),
            ReportError::BadIncident { .. } | ReportError::BadTimezone { .. } => {
                tracing::error!(error = %e, "report failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "report_unavailable",
                    "the server cannot build this report from its data; the operator should check the logs",
                )
            }
            ReportError::UnknownCommunity { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_community", e.to_string())
            }
            ReportError::CommunityNeeded { .. } | ReportError::NoCommunity => {
                ApiError::new(StatusCode::BAD_REQUEST, "community_needed", e.to_string())
            }
        }
    }
}

/// The community a reader may see: a center only its own, an operator any.
pub fn reader_community(app: &api::AppState, reader: &Device, asked: Option<&str>) -> Result<String, ApiError> {
    match reader.worker.role {
        Role::Center => {
            let own = reader.worker.community.clone().unwrap_or_default();
            match asked {
                Some(c) if c != own => {
                    // An unknown name is a bad request whoever asks.
                    if app.grids.community(c).is_none() {
                        return Err(resolve_community(app.storage.as_ref(), &app.grids, Some(c))
                            .expect_err("unknown community")
                            .into());
                    }
                    Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "out_of_scope",
                        format!("this center account sees community {own} only, not {c}"),
                    ))
                }
                _ => Ok(own),
            }
        }
        _ => Ok(resolve_community(app.storage.as_ref(), &app.grids, asked)?),
    }
}

async fn http_daily(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    api::blocking(move || {
        let reader = api::require_reader(&app, api::bearer(&headers))?;
        let date = match q.get("date") {
            Some(d) => parse_date(d).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_date", m))?,
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_date",
                    "this report needs date=YYYY-MM-DD",
                ));
            }
        };
        let community = reader_community(&app, &reader, q.get("community").map(String::as_str))?;
        let report = daily_report(app.storage.as_ref(), &app.grids, &community, date, Utc::now())?;
        Ok(axum::Json(report).into_response())
    })
    .await
}

// ---------------------------------------------------------------------------
// CLI: `sync-server reconcile` on the data dir.

/// `sync-server reconcile`: one community's day.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    /// The day, in the community's time zone.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    pub date: NaiveDate,
    /// The community; may be left out when only one community has workers.
    #[arg(long)]
    pub community: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: CliFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CliFormat {
    Table,
    Json,
    Csv,
    /// A standalone page with the thumbnails inlined.
    Html,
}

pub fn run_cli(config: &crate::Config, args: &CliArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let storage = crate::open_storage(&config.data_dir)?;
    let grids = crate::load_grids(config)?;
    let community = resolve_community(&storage, &grids, args.community.as_deref())?;
    let r = daily_report(&storage, &grids, &community, args.date, Utc::now())?;
    let bytes = match args.format {
        CliFormat::Table => to_table(&r).into_bytes(),
        CliFormat::Json => {
            let mut v = serde_json::to_vec_pretty(&r)?;
            v.push(b'\n');
            v
        }
        CliFormat::Csv => to_csv(&r).context("cannot write the CSV")?,
        CliFormat::Html => {
            // Thumbnails inlined as data URIs, so the file stands alone.
            let photos = config.data_dir.join("photos");
            let thumb = |p: &PhotoLine| {
                use base64::Engine;
                let hash: sync_core::BlobHash = p.thumb.parse().ok()?;
                let hex = hash.to_hex();
                let bytes = std::fs::read(photos.join(&hex[..2]).join(&hex)).ok()?;
                Some(format!(
                    "data:image/jpeg;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                ))
            };
            crate::dashboard::standalone_html(&r, &thumb).into_bytes()
        }
    };
    match &args.out {
        Some(path) => std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .context("cannot write the report")
        }
    }
}

#[cfg(test)]
mod tests {
    //! Clock offsets and sync ages need a device clock or a day that the
    //! integration tests cannot set; here a real SQLite store gets the
    //! syncs recorded at chosen times, and the report is made at a chosen `now`.

    use super::*;
    use crate::storage::{Enrolment, SqliteStorage};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn clock_offsets_over_five_minutes_and_stale_or_missing_syncs_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("s.sqlite3"), "epoch").unwrap();
        let grids = GridMap::builtin();
        let cells = ["HLT-CX-HX-01", "HLT-CX-HX-02", "HLT-CX-HX-03", "HLT-CX-HX-04"];
        let workers = ["w-fast", "w-slightly", "w-stale", "w-silent", "w-nodevice"];
        for (w, cell) in workers.iter().zip(cells.iter().cycle()) {
            let worker = Worker {
                id: (*w).into(),
                // A name a spreadsheet would run, to check the CSV.
                name: if *w == "w-nodevice" {
                    "=SUM(A1)".into()
                } else {
                    (*w).into()
                },
                role: Role::Worker,
                community: None,
                grids: vec![(*cell).into()],
            };
            storage.add_worker(&worker, "2026-11-01T00:00:00Z").unwrap();
        }
        let now = at("2026-11-20T12:00:00Z");
        let manifest = serde_json::json!({"incidents": 0, "pending_docs": 0, "pending_photos": 0});
        for (i, (w, synced, offset)) in [
            ("w-fast", Some("2026-11-20T11:00:00Z"), 7 * 60_000 + 30_000),
            ("w-slightly", Some("2026-11-20T11:00:00Z"), -4 * 60_000),
            ("w-stale", Some("2026-11-19T06:00:00Z"), 0),
            ("w-silent", None, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let device = format!("00000000-0000-4000-8000-00000000000{i}");
            let code = format!("code-{i}");
            storage
                .add_enrol_code(&code, w, i64::MAX, "2026-11-01T00:00:00Z")
                .unwrap();
            let enrolment = Enrolment {
                code_hash: &code,
                worker: w,
                device: &device,
                actor: &[i as u8; 16],
                token_hash: &format!("token-{i}"),
            };
            storage.enroll(&enrolment, 0, "2026-11-01T00:00:00Z").unwrap().unwrap();
            if let Some(t) = synced {
                storage.record_sync(&device, &manifest, offset, t).unwrap();
            }
        }
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let r = daily_report(&storage, &grids, "HLT-CX-HX", date, now).unwrap();
        let row = |id: &str| r.workers.iter().find(|w| w.id == id).unwrap();
        assert_eq!(r.workers.len(), 5, "every worker, with or without a device");

        let fast = row("w-fast");
        assert_eq!(fast.clock_offset_ms, Some(450_000));
        assert!(fast.flags.contains(&Flag::ClockOffset));
        assert!(!fast.no_sync_24h);
        assert_eq!(offset_text(450_000), "+7 min 30 s");

        let slightly = row("w-slightly");
        assert_eq!(slightly.clock_offset_ms, None, "four minutes is within the limit");
        assert!(!slightly.flags.contains(&Flag::ClockOffset));

        let stale = row("w-stale");
        assert!(stale.no_sync_24h, "30 hours before the report");
        assert!(stale.flags.contains(&Flag::NoSync24h));
        assert_eq!(stale.last_sync_at.as_deref(), Some("2026-11-19T06:00:00Z"));

        for id in ["w-silent", "w-nodevice"] {
            let w = row(id);
            assert_eq!(w.in_step, None);
            assert_eq!(w.last_sync_at, None);
            assert_eq!(w.flags, [Flag::NeverSynced], "{id}");
        }
        assert_eq!(r.day_start, "2026-11-20T00:00:00+08:00");
        let csv = String::from_utf8(to_csv(&r).unwrap()).unwrap();
        assert!(csv.contains(",w-nodevice,'=SUM(A1),"), "{csv}");
        assert_eq!(r.day_end, "2026-11-21T00:00:00+08:00");
    }

    #[test]
    fn the_day_follows_the_community_zone() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        assert_eq!(day_start(shanghai, d).with_timezone(&Utc), at("2026-11-19T16:00:00Z"));
        // A zone whose midnight is skipped by a DST jump (Havana, March).
        let havana: Tz = "America/Havana".parse().unwrap();
        let jump = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(day_start(havana, jump).with_timezone(&Utc), at("2026-03-08T05:00:00Z"));
        assert!(parse_date("2026-02-30").unwrap_err().contains("2026-02-30"));
    }
}

//! The community center's daily reconciliation: one model, [`DailyReport`],
//! built from storage by [`daily_report`], and written out as a table or
//! CSV (`text`), JSON (serde) or HTML (`html`). `sync-server reconcile`,
//! `GET /v1/reports/daily` and the `/center` dashboard all start from it.
//!
//! Exact definitions of every figure are in `docs/reconciliation.md`.

mod anomalies;
mod build;
pub mod html;
mod map;
pub mod text;

pub use build::daily_report;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sync_core::{GridMap, calendar};

use crate::storage::{Role, Storage, StorageError, Worker};

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
    #[error("this center account sees community {own} only, not {asked}")]
    OtherCommunity { own: String, asked: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ReportError {
    /// A mistake in what the caller asked for, not a failure of the server's data.
    pub fn is_caller_mistake(&self) -> bool {
        matches!(
            self,
            ReportError::UnknownCommunity { .. }
                | ReportError::CommunityNeeded { .. }
                | ReportError::NoCommunity
                | ReportError::OtherCommunity { .. }
        )
    }
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
    /// Dispatched cases past their deadline (处置时限) at the cut-off.
    pub overdue: Vec<OverdueCase>,
    pub anomalies: Vec<Anomaly>,
    /// Stored incidents of the community whose documents cannot be read:
    /// left out of every figure above and named here for the operator.
    pub unreadable: Vec<String>,
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
    /// Records the server refused, held on the devices with the reason:
    /// they will not arrive by waiting.
    pub refused_docs: u64,
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
    pub refused_docs: u64,
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
    /// The case number people use (`HX-261203-7-4`), once the device has one.
    pub case: Option<String>,
    /// The department of its last dispatch, if any.
    pub department: Option<String>,
    /// Past that dispatch's deadline at the report's cut-off.
    pub overdue: bool,
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

/// A dispatched or in-progress case whose deadline has passed.
#[derive(Debug, Clone, Serialize)]
pub struct OverdueCase {
    pub id: String,
    pub case: Option<String>,
    pub category: String,
    pub status: String,
    pub department: String,
    pub department_zh: String,
    /// RFC 3339, in the offset the dispatching device had.
    pub deadline: String,
    /// Whole hours from the deadline to the report's cut-off.
    pub hours_overdue: i64,
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

    /// The kind in Chinese and English, for people.
    pub fn label(&self) -> &'static str {
        match self {
            Anomaly::PhotoFar { .. } => "照片位置偏离 photo far",
            Anomaly::OutsideCell { .. } => "不在网格内 outside cell",
            Anomaly::CapturedAfterReceipt { .. } => "采集晚于接收 captured late",
            Anomaly::LikelyDuplicate { .. } => "疑似重复 duplicate",
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
                "captured at {captured_at}, {} after the server received it at {received_at} 采集时间晚于接收时间",
                text::span_text(*ahead_s)
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

/// An RFC 3339 time in the community's zone, in `format` (`%m-%d %H:%M`);
/// the stored text when it does not parse.
pub fn local_time(rfc3339: &str, tz: &str, format: &str) -> String {
    let zone = sync_core::calendar::zone(tz).unwrap_or(sync_core::calendar::DEFAULT_ZONE);
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&zone).format(format).to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

impl DailyReport {
    /// A worker's name by id, for tables that name people; the id when
    /// the report has no row for them.
    pub fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.workers.iter().find(|w| w.id == id).map_or(id, |w| w.name.as_str())
    }

    /// A time of this report as the center reads it: `12-03 19:08` local.
    pub fn local(&self, rfc3339: &str) -> String {
        local_time(rfc3339, &self.community.timezone, "%m-%d %H:%M")
    }
}

fn known_communities(grids: &GridMap) -> String {
    grids
        .communities()
        .map(|c| format!("{} ({})", c.id, c.name_zh))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown(grids: &GridMap, given: &str) -> ReportError {
    ReportError::UnknownCommunity {
        given: given.chars().take(80).collect(),
        known: known_communities(grids),
    }
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
    if let Some(c) = given {
        return grids
            .community(c)
            .map(|c| c.id.clone())
            .ok_or_else(|| unknown(grids, c));
    }
    let found = communities_with_workers(storage, grids)?;
    match found.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ReportError::NoCommunity),
        many => Err(ReportError::CommunityNeeded {
            candidates: many.join(", "),
        }),
    }
}

/// The community a reader may see: a center (or a department) only its
/// own, an operator any.
pub fn reader_community(
    storage: &dyn Storage,
    grids: &GridMap,
    reader: &Worker,
    asked: Option<&str>,
) -> Result<String, ReportError> {
    if !matches!(reader.role, Role::Center | Role::Department) {
        return resolve_community(storage, grids, asked);
    }
    let own = reader.community.clone().unwrap_or_default();
    match asked {
        // An unknown name is a bad request whoever asks.
        Some(c) if grids.community(c).is_none() => Err(unknown(grids, c)),
        Some(c) if c != own => Err(ReportError::OtherCommunity {
            own,
            asked: c.to_owned(),
        }),
        _ => Ok(own),
    }
}

/// The community's zone.
pub fn community_zone(grids: &GridMap, community: &str) -> Result<Tz, ReportError> {
    let c = grids.community(community).ok_or_else(|| unknown(grids, community))?;
    calendar::zone(&c.timezone).ok_or_else(|| ReportError::BadTimezone {
        community: community.to_owned(),
        zone: c.timezone.clone(),
    })
}

/// Today's date in the community's zone.
pub fn today(grids: &GridMap, community: &str, now: DateTime<Utc>) -> Result<NaiveDate, ReportError> {
    Ok(now.with_timezone(&community_zone(grids, community)?).date_naive())
}

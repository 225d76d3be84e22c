//! [`daily_report`] in named steps: load the community's incidents and the
//! day's window, the day's incident lines, the anomalies, a row per worker,
//! the totals and the cases open too long.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use sync_core::calendar::day_start;
use sync_core::taxonomy::Community;
use sync_core::{BlobHash, GridMap, Incident, Status, Taxonomy};

use super::anomalies::find_anomalies;
use super::*;
use crate::storage::{Device, IncidentFilter, Storage, StoredIncident, Worker};
use crate::sync::manifest_status;

pub(super) fn rfc3339<T: TimeZone>(t: &DateTime<T>) -> String
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

/// A stored incident, decoded, with its two times parsed.
pub(super) struct Loaded {
    pub row: StoredIncident,
    pub incident: Incident,
    pub captured: DateTime<FixedOffset>,
    pub received: DateTime<FixedOffset>,
}

/// An incident the report reads only by its projected columns: a
/// neighbour of the day's incidents (for likely duplicates) or an open
/// case from before (for the cases open too long).
pub(super) struct Neighbour {
    pub row: StoredIncident,
    pub captured: DateTime<FixedOffset>,
}

/// What the duplicate check looks at, of a decoded incident or a neighbour.
pub(super) struct Near<'a> {
    pub id: &'a str,
    pub reporter: &'a str,
    pub category: &'a str,
    pub point: Option<(f64, f64)>,
    pub captured: DateTime<FixedOffset>,
}

/// Everything the report is made from.
struct Day<'g> {
    tz: Tz,
    info: &'g Community,
    cells: Vec<String>,
    start: DateTime<Tz>,
    end: DateTime<Tz>,
    /// The end of the day, or now if the day is not over.
    cutoff: DateTime<Utc>,
    /// The incidents decoded: the day's, and the dispatched or in-progress
    /// cases (for the overdue list).
    all: Vec<Loaded>,
    /// The rest of what the report reads: neighbours a duplicate's window
    /// away, open cases from before.
    others: Vec<Neighbour>,
    /// (incident, hash) of every verified photo file of the day's incidents.
    verified: HashSet<(String, String)>,
    /// Incidents whose stored documents cannot be read, left out.
    unreadable: Vec<String>,
}

impl Day<'_> {
    fn in_day(&self, t: &DateTime<FixedOffset>) -> bool {
        *t >= self.start && *t < self.end
    }

    /// The day's incidents: captured or received that day.
    fn incidents(&self) -> Vec<&Loaded> {
        self.all
            .iter()
            .filter(|l| self.in_day(&l.captured) || self.in_day(&l.received))
            .collect()
    }

    fn is_verified(&self, id: &str, hash: &str) -> bool {
        self.verified.contains(&(id.to_owned(), hash.to_owned()))
    }

    /// Every incident read, decoded or not, as the duplicate check sees it.
    fn near(&self) -> Vec<Near<'_>> {
        let decoded = self.all.iter().map(|l| Near {
            id: &l.row.id,
            reporter: &l.row.reporter,
            category: &l.row.category,
            point: l.incident.location.point(),
            captured: l.captured,
        });
        let others = self.others.iter().map(|n| Near {
            id: &n.row.id,
            reporter: &n.row.reporter,
            category: &n.row.category,
            point: n.row.lat.zip(n.row.lon),
            captured: n.captured,
        });
        decoded.chain(others).collect()
    }

    /// Every row read with its capture time: the projected columns.
    fn rows(&self) -> impl Iterator<Item = (&StoredIncident, DateTime<FixedOffset>)> {
        let decoded = self.all.iter().map(|l| (&l.row, l.captured));
        decoded.chain(self.others.iter().map(|n| (&n.row, n.captured)))
    }
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
    let day = load_day(storage, grids, community, date, now)?;
    let todays = day.incidents();
    let incidents = incident_lines(&day, &todays);
    let anomalies = find_anomalies(grids, &todays, &day.near());
    let workers = worker_rows(storage, &day, &incidents, &anomalies, now)?;
    Ok(DailyReport {
        schema: SCHEMA,
        community: CommunityInfo {
            id: day.info.id.clone(),
            name_zh: day.info.name_zh.clone(),
            name_en: day.info.name_en.clone(),
            timezone: day.tz.name().to_owned(),
        },
        date,
        day_start: day.start.to_rfc3339(),
        day_end: day.end.to_rfc3339(),
        generated_at: rfc3339(&now),
        thresholds: thresholds(),
        workers,
        totals: totals(&incidents),
        open_over_3_days: open_cases(&day),
        overdue: overdue_cases(&day),
        incidents,
        anomalies,
        unreadable: day.unreadable.clone(),
    })
}

fn thresholds() -> Thresholds {
    Thresholds {
        clock_offset_ms: CLOCK_OFFSET_LIMIT_MS,
        no_sync_hours: NO_SYNC_HOURS,
        open_days: OPEN_DAYS,
        photo_distance_m: PHOTO_DISTANCE_M,
        future_tolerance_s: FUTURE_TOLERANCE_S,
        duplicate_distance_m: DUPLICATE_DISTANCE_M,
        duplicate_hours: DUPLICATE_HOURS,
    }
}

fn load_day<'g>(
    storage: &dyn Storage,
    grids: &'g GridMap,
    community: &str,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Day<'g>, ReportError> {
    let tz = community_zone(grids, community)?;
    let info = grids.community(community).expect("community_zone found it");
    let start = day_start(tz, date);
    let end = day_start(tz, date.succ_opt().unwrap_or(date));
    let cells = grids.community_cells(community);
    let rows = report_rows(storage, &cells, (start.timestamp(), end.timestamp()))?;
    let (mut all, mut others, mut unreadable) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        let id = row.id.clone();
        let row = match neighbour(row, (start, end)) {
            Ok(n) => {
                others.push(n);
                continue;
            }
            Err(row) => row,
        };
        match load(row) {
            Ok(loaded) => all.push(loaded),
            Err(e) => {
                tracing::error!(incident = %id, error = %e, "a stored incident cannot be read; left out of the report");
                unreadable.push(id);
            }
        }
    }
    let mut day = Day {
        unreadable,
        others,
        tz,
        info,
        cells,
        cutoff: end.with_timezone(&Utc).min(now),
        start,
        end,
        all,
        verified: HashSet::new(),
    };
    let ids: Vec<String> = day.incidents().iter().map(|l| l.row.id.clone()).collect();
    day.verified = storage
        .photo_refs(&ids)?
        .into_iter()
        .filter(|r| r.verified)
        .map(|r| (r.incident_id, r.hash))
        .collect();
    Ok(day)
}

/// The rows the report reads, each once: those captured or received on
/// the day (`[from, to)`, Unix seconds), those captured within a
/// duplicate's reach of one of them, and every open case (for the cases
/// open too long and overdue). Never the rest of the community's history.
fn report_rows(storage: &dyn Storage, cells: &[String], day: (i64, i64)) -> Result<Vec<StoredIncident>, ReportError> {
    let base = IncidentFilter {
        grids: Some(cells.to_vec()),
        ..Default::default()
    };
    let mut rows: BTreeMap<String, StoredIncident> = BTreeMap::new();
    let mut received = base.clone();
    received.received = Some(day);
    add_rows(storage, &mut rows, &received)?;
    // Those captured on the day, and every incident a duplicate's window
    // away from one captured or received on the day.
    let reach = DUPLICATE_HOURS * 3600;
    let times = rows
        .values()
        .filter_map(|r| DateTime::parse_from_rfc3339(&r.captured_at).ok());
    let (first, last) = times.fold(day, |(a, b), t| (a.min(t.timestamp()), b.max(t.timestamp() + 1)));
    let mut near = base.clone();
    near.captured = Some((first - reach, last + reach));
    add_rows(storage, &mut rows, &near)?;
    let mut open = base;
    open.statuses = vec![Status::Reported, Status::Dispatched, Status::InProgress];
    add_rows(storage, &mut rows, &open)?;
    Ok(rows.into_values().collect())
}

fn add_rows(
    storage: &dyn Storage,
    rows: &mut BTreeMap<String, StoredIncident>,
    filter: &IncidentFilter,
) -> Result<(), ReportError> {
    rows.extend(storage.incidents(filter)?.into_iter().map(|r| (r.id.clone(), r)));
    Ok(())
}

/// The row as a [`Neighbour`] when the report needs no more of it than its
/// columns: neither captured nor received on the day, and not a case a
/// department holds (whose deadline is in the document).
/// Otherwise the row back, to be decoded.
fn neighbour(mut row: StoredIncident, (start, end): (DateTime<Tz>, DateTime<Tz>)) -> Result<Neighbour, StoredIncident> {
    let times = DateTime::parse_from_rfc3339(&row.captured_at)
        .and_then(|c| Ok((c, DateTime::parse_from_rfc3339(&row.first_received_at)?)));
    let Ok((captured, received)) = times else {
        return Err(row);
    };
    let on_day = |t: DateTime<FixedOffset>| t >= start && t < end;
    if on_day(captured) || on_day(received) || matches!(row.status, Status::Dispatched | Status::InProgress) {
        return Err(row);
    }
    row.doc = Vec::new();
    Ok(Neighbour { row, captured })
}

fn load(row: StoredIncident) -> Result<Loaded, ReportError> {
    let captured = parse_time(&row.id, &row.captured_at)?;
    let received = parse_time(&row.id, &row.first_received_at)?;
    let incident = crate::export::decode(&row.id, &row.doc).map_err(|e| ReportError::BadIncident {
        id: row.id.clone(),
        reason: e.to_string(),
    })?;
    Ok(Loaded {
        row,
        incident,
        captured,
        received,
    })
}

/// The day's incidents, with their photos.
fn incident_lines(day: &Day<'_>, todays: &[&Loaded]) -> Vec<IncidentLine> {
    let taxonomy = Taxonomy::builtin();
    todays
        .iter()
        .map(|l| {
            let id = &l.row.id;
            let ok = |h: &BlobHash| day.is_verified(id, &h.to_hex());
            let photos: Vec<PhotoLine> = l
                .incident
                .photos
                .iter()
                .map(|p| PhotoLine {
                    original: p.original.to_hex(),
                    display: p.display.to_hex(),
                    thumb: p.thumb.to_hex(),
                    verified: ok(&p.original) && ok(&p.display) && ok(&p.thumb),
                    thumb_verified: ok(&p.thumb),
                })
                .collect();
            let cat = taxonomy.get(&l.row.category);
            IncidentLine {
                id: id.clone(),
                case: l.incident.case.as_ref().map(ToString::to_string),
                department: l.incident.dispatch().map(|d| d.department.clone()),
                overdue: l.incident.overdue(day.cutoff.fixed_offset()),
                reporter: l.row.reporter.clone(),
                category: l.row.category.clone(),
                category_zh: cat.map(|c| c.name_zh.clone()).unwrap_or_default(),
                category_en: cat.map(|c| c.name_en.clone()).unwrap_or_default(),
                status: l.row.status.as_str().to_owned(),
                grid: l.row.grid.clone(),
                captured_at: l.row.captured_at.clone(),
                received_at: l.row.first_received_at.clone(),
                captured_today: day.in_day(&l.captured),
                received_today: day.in_day(&l.received),
                lat: l.row.lat,
                lon: l.row.lon,
                description: l.incident.description.clone(),
                complete: photos.iter().all(|p| p.verified),
                photos,
            }
        })
        .collect()
}

/// Every grid worker of the community's cells, and anyone else who logged
/// one of the day's incidents there.
fn workers_of_day(known: &[Worker], cells: &[String], incidents: &[IncidentLine]) -> Vec<Worker> {
    let mut workers: Vec<Worker> = known
        .iter()
        .filter(|w| w.role == Role::Worker && w.retired_at.is_none() && w.grids.iter().any(|g| cells.contains(g)))
        .cloned()
        .collect();
    for i in incidents {
        if !workers.iter().any(|w| w.id == i.reporter) {
            let w = known
                .iter()
                .find(|w| w.id == i.reporter)
                .cloned()
                .unwrap_or_else(|| Worker {
                    id: i.reporter.clone(),
                    name: i.reporter.clone(),
                    role: Role::Worker,
                    community: None,
                    grids: Vec::new(),
                    department: None,
                    retired_at: None,
                });
            workers.push(w);
        }
    }
    workers
}

fn worker_rows(
    storage: &dyn Storage,
    day: &Day<'_>,
    incidents: &[IncidentLine],
    anomalies: &[Anomaly],
    now: DateTime<Utc>,
) -> Result<Vec<WorkerRow>, ReportError> {
    let devices = storage.devices()?;
    let known = storage.workers()?;
    let mut rows = Vec::new();
    for w in workers_of_day(&known, &day.cells, incidents) {
        let mine: Vec<&IncidentLine> = incidents.iter().filter(|i| i.reporter == w.id).collect();
        let dev_rows = device_rows(storage, &devices, &w.id)?;
        let n_anomalies = anomalies.iter().filter(|a| a.reporter() == w.id).count() as u64;
        rows.push(worker_row(w, day, &mine, dev_rows, n_anomalies, now));
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// The worker's enrolled, unrevoked field devices and their last manifests.
fn device_rows(storage: &dyn Storage, devices: &[Device], worker: &str) -> Result<Vec<DeviceRow>, ReportError> {
    let mut out = Vec::new();
    for d in devices
        .iter()
        .filter(|d| d.worker.id == worker && !d.read_only && d.revoked_at.is_none())
    {
        let status = manifest_status(storage, d)?;
        out.push(DeviceRow {
            id: d.id.clone(),
            last_sync_at: status.as_ref().map(|s| s.last_sync_at.clone()),
            in_step: status.as_ref().map(|s| s.in_step),
            pending_docs: status.as_ref().map_or(0, |s| s.pending_docs),
            pending_photos: status.as_ref().map_or(0, |s| s.pending_photos),
            refused_docs: status.as_ref().map_or(0, |s| s.refused_docs),
            clock_offset_ms: d.clock_offset_ms,
        });
    }
    Ok(out)
}

/// The worker's incidents of the day some of whose photo files the server lacks.
fn incomplete_of(day: &Day<'_>, mine: &[&IncidentLine]) -> Vec<Incomplete> {
    mine.iter()
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
                        .filter(|(_, h)| !day.is_verified(&i.id, h))
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
        .collect()
}

fn worker_row(
    w: Worker,
    day: &Day<'_>,
    mine: &[&IncidentLine],
    devices: Vec<DeviceRow>,
    anomalies: u64,
    now: DateTime<Utc>,
) -> WorkerRow {
    let incomplete = incomplete_of(day, mine);
    let last_sync_at = devices
        .iter()
        .filter_map(|d| d.last_sync_at.as_deref())
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .max();
    let in_step = devices
        .iter()
        .any(|d| d.in_step.is_some())
        .then(|| devices.iter().all(|d| d.in_step != Some(false)));
    let no_sync_24h = last_sync_at.is_none_or(|t| now - t.with_timezone(&Utc) > Duration::hours(NO_SYNC_HOURS));
    let clock_offset_ms = devices
        .iter()
        .filter_map(|d| d.clock_offset_ms)
        .filter(|o| o.unsigned_abs() > CLOCK_OFFSET_LIMIT_MS as u64)
        .max_by_key(|o| o.unsigned_abs());
    let flags = flags(&Signals {
        in_step,
        incomplete: !incomplete.is_empty(),
        never: last_sync_at.is_none(),
        no_sync_24h,
        clock: clock_offset_ms.is_some(),
        anomalies: anomalies > 0,
    });
    WorkerRow {
        captured: mine.iter().filter(|i| i.captured_today).count() as u64,
        received: mine.iter().filter(|i| i.received_today).count() as u64,
        photos_referenced: mine.iter().map(|i| i.photos.len() as u64).sum(),
        photos_verified: mine
            .iter()
            .map(|i| i.photos.iter().filter(|p| p.verified).count() as u64)
            .sum(),
        incomplete,
        last_sync_at: last_sync_at.map(|t| rfc3339(&t.with_timezone(&Utc))),
        in_step,
        pending_docs: devices.iter().map(|d| d.pending_docs).sum(),
        pending_photos: devices.iter().map(|d| d.pending_photos).sum(),
        refused_docs: devices.iter().map(|d| d.refused_docs).sum(),
        no_sync_24h,
        clock_offset_ms,
        anomalies,
        devices,
        flags,
        id: w.id,
        name: w.name,
        grids: w.grids,
    }
}

/// What a worker's row shows, before it becomes flags.
struct Signals {
    in_step: Option<bool>,
    incomplete: bool,
    never: bool,
    no_sync_24h: bool,
    clock: bool,
    anomalies: bool,
}

fn flags(s: &Signals) -> Vec<Flag> {
    let sync = if s.never {
        Some(Flag::NeverSynced)
    } else {
        s.no_sync_24h.then_some(Flag::NoSync24h)
    };
    [
        (s.in_step == Some(false)).then_some(Flag::NotInStep),
        s.incomplete.then_some(Flag::Incomplete),
        sync,
        s.clock.then_some(Flag::ClockOffset),
        s.anomalies.then_some(Flag::Anomalies),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Totals over the day's incidents.
fn totals(incidents: &[IncidentLine]) -> Totals {
    let taxonomy = Taxonomy::builtin();
    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_status: HashMap<String, u64> = HashMap::new();
    for i in incidents {
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
    let by_status = Status::ALL
        .iter()
        .filter_map(|s| {
            by_status.get(s.as_str()).map(|&count| StatusTotal {
                status: s.as_str().to_owned(),
                name_zh: s.name_zh().to_owned(),
                count,
            })
        })
        .collect();
    Totals {
        incidents: incidents.len() as u64,
        by_category: categories,
        by_status,
    }
}

/// Open for more than three days at the cut-off (end of day, or now).
/// Every case of the community past its deadline at the cut-off, the
/// longest overdue first.
fn overdue_cases(day: &Day<'_>) -> Vec<OverdueCase> {
    let taxonomy = Taxonomy::builtin();
    let cutoff = day.cutoff.fixed_offset();
    let mut out: Vec<OverdueCase> = day
        .all
        .iter()
        .filter(|l| l.incident.overdue(cutoff))
        .filter_map(|l| {
            let d = l.incident.dispatch()?;
            Some(OverdueCase {
                id: l.row.id.clone(),
                case: l.incident.case.as_ref().map(ToString::to_string),
                category: l.row.category.clone(),
                status: l.row.status.as_str().to_owned(),
                department: d.department.clone(),
                department_zh: taxonomy
                    .department(&d.department)
                    .map(|x| x.name_zh.clone())
                    .unwrap_or_default(),
                deadline: sync_core::incident::rfc3339(&d.deadline),
                hours_overdue: (cutoff - d.deadline).num_hours(),
            })
        })
        .collect();
    out.sort_by_key(|o| std::cmp::Reverse(o.hours_overdue));
    out
}

fn open_cases(day: &Day<'_>) -> Vec<OpenIncident> {
    let mut out: Vec<OpenIncident> = day
        .rows()
        .filter_map(|(row, captured)| {
            let open = matches!(row.status, Status::Reported | Status::Dispatched | Status::InProgress);
            let age = day.cutoff - captured.with_timezone(&Utc);
            (open && age > Duration::days(OPEN_DAYS)).then(|| OpenIncident {
                id: row.id.clone(),
                reporter: row.reporter.clone(),
                category: row.category.clone(),
                status: row.status.as_str().to_owned(),
                captured_at: row.captured_at.clone(),
                days_open: age.num_days(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    //! Clock offsets and sync ages need a device clock or a day that the
    //! integration tests cannot set; here a real SQLite store gets the
    //! syncs recorded at chosen times, and the report is made at a chosen `now`.

    use super::*;
    use crate::report::text::{offset_text, to_csv};
    use crate::storage::{Accounts, DeviceManifest, EnrolOutcome, Enrolment, NewCode, SqliteStorage, SyncRecord};

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
                department: None,
                retired_at: None,
            };
            storage.add_worker(&worker, "2026-11-01T00:00:00Z").unwrap();
        }
        let now = at("2026-11-20T12:00:00Z");
        let manifest = DeviceManifest::default();
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
                .add_enrol_code(
                    &NewCode {
                        code_hash: &code,
                        worker: w,
                        device: None,
                        expires_ms: i64::MAX,
                    },
                    "2026-11-01T00:00:00Z",
                )
                .unwrap();
            let enrolment = Enrolment {
                code_hash: &code,
                worker: w,
                device: &device,
                actor: &[i as u8; 16],
                token_hash: &format!("token-{i}"),
                public_key: None,
                label: None,
            };
            let outcome = storage.enroll(&enrolment, 0, "2026-11-01T00:00:00Z").unwrap();
            assert!(matches!(outcome, EnrolOutcome::Enrolled(_)), "{outcome:?}");
            if let Some(t) = synced {
                let record = SyncRecord {
                    device: &device,
                    manifest: &manifest,
                    clock_offset_ms: Some(offset),
                    scope: None,
                    at: t,
                };
                storage.record_sync(&record).unwrap();
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
        assert!(csv.contains(",\"w-nodevice\",\"'=SUM(A1)\","), "{csv}");
        assert_eq!(r.day_end, "2026-11-21T00:00:00+08:00");
    }

    /// An incident row as a push writes it (the document itself is not
    /// read by `report_rows`), received at `received`.
    fn put(storage: &SqliteStorage, id: &str, status: Status, captured: &str, received: &str) {
        use crate::storage::ChangeLog;
        storage
            .commit_push(&[write_row(id, status, captured)], "d", received)
            .unwrap();
    }

    fn closed_at() -> Status {
        Status::Closed
    }

    fn write_row(id: &str, status: Status, captured: &str) -> crate::storage::IncidentWrite {
        crate::storage::IncidentWrite {
            id: id.into(),
            base: None,
            doc: vec![],
            heads: vec![],
            grid: "HLT-CX-HX-01".into(),
            category: "manhole-cover".into(),
            status,
            reporter: "w-li".into(),
            device: "d".into(),
            captured_at: captured.into(),
            lat: None,
            lon: None,
            case_no: None,
            new_changes: vec![],
            blob_refs: vec![],
        }
    }

    #[test]
    fn the_report_reads_the_day_its_neighbours_and_the_open_cases_only() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("s.sqlite3"), "epoch").unwrap();
        let closed = Status::Closed;
        // The day is 2026-11-20 in Asia/Shanghai: [11-19T16:00Z, 11-20T16:00Z).
        put(
            &storage,
            "today",
            closed,
            "2026-11-20T09:00:00+08:00",
            "2026-11-20T01:05:00Z",
        );
        put(
            &storage,
            "late",
            closed,
            "2026-11-12T09:00:00+08:00",
            "2026-11-20T02:00:00Z",
        );
        put(
            &storage,
            "eve",
            closed,
            "2026-11-19T23:00:00+08:00",
            "2026-11-19T15:10:00Z",
        );
        put(
            &storage,
            "near-late",
            closed,
            "2026-11-11T20:00:00+08:00",
            "2026-11-11T12:00:00Z",
        );
        put(
            &storage,
            "old-open",
            Status::Dispatched,
            "2026-10-01T09:00:00+08:00",
            "2026-10-01T01:00:00Z",
        );
        put(
            &storage,
            "old-closed",
            closed,
            "2026-10-01T09:00:00+08:00",
            "2026-10-01T01:00:00Z",
        );
        put(
            &storage,
            "week-before",
            closed,
            "2026-11-13T20:00:00+08:00",
            "2026-11-13T12:00:00Z",
        );
        put(
            &storage,
            "tomorrow",
            closed,
            "2026-11-22T09:00:00+08:00",
            "2026-11-22T01:00:00Z",
        );
        let cells = GridMap::builtin().community_cells("HLT-CX-HX");
        let day = (
            at("2026-11-19T16:00:00Z").timestamp(),
            at("2026-11-20T16:00:00Z").timestamp(),
        );
        let read: Vec<String> = report_rows(&storage, &cells, day)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        // Received on the day though captured a week before, with its own
        // neighbour a duplicate's window away (and what lies between: the
        // reach is one span); the evening before; the open case. Not the
        // old closed case, nor one captured after the reach.
        assert_eq!(read, ["eve", "late", "near-late", "old-open", "today", "week-before"]);
    }

    #[test]
    fn a_duplicate_from_the_evening_before_is_found_from_its_columns_alone() {
        use sync_core::incident::{IncidentId, Location, NewIncident};
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("s.sqlite3"), "epoch").unwrap();
        let captured = DateTime::parse_from_rfc3339("2026-11-20T00:30:00+08:00").unwrap();
        let new = NewIncident {
            id: IncidentId::new(captured.timestamp_millis() as u64, [1; 10]),
            case: None,
            category: "manhole-cover".into(),
            description: "井盖".into(),
            location: Location {
                lat: Some(41.1),
                lon: Some(122.05),
                ..Location::default()
            },
            grid: "HLT-CX-HX-01".into(),
            reporter: "w-li".into(),
            device: "d".into(),
            captured_at: captured,
            photos: vec![],
        };
        let mut doc = sync_core::IncidentDoc::create(&new, automerge::ActorId::from(vec![1u8; 16])).unwrap();
        let read = doc.read().unwrap();
        let sealed = doc.seal().unwrap();
        let write = crate::sync::write_of(&new.id.to_string(), None, sealed, &read, vec![]);
        use crate::storage::ChangeLog;
        storage.commit_push(&[write], "d", "2026-11-19T16:40:00Z").unwrap();
        // Captured the evening before, by someone else, 11 m away. Its
        // document is empty: the report must not need it.
        let mut neighbour = write_row("eve", closed_at(), "2026-11-19T22:00:00+08:00");
        neighbour.reporter = "w-wang".into();
        neighbour.lat = Some(41.1001);
        neighbour.lon = Some(122.05);
        storage.commit_push(&[neighbour], "d", "2026-11-19T14:10:00Z").unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let r = daily_report(
            &storage,
            &GridMap::builtin(),
            "HLT-CX-HX",
            date,
            at("2026-11-20T12:00:00Z"),
        )
        .unwrap();
        assert!(r.unreadable.is_empty(), "{:?}", r.unreadable);
        let found = r
            .anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::LikelyDuplicate { other, .. } if other == "eve"));
        assert!(found, "{:?}", r.anomalies);
    }
}

//! Open311 GeoReport v2, read side, JSON only: categories as services,
//! incidents as service requests, and the display photo of each as its
//! `media_url`, so that civic tools built for the standard can read the log.
//! This module maps and selects; `http/open311.rs` serves it with the
//! standard's error shape. `services.json` is public; requests and media
//! need a center or operator token unless the server runs with
//! `--open311-public`.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, TimeDelta};
use serde::{Deserialize, Serialize};
use sync_core::export::local_time;
use sync_core::taxonomy::CategoryGroup;
use sync_core::{BlobHash, GridMap, Incident, Status, Taxonomy};

use crate::export::{ExportError, decode};
use crate::storage::{BlobKind, IncidentFilter, Scope, Storage, StorageError};

/// The widest `start_date`..`end_date` span, and the window when none is given.
pub const MAX_SPAN_DAYS: i64 = 90;
/// At most this many requests in one answer, oldest first.
pub const MAX_REQUESTS: usize = 1000;

/// A request Open311 answers with an error.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn bad_request(description: impl Into<String>) -> QueryError {
    QueryError::BadRequest(description.into())
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub service_code: String,
    pub service_name: String,
    pub description: String,
    pub metadata: bool,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub keywords: String,
    pub group: String,
}

fn group_name(g: CategoryGroup) -> String {
    let en = match g {
        CategoryGroup::Facility => "facility",
        CategoryGroup::Event => "event",
    };
    format!("{} {en}", g.name_zh())
}

/// Every category as an Open311 service.
pub fn service_list(taxonomy: &Taxonomy) -> Vec<Service> {
    taxonomy
        .categories
        .iter()
        .map(|c| Service {
            service_code: c.code.clone(),
            service_name: format!("{} {}", c.name_zh, c.name_en),
            description: format!(
                "{} ({}), logged by grid workers (网格员) on patrol",
                c.name_en, c.name_zh
            ),
            metadata: false,
            kind: "realtime",
            keywords: [c.name_zh.as_str(), c.name_en.as_str(), c.code.as_str()].join(", "),
            group: group_name(c.group),
        })
        .collect()
}

/// One incident as an Open311 service request.
#[derive(Debug, Serialize)]
pub struct ServiceRequest {
    pub service_request_id: String,
    pub status: &'static str,
    pub status_notes: String,
    pub service_name: String,
    pub service_code: String,
    pub description: String,
    pub agency_responsible: String,
    pub requested_datetime: String,
    pub updated_datetime: String,
    pub address: String,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub media_url: Option<String>,
}

/// `open` while someone still has to act: reported, dispatched, in_progress;
/// `closed` from resolved on (and for rejected and duplicate).
pub fn open311_status(s: Status) -> &'static str {
    match s {
        Status::Reported | Status::Dispatched | Status::InProgress => "open",
        Status::Resolved | Status::Verified | Status::Closed | Status::Rejected | Status::Duplicate => "closed",
    }
}

fn w3(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// The last time anything was done to the incident, by the clocks of the
/// devices that did it: its capture, a status change, a note or a photo.
fn last_change(i: &Incident) -> DateTime<FixedOffset> {
    std::iter::once(i.captured_at)
        .chain(i.status_history.iter().map(|c| c.at))
        .chain(i.notes.iter().map(|n| n.at))
        .chain(i.photos.iter().map(|p| p.added_at))
        .max()
        .expect("at least the capture time")
}

/// The display copy of the first photo added whose display file the server
/// holds verified.
fn display_photo<'a>(i: &'a Incident, verified: &HashSet<String>) -> Option<&'a BlobHash> {
    let mut photos: Vec<_> = i.photos.iter().collect();
    photos.sort_by_key(|p| (p.added_at, p.original.to_hex()));
    photos
        .into_iter()
        .map(|p| &p.display)
        .find(|d| verified.contains(&d.to_hex()))
}

/// Maps an incident; `verified_displays` are the hashes of display photos
/// the server holds, `base_url` the server's address for `media_url`.
/// Where `media_url` points: the server's address, and for a reader who
/// sent a token, the key and expiry that make the link work on its own.
#[derive(Clone, Copy)]
pub struct MediaLinks<'a> {
    pub base_url: &'a str,
    pub signed: Option<(&'a [u8; 32], i64)>,
}

impl MediaLinks<'_> {
    fn url(&self, display: &str) -> String {
        let file = format!("{display}.jpg");
        let mut url = format!("{}/open311/v2/media/{file}", self.base_url);
        if let Some((key, expires)) = self.signed {
            let sig = crate::secrets::link_sig(key, &file, expires);
            url.push_str(&format!("?expires={expires}&sig={sig}"));
        }
        url
    }
}

pub fn service_request(
    i: &Incident,
    grids: &GridMap,
    taxonomy: &Taxonomy,
    verified_displays: &HashSet<String>,
    media: &MediaLinks<'_>,
) -> ServiceRequest {
    let category = taxonomy.get(&i.category);
    let path = grids.cell(&i.grid);
    let mut address: Vec<&str> = i.location.address.as_deref().into_iter().collect();
    if let Some(p) = path {
        address.extend([
            p.cell.name_zh.as_str(),
            p.community.name_zh.as_str(),
            p.street.name_zh.as_str(),
            p.district.name_zh.as_str(),
        ]);
    } else {
        address.push(&i.grid);
    }
    ServiceRequest {
        service_request_id: i.id.to_string(),
        status: open311_status(i.status),
        status_notes: format!("{} ({})", i.status.as_str(), i.status.name_zh()),
        service_name: category
            .map(|c| format!("{} {}", c.name_zh, c.name_en))
            .unwrap_or_else(|| i.category.clone()),
        service_code: i.category.clone(),
        description: i.description.clone(),
        agency_responsible: path
            .map(|p| format!("{} {}", p.community.name_zh, p.community.name_en))
            .unwrap_or_default(),
        requested_datetime: w3(&local_time(grids, &i.grid, &i.captured_at)),
        updated_datetime: w3(&local_time(grids, &i.grid, &last_change(i))),
        address: address.join(", "),
        lat: i.location.lat,
        long: i.location.lon,
        media_url: display_photo(i, verified_displays).map(|h| media.url(&h.to_hex())),
    }
}

/// Maps decoded incidents, looking up which display photos the server holds.
pub fn to_requests(
    storage: &dyn Storage,
    grids: &GridMap,
    incidents: &[Incident],
    media: &MediaLinks<'_>,
) -> Result<Vec<ServiceRequest>, QueryError> {
    let ids: Vec<String> = incidents.iter().map(|i| i.id.to_string()).collect();
    let verified: HashSet<String> = storage
        .photo_refs(&ids)?
        .into_iter()
        .filter(|r| r.verified && r.kind == BlobKind::Display)
        .map(|r| r.hash)
        .collect();
    Ok(incidents
        .iter()
        .map(|i| service_request(i, grids, Taxonomy::builtin(), &verified, media))
        .collect())
}

/// The query of `requests.json`, as the standard names its parameters.
#[derive(Debug, Default, Deserialize)]
pub struct RequestsQuery {
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub status: Option<String>,
    pub service_code: Option<String>,
    pub service_request_id: Option<String>,
    /// The token, for clients that cannot send a header; read by the HTTP layer.
    pub api_key: Option<String>,
}

/// Splits a comma list, dropping empty items.
fn list(s: &Option<String>) -> Vec<&str> {
    s.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect()
}

fn datetime(param: &str, value: &Option<String>) -> Result<Option<DateTime<FixedOffset>>, QueryError> {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    // A `+` left unescaped in a query string arrives as a space.
    let v = v.replace(' ', "+");
    DateTime::parse_from_rfc3339(&v).map(Some).map_err(|_| {
        bad_request(format!(
            "{param} `{}` is not a w3 date-time with a zone, such as 2026-11-20T00:00:00+08:00",
            v.chars().take(64).collect::<String>()
        ))
    })
}

/// The `start_date`..`end_date` window: 90 days up to now when neither is
/// given, 90 days from or to the one given, and never more than 90 days.
fn window(
    start: Option<DateTime<FixedOffset>>,
    end: Option<DateTime<FixedOffset>>,
    now: DateTime<FixedOffset>,
) -> Result<(DateTime<FixedOffset>, DateTime<FixedOffset>), QueryError> {
    let span = TimeDelta::days(MAX_SPAN_DAYS);
    let (start, end) = match (start, end) {
        (None, None) => (now - span, now),
        (Some(s), None) => (s, s + span),
        (None, Some(e)) => (e - span, e),
        (Some(s), Some(e)) => (s, e),
    };
    if end < start {
        return Err(bad_request("end_date is before start_date"));
    }
    if end - start > span {
        return Err(bad_request(format!(
            "start_date to end_date may not span more than {MAX_SPAN_DAYS} days"
        )));
    }
    Ok((start, end))
}

/// The `open`/`closed` statuses asked for (none: both).
fn statuses(q: &RequestsQuery) -> Result<HashSet<&str>, QueryError> {
    let mut out = HashSet::new();
    for s in list(&q.status) {
        match s {
            "open" | "closed" => {
                out.insert(s);
            }
            other => {
                return Err(bad_request(format!(
                    "status `{}` is not open or closed",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok(out)
}

/// The incidents a `requests.json` query names, oldest first, at most [`MAX_REQUESTS`].
pub fn find_requests(
    storage: &dyn Storage,
    scope: &Scope,
    q: &RequestsQuery,
    now: DateTime<FixedOffset>,
) -> Result<Vec<Incident>, QueryError> {
    let ids = list(&q.service_request_id);
    if !ids.is_empty() {
        // The standard: a list of ids overrides every other filter.
        let mut found = Vec::new();
        for id in ids.iter().take(MAX_REQUESTS) {
            found.extend(one_incident(storage, scope, id)?);
        }
        return Ok(found);
    }
    let open_closed = statuses(q)?;
    let codes = list(&q.service_code);
    for code in &codes {
        Taxonomy::builtin()
            .require(code)
            .map_err(|e| bad_request(e.to_string().replace("category", "service_code")))?;
    }
    let (start, end) = window(
        datetime("start_date", &q.start_date)?,
        datetime("end_date", &q.end_date)?,
        now,
    )?;
    let filter = IncidentFilter {
        grids: scope.cells().map(<[String]>::to_vec),
        statuses: Status::ALL
            .into_iter()
            .filter(|s| !open_closed.is_empty() && open_closed.contains(open311_status(*s)))
            .collect(),
        category: match codes.as_slice() {
            [one] => Some((*one).to_owned()),
            _ => None,
        },
        // The index narrows to the window; the check below stays exact.
        captured: Some((start.timestamp(), end.timestamp() + 1)),
        ..IncidentFilter::default()
    };
    let keep = |i: &Incident| {
        (codes.is_empty() || codes.contains(&i.category.as_str())) && i.captured_at >= start && i.captured_at <= end
    };
    Ok(first_matching(storage, filter, keep)?)
}

/// The first [`MAX_REQUESTS`] incidents of `filter` that `keep` keeps,
/// read a page at a time so that memory stays bounded however many match.
fn first_matching(
    storage: &dyn Storage,
    mut filter: IncidentFilter,
    keep: impl Fn(&Incident) -> bool,
) -> Result<Vec<Incident>, crate::storage::StorageError> {
    filter.limit = Some(MAX_REQUESTS);
    let mut found = Vec::new();
    loop {
        let page = storage.incidents(&filter)?;
        let last_page = page.len() < MAX_REQUESTS;
        filter.after = page.last().map(|s| s.id.clone());
        for stored in page {
            // An unreadable document is left out (and logged), never the list.
            match decode(&stored.id, &stored.doc) {
                Ok(i) if keep(&i) => found.push(i),
                _ => continue,
            }
            if found.len() == MAX_REQUESTS {
                return Ok(found);
            }
        }
        if last_page {
            return Ok(found);
        }
    }
}

/// An incident by id, if it exists and the caller may read it.
pub fn one_incident(storage: &dyn Storage, scope: &Scope, id: &str) -> Result<Option<Incident>, QueryError> {
    let Some(stored) = storage.incident_doc(id)? else {
        return Ok(None);
    };
    if !scope.allows(&stored.grid) {
        return Ok(None);
    }
    Ok(Some(decode(id, &stored.doc)?))
}

/// `requests/{id}.json`: the id part of the file name.
pub fn request_stem(file: &str) -> Result<&str, QueryError> {
    match (file.strip_suffix(".json"), file.strip_suffix(".xml")) {
        (Some(id), _) => Ok(id),
        (None, Some(_)) => Err(only_json()),
        (None, None) => Err(QueryError::NotFound(
            "ask for requests/{service_request_id}.json".into(),
        )),
    }
}

/// An id in its one spelling; ids are UUIDs, anything else names no incident.
pub fn request_id(stem: &str) -> Result<String, QueryError> {
    uuid::Uuid::try_parse(stem)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            QueryError::NotFound(format!(
                "no service request `{}`",
                stem.chars().take(64).collect::<String>()
            ))
        })
}

pub fn only_json() -> QueryError {
    bad_request("this server speaks Open311 in JSON only; ask for the .json resource")
}

/// `media/{hash}.jpg`: a display copy or thumbnail that an incident in
/// scope names through a proven reference. Originals keep the camera's
/// EXIF and are never served here, nor is a file any incident names as an
/// original, whatever another incident calls it.
pub fn media_hash(storage: &dyn Storage, scope: &Scope, file: &str) -> Result<Option<BlobHash>, QueryError> {
    let Some(hash) = file.strip_suffix(".jpg").and_then(|h| h.parse::<BlobHash>().ok()) else {
        return Ok(None);
    };
    let hex = hash.to_hex();
    let shown = storage
        .proven_kinds(&hex, scope)?
        .iter()
        .any(|k| matches!(k, BlobKind::Display | BlobKind::Thumb));
    let original = storage.kinds_anywhere(&hex)?.contains(&BlobKind::Original);
    Ok((shown && !original).then_some(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_open_and_closed() {
        use Status::*;
        for (s, want) in [
            (Reported, "open"),
            (Dispatched, "open"),
            (InProgress, "open"),
            (Resolved, "closed"),
            (Verified, "closed"),
            (Closed, "closed"),
            (Rejected, "closed"),
            (Duplicate, "closed"),
        ] {
            assert_eq!(open311_status(s), want, "{s}");
        }
    }

    #[test]
    fn the_window_is_at_most_ninety_days() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        let now = t("2026-11-29T12:00:00+08:00");
        assert_eq!(window(None, None, now).unwrap(), (t("2026-08-31T12:00:00+08:00"), now));
        let s = t("2026-11-01T00:00:00+08:00");
        assert_eq!(window(Some(s), None, now).unwrap().1, t("2027-01-30T00:00:00+08:00"));
        assert!(window(Some(s), Some(t("2027-02-01T00:00:00+08:00")), now).is_err());
        assert!(window(Some(s), Some(t("2026-10-31T00:00:00+08:00")), now).is_err());
    }
}

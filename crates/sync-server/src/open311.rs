//! Open311 GeoReport v2, read side, JSON only: categories as services,
//! incidents as service requests, and the display photo of each as its
//! `media_url`, so that civic tools built for the standard can read the log.
//!
//! Errors are the standard's JSON arrays `[{"code": 400, "description": …}]`.
//! `services.json` is public; requests and media need a center or operator
//! token (Bearer or `api_key`) unless the server runs with `--open311-public`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, FixedOffset, TimeDelta};
use serde::{Deserialize, Serialize};
use sync_core::export::local_time;
use sync_core::taxonomy::CategoryGroup;
use sync_core::{BlobHash, GridMap, Incident, Status, Taxonomy};

use crate::api::{ApiError, App, bearer, blocking, require_reader};
use crate::export::{ExportError, decode, taxonomy};
use crate::storage::{IncidentFilter, Scope};
use crate::sync::scope_of;

/// The widest `start_date`..`end_date` span, and the window when none is given.
pub const MAX_SPAN_DAYS: i64 = 90;
/// At most this many requests in one answer, oldest first.
pub const MAX_REQUESTS: usize = 1000;

/// `serve` flags for Open311.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Serve Open311 requests and photos without a token (read-only, every community).
    #[arg(long)]
    pub open311_public: bool,
    /// The base URL clients reach this server at, for Open311 `media_url`
    /// (default: http://<listen address>).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

impl ServeArgs {
    /// The base of absolute URLs, without a trailing slash.
    pub fn base_url(&self, addr: SocketAddr) -> anyhow::Result<String> {
        match &self.public_url {
            None => Ok(format!("http://{addr}")),
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(u.trim_end_matches('/').to_owned()),
            Some(u) => anyhow::bail!("--public-url `{u}` must start with http:// or https://"),
        }
    }
}

struct Open311 {
    app: App,
    public: bool,
    base_url: String,
}

type Shared = Arc<Open311>;

pub fn routes(app: App, args: &ServeArgs, addr: SocketAddr) -> anyhow::Result<Router> {
    let state = Arc::new(Open311 {
        app,
        public: args.open311_public,
        base_url: args.base_url(addr)?,
    });
    Ok(Router::new()
        .route("/open311/v2/services.json", get(services))
        .route("/open311/v2/requests.json", get(requests))
        .route("/open311/v2/requests/{file}", get(request))
        .route("/open311/v2/media/{file}", get(media))
        .route("/open311/v2/{file}", get(other))
        .with_state(state))
}

/// An Open311 error: the HTTP status and a sentence, as `[{"code", "description"}]`.
#[derive(Debug)]
pub struct Open311Error {
    status: StatusCode,
    description: String,
}

impl Open311Error {
    fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Open311Error {
            status,
            description: description.into(),
        }
    }
}

impl From<ApiError> for Open311Error {
    fn from(e: ApiError) -> Self {
        Open311Error::new(e.status(), e.message())
    }
}

impl From<ExportError> for Open311Error {
    fn from(e: ExportError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for Open311Error {
    fn into_response(self) -> Response {
        let body = serde_json::json!([{"code": self.status.as_u16(), "description": self.description}]);
        (self.status, axum::Json(body)).into_response()
    }
}

fn bad_request(description: impl Into<String>) -> Open311Error {
    Open311Error::new(StatusCode::BAD_REQUEST, description)
}

fn not_found(description: impl Into<String>) -> Open311Error {
    Open311Error::new(StatusCode::NOT_FOUND, description)
}

fn only_json() -> Open311Error {
    bad_request("this server speaks Open311 in JSON only; ask for the .json resource")
}

/// The incidents a caller may read: everything when the server is public,
/// else the scope of a center or operator token.
fn reader_scope(st: &Open311, headers: &HeaderMap, api_key: Option<&str>) -> Result<Scope, Open311Error> {
    if st.public {
        return Ok(Scope::All);
    }
    let token = bearer(headers).or(api_key.filter(|k| !k.is_empty())).ok_or_else(|| {
        Open311Error::new(
            StatusCode::UNAUTHORIZED,
            "this needs a center or operator token, as api_key=… or Authorization: Bearer …",
        )
    })?;
    let device = require_reader(&st.app, Some(token))?;
    Ok(scope_of(&device, &st.app.grids))
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

fn json_ok(value: &impl Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::to_vec(value).expect("Open311 answers serialise"),
    )
        .into_response()
}

async fn services() -> Response {
    json_ok(&service_list(taxonomy()))
}

/// Any other resource at the top: `.xml` gets a clear refusal.
async fn other(Path(file): Path<String>) -> Open311Error {
    if file.ends_with(".xml") {
        only_json()
    } else {
        not_found("Open311 here serves services.json, requests.json, requests/{id}.json and media/{hash}.jpg")
    }
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
pub fn service_request(
    i: &Incident,
    grids: &GridMap,
    taxonomy: &Taxonomy,
    verified_displays: &HashSet<String>,
    base_url: &str,
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
        media_url: display_photo(i, verified_displays).map(|h| format!("{base_url}/open311/v2/media/{h}.jpg")),
    }
}

/// Maps decoded incidents, looking up which display photos the server holds.
fn to_requests(st: &Open311, incidents: &[Incident]) -> Result<Vec<ServiceRequest>, Open311Error> {
    let ids: Vec<String> = incidents.iter().map(|i| i.id.to_string()).collect();
    let verified: HashSet<String> = st
        .app
        .storage
        .photo_refs(&ids)
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|r| r.verified && r.kind == "display")
        .map(|r| r.hash)
        .collect();
    Ok(incidents
        .iter()
        .map(|i| service_request(i, &st.app.grids, taxonomy(), &verified, &st.base_url))
        .collect())
}

#[derive(Debug, Default, Deserialize)]
struct RequestsQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    status: Option<String>,
    service_code: Option<String>,
    service_request_id: Option<String>,
    api_key: Option<String>,
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

fn datetime(param: &str, value: &Option<String>) -> Result<Option<DateTime<FixedOffset>>, Open311Error> {
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
) -> Result<(DateTime<FixedOffset>, DateTime<FixedOffset>), Open311Error> {
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

fn scope_grids(scope: &Scope) -> Option<Vec<String>> {
    match scope {
        Scope::All => None,
        Scope::Grids(g) => Some(g.clone()),
    }
}

async fn requests(
    State(st): State<Shared>,
    headers: HeaderMap,
    query: Result<Query<RequestsQuery>, QueryRejection>,
) -> Result<Response, Open311Error> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    blocking(move || Ok(run_requests(&st, &headers, &q)))
        .await
        .map_err(Open311Error::from)?
}

fn run_requests(st: &Open311, headers: &HeaderMap, q: &RequestsQuery) -> Result<Response, Open311Error> {
    let scope = reader_scope(st, headers, q.api_key.as_deref())?;
    let storage = st.app.storage.as_ref();
    let ids = list(&q.service_request_id);
    if !ids.is_empty() {
        // The standard: a list of ids overrides every other filter.
        let mut found = Vec::new();
        for id in ids.iter().take(MAX_REQUESTS) {
            if let Some(i) = one_incident(st, &scope, id)? {
                found.push(i);
            }
        }
        return Ok(json_ok(&to_requests(st, &found)?));
    }
    let mut open_closed = HashSet::new();
    for s in list(&q.status) {
        match s {
            "open" | "closed" => {
                open_closed.insert(s);
            }
            other => {
                return Err(bad_request(format!(
                    "status `{}` is not open or closed",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    let codes = list(&q.service_code);
    for code in &codes {
        taxonomy()
            .require(code)
            .map_err(|e| bad_request(e.to_string().replace("category", "service_code")))?;
    }
    let now = chrono::Utc::now().fixed_offset();
    let (start, end) = window(
        datetime("start_date", &q.start_date)?,
        datetime("end_date", &q.end_date)?,
        now,
    )?;
    let filter = IncidentFilter {
        grids: scope_grids(&scope),
        status: None,
        category: match codes.as_slice() {
            [one] => Some((*one).to_owned()),
            _ => None,
        },
    };
    let mut found = Vec::new();
    for stored in storage.incidents(&filter).map_err(ApiError::from)? {
        let i = decode(&stored.id, &stored.doc)?;
        if (codes.is_empty() || codes.contains(&i.category.as_str()))
            && (open_closed.is_empty() || open_closed.contains(open311_status(i.status)))
            && i.captured_at >= start
            && i.captured_at <= end
        {
            found.push(i);
            if found.len() == MAX_REQUESTS {
                break;
            }
        }
    }
    Ok(json_ok(&to_requests(st, &found)?))
}

/// An incident by id, if it exists and the caller may read it.
fn one_incident(st: &Open311, scope: &Scope, id: &str) -> Result<Option<Incident>, Open311Error> {
    let Some((doc, grid)) = st.app.storage.incident_doc(id).map_err(ApiError::from)? else {
        return Ok(None);
    };
    if !scope.allows(&grid) {
        return Ok(None);
    }
    Ok(Some(decode(id, &doc)?))
}

#[derive(Debug, Default, Deserialize)]
struct KeyQuery {
    api_key: Option<String>,
}

async fn request(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(file): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, Open311Error> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    blocking(move || {
        Ok((|| {
            let id = match (file.strip_suffix(".json"), file.strip_suffix(".xml")) {
                (Some(id), _) => id,
                (None, Some(_)) => return Err(only_json()),
                (None, None) => return Err(not_found("ask for requests/{service_request_id}.json")),
            };
            let scope = reader_scope(&st, &headers, q.api_key.as_deref())?;
            // Ids are UUIDs; anything else cannot name an incident.
            let id = uuid::Uuid::try_parse(id)
                .map_err(|_| {
                    not_found(format!(
                        "no service request `{}`",
                        id.chars().take(64).collect::<String>()
                    ))
                })?
                .hyphenated()
                .to_string();
            match one_incident(&st, &scope, &id)? {
                Some(i) => Ok(json_ok(&to_requests(&st, &[i])?)),
                None => Err(not_found(format!("no service request `{id}`"))),
            }
        })())
    })
    .await
    .map_err(Open311Error::from)?
}

async fn media(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(file): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Response, Open311Error> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    blocking(move || {
        Ok((|| {
            let scope = reader_scope(&st, &headers, q.api_key.as_deref())?;
            let missing = || not_found("no such photo");
            let hash: BlobHash = file
                .strip_suffix(".jpg")
                .and_then(|h| h.parse().ok())
                .ok_or_else(missing)?;
            let hex = hash.to_hex();
            let storage = st.app.storage.as_ref();
            // Display copies and thumbnails only: originals keep the camera's EXIF.
            let kind = storage.blob_ref(&hex, &scope).map_err(ApiError::from)?;
            if !matches!(kind.as_deref(), Some("display" | "thumb"))
                || !storage.blob_verified(&hex).map_err(ApiError::from)?
            {
                return Err(missing());
            }
            match st.app.photos.read(&hash) {
                Ok(bytes) => Ok((
                    [
                        (header::CONTENT_TYPE, "image/jpeg"),
                        (header::CACHE_CONTROL, "private, max-age=31536000, immutable"),
                    ],
                    bytes,
                )
                    .into_response()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
                Err(e) => {
                    tracing::error!(error = %e, "photo storage failed");
                    Err(Open311Error::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server cannot read its photos right now",
                    ))
                }
            }
        })())
    })
    .await
    .map_err(Open311Error::from)?
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

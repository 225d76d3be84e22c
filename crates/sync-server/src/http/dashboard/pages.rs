//! The dashboard's pages: the day's reconciliation, one incident, a photo.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{Markup, html};
use sync_core::calendar::parse_day;
use sync_core::{BlobHash, Incident, Status, Taxonomy};

use super::{error_page, header_bar, html_response, secure, sign_in_page, signed_in};
use crate::accounts::scope_of;
use crate::department;
use crate::http::App;
use crate::http::client::{Client, audit};
use crate::http::error::blocking;
use crate::report::html::{Render, page, report_markup};
use crate::report::{self, PhotoLine};
use crate::storage::{AuditKind, Role};

pub(super) async fn home(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = blocking(move || {
        let Some(signed) = signed_in(&app, &client, &headers)? else {
            return Ok(sign_in_page(&client, StatusCode::OK, None));
        };
        if signed.who.worker.role == Role::Department {
            return super::department::home(&app, &client, &signed, q.get("q").map(String::as_str));
        }
        let who = &signed.who;
        let communities = if who.worker.role == Role::Operator {
            report::communities_with_workers(app.storage.as_ref(), &app.grids)?
        } else {
            Vec::new()
        };
        // The operator sees every community: the first one with workers
        // until the picker on the page chooses another.
        let asked = q
            .get("community")
            .map(String::as_str)
            .filter(|c| !c.is_empty())
            .or(communities.first().map(String::as_str));
        let community = match report::reader_community(app.storage.as_ref(), &app.grids, &who.worker, asked) {
            Ok(c) => c,
            Err(e) => {
                let e = crate::http::error::ApiError::from(e);
                return Ok(error_page(e.status(), e.message()));
            }
        };
        let now = Utc::now();
        let date = match q.get("date").filter(|d| !d.is_empty()) {
            Some(d) => match parse_day(d) {
                Ok(d) => d,
                Err(e) => return Ok(error_page(StatusCode::BAD_REQUEST, &e.to_string())),
            },
            None => report::today(&app.grids, &community, now)?,
        };
        if let Some(found) = q.get("q").map(|s| s.trim()).filter(|s| !s.is_empty()) {
            return search(&app, who, found);
        }
        let mut r = report::daily_report(app.storage.as_ref(), &app.grids, &community, date, now)?;
        let filter = Filter::of(&q);
        r.incidents.retain(|i| filter.keeps(i));
        let detail = format!("dashboard: daily report of {community} for {date}");
        audit(&app, &client, AuditKind::ReportRead, Some(who), &detail)?;
        let title = format!("{} {} — {}", r.community.name_zh, r.community.name_en, r.date);
        let body = home_body(&app, &signed, &r, &communities, &filter, &title);
        Ok(html_response(StatusCode::OK, page(&title, false, body)))
    })
    .await;
    result.unwrap_or_else(|e| error_page(e.status(), e.message()))
}

pub(super) async fn incident_page(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = blocking(move || {
        let Some(signed) = signed_in(&app, &client, &headers)? else {
            return Ok(sign_in_page(
                &client,
                StatusCode::UNAUTHORIZED,
                Some("Sign in to see incidents."),
            ));
        };
        let incident = match shown_incident(&app, &signed.who, &id)? {
            Ok(i) => i,
            Err(refused) => return Ok(refused),
        };
        audit(
            &app,
            &client,
            AuditKind::DashboardRead,
            Some(&signed.who),
            &format!("incident {id}"),
        )?;
        let refs = app.storage.photo_refs(std::slice::from_ref(&id))?;
        let names: HashMap<String, String> = app.storage.workers()?.into_iter().map(|w| (w.id, w.name)).collect();
        let tz = app
            .grids
            .cell(&incident.grid)
            .map_or(sync_core::calendar::DEFAULT_TIMEZONE.to_owned(), |p| {
                p.community.timezone.clone()
            });
        let verified = |h: &BlobHash| refs.iter().any(|r| r.verified && r.hash == h.to_hex());
        let body = html! {
            (header_bar(&signed))
            p { a href="/center" { "← reconciliation 返回日报" } }
            (incident_markup(&incident, &verified, &Shown { names: &names, tz: &tz }))
            (super::actions::forms(&signed, &incident))
        };
        Ok(html_response(
            StatusCode::OK,
            page(&format!("Incident {id}"), false, body),
        ))
    })
    .await;
    result.unwrap_or_else(|e| error_page(e.status(), e.message()))
}

/// The incident `id` if the reader may see it, else the page that says why.
fn shown_incident(
    app: &App,
    who: &crate::storage::Device,
    id: &str,
) -> Result<Result<Incident, Response>, crate::http::error::ApiError> {
    let refuse = |status, why| Ok(Err(error_page(status, why)));
    if id.parse::<sync_core::IncidentId>().is_err() {
        return refuse(StatusCode::BAD_REQUEST, "That is not an incident id (a UUIDv7).");
    }
    let Some(stored) = app.storage.incident_doc(id)? else {
        return refuse(StatusCode::NOT_FOUND, "The server holds no such incident.");
    };
    if !scope_of(who, &app.grids).allows(&stored.grid) {
        return refuse(StatusCode::FORBIDDEN, "This incident is outside your community.");
    }
    let incident = match sync_core::IncidentDoc::read_saved(&stored.doc) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(incident = %id, error = %e, "stored incident does not read");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "The server cannot read this incident.");
        }
    };
    if !department::sees(&who.worker, &incident) {
        return refuse(StatusCode::FORBIDDEN, "This case is not dispatched to your department.");
    }
    Ok(Ok(incident))
}

pub(super) async fn photo(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Response {
    let result = blocking(move || {
        let Some(signed) = signed_in(&app, &client, &headers)? else {
            return Ok(secure((StatusCode::UNAUTHORIZED, "sign in first").into_response()));
        };
        let Ok(hash) = hash.parse::<BlobHash>() else {
            return Ok(secure((StatusCode::BAD_REQUEST, "not a photo hash").into_response()));
        };
        let scope = scope_of(&signed.who, &app.grids);
        let storage = app.storage.as_ref();
        if storage.proven_kinds(&hash.to_hex(), &scope)?.is_empty()
            || !department::reaches_photo(storage, &app.grids, &signed.who, &hash)?
        {
            return Ok(secure(
                (StatusCode::FORBIDDEN, "no incident of yours refers to this photo").into_response(),
            ));
        }
        audit(
            &app,
            &client,
            AuditKind::PhotoRead,
            Some(&signed.who),
            &format!("dashboard photo {hash}"),
        )?;
        match crate::http::cache::photo(&headers, &hash, || app.photos.chunks(&hash)) {
            Ok(resp) => Ok(secure(resp)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(secure(
                (StatusCode::NOT_FOUND, "the server does not have this photo yet").into_response(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "photo read failed");
                Ok(secure(
                    (StatusCode::SERVICE_UNAVAILABLE, "photos cannot be read right now").into_response(),
                ))
            }
        }
    })
    .await;
    result.unwrap_or_else(|e| error_page(e.status(), e.message()))
}

/// One incident: its fields, photos, notes and status history.
/// The reconciliation page: the day and community pickers, the filters,
/// and the report with its map.
fn home_body(
    app: &App,
    signed: &super::session::SignedIn,
    r: &report::DailyReport,
    communities: &[String],
    filter: &Filter,
    title: &str,
) -> Markup {
    let thumb = |p: &PhotoLine| p.thumb_verified.then(|| format!("/center/photos/{}", p.thumb));
    html! {
        (header_bar(signed))
        h2 { (title) }
        form method="get" action="/center" {
            label for="date" { "Date 日期 " }
            input type="date" id="date" name="date" value=(r.date);
            @if !communities.is_empty() {
                " "
                select name="community" {
                    @for c in communities {
                        option value=(c) selected[*c == r.community.id] { (c) }
                    }
                }
            }
            " " button type="submit" { "Show 查看" }
        }
        (filter_form(r, filter))
        (report_markup(r, &Render {
            thumb: &thumb,
            link_incidents: true,
            community: app.grids.community(&r.community.id),
        }))
    }
}

/// The incident table's filters, from the page's query.
#[derive(Default)]
struct Filter {
    status: Option<String>,
    category: Option<String>,
    worker: Option<String>,
    department: Option<String>,
    overdue: bool,
}

impl Filter {
    fn of(q: &HashMap<String, String>) -> Filter {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Filter {
            status: get("status"),
            category: get("category"),
            worker: get("worker"),
            department: get("department"),
            overdue: get("overdue").is_some(),
        }
    }

    fn keeps(&self, i: &report::IncidentLine) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.status, &i.status)
            && is(&self.category, &i.category)
            && is(&self.worker, &i.reporter)
            && is(&self.department, i.department.as_deref().unwrap_or(""))
            && (!self.overdue || i.overdue)
    }
}

/// A GET form that narrows the day's incidents and finds a case by number.
fn filter_form(r: &report::DailyReport, f: &Filter) -> Markup {
    let taxonomy = Taxonomy::builtin();
    let chosen = |want: &Option<String>, v: &str| want.as_deref() == Some(v);
    html! {
        form method="get" action="/center" id="filters" {
            input type="hidden" name="date" value=(r.date);
            input type="hidden" name="community" value=(r.community.id);
            select name="status" { option value="" { "status 状态" }
                @for s in Status::ALL { option value=(s.as_str()) selected[chosen(&f.status, s.as_str())] { (s.name_zh()) " " (s.as_str()) } } }
            " "
            select name="category" { option value="" { "category 类别" }
                @for c in &taxonomy.categories { option value=(c.code) selected[chosen(&f.category, &c.code)] { (c.name_zh) } } }
            " "
            select name="worker" { option value="" { "worker 网格员" }
                @for w in &r.workers { option value=(w.id) selected[chosen(&f.worker, &w.id)] { (w.name) } } }
            " "
            select name="department" { option value="" { "department 部门" }
                @for d in &taxonomy.departments { option value=(d.code) selected[chosen(&f.department, &d.code)] { (d.name_zh) } } }
            " "
            label { input type="checkbox" name="overdue" value="1" checked[f.overdue]; " overdue 超时" }
            " " button type="submit" { "Filter 筛选" }
        }
        form method="get" action="/center" id="search" {
            label { "Case 案件号 " input type="search" name="q" placeholder="HX-261203-7-4"; }
            " " button type="submit" { "Find 查找" }
        }
    }
}

/// The incident a case number or id names, in the reader's scope (a
/// department's: its cases): its page.
pub(super) fn search(
    app: &App,
    who: &crate::storage::Device,
    given: &str,
) -> Result<Response, crate::http::error::ApiError> {
    let found = app
        .storage
        .find_incident(given)?
        .filter(|(_, grid)| scope_of(who, &app.grids).allows(grid));
    let found = match found {
        // A department learns of no case but its own.
        Some((id, _)) if who.worker.role == Role::Department && shown_incident(app, who, &id)?.is_err() => None,
        found => found,
    };
    Ok(match found {
        Some((id, _)) => secure(
            (
                StatusCode::SEE_OTHER,
                [(axum::http::header::LOCATION, format!("/center/incidents/{id}"))],
            )
                .into_response(),
        ),
        None => error_page(
            StatusCode::NOT_FOUND,
            &format!(
                "No case {} in your community.",
                given.chars().take(40).collect::<String>()
            ),
        ),
    })
}

/// How the incident page names people and times: workers by name, times
/// in the community's zone.
struct Shown<'a> {
    names: &'a HashMap<String, String>,
    tz: &'a str,
}

impl Shown<'_> {
    fn who(&self, id: &str) -> String {
        match self.names.get(id) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_owned(),
        }
    }

    fn at(&self, t: &chrono::DateTime<chrono::FixedOffset>) -> String {
        report::local_time(&sync_core::incident::rfc3339(t), self.tz, "%Y-%m-%d %H:%M")
    }
}

fn incident_markup(incident: &Incident, verified: &dyn Fn(&BlobHash) -> bool, shown: &Shown<'_>) -> Markup {
    let taxonomy = Taxonomy::builtin();
    let cat = taxonomy.get(&incident.category);
    let status_zh = |s: Status| s.name_zh();
    html! {
        h2 { "Incident 事件 " @if let Some(c) = &incident.case { strong { (c) } " " } code { (incident.id) } }
        table {
            tr { th { "category 类别" } td { @if let Some(c) = cat { (c.name_zh) " / " (c.name_en) } @else { (incident.category) } } }
            tr { th { "status 状态" } td { (status_zh(incident.status)) " " (incident.status.as_str())
                @if !incident.status_conflicts.is_empty() {
                    br; span class="bad" { "status conflict 状态冲突: also "
                        @for s in &incident.status_conflicts { (status_zh(*s)) " " (s.as_str()) " " }
                        "— set at the same time on another device; the next move settles it" }
                }
            } }
            @if let Some(d) = incident.dispatch() {
                tr { th { "dispatched to 派遣部门" } td {
                    @if let Some(x) = taxonomy.department(&d.department) { (x.name_zh) " " (x.name_en) } @else { (d.department) }
                    " · deadline 期限 " (shown.at(&d.deadline))
                    @if incident.overdue(chrono::Utc::now().fixed_offset()) { " " span class="bad" { "overdue 超时" } }
                } }
            }
            tr { th { "description 描述" } td { (incident.description) } }
            tr { th { "grid 网格" } td { (incident.grid) } }
            tr { th { "location 位置" } td {
                @if let Some((lat, lon)) = incident.location.point() { (format!("{lat:.6}, {lon:.6}")) " " }
                @if let Some(a) = &incident.location.address { (a) }
            } }
            tr { th { "worker 网格员" } td { (shown.who(&incident.reporter)) } }
            tr { th { "captured 采集 (device)" } td { (shown.at(&incident.captured_at)) } }
        }
        h2 { "照片 Photos (" (incident.photos.len()) ")" }
        @for p in &incident.photos {
            figure {
                @if verified(&p.display) {
                    img class="display" src={ "/center/photos/" (p.display) } alt="display photo";
                } @else {
                    span class="missing" { "display copy not on the server yet 照片未上传" }
                }
                figcaption class="muted" {
                    (p.width) "×" (p.height) " · " (p.taken_at.as_deref().unwrap_or("no EXIF time"))
                    @if let Some(g) = p.gps { " · GPS " (format!("{:.6}, {:.6}", g.lat, g.lon)) }
                    " · original " @if verified(&p.original) { span class="ok" { "verified" } } @else { span class="bad" { "missing" } }
                }
            }
        }
        h2 { "备注 Notes (" (incident.notes.len()) ")" }
        ul { @for n in &incident.notes { li { (shown.at(&n.at)) " " strong { (shown.who(&n.author)) } ": " (n.text) } } }
        h2 { "状态记录 Status history" }
        table {
            thead { tr { th { "at" } th { "from" } th { "to" } th { "by" } } }
            tbody { @for h in &incident.status_history { tr {
                td { (shown.at(&h.at)) }
                td { @if let Some(f) = h.from { (status_zh(f)) " " (f.as_str()) } }
                td { (status_zh(h.to)) " " (h.to.as_str()) }
                td { (shown.who(&h.by)) }
            } } }
        }
    }
}

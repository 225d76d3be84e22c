//! The community center's dashboard at `/center`: server-rendered HTML, no
//! script, no external resources, a strict Content-Security-Policy.
//!
//! Sign-in takes a center or operator read-only token and keeps it in an
//! `HttpOnly`, `SameSite=Strict` cookie scoped to `/center`; every page and
//! photo checks it again (a revoked token stops working at once). The
//! reconciliation is the same [`DailyReport`] as the CLI and the JSON API;
//! [`report_markup`] renders it here and for `sync-server reconcile --format html`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use sync_core::{BlobHash, Status, Taxonomy};

use crate::api::{self, ApiError, App, AppState};
use crate::report::{self, DailyReport, Flag, IncidentLine, PhotoLine};
use crate::storage::{Device, Role};
use crate::sync::scope_of;

pub const COOKIE: &str = "center_token";
/// How long a sign-in lasts, in seconds (12 hours: one working day).
const SESSION_SECS: u32 = 12 * 3600;
const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/center", get(home))
        .route("/center/", get(home))
        .route("/center/sign-in", post(sign_in))
        .route("/center/sign-out", post(sign_out))
        .route("/center/style.css", get(style))
        .route("/center/incidents/{id}", get(incident_page))
        .route("/center/photos/{hash}", get(photo))
}

const STYLE: &str = r#"
body { font-family: "Noto Sans CJK SC", "Microsoft YaHei", "WenQuanYi Zen Hei", sans-serif; margin: 1.5rem; color: #1d2330; background: #f6f7f9; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
header { display: flex; justify-content: space-between; align-items: center; gap: 1rem; flex-wrap: wrap; }
table { border-collapse: collapse; background: #fff; margin: .5rem 0; }
th, td { border: 1px solid #d5d9e0; padding: .35rem .55rem; text-align: left; vertical-align: top; font-size: .9rem; }
th { background: #e9edf3; }
td.num { text-align: right; }
.flag { display: inline-block; border-radius: .6rem; padding: .05rem .5rem; margin: .1rem; font-size: .8rem; background: #fde2e1; color: #8a1c14; }
.flag.clock_offset, .flag.no_sync_24h { background: #fff1c9; color: #6b4e00; }
.ok { color: #1c6b2a; } .bad { color: #8a1c14; font-weight: bold; }
img.thumb { max-height: 64px; max-width: 96px; margin: 2px; border: 1px solid #ccc; }
img.display { max-width: 100%; max-height: 480px; margin: .3rem 0; }
.missing { display: inline-block; padding: .2rem .4rem; border: 1px dashed #b33; color: #b33; font-size: .8rem; }
form.inline { display: inline; }
.error { background: #fde2e1; border: 1px solid #e0a09b; padding: .6rem; }
.muted { color: #667; font-size: .85rem; }
code { font-size: .75rem; }
"#;

/// Security headers on every dashboard response.
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html_response(status: StatusCode, page: Markup) -> Response {
    secure(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page.into_string(),
        )
            .into_response(),
    )
}

/// A whole page. `inline_style` embeds the CSS (for a standalone file);
/// the dashboard links it, since its CSP forbids inline styles.
fn page(title: &str, inline_style: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                @if inline_style {
                    style { (PreEscaped(STYLE)) }
                } @else {
                    link rel="stylesheet" href="/center/style.css";
                }
            }
            body { (body) }
        }
    }
}

fn flag_badges(flags: &[Flag]) -> Markup {
    html! {
        @for f in flags {
            span class={ "flag " (f.as_str()) } data-flag=(f.as_str()) { (f.label()) }
        }
    }
}

/// Where thumbnails come from, and whether incidents link to their page.
pub struct Render<'a> {
    /// `src` of a photo's thumbnail, or `None` to show it as missing.
    pub thumb: &'a dyn Fn(&PhotoLine) -> Option<String>,
    pub link_incidents: bool,
}

/// A photo hash, shortened for alt text.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn incident_ref(id: &str, links: bool) -> Markup {
    html! {
        // The whole id: UUIDv7s begin with the time, so their starts look alike.
        @if links { a href={ "/center/incidents/" (id) } { code { (id) } } }
        @else { code { (id) } }
    }
}

/// The reconciliation as HTML, for the dashboard and the standalone file.
pub fn report_markup(r: &DailyReport, how: &Render<'_>) -> Markup {
    let by_id: HashMap<&str, &IncidentLine> = r.incidents.iter().map(|i| (i.id.as_str(), i)).collect();
    html! {
        section id="workers" {
            h2 { "网格员 Workers — " (r.date) " (" (r.community.timezone) ")" }
            table {
                thead { tr {
                    th { "worker 网格员" } th { "captured 采集" } th { "received 接收" }
                    th { "photos ref / verified 照片" } th { "incomplete 缺照片" }
                    th { "last sync 最后同步" } th { "in step 同步一致" }
                    th { "pending records / photos 待同步" } th { "clock 时钟" } th { "flags 提示" }
                } }
                tbody {
                    @for w in &r.workers {
                        tr data-worker=(w.id) {
                            td { strong { (w.name) } br; span class="muted" { (w.id) " · " (w.grids.join(", ")) } }
                            td class="num" { (w.captured) }
                            td class="num" { (w.received) }
                            td class="num" { (w.photos_referenced) " / " (w.photos_verified) }
                            td {
                                @if w.incomplete.is_empty() { span class="ok" { "—" } }
                                @for i in &w.incomplete {
                                    div { (incident_ref(&i.incident, how.link_incidents)) " "
                                        span class="bad" { (i.missing_photos) " missing" } }
                                }
                            }
                            td { (w.last_sync_at.as_deref().unwrap_or("never 从未")) }
                            td {
                                @match w.in_step {
                                    Some(true) => span class="ok" { "yes 是" },
                                    Some(false) => span class="bad" { "no 否" },
                                    None => span class="bad" { "never synced" },
                                }
                            }
                            td class="num" { (w.pending_docs) " / " (w.pending_photos) }
                            td { @if let Some(o) = w.clock_offset_ms { span class="bad" { (report::offset_text(o)) } } }
                            td { (flag_badges(&w.flags)) }
                        }
                    }
                }
            }
        }
        section id="incidents" {
            h2 { "当日事件 Incidents of the day (" (r.incidents.len()) ")" }
            @if r.incidents.is_empty() { p class="muted" { "none 无" } } @else {
                table {
                    thead { tr {
                        th { "id" } th { "worker" } th { "category 类别" } th { "status 状态" }
                        th { "captured (device) 采集" } th { "received (server) 接收" } th { "photos 照片" }
                    } }
                    tbody {
                        @for i in &r.incidents {
                            tr data-incident=(i.id) {
                                td { (incident_ref(&i.id, how.link_incidents)) }
                                td { (i.reporter) }
                                td { (i.category_zh) br; span class="muted" { (i.category_en) } }
                                td { (i.status) }
                                td { (i.captured_at) }
                                td { (i.received_at) }
                                td {
                                    @for p in &i.photos {
                                        @match (how.thumb)(p) {
                                            Some(src) => img class="thumb" src=(src) alt={ "photo " (short(&p.original)) };
                                            None => span class="missing" { "photo not on server 照片未上传" },
                                        }
                                    }
                                    @if !i.complete { br; span class="bad" { "incomplete" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section id="totals" {
            h2 { "合计 Totals" }
            table {
                thead { tr { th { "category" } th { "类别" } th { "incidents" } } }
                tbody {
                    @for c in &r.totals.by_category {
                        tr { td { (c.name_en) } td { (c.name_zh) } td class="num" { (c.count) } }
                    }
                    tr { th { "all" } th { "合计" } th class="num" { (r.totals.incidents) } }
                }
            }
            table {
                thead { tr { th { "status" } th { "状态" } th { "incidents" } } }
                tbody {
                    @for s in &r.totals.by_status {
                        tr { td { (s.status) } td { (s.name_zh) } td class="num" { (s.count) } }
                    }
                }
            }
        }
        section id="open" {
            h2 { "超过3天未处理 Open for more than 3 days (" (r.open_over_3_days.len()) ")" }
            @if !r.open_over_3_days.is_empty() {
                table {
                    thead { tr { th { "id" } th { "worker" } th { "category" } th { "status" } th { "days" } } }
                    tbody {
                        @for o in &r.open_over_3_days {
                            tr { td { (incident_ref(&o.id, how.link_incidents)) } td { (o.reporter) }
                                 td { (o.category) } td { (o.status) } td class="num" { (o.days_open) } }
                        }
                    }
                }
            }
        }
        section id="anomalies" {
            h2 { "异常 Anomalies (" (r.anomalies.len()) ")" }
            @if !r.anomalies.is_empty() {
                table {
                    thead { tr { th { "kind" } th { "incident" } th { "worker" } th { "figures" } } }
                    tbody {
                        @for a in &r.anomalies {
                            tr data-anomaly=(a.kind()) {
                                td { (a.kind()) }
                                td { (incident_ref(a.incident(), how.link_incidents))
                                     @if let Some(i) = by_id.get(a.incident()) { " " span class="muted" { (i.category_zh) } } }
                                td { (a.reporter()) }
                                td { (a.describe()) }
                            }
                        }
                    }
                }
            }
        }
        p class="muted" { "generated " (r.generated_at) " · day " (r.day_start) " – " (r.day_end) }
    }
}

/// A standalone HTML file of the report (`sync-server reconcile --format html`).
pub fn standalone_html(r: &DailyReport, thumb: &dyn Fn(&PhotoLine) -> Option<String>) -> String {
    let title = format!("{} {} 日报 {}", r.community.name_zh, r.community.name_en, r.date);
    page(
        &title,
        true,
        html! {
            h1 { (title) }
            (report_markup(r, &Render { thumb, link_incidents: false }))
        },
    )
    .into_string()
}

// ---------------------------------------------------------------------------
// Sign-in.

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The signed-in reader, if the cookie holds a valid center or operator token.
fn reader(app: &AppState, headers: &HeaderMap) -> Result<Option<Device>, ApiError> {
    let Some(token) = cookie_token(headers) else {
        return Ok(None);
    };
    match api::require_reader(app, Some(&token)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if matches!(e.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Ok(None),
        Err(e) => Err(e),
    }
}

fn sign_in_page(status: StatusCode, error: Option<&str>) -> Response {
    html_response(
        status,
        page(
            "社区中心 Center — sign in",
            false,
            html! {
                h1 { "社区网格管理服务中心 Community center" }
                @if let Some(e) = error { p class="error" role="alert" { (e) } }
                form method="post" action="/center/sign-in" {
                    p { label for="token" { "Center or operator token 中心令牌" } br;
                        input type="password" id="token" name="token" size="70" autocomplete="off" required; }
                    p { button type="submit" { "Sign in 登录" } }
                }
                p class="muted" { "The operator makes a token with " code { "sync-server token create --worker ID" } "." }
            },
        ),
    )
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(State(app): State<App>, Form(form): Form<SignIn>) -> Response {
    let token = form.token.trim().to_owned();
    let checked = {
        let token = token.clone();
        api::blocking(move || api::require_reader(&app, Some(&token))).await
    };
    match checked {
        // Only hex tokens are ever issued; anything else cannot be one and
        // must not reach a header.
        Ok(_) if token.chars().all(|c| c.is_ascii_hexdigit()) => {
            let cookie = format!("{COOKIE}={token}; Path=/center; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}");
            secure(
                (
                    StatusCode::SEE_OTHER,
                    [(header::LOCATION, "/center".to_owned()), (header::SET_COOKIE, cookie)],
                )
                    .into_response(),
            )
        }
        Ok(_) => sign_in_page(StatusCode::UNAUTHORIZED, Some("That is not a valid token.")),
        Err(e) if e.status().is_client_error() => sign_in_page(e.status(), Some(e.message())),
        Err(e) => sign_in_page(
            e.status(),
            Some("The server cannot check tokens right now; try again later."),
        ),
    }
}

async fn sign_out() -> Response {
    secure(
        (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/center".to_owned()),
                (
                    header::SET_COOKIE,
                    format!("{COOKIE}=; Path=/center; HttpOnly; SameSite=Strict; Max-Age=0"),
                ),
            ],
        )
            .into_response(),
    )
}

async fn style() -> Response {
    secure(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response())
}

fn error_page(status: StatusCode, message: &str) -> Response {
    html_response(
        status,
        page(
            "社区中心 Center",
            false,
            html! {
                h1 { "社区网格管理服务中心 Community center" }
                p class="error" role="alert" { (message) }
                p { a href="/center" { "Back to the reconciliation 返回" } }
            },
        ),
    )
}

fn header_bar(who: &Device) -> Markup {
    html! {
        header {
            div { h1 { "社区网格管理服务中心 Community center" } }
            div {
                span class="muted" { "signed in as " (who.worker.name) " (" (who.worker.role.as_str()) ") " }
                form class="inline" method="post" action="/center/sign-out" { button type="submit" { "Sign out 退出" } }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pages.

async fn home(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let result = api::blocking(move || {
        let Some(who) = reader(&app, &headers)? else {
            return Ok(sign_in_page(StatusCode::OK, None));
        };
        let asked = q.get("community").map(String::as_str).filter(|c| !c.is_empty());
        let community = match report::reader_community(&app, &who, asked) {
            Ok(c) => c,
            Err(e) => return Ok(error_page(e.status(), e.message())),
        };
        let now = Utc::now();
        let date = match q.get("date").filter(|d| !d.is_empty()) {
            Some(d) => match report::parse_date(d) {
                Ok(d) => d,
                Err(m) => return Ok(error_page(StatusCode::BAD_REQUEST, &m)),
            },
            None => report::today(&app.grids, &community, now)?,
        };
        let r = report::daily_report(app.storage.as_ref(), &app.grids, &community, date, now)?;
        let communities = if who.worker.role == Role::Operator {
            report::communities_with_workers(app.storage.as_ref(), &app.grids)?
        } else {
            Vec::new()
        };
        let thumb = |p: &PhotoLine| p.thumb_verified.then(|| format!("/center/photos/{}", p.thumb));
        let title = format!("{} {} — {}", r.community.name_zh, r.community.name_en, r.date);
        let body = html! {
            (header_bar(&who))
            h2 { (title) }
            form method="get" action="/center" {
                label for="date" { "Date 日期 " }
                input type="date" id="date" name="date" value=(r.date);
                @if !communities.is_empty() {
                    " "
                    select name="community" {
                        @for c in &communities {
                            option value=(c) selected[*c == r.community.id] { (c) }
                        }
                    }
                }
                " " button type="submit" { "Show 查看" }
            }
            (report_markup(&r, &Render { thumb: &thumb, link_incidents: true }))
        };
        Ok(html_response(StatusCode::OK, page(&title, false, body)))
    })
    .await;
    result.unwrap_or_else(|e| error_page(e.status(), e.message()))
}

async fn incident_page(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = api::blocking(move || {
        let Some(who) = reader(&app, &headers)? else {
            return Ok(sign_in_page(StatusCode::UNAUTHORIZED, Some("Sign in to see incidents.")));
        };
        if id.parse::<sync_core::IncidentId>().is_err() {
            return Ok(error_page(
                StatusCode::BAD_REQUEST,
                "That is not an incident id (a UUIDv7).",
            ));
        }
        let Some((doc, grid)) = app.storage.incident_doc(&id)? else {
            return Ok(error_page(StatusCode::NOT_FOUND, "The server holds no such incident."));
        };
        if !scope_of(&who, &app.grids).allows(&grid) {
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "This incident is outside your community.",
            ));
        }
        let incident = match sync_core::IncidentDoc::read_saved(&doc) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(incident = %id, error = %e, "stored incident does not read");
                return Ok(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server cannot read this incident.",
                ));
            }
        };
        let refs = app.storage.photo_refs(std::slice::from_ref(&id))?;
        let verified = |h: &BlobHash| refs.iter().any(|r| r.verified && r.hash == h.to_hex());
        let taxonomy = Taxonomy::builtin();
        let cat = taxonomy.get(&incident.category);
        let status_zh = |s: Status| s.name_zh();
        let body = html! {
            (header_bar(&who))
            p { a href="/center" { "← reconciliation 返回日报" } }
            h2 { "Incident 事件 " code { (incident.id) } }
            table {
                tr { th { "category 类别" } td { @if let Some(c) = cat { (c.name_zh) " / " (c.name_en) } @else { (incident.category) } } }
                tr { th { "status 状态" } td { (incident.status.as_str()) " " (status_zh(incident.status)) } }
                tr { th { "description 描述" } td { (incident.description) } }
                tr { th { "grid 网格" } td { (incident.grid) } }
                tr { th { "location 位置" } td {
                    @if let Some((lat, lon)) = incident.location.point() { (format!("{lat:.6}, {lon:.6}")) " " }
                    @if let Some(a) = &incident.location.address { (a) }
                } }
                tr { th { "worker 网格员" } td { (incident.reporter) } }
                tr { th { "captured 采集 (device)" } td { (sync_core::incident::rfc3339(&incident.captured_at)) } }
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
            ul { @for n in &incident.notes { li { (sync_core::incident::rfc3339(&n.at)) " " strong { (n.author) } ": " (n.text) } } }
            h2 { "状态记录 Status history" }
            table {
                thead { tr { th { "at" } th { "from" } th { "to" } th { "by" } } }
                tbody { @for h in &incident.status_history { tr {
                    td { (sync_core::incident::rfc3339(&h.at)) }
                    td { @if let Some(f) = h.from { (f.as_str()) " " (status_zh(f)) } }
                    td { (h.to.as_str()) " " (status_zh(h.to)) }
                    td { (h.by) }
                } } }
            }
        };
        Ok(html_response(
            StatusCode::OK,
            page(&format!("Incident {id}"), false, body),
        ))
    })
    .await;
    result.unwrap_or_else(|e| error_page(e.status(), e.message()))
}

async fn photo(State(app): State<App>, headers: HeaderMap, Path(hash): Path<String>) -> Response {
    let result = api::blocking(move || {
        let Some(who) = reader(&app, &headers)? else {
            return Ok(secure((StatusCode::UNAUTHORIZED, "sign in first").into_response()));
        };
        let Ok(hash) = hash.parse::<BlobHash>() else {
            return Ok(secure((StatusCode::BAD_REQUEST, "not a photo hash").into_response()));
        };
        let scope = scope_of(&who, &app.grids);
        if app.storage.blob_ref(&hash.to_hex(), &scope)?.is_none() {
            return Ok(secure(
                (StatusCode::FORBIDDEN, "no incident of yours refers to this photo").into_response(),
            ));
        }
        match app.photos.read(&hash) {
            Ok(bytes) => {
                let mime = if bytes.starts_with(b"\x89PNG") {
                    "image/png"
                } else {
                    "image/jpeg"
                };
                Ok(secure(([(header::CONTENT_TYPE, mime)], bytes).into_response()))
            }
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

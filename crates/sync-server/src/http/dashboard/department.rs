//! A department account's `/center`: the cases dispatched to it, those
//! still to do first (soonest deadline first, overdue ones marked), then
//! the ones it has finished. Each links to the incident page, where the
//! department records its progress.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use maud::{Markup, html};
use sync_core::{Incident, Taxonomy};

use super::session::SignedIn;
use super::{header_bar, html_response};
use crate::department::{Cases, cases};
use crate::http::App;
use crate::http::client::{Client, audit};
use crate::http::error::ApiError;
use crate::report::html::page;
use crate::report::local_time;
use crate::storage::AuditKind;

/// How many finished cases the page lists.
const DONE_SHOWN: usize = 100;

/// The department's page, or the case that `q` names.
pub(super) fn home(app: &App, client: &Client, signed: &SignedIn, q: Option<&str>) -> Result<Response, ApiError> {
    if let Some(found) = q.map(str::trim).filter(|s| !s.is_empty()) {
        return super::pages::search(app, &signed.who, found);
    }
    let who = &signed.who.worker;
    let list = cases(app.storage.as_ref(), &app.grids, &signed.who)?;
    let community = who.community.as_deref().unwrap_or_default();
    audit(
        app,
        client,
        AuditKind::ReportRead,
        Some(&signed.who),
        &format!(
            "dashboard: cases of department {} in {community}",
            who.department.as_deref().unwrap_or("?")
        ),
    )?;
    let taxonomy = Taxonomy::builtin();
    let department = who.department.as_deref().and_then(|d| taxonomy.department(d));
    let title = format!(
        "{} {} — {community}",
        department.map_or("", |d| d.name_zh.as_str()),
        department.map_or("", |d| d.name_en.as_str()),
    );
    let tz = app
        .grids
        .community(community)
        .map_or(sync_core::calendar::DEFAULT_TIMEZONE, |c| c.timezone.as_str());
    let body = html! {
        (header_bar(signed))
        h2 { (title) }
        form method="get" action="/center" id="search" {
            label { "Case 案件号 " input type="search" name="q" placeholder="HX-261203-7-4"; }
            " " button type="submit" { "Find 查找" }
        }
        (case_lists(&list, tz))
    };
    Ok(html_response(StatusCode::OK, page(&title, false, body)))
}

fn case_lists(list: &Cases, tz: &str) -> Markup {
    html! {
        h2 { "待处置 To do (" (list.open.len()) ")" }
        (case_table(&list.open, tz, "open-cases"))
        h2 { "已处置 Done (" (list.done.len()) ")" }
        @if list.done.len() > DONE_SHOWN { p class="muted" { "the " (DONE_SHOWN) " most recently dispatched" } }
        (case_table(&list.done[..list.done.len().min(DONE_SHOWN)], tz, "done-cases"))
        @if !list.unreadable.is_empty() {
            p class="bad" role="alert" {
                (list.unreadable.len()) " incident(s) of the community cannot be read and are not listed; the operator has been told in the server log."
            }
        }
    }
}

fn case_table(cases: &[Incident], tz: &str, id: &str) -> Markup {
    let taxonomy = Taxonomy::builtin();
    let now = Utc::now().fixed_offset();
    let at =
        |t: &chrono::DateTime<chrono::FixedOffset>| local_time(&sync_core::incident::rfc3339(t), tz, "%Y-%m-%d %H:%M");
    html! {
        table id=(id) {
            thead { tr { th { "case 案件号" } th { "category 类别" } th { "description 描述" } th { "address 地址" }
                th { "status 状态" } th { "deadline 期限" } } }
            tbody { @for i in cases { tr {
                td { a href={ "/center/incidents/" (i.id) } { @if let Some(c) = &i.case { (c) } @else { (i.id) } } }
                td { @if let Some(c) = taxonomy.get(&i.category) { (c.name_zh) } @else { (i.category) } }
                td { (i.description.chars().take(60).collect::<String>()) }
                td { (i.location.address.as_deref().unwrap_or("")) }
                td { (i.status.name_zh()) " " (i.status.as_str()) }
                td {
                    @if let Some(d) = i.dispatch() { (at(&d.deadline)) }
                    @if i.overdue(now) { " " span class="bad" { "overdue 超时" } }
                }
            } } }
        }
    }
}

//! The reconciliation as HTML, server-rendered with maud: the same markup
//! for the `/center` dashboard and for `sync-server reconcile --format html`.
//! No script; styles come from one sheet ([`STYLE`]), linked by the
//! dashboard (whose CSP forbids inline styles) and inlined in a standalone file.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::text::offset_text;
use super::{DailyReport, Flag, IncidentLine, PhotoLine};

pub const STYLE: &str = r#"
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

/// A whole page. `inline_style` embeds the CSS (for a standalone file);
/// the dashboard links it, since its CSP forbids inline styles.
pub fn page(title: &str, inline_style: bool, body: Markup) -> Markup {
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
    /// The community's cells, for the map.
    pub community: Option<&'a sync_core::taxonomy::Community>,
}

/// A status's Chinese name, or the code as stored when it is none.
fn status_zh(code: &str) -> &str {
    code.parse::<sync_core::Status>().map_or(code, |s| s.name_zh())
}

/// The first `n` characters of `text` on one line, with `…` if it goes on.
fn cut(text: &str, n: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// A photo hash, shortened for alt text.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

pub fn incident_ref(id: &str, links: bool) -> Markup {
    html! {
        // The whole id: UUIDv7s begin with the time, so their starts look alike.
        @if links { a href={ "/center/incidents/" (id) } { code { (id) } } }
        @else { code { (id) } }
    }
}

/// The reconciliation as HTML, for the dashboard and the standalone file.
pub fn report_markup(r: &DailyReport, how: &Render<'_>) -> Markup {
    html! {
        (workers_section(r, how))
        @if let Some(c) = how.community { (super::map::map_section(c, &r.incidents)) }
        (incidents_section(r, how))
        (totals_section(r))
        (open_section(r, how))
        (overdue_section(r, how))
        (anomalies_section(r, how))
        @for id in &r.unreadable {
            p class="bad" { "Incident " (id) " cannot be read and is left out of this report. 无法读取" }
        }
        p class="muted" { "generated " (r.generated_at) " · day " (r.day_start) " – " (r.day_end) }
    }
}

fn workers_section(r: &DailyReport, how: &Render<'_>) -> Markup {
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
                        td { (w.last_sync_at.as_deref().map_or("never 从未".to_owned(), |t| r.local(t))) }
                        td {
                            @match w.in_step {
                                Some(true) => span class="ok" { "yes 是" },
                                Some(false) => span class="bad" { "no 否" },
                                None => span class="bad" { "never synced" },
                            }
                        }
                        td class="num" {
                            (w.pending_docs) " / " (w.pending_photos)
                            @if w.refused_docs > 0 { " " span class="bad" { "refused 被拒: " (w.refused_docs) } }
                        }
                        td { @if let Some(o) = w.clock_offset_ms { span class="bad" { (offset_text(o)) } } }
                        td { (flag_badges(&w.flags)) }
                    }
                }
            }
        }
    }
    }
}

fn incidents_section(r: &DailyReport, how: &Render<'_>) -> Markup {
    html! {
    section id="incidents" {
        h2 { "当日事件 Incidents of the day (" (r.incidents.len()) ")" }
        @if r.incidents.is_empty() { p class="muted" { "none 无" } } @else {
            table {
                thead { tr {
                    th { "case 案件 · id" } th { "worker 网格员" } th { "category 类别" } th { "status 状态" }
                    th { "description 描述" }
                    th { "captured (device) 采集" } th { "received (server) 接收" } th { "photos 照片" }
                } }
                tbody {
                    @for i in &r.incidents {
                        tr data-incident=(i.id) {
                            td {
                                @if let Some(case) = &i.case { strong { (case) } br; }
                                (incident_ref(&i.id, how.link_incidents))
                            }
                            td { (r.name_of(&i.reporter)) br; span class="muted" { (i.reporter) } }
                            td { (i.category_zh) br; span class="muted" { (i.category_en) } }
                            td { (status_zh(&i.status)) br; span class="muted" { (i.status) } }
                            td class="desc" { (cut(&i.description, 40)) }
                            td { (r.local(&i.captured_at)) }
                            td { (r.local(&i.received_at)) }
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
    }
}

fn totals_section(r: &DailyReport) -> Markup {
    html! {
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
    }
}

fn open_section(r: &DailyReport, how: &Render<'_>) -> Markup {
    html! {
    section id="open" {
        h2 { "超过3天未处理 Open for more than 3 days (" (r.open_over_3_days.len()) ")" }
        @if !r.open_over_3_days.is_empty() {
            table {
                thead { tr { th { "id" } th { "worker" } th { "category" } th { "status" } th { "days" } } }
                tbody {
                    @for o in &r.open_over_3_days {
                        tr { td { (incident_ref(&o.id, how.link_incidents)) } td { (r.name_of(&o.reporter)) }
                             td { (o.category) } td { (status_zh(&o.status)) " " (o.status) } td class="num" { (o.days_open) } }
                    }
                }
            }
        }
    }
    }
}

fn overdue_section(r: &DailyReport, how: &Render<'_>) -> Markup {
    html! {
    section id="overdue" {
        h2 { "超过处置时限 Past the time limit (" (r.overdue.len()) ")" }
        @if !r.overdue.is_empty() {
            table {
                thead { tr { th { "case 案件" } th { "department 部门" } th { "deadline 期限" }
                             th { "over by 超时" } th { "status 状态" } } }
                tbody {
                    @for o in &r.overdue {
                        tr data-overdue=(o.id) {
                            td { @if let Some(c) = &o.case { strong { (c) } br; } (incident_ref(&o.id, how.link_incidents)) }
                            td { (o.department_zh) " " span class="muted" { (o.department) } }
                            td { (o.deadline) } td class="num bad" { (super::text::hours_text(o.hours_overdue)) }
                            td { (o.status) }
                        }
                    }
                }
            }
        }
    }
    }
}

fn anomalies_section(r: &DailyReport, how: &Render<'_>) -> Markup {
    let by_id: HashMap<&str, &IncidentLine> = r.incidents.iter().map(|i| (i.id.as_str(), i)).collect();
    html! {
    section id="anomalies" {
        h2 { "异常 Anomalies (" (r.anomalies.len()) ")" }
        @if !r.anomalies.is_empty() {
            table {
                thead { tr { th { "kind" } th { "incident" } th { "worker" } th { "figures" } } }
                tbody {
                    @for a in &r.anomalies {
                        tr data-anomaly=(a.kind()) {
                            td { (a.label()) }
                            td { (incident_ref(a.incident(), how.link_incidents))
                                 @if let Some(i) = by_id.get(a.incident()) { " " span class="muted" { (i.category_zh) } } }
                            td { (r.name_of(a.reporter())) }
                            td { (a.describe()) }
                        }
                    }
                }
            }
        }
    }
    }
}

/// A standalone HTML file of the report (`sync-server reconcile --format html`).
pub fn standalone_html(
    r: &DailyReport,
    thumb: &dyn Fn(&PhotoLine) -> Option<String>,
    community: Option<&sync_core::taxonomy::Community>,
) -> String {
    let title = format!("{} {} 日报 {}", r.community.name_zh, r.community.name_en, r.date);
    page(
        &title,
        true,
        html! {
            h1 { (title) }
            (report_markup(r, &Render { thumb, link_incidents: false, community }))
        },
    )
    .into_string()
}

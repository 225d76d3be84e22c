//! The report for a terminal (tables) and for a spreadsheet (CSV).

use comfy_table::Table;

use super::*;

/// The width the terminal tables fit (a standard 120-column terminal).
const WIDTH: u16 = 120;

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "是 yes",
        Some(false) => "否 no",
        None => "从未 never",
    }
}

/// A table that wraps its cells to fit [`WIDTH`], with a header of
/// Chinese over English.
fn table(header: &[(&str, &str)]) -> Table {
    let mut t = Table::new();
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    t.set_width(WIDTH);
    t.set_header(header.iter().map(|(zh, en)| format!("{zh}\n{en}")));
    t
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
    let mut out = format!(
        "{} {} ({}) — {} ({})\n",
        r.community.name_zh, r.community.name_en, r.community.id, r.date, r.community.timezone
    );
    let tables = [
        Some(workers_table(r)),
        Some(categories_table(r)),
        Some(statuses_table(r)),
        open_table(r),
        overdue_table(r),
        anomalies_table(r),
    ];
    for t in tables.into_iter().flatten() {
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out.push_str(&incomplete_lines(r));
    if r.anomalies.is_empty() {
        out.push_str("no anomalies\n");
    }
    for id in &r.unreadable {
        out.push_str(&format!(
            "unreadable: incident {id} cannot be read and is left out of this report\n"
        ));
    }
    out
}

fn workers_table(r: &DailyReport) -> Table {
    let mut t = table(&[
        ("网格员", "worker"),
        ("采集/接收", "capt/recv"),
        ("照片 引用/核验", "photos ref/ok"),
        ("缺照片", "incomplete"),
        ("最后同步", "last sync"),
        ("同步完成", "in step"),
        ("待传 记录/照片", "waiting"),
        ("时钟", "clock"),
        ("提示", "flags"),
    ]);
    for w in &r.workers {
        let missing: u64 = w.incomplete.iter().map(|i| i.missing_photos).sum();
        t.add_row([
            format!("{} {}", w.name, w.id),
            format!("{}/{}", w.captured, w.received),
            format!("{}/{}", w.photos_referenced, w.photos_verified),
            format!("{} ({missing})", w.incomplete.len()),
            w.last_sync_at.as_deref().map_or("从未 never".into(), |s| r.local(s)),
            yes_no(w.in_step).to_owned(),
            waiting_text(w),
            w.clock_offset_ms.map(offset_text).unwrap_or_default(),
            w.flags.iter().map(|f| f.label()).collect::<Vec<_>>().join("; "),
        ]);
    }
    t
}

/// The incidents that still lack photos on the server, by name, so the
/// center can call the worker about each.
fn incomplete_lines(r: &DailyReport) -> String {
    let case_of = |id: &str| {
        r.incidents
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| i.case.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let mut out = String::new();
    for w in &r.workers {
        for i in &w.incomplete {
            out.push_str(&format!(
                "缺照片 incomplete: {} ({} {}): {} not on the server\n",
                case_of(&i.incident),
                w.name,
                w.id,
                count_text(i.missing_photos, "photo", "photos")
            ));
        }
    }
    out
}

fn count_text(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A span as people say it: `40 s`, `25 min`, `5 h 10 min`, `30 d 2 h`.
pub(super) fn span_text(secs: i64) -> String {
    let s = secs.unsigned_abs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Records and photos still on the devices, then the refused records,
/// which no amount of waiting brings in.
fn waiting_text(w: &WorkerRow) -> String {
    match w.refused_docs {
        0 => format!("{}/{}", w.pending_docs, w.pending_photos),
        n => format!("{}/{}, refused: {n}", w.pending_docs, w.pending_photos),
    }
}

fn categories_table(r: &DailyReport) -> Table {
    let mut t = table(&[("类别", "category"), ("", ""), ("事件数", "incidents")]);
    for c in &r.totals.by_category {
        t.add_row([c.name_zh.clone(), c.name_en.clone(), c.count.to_string()]);
    }
    t.add_row(["合计".to_owned(), "all".to_owned(), r.totals.incidents.to_string()]);
    t
}

fn statuses_table(r: &DailyReport) -> Table {
    let mut t = table(&[("状态", "status"), ("", ""), ("事件数", "incidents")]);
    for s in &r.totals.by_status {
        t.add_row([s.name_zh.clone(), s.status.clone(), s.count.to_string()]);
    }
    t
}

fn open_table(r: &DailyReport) -> Option<Table> {
    if r.open_over_3_days.is_empty() {
        return None;
    }
    let mut t = table(&[
        ("超过3天未处理", "open > 3 days"),
        ("上报人", "reporter"),
        ("类别", "category"),
        ("状态", "status"),
        ("天数", "days"),
    ]);
    for o in &r.open_over_3_days {
        t.add_row([
            o.id.clone(),
            o.reporter.clone(),
            o.category.clone(),
            o.status.clone(),
            o.days_open.to_string(),
        ]);
    }
    Some(t)
}

fn overdue_table(r: &DailyReport) -> Option<Table> {
    if r.overdue.is_empty() {
        return None;
    }
    let mut t = table(&[
        ("超时", "overdue"),
        ("部门", "department"),
        ("期限", "deadline"),
        ("超时", "over by"),
        ("状态", "status"),
    ]);
    for o in &r.overdue {
        t.add_row([
            o.case.clone().unwrap_or_else(|| o.id.clone()),
            format!("{} {}", o.department_zh, o.department),
            r.local(&o.deadline),
            hours_text(o.hours_overdue),
            o.status.clone(),
        ]);
    }
    Some(t)
}

/// `5 h` or `2 d 3 h`.
pub(super) fn hours_text(hours: i64) -> String {
    match (hours / 24, hours % 24) {
        (0, h) => format!("{h} h"),
        (d, 0) => format!("{d} d"),
        (d, h) => format!("{d} d {h} h"),
    }
}

fn anomalies_table(r: &DailyReport) -> Option<Table> {
    if r.anomalies.is_empty() {
        return None;
    }
    let mut t = table(&[
        ("异常", "anomaly"),
        ("事件", "incident"),
        ("上报人", "reporter"),
        ("说明", "figures"),
    ]);
    for a in &r.anomalies {
        t.add_row([
            a.label().to_owned(),
            a.incident().to_owned(),
            a.reporter().to_owned(),
            a.describe(),
        ]);
    }
    Some(t)
}

/// A text cell a spreadsheet would not run as a formula.
fn safe_cell(s: &str) -> String {
    sync_core::export::guard_cell(s).into_owned()
}

/// The report as CSV: the per-worker table, then a blank line and the
/// anomalies table. Totals are left to the JSON and table forms.
pub fn to_csv(r: &DailyReport) -> Result<Vec<u8>, csv::Error> {
    let mut w = sync_core::export::csv_writer(Vec::new());
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
        "refused_records",
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
            x.refused_docs.to_string(),
            x.no_sync_24h.to_string(),
            x.clock_offset_ms.map(|m| (m / 1000).to_string()).unwrap_or_default(),
            x.anomalies.to_string(),
            x.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" "),
        ])?;
    }
    // A truly empty line between the two tables (the csv writer would quote an empty record).
    let mut bytes = w.into_inner().map_err(|e| e.into_error())?;
    bytes.push(b'\n');
    let mut w = sync_core::export::csv_writer(bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_hours_read_as_people_say_them() {
        assert_eq!(span_text(40), "40 s");
        assert_eq!(span_text(25 * 60 + 3), "25 min");
        assert_eq!(span_text(5 * 3600 + 600), "5 h 10 min");
        // A capture time a month ahead, once "2614068 s".
        assert_eq!(span_text(2_614_068), "30 d 6 h");
        assert_eq!(hours_text(5), "5 h");
        assert_eq!(hours_text(48), "2 d");
        assert_eq!(hours_text(51), "2 d 3 h");
    }
}

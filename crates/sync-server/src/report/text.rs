//! The report for a terminal (tables) and for a spreadsheet (CSV).

use comfy_table::Table;

use super::*;

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
    let mut out = format!(
        "{} {} ({}) — {} ({})\n",
        r.community.name_zh, r.community.name_en, r.community.id, r.date, r.community.timezone
    );
    let tables = [
        Some(workers_table(r)),
        Some(categories_table(r)),
        Some(statuses_table(r)),
        open_table(r),
        anomalies_table(r),
    ];
    for t in tables.into_iter().flatten() {
        out.push_str(&t.to_string());
        out.push('\n');
    }
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
            waiting_text(w),
            w.clock_offset_ms.map(offset_text).unwrap_or_default(),
            w.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "),
        ]);
    }
    t
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
    let mut t = Table::new();
    t.set_header(["category", "类别", "incidents"]);
    for c in &r.totals.by_category {
        t.add_row([c.name_en.clone(), c.name_zh.clone(), c.count.to_string()]);
    }
    t.add_row(["all".to_owned(), "合计".to_owned(), r.totals.incidents.to_string()]);
    t
}

fn statuses_table(r: &DailyReport) -> Table {
    let mut t = Table::new();
    t.set_header(["status", "状态", "incidents"]);
    for s in &r.totals.by_status {
        t.add_row([s.status.clone(), s.name_zh.clone(), s.count.to_string()]);
    }
    t
}

fn open_table(r: &DailyReport) -> Option<Table> {
    if r.open_over_3_days.is_empty() {
        return None;
    }
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
    Some(t)
}

fn anomalies_table(r: &DailyReport) -> Option<Table> {
    if r.anomalies.is_empty() {
        return None;
    }
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

//! Incidents as CSV, GeoJSON and JSON, the same bytes on the device
//! (`field export`) and on the server (`sync-server export`, `/v1/exports`).
//!
//! Pure: decoded incidents and the category list in, bytes out. Which
//! incidents to export is the caller's business; [`local_day`] gives the
//! calendar day a date filter compares, in the incident's community's zone.

use chrono::{DateTime, FixedOffset, NaiveDate};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::incident::rfc3339;
use crate::{GridMap, Incident, Taxonomy};

/// The zone whose calendar day a community reconciles by when its grid file
/// names none that is known.
pub use crate::calendar::DEFAULT_ZONE;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 24] = [
    "id",
    "case",
    "captured_at",
    "category",
    "category_zh",
    "category_en",
    "status",
    "grid",
    "lat",
    "lon",
    "accuracy_m",
    "address",
    "description",
    "reporter",
    "device",
    "photos",
    "notes",
    "last_note",
    "department",
    "deadline",
    "reporter_name",
    "received_at",
    "resolved_at",
    "photo_url",
];

/// What an export knows beyond the documents: the server's names of
/// workers, when it first received each incident, and where its photos
/// are served. A device's export knows only its own worker's name.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Worker id → name.
    pub names: std::collections::HashMap<String, String>,
    /// Incident id → when the server first received it (RFC 3339).
    pub received: std::collections::HashMap<String, String>,
    /// The base of photo links: the first photo's display copy is at
    /// `{photo_base}/{hash}.jpg`; none without it.
    pub photo_base: Option<String>,
}

impl Extras {
    fn name(&self, worker: &str) -> &str {
        self.names.get(worker).map_or("", String::as_str)
    }

    fn received(&self, i: &Incident) -> &str {
        self.received.get(&i.id.to_string()).map_or("", String::as_str)
    }

    fn photo_url(&self, i: &Incident) -> Option<String> {
        let base = self.photo_base.as_deref()?;
        Some(format!("{base}/{}.jpg", i.photos.first()?.display.to_hex()))
    }
}

/// When the case was first marked resolved, if it was.
fn resolved_at(i: &Incident) -> Option<String> {
    i.status_history
        .iter()
        .find(|h| h.to == crate::Status::Resolved)
        .map(|h| rfc3339(&h.at))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Geojson,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Csv, Format::Geojson, Format::Json];

    /// The name used on command lines and as the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Geojson => "geojson",
            Format::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Geojson => "application/geo+json",
            Format::Json => "application/json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the CSV export: {0}")]
pub struct ExportError(#[from] csv::Error);

/// Renders `incidents` in `format`. JSON and GeoJSON are pretty-printed and
/// end with a newline.
pub fn render(
    format: Format,
    incidents: &[Incident],
    taxonomy: &Taxonomy,
    extras: &Extras,
) -> Result<Vec<u8>, ExportError> {
    match format {
        Format::Csv => csv(incidents, taxonomy, extras),
        Format::Geojson => Ok(pretty(&geojson(incidents, taxonomy, extras))),
        Format::Json => Ok(pretty(&json(incidents, taxonomy, extras))),
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("a JSON value serialises");
    out.push(b'\n');
    out
}

fn names<'a>(taxonomy: &'a Taxonomy, code: &str) -> (&'a str, &'a str) {
    match taxonomy.get(code) {
        Some(c) => (c.name_zh.as_str(), c.name_en.as_str()),
        None => ("", ""),
    }
}

/// Makes spreadsheet text out of `text`: a spreadsheet runs a cell that
/// starts with `=`, `+`, `-`, `@`, tab or CR as a formula (CSV injection),
/// and a leading apostrophe makes it plain text.
pub fn guard_cell(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

/// A CSV writer that quotes every cell that is not a number. With the
/// cells also guarded ([`guard_cell`]), a spreadsheet that splits on tab
/// or semicolon as well as comma still sees one text cell where a
/// description holds `ok;=1+1`, never a formula.
pub fn csv_writer<W: std::io::Write>(out: W) -> ::csv::Writer<W> {
    ::csv::WriterBuilder::new()
        .quote_style(::csv::QuoteStyle::NonNumeric)
        .flexible(true)
        .from_writer(out)
}

/// One row per incident under a [`CSV_COLUMNS`] header; every free-text
/// cell goes through [`guard_cell`], every text cell is quoted.
pub fn csv(incidents: &[Incident], taxonomy: &Taxonomy, extras: &Extras) -> Result<Vec<u8>, ExportError> {
    let mut w = csv_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for i in incidents {
        let (zh, en) = names(taxonomy, &i.category);
        let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        w.write_record([
            i.id.to_string(),
            i.case.as_ref().map(ToString::to_string).unwrap_or_default(),
            rfc3339(&i.captured_at),
            guard_cell(&i.category).into_owned(),
            guard_cell(zh).into_owned(),
            guard_cell(en).into_owned(),
            i.status.to_string(),
            guard_cell(&i.grid).into_owned(),
            num(i.location.lat),
            num(i.location.lon),
            num(i.location.accuracy_m),
            guard_cell(i.location.address.as_deref().unwrap_or("")).into_owned(),
            guard_cell(&i.description).into_owned(),
            guard_cell(&i.reporter).into_owned(),
            guard_cell(&i.device).into_owned(),
            i.photos.len().to_string(),
            i.notes.len().to_string(),
            guard_cell(i.notes.last().map(|n| n.text.as_str()).unwrap_or("")).into_owned(),
            guard_cell(i.dispatch().map_or("", |d| d.department.as_str())).into_owned(),
            i.dispatch().map(|d| rfc3339(&d.deadline)).unwrap_or_default(),
            guard_cell(extras.name(&i.reporter)).into_owned(),
            extras.received(i).to_owned(),
            resolved_at(i).unwrap_or_default(),
            extras.photo_url(i).unwrap_or_default(),
        ])?;
    }
    w.into_inner().map_err(|e| ExportError(e.into_error().into()))
}

/// A FeatureCollection of Points (longitude first, WGS 84) with flat
/// properties, which GIS tools map to columns; an incident without a
/// position is a feature with a null geometry.
pub fn geojson(incidents: &[Incident], taxonomy: &Taxonomy, extras: &Extras) -> Value {
    let features: Vec<Value> = incidents
        .iter()
        .map(|i| {
            let (zh, en) = names(taxonomy, &i.category);
            let geometry = match i.location.point() {
                Some((lat, lon)) => json!({"type": "Point", "coordinates": [lon, lat]}),
                None => Value::Null,
            };
            json!({
                "type": "Feature",
                "id": i.id.to_string(),
                "geometry": geometry,
                "properties": {
                    "id": i.id.to_string(),
                    "case": i.case.as_ref().map(ToString::to_string),
                    "category": i.category,
                    "category_zh": zh,
                    "category_en": en,
                    "status": i.status.as_str(),
                    "grid": i.grid,
                    "captured_at": rfc3339(&i.captured_at),
                    "description": i.description,
                    "address": i.location.address,
                    "accuracy_m": i.location.accuracy_m,
                    "reporter": i.reporter,
                    "photos": i.photos.len(),
                    "notes": i.notes.len(),
                    "department": i.dispatch().map(|d| d.department.clone()),
                    "deadline": i.dispatch().map(|d| rfc3339(&d.deadline)),
                    "reporter_name": Some(extras.name(&i.reporter)).filter(|n| !n.is_empty()),
                    "received_at": Some(extras.received(i)).filter(|r| !r.is_empty()),
                    "resolved_at": resolved_at(i),
                    "photo_url": extras.photo_url(i),
                }
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// Whole incidents (notes, history, photos) with the category's names.
pub fn json(incidents: &[Incident], taxonomy: &Taxonomy, extras: &Extras) -> Value {
    Value::Array(
        incidents
            .iter()
            .map(|i| {
                let mut v = serde_json::to_value(i).expect("incidents serialise");
                let (zh, en) = names(taxonomy, &i.category);
                v["category_zh"] = zh.into();
                v["category_en"] = en.into();
                // What the export knows besides the document, where it knows it.
                let known = [
                    (
                        "reporter_name",
                        Some(extras.name(&i.reporter).to_owned()).filter(|n| !n.is_empty()),
                    ),
                    (
                        "received_at",
                        Some(extras.received(i).to_owned()).filter(|r| !r.is_empty()),
                    ),
                    ("resolved_at", resolved_at(i)),
                    ("photo_url", extras.photo_url(i)),
                ];
                for (key, value) in known {
                    if let Some(value) = value {
                        v[key] = value.into();
                    }
                }
                v
            })
            .collect(),
    )
}

/// The time zone of the community that holds `cell`, or [`DEFAULT_ZONE`].
pub fn cell_zone(grids: &GridMap, cell: &str) -> Tz {
    grids
        .cell(cell)
        .and_then(|p| p.community.timezone.parse().ok())
        .unwrap_or(DEFAULT_ZONE)
}

/// `t` on the wall clock of the community that holds `cell`.
pub fn local_time(grids: &GridMap, cell: &str, t: &DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    t.with_timezone(&cell_zone(grids, cell)).fixed_offset()
}

/// The calendar day an incident was captured on, in its community's zone:
/// the day a center filters and reconciles by, whatever offset the device had.
pub fn local_day(grids: &GridMap, incident: &Incident) -> NaiveDate {
    local_time(grids, &incident.grid, &incident.captured_at).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_get_an_apostrophe_and_nothing_else_changes() {
        #[track_caller]
        fn check(input: &str, expected: &str) {
            assert_eq!(guard_cell(input), expected);
        }
        check("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")");
        check("+1", "'+1");
        check("-1", "'-1");
        check("@SUM(A1)", "'@SUM(A1)");
        check("\tx", "'\tx");
        check("\rx", "'\rx");
        check("1+1=2", "1+1=2");
        check("井盖 =1", "井盖 =1");
        check("", "");
    }

    #[test]
    fn a_day_is_the_communitys_day_not_the_devices() {
        let grids = GridMap::builtin();
        let t = DateTime::parse_from_rfc3339("2026-11-20T23:30:00+00:00").unwrap();
        // 23:30 UTC is 07:30 the next morning in Shanghai.
        assert_eq!(
            local_time(&grids, "HLT-CX-HX-01", &t).to_rfc3339(),
            "2026-11-21T07:30:00+08:00"
        );
        assert_eq!(cell_zone(&grids, "no-such-cell"), DEFAULT_ZONE);
    }
}

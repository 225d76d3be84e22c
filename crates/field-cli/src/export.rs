use std::io::Write;
use std::path::{Path, PathBuf};
use sync_core::incident::rfc3339;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sync_core::Incident;

use crate::app::{Session, emit};
use crate::list::Filter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Csv,
    Geojson,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Write to this file instead of standard output (replaced whole, never half-written).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    filter: Filter,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    let filter = args.filter.parse()?;
    let session = Session::open(data_dir)?;
    Filter::check(&filter, &session)?;
    let incidents = session.store.incidents(&filter, &session.profile.actor())?;
    let bytes = match args.format {
        Format::Csv => csv(&session, &incidents)?,
        Format::Geojson => to_json(&geojson(&session, &incidents))?,
        Format::Json => to_json(&Value::Array(
            incidents.iter().map(|i| full_json(&session, i)).collect(),
        ))?,
    };
    match &args.out {
        None => emit(&bytes)?,
        Some(path) => write_atomically(path, &bytes)?,
    }
    if let Some(path) = &args.out {
        eprintln!("wrote {} incidents to {}", incidents.len(), path.display());
    }
    Ok(())
}

fn to_json(v: &Value) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(v).context("cannot write JSON")?;
    out.push(b'\n');
    Ok(out)
}

fn names<'a>(session: &'a Session, code: &str) -> (&'a str, &'a str) {
    match session.taxonomy.get(code) {
        Some(c) => (c.name_zh.as_str(), c.name_en.as_str()),
        None => ("", ""),
    }
}

fn full_json(session: &Session, i: &Incident) -> Value {
    let mut v = serde_json::to_value(i).expect("incidents serialise");
    let (zh, en) = names(session, &i.category);
    v["category_zh"] = zh.into();
    v["category_en"] = en.into();
    v
}

/// A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, tab or CR
/// as a formula; a leading apostrophe makes it plain text.
fn cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

fn csv(session: &Session, incidents: &[Incident]) -> Result<Vec<u8>> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
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
    ])?;
    for i in incidents {
        let (zh, en) = names(session, &i.category);
        let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        w.write_record([
            i.id.to_string(),
            rfc3339(&i.captured_at),
            cell(&i.category),
            cell(zh),
            cell(en),
            i.status.to_string(),
            cell(&i.grid),
            num(i.location.lat),
            num(i.location.lon),
            num(i.location.accuracy_m),
            cell(i.location.address.as_deref().unwrap_or("")),
            cell(&i.description),
            cell(&i.reporter),
            cell(&i.device),
            i.photos.len().to_string(),
            i.notes.len().to_string(),
            cell(i.notes.last().map(|n| n.text.as_str()).unwrap_or("")),
        ])?;
    }
    w.into_inner().context("cannot write CSV")
}

/// A FeatureCollection with flat properties, which GIS tools map to columns.
fn geojson(session: &Session, incidents: &[Incident]) -> Value {
    let features: Vec<Value> = incidents
        .iter()
        .map(|i| {
            let (zh, en) = names(session, &i.category);
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
                }
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use sync_core::store::{IncidentRow, ListFilter};

use crate::app::{Session, emit, parse_date, parse_status, print_json, short_time, table};

/// Filters shared by `field list` and `field export`.
#[derive(Debug, clap::Args)]
pub struct Filter {
    /// Only incidents with this status (a code such as in-progress, or its Chinese name).
    #[arg(long)]
    status: Option<String>,
    /// Only incidents of this category (a code or its name).
    #[arg(long)]
    category: Option<String>,
    /// Only incidents captured on this day (YYYY-MM-DD, device calendar).
    #[arg(long)]
    date: Option<String>,
}

impl Filter {
    /// Checks what can be checked without the store.
    pub fn parse(&self) -> Result<ListFilter> {
        Ok(ListFilter {
            status: self.status.as_deref().map(parse_status).transpose()?,
            category: self.category.clone(),
            date: self.date.as_deref().map(parse_date).transpose()?,
        })
    }

    /// Turns the category the worker typed (a code or a name) into its
    /// code, or explains which exist.
    pub fn check(filter: &mut ListFilter, session: &Session) -> Result<()> {
        if let Some(c) = &filter.category {
            filter.category = Some(session.category_code(c)?);
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: Filter,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    row: &'a IncidentRow,
    category_zh: Option<&'a str>,
    category_en: Option<&'a str>,
}

/// How much of a description `field list` shows.
const DESCRIPTION_CHARS: usize = 16;

/// The first `n` characters of `text` on one line, with `…` if it goes on.
fn cut(text: &str, n: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(n) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    let mut filter = args.filter.parse()?;
    let session = Session::open(data_dir)?;
    Filter::check(&mut filter, &session)?;
    let rows = session.store.list(&filter)?;
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|row| {
                let cat = session.taxonomy.get(&row.category);
                JsonRow {
                    row,
                    category_zh: cat.map(|c| c.name_zh.as_str()),
                    category_en: cat.map(|c| c.name_en.as_str()),
                }
            })
            .collect();
        return print_json(&out);
    }
    if rows.is_empty() {
        eprintln!("no incidents match");
        return Ok(());
    }
    let mut t = table(&[
        "ID",
        "CASE",
        "CAPTURED",
        "STATUS",
        "CATEGORY",
        "GRID",
        "REPORTER",
        "DESCRIPTION",
        "PHOTOS",
        "SYNC",
    ]);
    for r in &rows {
        t.add_row([
            r.id.to_string(),
            r.case.as_ref().map(ToString::to_string).unwrap_or_default(),
            short_time(&r.captured_at),
            format!("{} {}", r.status.name_zh(), r.status),
            session.category_label(&r.category),
            r.grid.clone(),
            r.reporter.clone(),
            cut(&r.description, DESCRIPTION_CHARS),
            r.photos.to_string(),
            if r.unsynced { "pending" } else { "synced" }.to_owned(),
        ]);
    }
    emit(format!("{t}\n").as_bytes())?;
    Ok(())
}

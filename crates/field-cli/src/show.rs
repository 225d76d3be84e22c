use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use sync_core::Incident;
use sync_core::incident::rfc3339;

use crate::app::{Session, emit, print_json, short_time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The incident id, or enough of its start to be unique.
    id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JsonIncident<'a> {
    #[serde(flatten)]
    incident: &'a Incident,
    category_zh: Option<&'a str>,
    category_en: Option<&'a str>,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    let session = Session::open(data_dir)?;
    let id = session.store.resolve(&args.id)?;
    let incident = session.store.load(&id, session.profile.actor())?.read()?;
    if args.json {
        let cat = session.taxonomy.get(&incident.category);
        return print_json(&JsonIncident {
            incident: &incident,
            category_zh: cat.map(|c| c.name_zh.as_str()),
            category_en: cat.map(|c| c.name_en.as_str()),
        });
    }
    emit(render(&session, &incident).as_bytes())?;
    Ok(())
}

fn render(session: &Session, i: &Incident) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "incident  {}", i.id);
    if let Some(case) = &i.case {
        let _ = writeln!(s, "case      {case}");
    }
    let _ = writeln!(s, "category  {}", session.category_label(&i.category));
    let mut status = format!("{} {}", i.status.name_zh(), i.status);
    if !i.status_conflicts.is_empty() {
        let others: Vec<_> = i.status_conflicts.iter().map(|s| s.as_str()).collect();
        let _ = write!(status, " (also set concurrently: {})", others.join(", "));
    }
    let _ = writeln!(s, "status    {status}");
    let cell = match session.grids.cell(&i.grid) {
        Some(p) => format!(
            "{} ({} {} {} {})",
            i.grid, p.district.name_zh, p.street.name_zh, p.community.name_zh, p.cell.name_zh
        ),
        None => i.grid.clone(),
    };
    let _ = writeln!(s, "grid      {cell}");
    let _ = writeln!(
        s,
        "captured  {} by {} on device {}",
        rfc3339(&i.captured_at),
        i.reporter,
        i.device
    );
    if let Some((lat, lon)) = i.location.point() {
        let acc = i.location.accuracy_m.map(|a| format!(" ±{a} m")).unwrap_or_default();
        let _ = writeln!(s, "location  {lat:.6}, {lon:.6}{acc}");
    }
    if let Some(a) = &i.location.address {
        let _ = writeln!(s, "address   {a}");
    }
    if !i.description.is_empty() {
        let _ = writeln!(s, "\n{}", i.description);
    }
    if !i.photos.is_empty() {
        let _ = writeln!(s, "\nphotos ({})", i.photos.len());
        for p in &i.photos {
            let taken = p
                .taken_at
                .as_deref()
                .map(|t| format!(", taken {t}"))
                .unwrap_or_default();
            let gps = p
                .gps
                .map(|g| format!(", GPS {:.6}, {:.6}", g.lat, g.lon))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {} {}x{} {} bytes{taken}{gps}",
                p.original, p.mime, p.width, p.height, p.size
            );
        }
    }
    if !i.notes.is_empty() {
        let _ = writeln!(s, "\nnotes");
        for n in &i.notes {
            let _ = writeln!(s, "  {} {}: {}", short_time(&n.at), n.author, n.text);
        }
    }
    history(session, i, &mut s);
    s
}

/// The status history, a line per move, dispatches with their department.
fn history(session: &Session, i: &Incident, s: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "\nhistory");
    for h in &i.status_history {
        let from = h.from.map(|f| format!("{f} → ")).unwrap_or_default();
        let to = match &h.dispatch {
            Some(x) => format!(
                "{} to {}, due {}",
                h.to,
                department_name(session, &x.department),
                short_time(&x.deadline)
            ),
            None => h.to.to_string(),
        };
        let _ = writeln!(s, "  {} {}{} by {}", short_time(&h.at), from, to, h.by);
    }
}

/// `市政 Municipal works`, or the bare code for a department this device's list lacks.
fn department_name(session: &Session, code: &str) -> String {
    match session.taxonomy.department(code) {
        Some(d) => format!("{} {}", d.name_zh, d.name_en),
        None => code.to_owned(),
    }
}

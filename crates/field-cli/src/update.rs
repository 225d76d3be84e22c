use std::path::{Path, PathBuf};

use anyhow::Result;

use chrono::{DateTime, FixedOffset, TimeDelta};
use sync_core::account::Role;
use sync_core::incident::Dispatch;
use sync_core::rules::{self, Author, Rule, limits};
use sync_core::{Correction, Incident, IncidentDoc, Status};

use crate::app::{Session, UsageError, check_point, check_text, count, now, parse_status, usage, warn_outside};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The incident id, or enough of its start to be unique.
    id: String,
    /// Move the incident to this status.
    #[arg(long)]
    status: Option<String>,
    /// Add a note.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    note: Option<String>,
    /// Add a photo (JPEG or PNG); repeat for several.
    #[arg(long = "photo", value_name = "PATH")]
    photos: Vec<PathBuf>,
    /// Dispatch to this department (a code, or its Chinese or English name;
    /// by default the category's); implies --status dispatched.
    #[arg(long, value_name = "DEPT")]
    department: Option<String>,
    /// The dispatch's time limit: hours or days from now (`24h`, `3d`) or
    /// an RFC 3339 time; by default the category's.
    #[arg(long, value_name = "WHEN", requires = "department")]
    deadline: Option<String>,
    #[command(flatten)]
    fix: Fix,
}

/// Corrections of what was reported, by the reporter or the center; each
/// leaves a `correction` note in the incident's history.
#[derive(Debug, Default, clap::Args)]
struct Fix {
    /// Correct the category (a code, or its Chinese or English name).
    #[arg(long, value_name = "CODE")]
    category: Option<String>,
    /// Correct the description.
    #[arg(long = "desc", value_name = "TEXT", allow_hyphen_values = true)]
    description: Option<String>,
    /// Correct the latitude (with --lon).
    #[arg(long, requires = "lon", allow_hyphen_values = true)]
    lat: Option<f64>,
    /// Correct the longitude (with --lat).
    #[arg(long, requires = "lat", allow_hyphen_values = true)]
    lon: Option<f64>,
    /// Correct the street address or landmark.
    #[arg(long, allow_hyphen_values = true)]
    address: Option<String>,
    /// Move the incident to another of this worker's cells.
    #[arg(long, value_name = "CELL")]
    grid: Option<String>,
}

impl Fix {
    fn is_empty(&self) -> bool {
        self.category.is_none()
            && self.description.is_none()
            && self.lat.is_none()
            && self.address.is_none()
            && self.grid.is_none()
    }
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    if args.status.is_none()
        && args.note.is_none()
        && args.photos.is_empty()
        && args.fix.is_empty()
        && args.department.is_none()
    {
        return usage(
            "nothing to change; give --status, --note, --photo, or a correction (--category, --desc, --lat/--lon, --address, --grid)",
        );
    }
    let status = match (args.status.as_deref().map(parse_status).transpose()?, &args.department) {
        (None, Some(_)) => Some(Status::Dispatched),
        (Some(s), Some(_)) if s != Status::Dispatched => {
            return usage("--department goes with a dispatch; leave out --status or give --status dispatched");
        }
        (s, _) => s,
    };
    if let Some(note) = &args.note {
        if note.trim().is_empty() {
            return usage("--note is empty");
        }
        check_text("--note", note, limits::MAX_NOTE)?;
    }
    let mut session = Session::open(data_dir)?;
    let id = session.store.resolve(&args.id)?;
    let mut doc = session.store.load(&id, session.profile.actor())?;
    let now = now();
    let who = session.profile.worker.clone();
    if !args.fix.is_empty() {
        let fix = correction(&session, &doc.read()?, &args.fix)?;
        doc.correct(&fix, &who, now)?;
    }
    if let Some(status) = status {
        check_role(&session, &doc, status)?;
        match dispatch_of(&session, &doc.read()?, status, &args, now)? {
            Some(x) => {
                eprintln!("{}", dispatched_text(&session, &x));
                doc.dispatch(&x, &who, now)?;
            }
            None => doc.set_status(status, &who, now)?,
        }
    }
    if let Some(note) = &args.note {
        doc.add_note(&who, note, now)?;
    }
    let photos = session.prepare_photos(&args.photos, now)?;
    let refs: Vec<_> = photos.iter().map(|p| p.photo.clone()).collect();
    doc.add_photos(&refs)?;
    let incident = session.store.save(&mut doc, &photos, now)?;
    crate::wake::nudge(data_dir);
    eprintln!(
        "updated {}: {}, {}, {}",
        incident.id,
        incident.status,
        count(incident.notes.len() as u64, "note", "notes"),
        count(incident.photos.len() as u64, "photo", "photos")
    );
    Ok(())
}

/// The department and deadline of a move to `dispatched`: as given, or
/// the category's (none when the taxonomy names neither).
fn dispatch_of(
    session: &Session,
    incident: &Incident,
    to: Status,
    args: &Args,
    now: DateTime<FixedOffset>,
) -> Result<Option<Dispatch>> {
    if to != Status::Dispatched {
        return Ok(None);
    }
    let category = session.taxonomy.get(&incident.category);
    let department = match &args.department {
        Some(d) => session
            .taxonomy
            .resolve_department(d)
            .map_err(|e| UsageError(e.to_string()))?
            .code
            .clone(),
        None => match category.and_then(|c| c.department.clone()) {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let deadline = match &args.deadline {
        Some(text) => parse_deadline(text, now)?,
        None => {
            let hours = category.and_then(|c| c.time_limit_hours).unwrap_or(72);
            now + TimeDelta::hours(i64::from(hours))
        }
    };
    if deadline <= now {
        return usage("--deadline must be after now");
    }
    Ok(Some(Dispatch { department, deadline }))
}

/// `24h`, `3d`, or an RFC 3339 time.
fn parse_deadline(text: &str, now: DateTime<FixedOffset>) -> Result<DateTime<FixedOffset>> {
    let t = text.trim();
    let span = |n: &str, unit: i64| {
        n.parse::<i64>()
            .ok()
            .filter(|n| (1..=366 * 24).contains(n))
            .map(|n| n * unit)
    };
    let hours = match t.char_indices().last() {
        Some((i, 'h')) => span(&t[..i], 1),
        Some((i, 'd')) => span(&t[..i], 24),
        _ => None,
    };
    if let Some(h) = hours {
        return Ok(now + TimeDelta::hours(h));
    }
    DateTime::parse_from_rfc3339(t).or_else(|_| {
        usage(format!(
            "--deadline `{t}` is not a time limit such as 24h or 3d, nor an RFC 3339 time"
        ))
    })
}

/// `dispatched to 市政 Municipal works, due 2026-12-04 13:00`.
fn dispatched_text(session: &Session, x: &Dispatch) -> String {
    let name = session
        .taxonomy
        .department(&x.department)
        .map_or(x.department.clone(), |d| format!("{} {}", d.name_zh, d.name_en));
    format!("dispatched to {name}, due {}", crate::app::short_time(&x.deadline))
}

/// The correction asked for, checked as the server would check it.
fn correction(session: &Session, incident: &Incident, fix: &Fix) -> Result<Correction> {
    let me = &session.profile.worker;
    if session.profile.role == Some(Role::Worker) && &incident.reporter != me {
        return usage(format!(
            "only the reporter ({}) or the center corrects an incident",
            incident.reporter
        ));
    }
    if let Some(d) = &fix.description {
        check_text("--desc", d, limits::MAX_DESCRIPTION)?;
    }
    let mut location = incident.location.clone();
    if let Some((lat, lon)) = fix.lat.zip(fix.lon) {
        check_point(lat, lon)?;
        (location.lat, location.lon, location.accuracy_m) = (Some(lat), Some(lon), None);
    }
    if let Some(a) = &fix.address {
        check_text("--address", a, limits::MAX_ADDRESS)?;
        location.address = Some(a.clone()).filter(|a| !a.trim().is_empty());
    }
    if let Some(cell) = &fix.grid
        && !session.profile.grids.contains(cell)
    {
        return usage(format!(
            "grid cell `{cell}` is not one of this worker's cells ({}); the server would refuse it",
            session.profile.grids.join(", ")
        ));
    }
    let grid = fix.grid.clone().unwrap_or_else(|| incident.grid.clone());
    warn_outside(&session.grids, &grid, location.point());
    Ok(Correction {
        category: fix.category.as_deref().map(|c| session.category_code(c)).transpose()?,
        description: fix.description.clone(),
        location: Some(location),
        grid: fix.grid.clone(),
    })
}

/// Once the server has said this device's role, a move the role may not
/// make is refused here, in the words the server would use, rather than
/// kept on the device and refused at every sync.
fn check_role(session: &Session, doc: &IncidentDoc, to: Status) -> Result<()> {
    let Some(role) = session.profile.role else {
        return Ok(());
    };
    let device = session.profile.device.to_string();
    let author = Author {
        account: &session.profile.worker,
        device: &device,
        role,
        number: None,
        // A department account has no field device; its cases are judged
        // on the server.
        department: None,
    };
    match rules::check_move(&doc.read()?, to, &author) {
        Err(e) if e.rule == Rule::Role => anyhow::bail!("{}", e.detail),
        _ => Ok(()),
    }
}

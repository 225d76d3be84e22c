use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, FixedOffset};
use sync_core::{IncidentDoc, IncidentId, Location, NewIncident};

use sync_core::rules::limits;

use crate::app::{Session, check_point, check_text, emit, now, short_time, usage, warn, warn_outside};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What is wrong: a category code or its Chinese or English name (see `field categories`).
    #[arg(long, value_name = "CODE")]
    category: String,
    /// A description in the worker's words.
    #[arg(long = "desc", value_name = "TEXT", default_value = "", allow_hyphen_values = true)]
    description: String,
    /// Latitude in degrees (WGS 84); give it with --lon.
    #[arg(long, requires = "lon", allow_hyphen_values = true)]
    lat: Option<f64>,
    /// Longitude in degrees (WGS 84); give it with --lat.
    #[arg(long, requires = "lat", allow_hyphen_values = true)]
    lon: Option<f64>,
    /// How accurate the position is, in metres.
    #[arg(long, value_name = "METRES", requires = "lat", allow_hyphen_values = true)]
    accuracy: Option<f64>,
    /// Street address or landmark, free text.
    #[arg(long, allow_hyphen_values = true)]
    address: Option<String>,
    /// The grid cell; by default the worker's only cell, or the one containing --lat/--lon.
    #[arg(long, value_name = "CELL")]
    grid: Option<String>,
    /// A photo (JPEG or PNG); repeat for several. The file itself is left untouched.
    #[arg(long = "photo", value_name = "PATH")]
    photos: Vec<PathBuf>,
    /// When the worker saw it (RFC 3339), if not now.
    #[arg(long = "at", value_name = "TIME")]
    at: Option<String>,
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    check_args(&args)?;
    let now = now();
    let captured_at = captured_at(args.at.as_deref(), now)?;
    let mut session = Session::open(data_dir)?;
    let category = session.category_code(&args.category)?;
    let grid = choose_grid(&session, args.grid.as_deref(), args.lat.zip(args.lon))?;
    warn_outside(&session.grids, &grid, args.lat.zip(args.lon));
    let photos = session.prepare_photos(&args.photos, now)?;

    let id = IncidentId::new(now.timestamp_millis().max(0) as u64, rand_bytes());
    let case = session.store.case_for(&session.grids, &grid, now)?;
    let new = NewIncident {
        id,
        category,
        description: args.description,
        location: Location {
            lat: args.lat,
            lon: args.lon,
            accuracy_m: args.accuracy,
            address: args.address,
        },
        grid,
        reporter: session.profile.worker.clone(),
        device: session.profile.device.to_string(),
        captured_at,
        photos: photos.iter().map(|p| p.photo.clone()).collect(),
        case: case.clone(),
    };
    let mut doc = IncidentDoc::create(&new, session.profile.actor())?;
    session.store.save(&mut doc, &photos, now)?;
    crate::wake::nudge(data_dir);
    if let Some(case) = case {
        eprintln!("case {case}");
    }
    emit(format!("{id}\n").as_bytes())?;
    Ok(())
}

/// What can be refused before the store is opened.
fn check_args(args: &Args) -> Result<()> {
    if let Some((lat, lon)) = args.lat.zip(args.lon) {
        check_point(lat, lon)?;
    }
    if let Some(acc) = args.accuracy
        && !(acc.is_finite() && acc >= 0.0)
    {
        return usage(format!("--accuracy {acc} must be a distance in metres, 0 or more"));
    }
    check_text("--desc", &args.description, limits::MAX_DESCRIPTION)?;
    if let Some(address) = &args.address {
        check_text("--address", address, limits::MAX_ADDRESS)?;
    }
    Ok(())
}

/// `--at`, or now; a time well ahead of the device's clock is kept with a warning.
fn captured_at(at: Option<&str>, now: DateTime<FixedOffset>) -> Result<DateTime<FixedOffset>> {
    let Some(s) = at else {
        return Ok(now);
    };
    let Ok(t) = DateTime::parse_from_rfc3339(s) else {
        return usage(format!(
            "--at `{s}` is not an RFC 3339 time such as 2026-11-20T09:15:00+08:00"
        ));
    };
    if t > now + chrono::TimeDelta::minutes(5) {
        warn(format!(
            "--at {} is {} ahead of this device's clock ({}); check the date",
            short_time(&t),
            ahead(t - now),
            short_time(&now)
        ));
    }
    Ok(t)
}

fn choose_grid(session: &Session, given: Option<&str>, point: Option<(f64, f64)>) -> Result<String> {
    let mine = &session.profile.grids;
    if let Some(cell) = given {
        if !mine.iter().any(|g| g == cell) {
            return usage(format!(
                "grid cell `{cell}` is not one of this worker's cells ({}); the server would refuse it",
                mine.join(", ")
            ));
        }
        return Ok(cell.to_owned());
    }
    if let Some((lat, lon)) = point
        && let Some(cell) = session
            .grids
            .cells_containing(lat, lon)
            .into_iter()
            .find(|p| mine.iter().any(|g| g == &p.cell.id))
    {
        return Ok(cell.cell.id.clone());
    }
    match mine.as_slice() {
        [only] => Ok(only.clone()),
        _ => usage(format!(
            "this worker patrols several cells ({}); say which with --grid",
            mine.join(", ")
        )),
    }
}

/// `3 days` or `5 hours`, for a time ahead of the clock.
fn ahead(d: chrono::TimeDelta) -> String {
    match d.num_days() {
        0 => crate::app::count(d.num_hours().max(1) as u64, "hour", "hours"),
        n => crate::app::count(n as u64, "day", "days"),
    }
}

/// Ten random bytes for the id, from the OS.
fn rand_bytes() -> [u8; 10] {
    let mut b = [0u8; 10];
    b.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
    b
}

use std::path::{Path, PathBuf};

use anyhow::Result;

use sync_core::rules::{self, Author, Rule};
use sync_core::{IncidentDoc, Status};

use crate::app::{Session, count, now, parse_status, usage};

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
}

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    if args.status.is_none() && args.note.is_none() && args.photos.is_empty() {
        return usage("nothing to change; give --status, --note or --photo");
    }
    let status = args.status.as_deref().map(parse_status).transpose()?;
    if args.note.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return usage("--note is empty");
    }
    let mut session = Session::open(data_dir)?;
    let id = session.store.resolve(&args.id)?;
    let mut doc = session.store.load(&id, session.profile.actor())?;
    let now = now();
    let who = session.profile.worker.clone();
    if let Some(status) = status {
        check_role(&session, &doc, status)?;
        doc.set_status(status, &who, now)?;
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
    };
    match rules::check_move(&doc.read()?, to, &author) {
        Err(e) if e.rule == Rule::Role => anyhow::bail!("{}", e.detail),
        _ => Ok(()),
    }
}

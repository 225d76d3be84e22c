use std::path::Path;

use anyhow::Result;

use crate::app::{Session, emit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The incident id, or enough of its start to be unique.
    id: String,
    /// Fetch the originals too, not only the display copies.
    #[arg(long)]
    original: bool,
}

/// Makes an incident's photos available offline and prints their paths.
pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    let session = Session::open(data_dir)?;
    let id = session.store.resolve(&args.id)?;
    let incident = session.store.load(&id, session.profile.actor())?.read()?;
    let mut want = Vec::new();
    for p in &incident.photos {
        want.push((p.thumb, "thumb"));
        want.push((p.display, "display"));
        if args.original {
            want.push((p.original, "original"));
        }
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|(h, _)| !session.store.blobs().contains(h))
        .cloned()
        .collect();
    drop(session);
    if !missing.is_empty() {
        let n = crate::sync::fetch(data_dir, &missing)?;
        eprintln!("fetched {n} photo files");
    }
    let session = Session::open(data_dir)?;
    let mut out = String::new();
    for (hash, kind) in want {
        out.push_str(&format!("{kind}\t{}\n", session.store.blobs().path(&hash).display()));
    }
    emit(out.as_bytes())
}

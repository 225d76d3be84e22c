//! `sync-server reconcile`: one community's day, on the data dir.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use chrono::{NaiveDate, Utc};
use sync_core::BlobHash;
use sync_core::calendar::parse_day;
use sync_core::files::{Access, write_whole};
use sync_server::report::{self, PhotoLine, html, text};

use super::{Place, audit_local, classify};
use sync_server::storage::AuditKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The day, in the community's time zone (default: today there).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
    date: Option<NaiveDate>,
    /// The community; may be left out when only one community has workers.
    #[arg(long)]
    community: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
    /// A standalone page with the thumbnails inlined.
    Html,
}

pub fn run(place: &Place<'_>, args: &Args) -> anyhow::Result<()> {
    let storage = place.storage()?;
    let grids = place.grids()?;
    let community = report::resolve_community(&*storage, &grids, args.community.as_deref()).map_err(classify)?;
    let now = Utc::now();
    let date = match args.date {
        Some(d) => d,
        None => report::today(&grids, &community, now).map_err(classify)?,
    };
    let r = report::daily_report(&*storage, &grids, &community, date, now).map_err(classify)?;
    let detail = format!("sync-server reconcile: daily report of {community} for {date}");
    audit_local(&*storage, AuditKind::ReportRead, None, None, &detail)?;
    let bytes = match args.format {
        Format::Table => text::to_table(&r).into_bytes(),
        Format::Json => {
            let mut v = serde_json::to_vec_pretty(&r)?;
            v.push(b'\n');
            v
        }
        Format::Csv => text::to_csv(&r).context("cannot write the CSV")?,
        Format::Html => {
            let photos = sync_server::open_photo_store(place.data_dir, place.photos).map_err(classify)?;
            // Thumbnails inlined as data URIs, so the file stands alone.
            let thumb = |p: &PhotoLine| {
                let hash: BlobHash = p.thumb.parse().ok()?;
                let bytes = photos.read(&hash).ok()?;
                Some(format!(
                    "data:image/jpeg;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                ))
            };
            html::standalone_html(&r, &thumb, grids.community(&r.community.id)).into_bytes()
        }
    };
    match &args.out {
        Some(path) => {
            write_whole(path, &bytes, Access::Default).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .context("cannot write the report")
        }
    }
}

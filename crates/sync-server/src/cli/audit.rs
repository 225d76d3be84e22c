//! `sync-server audit`: the audit log, oldest first.

use anyhow::Context;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sync_server::storage::{AuditKind, AuditRow};

use super::{Place, Usage};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events at or after this time: RFC 3339, or a date (from 00:00 UTC).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events of this kind (enrol, sign-in-failed, auth-failed, export …).
    #[arg(long)]
    kind: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 10_000)]
    limit: u32,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `--since` as the log writes times: RFC 3339 in UTC with milliseconds.
fn since(text: &str) -> Result<String, Usage> {
    let t = match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map_err(|_| {
                Usage(anyhow::anyhow!(
                    "--since {text:?} is neither an RFC 3339 time nor a date YYYY-MM-DD"
                ))
            })?
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc(),
    };
    Ok(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn kind(text: &str) -> Result<AuditKind, Usage> {
    AuditKind::parse(text).ok_or_else(|| {
        let all: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        Usage(anyhow::anyhow!(
            "no audit event kind {text:?}; the kinds are {}",
            all.join(", ")
        ))
    })
}

pub fn run(place: &Place<'_>, args: &Args) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(since).transpose()?;
    let only = args.kind.as_deref().map(kind).transpose()?;
    let storage = place.storage()?;
    let rows = storage
        .audit_rows(since.as_deref(), only, args.limit)
        .context("cannot read the audit log")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_rows(&rows);
    }
    Ok(())
}

fn print_rows(rows: &[AuditRow]) {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(["at", "kind", "account", "device", "client", "detail"]);
    for r in rows {
        t.add_row([
            r.at.as_str(),
            r.kind.as_str(),
            r.account.as_deref().unwrap_or("-"),
            r.device.as_deref().unwrap_or("-"),
            r.client.as_str(),
            r.detail.as_str(),
        ]);
    }
    println!("{t}");
}

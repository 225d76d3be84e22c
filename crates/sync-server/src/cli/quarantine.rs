//! `sync-server quarantine list|accept|drop`.

use sync_server::sync::quarantine;

use super::{Place, Usage, audit_local, classify};
use sync_server::storage::AuditKind;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List what is kept aside, oldest first.
    List,
    /// Admit a relayed change into its incident, as made by this worker's
    /// device (the edit rules apply as to any push).
    Accept {
        id: i64,
        /// The worker whose device made the change.
        #[arg(long = "as", value_name = "WORKER")]
        worker: String,
    },
    /// Drop an item for good.
    Drop { id: i64 },
}

pub fn run(place: &Place<'_>, c: Command) -> anyhow::Result<()> {
    let storage = place.storage()?;
    match c {
        Command::List => {
            let rows = quarantine::list(&*storage)?;
            if rows.is_empty() {
                eprintln!("the quarantine is empty");
            }
            for r in rows {
                let kind = if r.hash.is_some() {
                    "relayed change"
                } else {
                    "failed bytes"
                };
                println!(
                    "{:<5} {:<20} {:<36} {:<38} {:>8} B  {}",
                    r.id,
                    kind,
                    r.incident.as_deref().unwrap_or("-"),
                    r.device,
                    r.bytes.len(),
                    r.reason
                );
            }
        }
        Command::Accept { id, worker } => {
            quarantine::accept(&*storage, id, &worker).map_err(classify)?;
            let detail = format!("quarantined item {id} accepted as made by {worker}'s device");
            audit_local(&*storage, AuditKind::QuarantineAccept, Some(&worker), None, &detail)?;
            eprintln!("item {id} accepted into its incident as made by {worker}'s device");
        }
        Command::Drop { id } => {
            if !quarantine::drop_item(&*storage, id)? {
                return Err(Usage(anyhow::anyhow!("there is no quarantined item {id}")).into());
            }
            audit_local(
                &*storage,
                AuditKind::QuarantineDrop,
                None,
                None,
                &format!("quarantined item {id} dropped"),
            )?;
            eprintln!("item {id} dropped");
        }
    }
    Ok(())
}

//! `sync-server worker|device|token`: the operator's accounts.

use sync_server::accounts::{self, DeviceRow, NewWorker};
use sync_server::storage::{Accounts, AuditKind, Role};

use super::{Place, audit_local, classify};

#[derive(Debug, clap::Subcommand)]
pub enum WorkerCommand {
    /// Add a grid worker (with --grid) or a community center account (--role center --community C).
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A grid cell the worker patrols; repeat for several.
        #[arg(long = "grid", value_name = "CELL")]
        grids: Vec<String>,
        /// The community a center account sees.
        #[arg(long)]
        community: Option<String>,
        #[arg(long, default_value = "worker", value_parser = ["worker", "center", "operator"])]
        role: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Print a one-time enrolment code for one of the worker's devices.
    Enroll {
        #[arg(long)]
        worker: String,
        /// Hours until the code expires.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u32,
        /// Enrol this already enrolled device of the worker again (a
        /// reinstalled app that kept its data dir); its old token stops working.
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
    },
    /// List enrolled devices.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its token stops working at once.
    Revoke { device: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a new read-only token for a center or operator account.
    Create {
        #[arg(long)]
        worker: String,
    },
}

pub fn worker(place: &Place<'_>, command: WorkerCommand) -> anyhow::Result<()> {
    let WorkerCommand::Add {
        id,
        name,
        grids,
        community,
        role,
    } = command;
    let storage = place.storage()?;
    let map = place.grids()?;
    let new = NewWorker {
        id: &id,
        name: &name,
        role: Role::parse(&role).expect("clap checked the role"),
        cells: &grids,
        community: community.as_deref(),
    };
    let w = accounts::add_worker(&storage, &map, &new).map_err(classify)?;
    println!("added {} {} ({}) {}", w.role.as_str(), w.id, w.name, w.grids.join(", "));
    Ok(())
}

pub fn device(place: &Place<'_>, command: DeviceCommand) -> anyhow::Result<()> {
    let storage = place.storage()?;
    match command {
        DeviceCommand::Enroll {
            worker,
            ttl_hours,
            device,
        } => {
            let code = accounts::enrol_code(&storage, &worker, ttl_hours, device.as_deref()).map_err(classify)?;
            eprintln!("enrolment code for {worker}, valid until {}:", code.expires_at);
            println!("{}", code.code);
        }
        DeviceCommand::List { json } => {
            let devices = accounts::devices(&storage).map_err(classify)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&devices)?);
            } else {
                print_devices(&devices);
            }
        }
        DeviceCommand::Revoke { device } => {
            accounts::revoke(&storage, &device).map_err(classify)?;
            let account = storage.device(&device)?.map(|d| d.worker.id);
            audit_local(
                &storage,
                AuditKind::Revoke,
                account.as_deref(),
                Some(&device),
                "sync-server device revoke",
            )?;
            println!("revoked {device}");
        }
    }
    Ok(())
}

fn print_devices(devices: &[DeviceRow]) {
    println!(
        "{:<38} {:<12} {:<8} {:<26} {:<26} {:<16} SYNC",
        "DEVICE", "WORKER", "ROLE", "ENROLLED", "LAST SYNC", "STATE"
    );
    for row in devices {
        let d = &row.device;
        let state = match (d.revoked_at.is_some(), d.read_only) {
            (true, _) => "revoked",
            (false, true) => "read-only token",
            (false, false) => "active",
        };
        let sync = match &row.sync {
            None => "-".to_owned(),
            Some(s) if s.in_step => "in step".to_owned(),
            Some(s) => format!(
                "{} of {} incidents here; {} records, {} photos waiting",
                s.server_own, s.device_own, s.pending_docs, s.pending_photos
            ),
        };
        println!(
            "{:<38} {:<12} {:<8} {:<26} {:<26} {:<16} {}",
            d.id,
            d.worker.id,
            d.worker.role.as_str(),
            d.enrolled_at,
            d.last_sync_at.as_deref().unwrap_or("never"),
            state,
            sync
        );
    }
}

pub fn token(place: &Place<'_>, command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create { worker } = command;
    let storage = place.storage()?;
    let t = accounts::create_token(&storage, &worker).map_err(classify)?;
    audit_local(
        &storage,
        AuditKind::TokenCreate,
        Some(&worker),
        Some(&t.id),
        "sync-server token create",
    )?;
    eprintln!(
        "read-only token {} for {worker} (revoke with `sync-server device revoke {}`):",
        t.id, t.id
    );
    println!("{}", t.token);
    Ok(())
}

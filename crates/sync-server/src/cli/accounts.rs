//! `sync-server worker|device|token`: the operator's accounts.

use chrono_tz::Tz;
use sync_core::GridMap;
use sync_server::accounts::{self, DeviceRow, NewWorker, WorkerUpdate};
use sync_server::storage::{AuditKind, Role, Storage, WaitingCode, Worker};

use super::{Place, audit_local, classify};

#[derive(Debug, clap::Subcommand)]
pub enum WorkerCommand {
    /// Add a grid worker (with --grid), a community center account (--role center --community C)
    /// or a department's account (--role department --community C --department 市政).
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A grid cell the worker patrols; repeat for several.
        #[arg(long = "grid", value_name = "CELL")]
        grids: Vec<String>,
        /// The community a center or department account sees.
        #[arg(long)]
        community: Option<String>,
        #[arg(long, default_value = "worker", value_parser = ["worker", "center", "operator", "department"])]
        role: String,
        /// The department a department account speaks for: its code, or its Chinese or English name.
        #[arg(long)]
        department: Option<String>,
    },
    /// List workers and accounts, retired ones last.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a worker's name, cells, role or community; devices learn it at their next sync.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// The worker's cells from now on (all of them); repeat for several.
        #[arg(long = "grid", value_name = "CELL")]
        grids: Vec<String>,
        /// A new role; what the old role had and the new one does not use is dropped.
        #[arg(long, value_parser = ["worker", "center", "operator", "department"])]
        role: Option<String>,
        /// The community a center or department account sees.
        #[arg(long)]
        community: Option<String>,
        /// The department a department account speaks for.
        #[arg(long)]
        department: Option<String>,
    },
    /// Retire a worker: its devices and tokens stop working at once; its records stay.
    Retire { id: String },
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
    /// List enrolled devices and tokens, and the enrolment codes not used yet.
    List {
        #[arg(long)]
        json: bool,
    },
    /// List the enrolment codes neither used nor expired (the codes themselves are not kept).
    Codes {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device or token by its id or a unique start of it: it stops working at once.
    Revoke { device: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a new read-only token for a center, department or operator account.
    Create {
        #[arg(long)]
        worker: String,
    },
}

pub fn worker(place: &Place<'_>, command: WorkerCommand) -> anyhow::Result<()> {
    let storage = place.storage()?;
    match command {
        WorkerCommand::Add {
            id,
            name,
            grids,
            community,
            role,
            department,
        } => {
            let new = NewWorker {
                id: &id,
                name: &name,
                role: Role::parse(&role).expect("clap checked the role"),
                cells: &grids,
                community: community.as_deref(),
                department: department.as_deref(),
            };
            let w = accounts::add_worker(&*storage, &place.grids()?, &new).map_err(classify)?;
            audit_local(&*storage, AuditKind::WorkerAdd, Some(&id), None, &describe(&w))?;
            println!("added {}", describe(&w));
        }
        WorkerCommand::List { json } => {
            let mut workers = storage.workers()?;
            workers.sort_by_key(|w| w.retired_at.is_some());
            if json {
                println!("{}", serde_json::to_string_pretty(&workers)?);
            } else {
                print_workers(&workers, &place.grids()?);
            }
        }
        WorkerCommand::Update {
            id,
            name,
            grids,
            role,
            community,
            department,
        } => {
            let change = WorkerUpdate {
                name,
                role: role.as_deref().map(|r| Role::parse(r).expect("clap checked the role")),
                cells: (!grids.is_empty()).then_some(grids),
                community,
                department,
            };
            let (before, after) =
                accounts::update_worker(&*storage, &place.grids()?, &id, &change).map_err(classify)?;
            let detail = format!("{} → {}", describe(&before), describe(&after));
            audit_local(&*storage, AuditKind::WorkerUpdate, Some(&id), None, &detail)?;
            println!("updated {}", describe(&after));
        }
        WorkerCommand::Retire { id } => {
            let w = accounts::retire_worker(&*storage, &id).map_err(classify)?;
            audit_local(
                &*storage,
                AuditKind::WorkerRetire,
                Some(&id),
                None,
                "sync-server worker retire",
            )?;
            println!("retired {}; its devices and tokens no longer work", describe(&w));
        }
    }
    Ok(())
}

/// `worker w-li (李华) HLT-CX-HX-01, HLT-CX-HX-02`.
fn describe(w: &Worker) -> String {
    let sees = match w.role {
        Role::Worker => w.grids.join(", "),
        Role::Center => format!("community {}", w.community.as_deref().unwrap_or("?")),
        Role::Department => format!(
            "{} cases in community {}",
            w.department.as_deref().unwrap_or("?"),
            w.community.as_deref().unwrap_or("?")
        ),
        Role::Operator => "every community".to_owned(),
    };
    format!("{} {} ({}) {sees}", w.role.as_str(), w.id, w.name)
}

fn print_workers(workers: &[Worker], grids: &GridMap) {
    let mut t = table(&["ID", "NAME", "ROLE", "SEES", "RETIRED"]);
    for w in workers {
        let sees = match w.role {
            Role::Worker => w.grids.join(" "),
            Role::Center => w.community.clone().unwrap_or_default(),
            Role::Department => format!(
                "{} {}",
                w.community.as_deref().unwrap_or_default(),
                w.department.as_deref().unwrap_or_default()
            ),
            Role::Operator => "all".to_owned(),
        };
        let retired = w.retired_at.as_deref().map(|t| local_time(t, zone_of(w, grids)));
        t.add_row(vec![
            w.id.clone(),
            w.name.clone(),
            w.role.as_str().to_owned(),
            sees,
            retired.unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

pub fn device(place: &Place<'_>, command: DeviceCommand) -> anyhow::Result<()> {
    let storage = place.storage()?;
    match command {
        DeviceCommand::Enroll {
            worker,
            ttl_hours,
            device,
        } => {
            let code = accounts::enrol_code(&*storage, &worker, ttl_hours, device.as_deref()).map_err(classify)?;
            eprintln!("enrolment code for {worker}, valid until {}:", code.expires_at);
            println!("{}", code.code);
        }
        DeviceCommand::List { json } => {
            let devices = accounts::devices(&*storage).map_err(classify)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&devices)?);
            } else {
                let grids = place.grids()?;
                print_devices(&devices, &grids);
                let codes = storage.waiting_codes(sync_server::ServerTime::now().ms)?;
                if !codes.is_empty() {
                    println!("\nenrolment codes not used yet:");
                    print_codes(&*storage, &codes, &grids)?;
                }
            }
        }
        DeviceCommand::Codes { json } => {
            let codes = storage.waiting_codes(sync_server::ServerTime::now().ms)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&codes)?);
            } else {
                print_codes(&*storage, &codes, &place.grids()?)?;
            }
        }
        DeviceCommand::Revoke { device } => {
            let d = accounts::revoke(&*storage, &device).map_err(classify)?;
            audit_local(
                &*storage,
                AuditKind::Revoke,
                Some(&d.worker.id),
                Some(&d.id),
                "sync-server device revoke",
            )?;
            println!("revoked {} of {} ({})", d.id, d.worker.id, d.worker.name);
        }
    }
    Ok(())
}

fn print_devices(devices: &[DeviceRow], grids: &GridMap) {
    let mut t = table(&[
        "DEVICE",
        "WORKER",
        "NAME",
        "LABEL",
        "ROLE",
        "ENROLLED",
        "LAST SYNC",
        "STATE",
        "SYNC",
    ]);
    for row in devices {
        let d = &row.device;
        let tz = zone_of(&d.worker, grids);
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
        t.add_row(vec![
            d.id.clone(),
            d.worker.id.clone(),
            d.worker.name.clone(),
            d.label.clone().unwrap_or_default(),
            d.worker.role.as_str().to_owned(),
            local_time(&d.enrolled_at, tz),
            d.last_sync_at
                .as_deref()
                .map_or("never".to_owned(), |s| local_time(s, tz)),
            state.to_owned(),
            sync,
        ]);
    }
    println!("{t}");
}

/// The codes made but not yet used, so the operator sees who still has to enrol.
fn print_codes(storage: &dyn Storage, codes: &[WaitingCode], grids: &GridMap) -> anyhow::Result<()> {
    let mut t = table(&["WORKER", "NAME", "FOR", "MADE", "EXPIRES"]);
    for c in codes {
        let Some(w) = storage.worker(&c.worker)? else {
            continue;
        };
        let tz = zone_of(&w, grids);
        let expires = chrono::DateTime::from_timestamp_millis(c.expires_ms).map(|t| t.with_timezone(&tz));
        t.add_row(vec![
            w.id.clone(),
            w.name.clone(),
            c.device.clone().unwrap_or_else(|| "a new device".to_owned()),
            local_time(&c.created_at, tz),
            expires.map(|t| t.format(LOCAL_TIME).to_string()).unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

const LOCAL_TIME: &str = "%Y-%m-%d %H:%M";

/// `2026-12-01 19:08` in the zone, or the stored text if it does not parse.
fn local_time(rfc3339: &str, tz: Tz) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&tz).format(LOCAL_TIME).to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

/// The time zone of the account's community (its first cell's, for a
/// grid worker); the default zone for an operator.
fn zone_of(w: &Worker, grids: &GridMap) -> Tz {
    let community = match &w.community {
        Some(c) => grids.community(c),
        None => w.grids.first().and_then(|g| grids.cell(g)).map(|p| p.community),
    };
    community
        .and_then(|c| sync_core::calendar::zone(&c.timezone))
        .unwrap_or(sync_core::calendar::DEFAULT_ZONE)
}

/// A borderless table whose columns line up Chinese and Latin text.
fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_header(header.iter().copied());
    t
}

pub fn token(place: &Place<'_>, command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create { worker } = command;
    let storage = place.storage()?;
    let t = accounts::create_token(&*storage, &worker).map_err(classify)?;
    audit_local(
        &*storage,
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

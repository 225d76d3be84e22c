//! The command line: one module per group of subcommands. Each parses its
//! flags with clap, calls the library, and prints results to stdout and
//! messages to stderr. A library error that is the caller's mistake is
//! wrapped in [`Usage`], which the binary exits with 2.

mod accounts;
mod audit;
mod export;
mod quarantine;
mod reconcile;
mod serve;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The grid workers' sync server.
#[derive(Debug, Parser)]
#[command(name = "sync-server", version, about)]
pub struct Cli {
    /// Where the server keeps its database and photos.
    #[arg(
        long,
        global = true,
        env = "SYNC_SERVER_DATA_DIR",
        default_value = "sync-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// Keep the records in this PostgreSQL database (postgres://user@host:port/db)
    /// instead of the SQLite file in the data dir; photos stay in the data dir.
    #[arg(long, global = true, env = "SYNC_SERVER_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// Keep the photos in this S3-compatible bucket (s3://BUCKET?endpoint=URL&region=NAME,
    /// credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) instead of the data dir.
    #[arg(long, global = true, env = "SYNC_SERVER_PHOTOS", value_name = "URL")]
    photos: Option<String>,
    /// A grid hierarchy file other than the built-in one.
    #[arg(long, global = true, value_name = "FILE")]
    grid_map: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new server: the data dir, its database and photo folder.
    Init,
    /// Bring the server database up to this version's schema (every command does it on opening; this says so).
    Migrate,
    /// Serve devices over HTTP until SIGINT or SIGTERM.
    Serve(serve::Args),
    /// Manage workers and center accounts.
    #[command(subcommand)]
    Worker(accounts::WorkerCommand),
    /// Enrol, list and revoke devices.
    #[command(subcommand)]
    Device(accounts::DeviceCommand),
    /// Read-only tokens for the center's dashboard, reports and exports.
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Export incidents of every community as CSV, GeoJSON or JSON (docs/exports.md).
    Export(export::Args),
    /// The daily reconciliation of a community (docs/reconciliation.md).
    Reconcile(reconcile::Args),
    /// Changes kept aside: relayed changes of devices this server does not
    /// know, and bytes that made Automerge fail (docs/protocol.md).
    #[command(subcommand)]
    Quarantine(quarantine::Command),
    /// The audit log: enrolments, revocations, sign-ins and failures,
    /// exports, reads and refused pushes (docs/security.md).
    Audit(audit::Args),
}

/// Where the data lives, for every subcommand.
struct Place<'a> {
    data_dir: &'a Path,
    database: Option<&'a str>,
    photos: Option<&'a str>,
    grid_map: Option<&'a Path>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let place = Place {
        data_dir: &cli.data_dir,
        database: cli.database.as_deref(),
        photos: cli.photos.as_deref(),
        grid_map: cli.grid_map.as_deref(),
    };
    match cli.command {
        Command::Init => serve::init(&place).map(drop),
        Command::Migrate => serve::migrate(&place),
        Command::Serve(args) => serve::run(&place, args),
        Command::Worker(c) => accounts::worker(&place, c),
        Command::Device(c) => accounts::device(&place, c),
        Command::Token(c) => accounts::token(&place, c),
        Command::Export(args) => export::run(&place, &args),
        Command::Reconcile(args) => reconcile::run(&place, &args),
        Command::Quarantine(c) => quarantine::run(&place, c),
        Command::Audit(args) => audit::run(&place, &args),
    }
}

/// A mistake in the command line or its arguments.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Usage(anyhow::Error);

/// 2 for a [`Usage`] mistake, 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.is::<Usage>() { 2 } else { 1 }
}

/// Library errors that can tell a caller's mistake from a failure.
trait CallerMistake: std::error::Error + Send + Sync + 'static {
    fn caller_mistake(&self) -> bool;
}

macro_rules! caller_mistake {
    ($($t:ty),*) => {
        $(impl CallerMistake for $t {
            fn caller_mistake(&self) -> bool {
                self.is_caller_mistake()
            }
        })*
    };
}

caller_mistake!(
    sync_server::SetupError,
    sync_server::accounts::AccountError,
    sync_server::export::ExportError,
    sync_server::report::ReportError,
    sync_server::sync::quarantine::QuarantineError
);

/// Wraps a library error in [`Usage`] when it is the caller's mistake.
fn classify<E: CallerMistake>(e: E) -> anyhow::Error {
    if e.caller_mistake() {
        Usage(e.into()).into()
    } else {
        e.into()
    }
}

/// Records what the operator did on the server machine in the audit log.
fn audit_local(
    storage: &dyn sync_server::storage::Storage,
    kind: sync_server::storage::AuditKind,
    account: Option<&str>,
    device: Option<&str>,
    detail: &str,
) -> anyhow::Result<()> {
    let event = sync_server::storage::AuditEvent {
        kind,
        account,
        device,
        client: sync_server::storage::LOCAL,
        detail,
    };
    storage
        .audit(&event, &sync_server::ServerTime::now().text)
        .context("cannot write the audit log")
}

impl Place<'_> {
    fn storage(&self) -> anyhow::Result<Box<dyn sync_server::storage::Storage>> {
        sync_server::open_storage(self.data_dir, self.database).map_err(classify)
    }

    fn grids(&self) -> anyhow::Result<sync_core::GridMap> {
        sync_server::load_grids(self.grid_map).map_err(classify)
    }
}

//! `field`: the grid worker's offline incident log.
//!
//! This file only parses the command line, sets up logging and maps errors
//! to exit codes (0 ok, 1 failure, 2 usage). Each subcommand has a module.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod app;
mod categories;
mod client;
mod enroll;
mod export;
mod init;
mod list;
mod lock;
mod photos;
mod report;
mod show;
mod status;
mod sync;
mod tls;
mod update;
mod wake;
mod watch;

/// Log, photograph and list grid incidents on this device, with or without a network.
#[derive(Debug, Parser)]
#[command(name = "field", version, about)]
struct Cli {
    /// Where this device keeps its incident log and photos.
    #[arg(long, global = true, env = "FIELD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set this device up for a grid worker and their grid cells.
    Init(init::Args),
    /// Log a new incident; prints its id.
    Report(report::Args),
    /// List incidents on this device.
    List(list::Args),
    /// Show one incident with its photos, notes and status history.
    Show(show::Args),
    /// Change an incident's status, add a note or add photos.
    Update(update::Args),
    /// List the incident categories.
    Categories(categories::Args),
    /// Counts by status, and what still waits to be synced.
    Status(status::Args),
    /// Write incidents as CSV, GeoJSON or JSON.
    Export(export::Args),
    /// Exchange a one-time code from the operator for this device's token.
    Enroll(enroll::Args),
    /// Send what is new to the server and receive what is new from it
    /// (with --watch, whenever the server can be reached).
    Sync(sync::Args),
    /// Fetch an incident's display photos (or originals) for offline use; prints their paths.
    Photos(photos::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FIELD_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();

    let data_dir = match cli.data_dir.map(Ok).unwrap_or_else(app::default_data_dir) {
        Ok(dir) => dir,
        Err(e) => return app::report_error(&e),
    };
    let result = match cli.command {
        Command::Init(args) => init::run(&data_dir, args),
        Command::Report(args) => report::run(&data_dir, args),
        Command::List(args) => list::run(&data_dir, args),
        Command::Show(args) => show::run(&data_dir, args),
        Command::Update(args) => update::run(&data_dir, args),
        Command::Categories(args) => categories::run(&data_dir, args),
        Command::Status(args) => status::run(&data_dir, args),
        Command::Export(args) => export::run(&data_dir, args),
        Command::Enroll(args) => enroll::run(&data_dir, args),
        Command::Sync(args) => sync::run(&data_dir, args),
        Command::Photos(args) => photos::run(&data_dir, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => app::report_error(&e),
    }
}

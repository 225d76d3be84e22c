//! `sync-server`: parse the command line, set up logging, then either serve
//! or run one operator command on the data dir.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sync_server::storage::Role;
use sync_server::{Config, admin};

/// The grid workers' sync server.
#[derive(Debug, Parser)]
#[command(name = "sync-server", version, about)]
struct Cli {
    /// Where the server keeps its database and photos.
    #[arg(
        long,
        global = true,
        env = "SYNC_SERVER_DATA_DIR",
        default_value = "sync-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// A grid hierarchy file other than the built-in one.
    #[arg(long, global = true, value_name = "FILE")]
    grid_map: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve devices over HTTP until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8780")]
        listen: String,
        #[command(flatten)]
        open311: sync_server::open311::ServeArgs,
    },
    /// Manage workers and center accounts.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Enrol, list and revoke devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Read-only tokens for the center's dashboard, reports and exports.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Export incidents of every community as CSV, GeoJSON or JSON (docs/exports.md).
    Export(sync_server::export::CliArgs),
    /// The daily reconciliation of a community (docs/reconciliation.md).
    Reconcile(sync_server::report::CliArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new read-only token for a center or operator account.
    Create {
        #[arg(long)]
        worker: String,
    },
}

#[derive(Debug, Subcommand)]
enum WorkerCommand {
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

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Print a one-time enrolment code for one of the worker's devices.
    Enroll {
        #[arg(long)]
        worker: String,
        /// Hours until the code expires.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u32,
    },
    /// List enrolled devices.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its token stops working at once.
    Revoke { device: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SYNC_SERVER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A filter that cannot match is a mistake in the command line.
            let usage = e.downcast_ref::<sync_server::export::FilterError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config {
        data_dir: cli.data_dir,
        grid_map: cli.grid_map,
        open311: Default::default(),
    };
    match cli.command {
        Command::Serve { listen, open311 } => {
            let config = Config { open311, ..config };
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                // Tests and scripts read the bound address from this line.
                println!("listening on http://{}", listener.local_addr()?);
                sync_server::run(listener, config, shutdown_signal()).await
            })
        }
        Command::Worker(WorkerCommand::Add {
            id,
            name,
            grids,
            community,
            role,
        }) => {
            let storage = sync_server::open_storage(&config.data_dir)?;
            let role = Role::parse(&role).expect("clap checked the role");
            let map = sync_server::load_grids(&config)?;
            let w = admin::add_worker(&storage, &map, &id, &name, role, &grids, community.as_deref())?;
            println!("added {} {} ({}) {}", w.role.as_str(), w.id, w.name, w.grids.join(", "));
            Ok(())
        }
        Command::Device(DeviceCommand::Enroll { worker, ttl_hours }) => {
            let storage = sync_server::open_storage(&config.data_dir)?;
            let (code, expires) = admin::enrol_code(&storage, &worker, ttl_hours)?;
            eprintln!("enrolment code for {worker}, valid until {expires}:");
            println!("{code}");
            Ok(())
        }
        Command::Device(DeviceCommand::List { json }) => {
            let storage = sync_server::open_storage(&config.data_dir)?;
            let devices = admin::devices(&storage)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&devices)?);
            } else {
                println!(
                    "{:<38} {:<12} {:<8} {:<26} {:<26} {:<16} SYNC",
                    "DEVICE", "WORKER", "ROLE", "ENROLLED", "LAST SYNC", "STATE"
                );
                for row in devices {
                    let d = &row.device;
                    println!(
                        "{:<38} {:<12} {:<8} {:<26} {:<26} {:<16} {}",
                        d.id,
                        d.worker.id,
                        d.worker.role.as_str(),
                        d.enrolled_at,
                        d.last_sync_at.as_deref().unwrap_or("never"),
                        match (d.revoked_at.is_some(), d.read_only) {
                            (true, _) => "revoked",
                            (false, true) => "read-only token",
                            (false, false) => "active",
                        },
                        match &row.sync {
                            None => "-".to_owned(),
                            Some(s) if s.in_step => "in step".to_owned(),
                            Some(s) => format!(
                                "{} of {} incidents here; {} records, {} photos waiting",
                                s.server_own, s.device_own, s.pending_docs, s.pending_photos
                            ),
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Token(TokenCommand::Create { worker }) => {
            let storage = sync_server::open_storage(&config.data_dir)?;
            let (id, token) = admin::create_token(&storage, &worker)?;
            eprintln!("read-only token {id} for {worker} (revoke with `sync-server device revoke {id}`):");
            println!("{token}");
            Ok(())
        }
        Command::Export(args) => sync_server::export::run_cli(&config, &args),
        Command::Reconcile(args) => sync_server::report::run_cli(&config, &args),
        Command::Device(DeviceCommand::Revoke { device }) => {
            let storage = sync_server::open_storage(&config.data_dir)?;
            admin::revoke(&storage, &device)?;
            println!("revoked {device}");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

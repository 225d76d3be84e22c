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
    /// The daily reconciliation of a community (docs/reconciliation.md).
    Reconcile(ReconcileArgs),
}

#[derive(Debug, clap::Args)]
struct ReconcileArgs {
    /// The day, in the community's time zone.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = sync_server::report::parse_date)]
    date: chrono::NaiveDate,
    /// The community; may be left out when only one community has workers.
    #[arg(long)]
    community: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
    /// A standalone page with the thumbnails inlined.
    Html,
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
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config {
        data_dir: cli.data_dir,
        grid_map: cli.grid_map,
    };
    match cli.command {
        Command::Serve { listen } => {
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
        Command::Reconcile(args) => reconcile(&config, args),
        Command::Device(DeviceCommand::Revoke { device }) => {
            let storage = sync_server::open_storage(&config.data_dir)?;
            admin::revoke(&storage, &device)?;
            println!("revoked {device}");
            Ok(())
        }
    }
}

fn reconcile(config: &Config, args: ReconcileArgs) -> Result<()> {
    use sync_server::report;
    let storage = sync_server::open_storage(&config.data_dir)?;
    let grids = sync_server::load_grids(config)?;
    let community = report::resolve_community(&storage, &grids, args.community.as_deref())?;
    let r = report::daily_report(&storage, &grids, &community, args.date, chrono::Utc::now())?;
    let bytes = match args.format {
        ReportFormat::Table => report::to_table(&r).into_bytes(),
        ReportFormat::Json => {
            let mut v = serde_json::to_vec_pretty(&r)?;
            v.push(b'\n');
            v
        }
        ReportFormat::Csv => report::to_csv(&r).context("cannot write the CSV")?,
        ReportFormat::Html => {
            // Thumbnails inlined as data URIs, so the file stands alone.
            let photos = config.data_dir.join("photos");
            let thumb = |p: &sync_server::report::PhotoLine| {
                use base64::Engine;
                let hash: sync_core::BlobHash = p.thumb.parse().ok()?;
                let hex = hash.to_hex();
                let bytes = std::fs::read(photos.join(&hex[..2]).join(&hex)).ok()?;
                Some(format!(
                    "data:image/jpeg;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                ))
            };
            sync_server::dashboard::standalone_html(&r, &thumb).into_bytes()
        }
    };
    match args.out {
        Some(path) => std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display())),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .context("cannot write the report")
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

//! `sync-server serve`.

use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

use sync_server::{Config, Open311Config, Timeouts, TlsFiles};

use super::{Place, classify};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Make the data dir first if it holds no server yet (as `sync-server
    /// init`); without it, a folder with no server database is refused.
    #[arg(long)]
    init: bool,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8780")]
    listen: String,
    /// Serve Open311 requests and photos without a token (read-only, every community).
    #[arg(long)]
    open311_public: bool,
    /// The base URL clients reach this server at, for Open311 `media_url`
    /// (default: http://<listen address>).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// At most this many connections at once (default: the descriptor
    /// limit, raised to its hard maximum, less a reserve).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key);
    /// reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A TLS proxy in front of the server whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed; repeat for several.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// A whole request, body included, may take this many seconds (408 past it).
    #[arg(long, value_name = "SECS", default_value_t = Timeouts::default().request.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// A request body may pause this many seconds between bytes (408 past it).
    #[arg(long, value_name = "SECS", default_value_t = Timeouts::default().body_idle.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    body_idle_timeout: u64,
}

/// `sync-server init`: a new data dir, told on stderr.
pub fn init(place: &Place<'_>) -> anyhow::Result<Box<dyn sync_server::storage::Storage>> {
    let storage = sync_server::create_storage(place.data_dir, place.database).map_err(classify)?;
    let shown = std::path::absolute(place.data_dir).unwrap_or_else(|_| place.data_dir.to_owned());
    let records = match place.database {
        None => String::new(),
        Some(_) => ", records in PostgreSQL".to_owned(),
    };
    eprintln!(
        "made a new server in {}{records} (epoch {}); add workers with `sync-server worker add`",
        shown.display(),
        storage.epoch()?
    );
    Ok(storage)
}

/// `sync-server migrate`: the schema brought up to date, told on stdout.
pub fn migrate(place: &Place<'_>) -> anyhow::Result<()> {
    let done = sync_server::migrate_storage(place.data_dir, place.database).map_err(classify)?;
    if done.from == done.to {
        println!("schema {}: up to date", done.to);
    } else {
        let n = done.to - done.from;
        let steps = if n == 1 { "migration" } else { "migrations" };
        println!("schema {} → {}: {n} {steps} applied", done.from, done.to);
    }
    Ok(())
}

pub fn run(place: &Place<'_>, args: Args) -> anyhow::Result<()> {
    if args.init && !sync_server::server_exists(place.data_dir, place.database).map_err(classify)? {
        init(place)?;
    }
    // Refuse a folder with no server before taking the port.
    drop(place.storage()?);
    let config = Config {
        data_dir: place.data_dir.to_owned(),
        database: place.database.map(ToOwned::to_owned),
        photos: place.photos.map(ToOwned::to_owned),
        grid_map: place.grid_map.map(ToOwned::to_owned),
        open311: Open311Config {
            public: args.open311_public,
            public_url: args.public_url,
        },
        max_connections: args.max_connections,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        trusted_proxies: args.trusted_proxies,
        timeouts: Timeouts {
            request: Duration::from_secs(args.request_timeout),
            body_idle: Duration::from_secs(args.body_idle_timeout),
        },
    };
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // Tests and scripts read the bound address from this line.
        println!("listening on {scheme}://{}", listener.local_addr()?);
        sync_server::serve(listener, &config, shutdown_signal())
            .await
            .map_err(classify)
    })
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

//! Processes and clients: the workspace's binaries, a real `sync-server`
//! on loopback, and devices that speak the protocol to it over HTTP the way
//! `field sync` does (same request limits, same store calls), but keep
//! count of bytes and time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, FixedOffset};
use sync_core::Store;
use sync_core::protocol::{self, EnrollRequest, EnrollResponse, MAX_PULL, PROTOCOL_VERSION, SyncResponse};
use sync_core::sync::{Applied, Outgoing};
use sync_server::storage::Role;
use tempfile::TempDir;
use testbed::{Bucket, Garage, PgDatabase};

/// `field sync`'s limits: incidents and change bytes per push request.
pub const PUSH_DOCS: usize = 200;
pub const PUSH_BYTES: usize = 4 * 1024 * 1024;
/// No sync loop runs longer than this many round trips.
const MAX_ROUND_TRIPS: usize = 10_000;

/// The `field` and `sync-server` binaries, built with the profile this
/// bench was built with (release under `cargo run --release`).
#[derive(Debug, Clone)]
pub struct Binaries {
    pub field: PathBuf,
    pub server: PathBuf,
}

impl Binaries {
    pub fn build() -> Result<Binaries> {
        let exe = std::env::current_exe().context("cannot find this program")?;
        let mut dir = exe.parent().context("program has no folder")?.to_owned();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(other) => other.to_owned(),
            None => bail!("cannot tell the build profile from {}", dir.display()),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("bench: building field and sync-server ({profile} profile)");
        let status = Command::new(&cargo)
            .args([
                "build",
                "-q",
                "--profile",
                &profile,
                "-p",
                "field-cli",
                "-p",
                "sync-server",
            ])
            .current_dir(crate::workspace_root())
            .status()
            .with_context(|| format!("cannot run {cargo}"))?;
        ensure!(status.success(), "building field and sync-server failed");
        let bins = Binaries {
            field: dir.join("field"),
            server: dir.join("sync-server"),
        };
        for b in [&bins.field, &bins.server] {
            ensure!(b.is_file(), "no binary at {}", b.display());
        }
        Ok(bins)
    }
}

/// Per-device enrolment data made by the operator before the server starts.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: String,
    pub role: Role,
    pub grids: Vec<String>,
    pub community: Option<String>,
}

impl Worker {
    pub fn grid_worker(id: &str, grids: &[String]) -> Worker {
        Worker {
            id: id.to_owned(),
            role: Role::Worker,
            grids: grids.to_vec(),
            community: None,
        }
    }

    pub fn center(id: &str, community: &str) -> Worker {
        Worker {
            id: id.to_owned(),
            role: Role::Center,
            grids: vec![],
            community: Some(community.to_owned()),
        }
    }
}

/// A `sync-server serve` process on 127.0.0.1, with its own data dir.
pub struct ServerProcess {
    pub dir: TempDir,
    pub url: String,
    child: Child,
    stores: Stores,
}

/// The server `BENCH_PG` names (default: as user postgres on 127.0.0.1:5432).
fn pg_admin_url() -> String {
    std::env::var("BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh PostgreSQL database for one measurement, dropped after it.
fn fresh_database() -> Result<PgDatabase> {
    let admin = pg_admin_url();
    PgDatabase::fresh(&admin, "bench")
        .with_context(|| format!("the PostgreSQL figures need a server at {admin} (BENCH_PG)"))
}

/// Where a server keeps its records and photos beyond its data dir: a
/// PostgreSQL database, a bucket of Garage's; shared by its nodes.
#[derive(Clone, Default)]
pub struct Stores {
    pub database: Option<Arc<PgDatabase>>,
    pub photos: Option<Arc<Bucket>>,
}

impl Stores {
    /// A fresh database, and a fresh bucket if `photos`.
    pub fn postgres(photos: bool) -> Result<Stores> {
        Ok(Stores {
            database: Some(Arc::new(fresh_database()?)),
            photos: photos.then(|| Arc::new(Garage::get().bucket())),
        })
    }

    fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.url.as_str())
    }

    /// The flags and environment of every command on this server.
    fn flags(&self) -> (Vec<String>, Vec<(String, String)>) {
        let mut args = Vec::new();
        let mut env = Vec::new();
        if let Some(url) = self.database_url() {
            args.extend(["--database".to_owned(), url.to_owned()]);
        }
        if let Some(b) = &self.photos {
            args.extend(["--photos".to_owned(), b.url(None)]);
            env.extend(b.env().iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        }
        (args, env)
    }
}

impl ServerProcess {
    /// Adds the workers (the operator's `worker add`), then starts serving.
    pub fn start(bins: &Binaries, workers: &[Worker]) -> Result<ServerProcess> {
        ServerProcess::start_with(bins, workers, &[], None)
    }

    /// As [`ServerProcess::start`], with more `serve` arguments, and with
    /// the process's descriptor limit (soft and hard) set to `nofile`.
    pub fn start_with(
        bins: &Binaries,
        workers: &[Worker],
        args: &[&str],
        nofile: Option<u64>,
    ) -> Result<ServerProcess> {
        Self::start_in(bins, workers, args, nofile, Stores::default())
    }

    /// As [`ServerProcess::start`], with the records (and photos) in `stores`.
    pub fn start_on(bins: &Binaries, workers: &[Worker], stores: Stores) -> Result<ServerProcess> {
        Self::start_in(bins, workers, &[], None, stores)
    }

    /// As [`ServerProcess::start`], with the records in a fresh PostgreSQL database.
    pub fn start_on_postgres(bins: &Binaries, workers: &[Worker]) -> Result<ServerProcess> {
        Self::start_on(bins, workers, Stores::postgres(false)?)
    }

    /// Another node of this PostgreSQL-backed server: its own data dir, the same stores.
    pub fn node(&self, bins: &Binaries) -> Result<ServerProcess> {
        ensure!(self.stores.database.is_some(), "nodes share a PostgreSQL database");
        let dir = tempfile::Builder::new().prefix("bench-node-").tempdir()?;
        let (child, url) = spawn_server(bins, dir.path(), "127.0.0.1:0", &[], None, &self.stores)?;
        Ok(ServerProcess {
            url,
            dir,
            child,
            stores: self.stores.clone(),
        })
    }

    fn start_in(
        bins: &Binaries,
        workers: &[Worker],
        args: &[&str],
        nofile: Option<u64>,
        stores: Stores,
    ) -> Result<ServerProcess> {
        let dir = tempfile::Builder::new().prefix("bench-server-").tempdir()?;
        {
            let storage = sync_server::create_storage(dir.path(), stores.database_url())?;
            let grids = sync_core::GridMap::builtin();
            for w in workers {
                let new = sync_server::accounts::NewWorker {
                    id: &w.id,
                    name: &w.id,
                    role: w.role,
                    cells: &w.grids,
                    community: w.community.as_deref(),
                    department: None,
                };
                sync_server::accounts::add_worker(&*storage, &grids, &new)?;
            }
        }
        let (child, url) = spawn_server(bins, dir.path(), "127.0.0.1:0", args, nofile, &stores)?;
        Ok(ServerProcess {
            url,
            dir,
            child,
            stores,
        })
    }

    /// SIGKILL; the data dir stays for [`ServerProcess::restart`].
    /// Serves a data dir made elsewhere, with more `serve` flags.
    pub fn serve_dir(bins: &Binaries, dir: TempDir, args: &[&str]) -> Result<ServerProcess> {
        let stores = Stores::default();
        let (child, url) = spawn_server(bins, dir.path(), "127.0.0.1:0", args, None, &stores)?;
        Ok(ServerProcess {
            url,
            dir,
            child,
            stores,
        })
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Serves the same data dir on the same address again.
    pub fn restart(&mut self, bins: &Binaries) -> Result<()> {
        self.kill();
        let addr = self
            .url
            .split("://")
            .nth(1)
            .context("the server's URL has no scheme")?
            .to_owned();
        let (child, url) = spawn_server(bins, self.dir.path(), &addr, &[], None, &self.stores)?;
        ensure!(url == self.url, "the server came back on {url}, not {}", self.url);
        self.child = child;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A one-time enrolment code (the operator's `device enroll`); works
    /// while the server runs, as the operator commands do.
    pub fn code(&self, worker: &str) -> Result<String> {
        let storage = sync_server::open_storage(self.data_dir(), self.stores.database_url())?;
        Ok(sync_server::accounts::enrol_code(&*storage, worker, 24, None)?.code)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `sync-server serve` on `dir` and `listen`, with the descriptor
/// limit (soft and hard) set to `nofile`; the child and its URL.
fn spawn_server(
    bins: &Binaries,
    dir: &Path,
    listen: &str,
    args: &[&str],
    nofile: Option<u64>,
    stores: &Stores,
) -> Result<(Child, String)> {
    let (store_args, env) = stores.flags();
    // util-linux's prlimit sets the limit and then runs the server in
    // its own process, so the child's pid is the server's.
    let mut command = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(&bins.server);
            c
        }
        None => Command::new(&bins.server),
    };
    let mut child = command
        .arg("--data-dir")
        .arg(dir)
        .args(&store_args)
        .args(["serve", "--listen", listen])
        .args(args)
        .envs(env)
        .env("SYNC_SERVER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start sync-server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout piped")?).read_line(&mut line)?;
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        bail!("sync-server did not start (it printed {line:?})");
    };
    Ok((child, url.to_owned()))
}

/// One request and its response, as the device saw them.
#[derive(Debug, Clone)]
pub struct Trip {
    pub start: Instant,
    pub end: Instant,
    /// Request and response body bytes.
    pub sent: usize,
    pub received: usize,
    /// Automerge change bytes pushed in the request.
    pub change_bytes: usize,
    pub pushed: usize,
    /// From sending the request to having the whole response.
    pub http: Duration,
    pub applied: Applied,
    /// The device clock against the server's, read around this trip.
    pub clock: protocol::ClockSample,
}

/// A device store with a token, syncing with a server over HTTP.
pub struct Device {
    pub store: Store,
    http: reqwest::blocking::Client,
    url: String,
    token: String,
}

impl Device {
    /// Enrols the device in `dir` (already set up for `worker`) with a code.
    pub fn enroll(dir: &Path, server: &ServerProcess, worker: &str) -> Result<Device> {
        let code = server.code(worker)?;
        let mut store = Store::open(dir)?;
        let profile = store.profile()?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        // A key as `field init` makes one (here from the device id, so runs
        // repeat): every change the bench pushes is signed.
        let key = store.ensure_key(*blake3::hash(profile.device.as_bytes()).as_bytes())?;
        let req = EnrollRequest {
            version: PROTOCOL_VERSION,
            code,
            worker: worker.to_owned(),
            device: profile.device.to_string(),
            public_key: Some(serde_bytes::ByteBuf::from(key.public().to_vec())),
            label: None,
        };
        let resp = post(
            &http,
            &format!("{}/v1/enroll", server.url),
            None,
            protocol::encode(&req),
        )?;
        let resp: EnrollResponse = protocol::decode(&resp)?;
        store.set_server(&server.url, &resp.epoch)?;
        Ok(Device {
            store,
            http,
            url: server.url.clone(),
            token: resp.token,
        })
    }

    /// The bearer token the server gave at enrolment.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The request the device would send next, without sending it.
    pub fn next_request(&mut self) -> Result<Outgoing> {
        Ok(self
            .store
            .next_sync_request(now().timestamp_millis(), MAX_PULL, PUSH_DOCS, PUSH_BYTES)?)
    }

    /// Sends a built request and applies the response.
    pub fn send(&mut self, out: &Outgoing) -> Result<Trip> {
        let body = protocol::encode(&out.request);
        let sent = body.len();
        let start = Instant::now();
        let sent_ms = now().timestamp_millis();
        let bytes = post(&self.http, &format!("{}/v1/sync", self.url), Some(&self.token), body)?;
        let http = start.elapsed();
        let resp: SyncResponse = protocol::decode(&bytes)?;
        let clock = protocol::clock_sample(sent_ms, now().timestamp_millis(), resp.server_time_ms);
        let applied = self.store.apply_sync_response(out, &resp, now())?;
        Ok(Trip {
            start,
            end: Instant::now(),
            sent,
            received: bytes.len(),
            change_bytes: out.change_bytes,
            pushed: out.pushed_docs(),
            http,
            applied,
            clock,
        })
    }

    /// One round trip: build, send, apply.
    pub fn round_trip(&mut self) -> Result<Trip> {
        let out = self.next_request()?;
        self.send(&out)
    }

    /// Round trips until the device has nothing to push and the server
    /// nothing more to page, as `field sync` does.
    pub fn sync(&mut self) -> Result<Vec<Trip>> {
        let mut trips = Vec::new();
        let mut stalled = 0;
        while trips.len() < MAX_ROUND_TRIPS {
            let trip = self.round_trip()?;
            let a = &trip.applied;
            let more = a.more;
            let progressed = a.acknowledged > 0 || a.pulled_changes > 0 || a.reset;
            trips.push(trip);
            if !more {
                // As `field sync` does: the reading with the least delay
                // goes into the next manifest.
                if let Some(best) = trips.iter().map(|t| t.clock).min_by_key(|c| c.delay_ms) {
                    self.store.set_clock_offset(best.offset_ms)?;
                }
                return Ok(trips);
            }
            stalled = if progressed { 0 } else { stalled + 1 };
            if stalled >= 3 {
                bail!("sync made no progress in 3 round trips");
            }
        }
        bail!("sync did not finish in {MAX_ROUND_TRIPS} round trips")
    }
}

fn post(http: &reqwest::blocking::Client, url: &str, token: Option<&str>, body: Vec<u8>) -> Result<Vec<u8>> {
    let mut req = http.post(url).header("content-type", "application/cbor").body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let bytes = resp.bytes()?.to_vec();
    ensure!(
        status.is_success(),
        "POST {url}: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes).chars().take(300).collect::<String>()
    );
    Ok(bytes)
}

/// A `field` data dir enrolled with a server, run as whole processes.
pub struct FieldDir {
    pub bin: PathBuf,
    pub dir: TempDir,
}

impl FieldDir {
    /// Set up for `worker` in the bench's cell, enrolled (trusting `ca` if
    /// given), one incident logged and synced, so later syncs have nothing
    /// to do.
    pub fn enrolled(bins: &Binaries, server: &ServerProcess, worker: &str, ca: Option<&Path>) -> Result<FieldDir> {
        let field = FieldDir {
            bin: bins.field.clone(),
            dir: tempfile::Builder::new().prefix("bench-field-").tempdir()?,
        };
        field.run(&["init", "--worker", worker, "--grid", crate::local::CELL])?;
        let code = server.code(worker)?;
        let mut enroll = vec!["enroll", "--server", &server.url, "--code", &code];
        let ca_text = ca.map(|p| p.to_string_lossy().into_owned());
        if let Some(ca) = &ca_text {
            enroll.extend(["--ca", ca]);
        }
        field.run(&enroll)?;
        field.run(&["report", "--category", "lawn", "--desc", "草坪被车轧坏"])?;
        field.run(&["sync"])?;
        Ok(field)
    }

    pub fn run(&self, args: &[&str]) -> Result<Duration> {
        run_field(&self.bin, self.dir.path(), args)
    }

    pub fn sync_ms(&self) -> Result<f64> {
        Ok(self.run(&["sync"])?.as_secs_f64() * 1e3)
    }
}

/// Runs the `field` binary on the data dir `dir` and waits for it; the
/// time from spawning it to its exit.
pub fn run_field(field: &Path, dir: &Path, args: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(field)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("FIELD_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("cannot run field")?;
    let took = start.elapsed();
    ensure!(
        out.status.success(),
        "field {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

/// The device clock, as `field` reads it.
pub fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

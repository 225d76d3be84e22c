//! Server load: many devices coming online at once, each pushing its log
//! over its own HTTP client to a real `sync-server`, and the server's
//! memory once it holds a large log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use anyhow::{Context, Result, ensure};
use sync_core::GridMap;
use tempfile::TempDir;
use uuid::Uuid;

use crate::data;
use crate::harness::{Binaries, Device, FieldDir, ServerProcess, Trip, Worker};
use crate::machine::rss_of;
use crate::stats::{Runs, percentile};
use crate::table::{Row, Target};
use crate::{Sizes, progress};

/// Device data dirs made once and copied for every run, so each run starts
/// from the same unsynced logs without logging them again.
struct Templates {
    dir: TempDir,
    workers: Vec<Worker>,
}

impl Templates {
    /// `devices` workers spread over every cell of the built-in map, each
    /// with `per_device` unsynced incidents in their cell.
    fn make(prefix: &str, devices: usize, per_device: usize) -> Result<Templates> {
        Self::make_in(prefix, devices, per_device, &all_cells())
    }

    /// The same, spread over `cells` only.
    fn make_in(prefix: &str, devices: usize, per_device: usize, cells: &[String]) -> Result<Templates> {
        let dir = tempfile::Builder::new().prefix("bench-templates-").tempdir()?;
        let mut workers = Vec::new();
        for d in 0..devices {
            let id = format!("{prefix}-{d:03}");
            let grids = vec![cells[d % cells.len()].clone()];
            let uuid = Uuid::from_u128(0xA000_0000 + (d as u128) + ((prefix.len() as u128) << 32));
            data::filled_device(&dir.path().join(&id), &id, &grids, uuid, per_device, 1000 + d as u64)?;
            workers.push(Worker::grid_worker(&id, &grids));
        }
        Ok(Templates { dir, workers })
    }

    /// Copies every device, enrols it with `server`, and returns them.
    fn enrolled(&self, server: &ServerProcess, into: &Path) -> Result<Vec<Device>> {
        self.enrolled_across(&[server], into)
    }

    /// The same, device `i` with `nodes[i % nodes.len()]`.
    fn enrolled_across(&self, nodes: &[&ServerProcess], into: &Path) -> Result<Vec<Device>> {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let to: PathBuf = into.join(&w.id);
                data::copy_dir(&self.dir.path().join(&w.id), &to)?;
                Device::enroll(&to, nodes[i % nodes.len()], &w.id)
            })
            .collect()
    }
}

fn all_cells() -> Vec<String> {
    GridMap::builtin().cells().map(|p| p.cell.id.clone()).collect()
}

/// Every device syncs at once, from its own thread; returns each one's trips.
fn sync_all(devices: Vec<Device>) -> Result<Vec<Vec<Trip>>> {
    let barrier = Arc::new(Barrier::new(devices.len()));
    let handles: Vec<_> = devices
        .into_iter()
        .map(|mut d| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                d.sync()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().map_err(|_| anyhow::anyhow!("a device thread panicked"))?)
        .collect()
}

pub fn ingest(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let (devices, per) = (sizes.ingest_devices, sizes.ingest_per_device);
    progress(&format!("ingest: {devices} devices log {per} incidents each"));
    let templates = Templates::make("w", devices, per)?;
    let (mut rate, mut p50, mut p99, mut requests) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for run in 0..runs {
        progress(&format!(
            "ingest: {devices} devices × {per} incidents, run {}/{runs}",
            run + 1
        ));
        let server = ServerProcess::start(bins, &templates.workers)?;
        let work = tempfile::Builder::new().prefix("bench-devices-").tempdir()?;
        let devs = templates.enrolled(&server, work.path())?;
        let trips: Vec<Trip> = sync_all(devs)?.into_iter().flatten().collect();
        let m = Ingested::of(&trips, devices * per)?;
        rate.push(m.rate);
        p50.push(m.p50);
        p99.push(m.p99);
        requests = trips.len();
    }
    let workload = format!("{devices} devices × {per} incidents, {requests} requests");
    Ok(vec![
        Row::new(
            crate::INGEST,
            workload.clone(),
            "incidents/s",
            Runs::new(rate),
            Target::AtLeast(2000.0),
        )
        .target_text("≥ 2,000 (stretch 5,000)"),
        Row::new(crate::INGEST_P50, workload.clone(), "ms", Runs::new(p50), Target::None),
        Row::new(crate::INGEST_P99, workload, "ms", Runs::new(p99), Target::None),
    ])
}

/// What one ingest run measured.
struct Ingested {
    rate: f64,
    p50: f64,
    p99: f64,
}

impl Ingested {
    /// Incidents acknowledged per second from the first request to the
    /// last push answered (all `expected` of them must be), and the
    /// requests' latency.
    fn of(trips: &[Trip], expected: usize) -> Result<Ingested> {
        let acked: usize = trips.iter().map(|t| t.applied.acknowledged).sum();
        ensure!(
            acked == expected,
            "the server acknowledged {acked} of {expected} incidents"
        );
        let first = trips.iter().map(|t| t.start).min().context("no requests")?;
        let last = trips
            .iter()
            .filter(|t| t.applied.acknowledged > 0)
            .map(|t| t.end)
            .max()
            .context("no pushes")?;
        let ms: Vec<f64> = trips.iter().map(|t| t.http.as_secs_f64() * 1e3).collect();
        Ok(Ingested {
            rate: acked as f64 / (last - first).as_secs_f64(),
            p50: percentile(&ms, 50.0),
            p99: percentile(&ms, 99.0),
        })
    }
}

/// The ingest of [`ingest`] with the records in PostgreSQL, on one node and
/// on three nodes sharing the database (device `i` syncing with node `i % 3`).
pub fn ingest_postgres(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let (devices, per) = (sizes.ingest_devices, sizes.ingest_per_device);
    let templates = Templates::make("w", devices, per)?;
    let mut rows = Vec::new();
    for (nodes, name) in [(1, crate::INGEST_PG_1), (3, crate::INGEST_PG_3)] {
        let mut rate = Vec::new();
        for run in 0..runs {
            progress(&format!(
                "postgres: {devices} devices × {per} incidents into {nodes} node(s), run {}/{runs}",
                run + 1
            ));
            let first = ServerProcess::start_on_postgres(bins, &templates.workers)?;
            let others = (1..nodes).map(|_| first.node(bins)).collect::<Result<Vec<_>>>()?;
            let all: Vec<&ServerProcess> = std::iter::once(&first).chain(&others).collect();
            let work = tempfile::Builder::new().prefix("bench-devices-").tempdir()?;
            let devs = templates.enrolled_across(&all, work.path())?;
            let trips: Vec<Trip> = sync_all(devs)?.into_iter().flatten().collect();
            rate.push(Ingested::of(&trips, devices * per)?.rate);
        }
        let workload = format!("{devices} devices × {per} incidents, PostgreSQL, {nodes} node(s)");
        rows.push(Row::new(name, workload, "incidents/s", Runs::new(rate), Target::None));
    }
    Ok(rows)
}

/// A device with nothing to send and nothing to pull (its cell is one no
/// ingesting device works in) syncs again and again while the ingest
/// devices push their logs at once; the HTTP time of each of its syncs.
pub fn noop_under_ingest(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let (devices, per) = (sizes.ingest_devices, sizes.ingest_per_device);
    progress(&format!(
        "no-op sync while {devices} devices ingest {per} incidents each"
    ));
    let cells = all_cells();
    let (quiet_cell, busy_cells) = cells.split_last().context("the map has cells")?;
    let mut templates = Templates::make_in("n", devices, per, busy_cells)?;
    let quiet = Worker::grid_worker("quiet", std::slice::from_ref(quiet_cell));
    data::filled_device(
        &templates.dir.path().join("quiet"),
        "quiet",
        &quiet.grids,
        Uuid::from_u128(0xB000_0001),
        0,
        7,
    )?;
    templates.workers.push(quiet);
    let (mut p50, mut p99, mut count) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let server = ServerProcess::start(bins, &templates.workers)?;
        let work = tempfile::Builder::new().prefix("bench-devices-").tempdir()?;
        let mut devs = templates.enrolled(&server, work.path())?;
        let mut quiet = devs.pop().context("the quiet device")?;
        quiet.sync()?;
        let ms = noop_while(&mut quiet, devs, devices * per)?;
        p50.push(percentile(&ms, 50.0));
        p99.push(percentile(&ms, 99.0));
        count = ms.len();
    }
    let workload = format!("{devices} devices × {per} incidents pushing; {count} no-op syncs meanwhile");
    Ok(vec![
        Row::new(
            crate::NOOP_UNDER_INGEST,
            workload,
            "ms",
            Runs::new(p99),
            Target::AtMost(50.0),
        )
        .target_text(format!("≤ 50 (p50 {:.1} ms)", Runs::new(p50).median())),
    ])
}

/// Runs the ingest; `quiet` syncs until it ends. Each quiet sync's HTTP ms.
fn noop_while(quiet: &mut Device, busy: Vec<Device>, expected: usize) -> Result<Vec<f64>> {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let ingest = std::thread::spawn(move || {
        let trips = sync_all(busy);
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        trips
    });
    let mut ms = Vec::new();
    // At least ten, so that a quick run's short ingest still yields a figure.
    while !done.load(std::sync::atomic::Ordering::SeqCst) || ms.len() < 10 {
        for t in quiet.sync()? {
            ensure!(
                t.pushed == 0 && t.applied.pulled_changes == 0,
                "the quiet device's sync was not a no-op"
            );
            ms.push(t.http.as_secs_f64() * 1e3);
        }
    }
    let trips = ingest
        .join()
        .map_err(|_| anyhow::anyhow!("the ingest thread panicked"))??;
    let acked: usize = trips.iter().flatten().map(|t| t.applied.acknowledged).sum();
    ensure!(
        acked == expected,
        "the server acknowledged {acked} of {expected} incidents"
    );
    Ok(ms)
}

pub fn memory(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let (devices, per) = (sizes.rss_devices, sizes.rss_per_device);
    let total = devices * per;
    progress(&format!("memory: {devices} devices log {per} incidents each"));
    let templates = Templates::make("r", devices, per)?;
    let (mut rss, mut peak) = (Vec::new(), Vec::new());
    for run in 0..runs {
        progress(&format!("memory: ingesting {total} incidents, run {}/{runs}", run + 1));
        let server = ServerProcess::start(bins, &templates.workers)?;
        let work = tempfile::Builder::new().prefix("bench-devices-").tempdir()?;
        let devs = templates.enrolled(&server, work.path())?;
        let trips: Vec<Trip> = sync_all(devs)?.into_iter().flatten().collect();
        let acked: usize = trips.iter().map(|t| t.applied.acknowledged).sum();
        ensure!(acked == total, "the server acknowledged {acked} of {total} incidents");
        let (now, hwm) = rss_of(server.pid()).context("cannot read the server's /proc status")?;
        rss.push(now as f64 / 1e6);
        peak.push(hwm as f64 / 1e6);
    }
    let workload = format!("{} incidents from {devices} devices", crate::sync::thousands(total));
    Ok(vec![
        Row::new(
            crate::RSS,
            workload.clone(),
            "MB",
            Runs::new(rss),
            Target::AtMost(200.0),
        ),
        Row::new(crate::RSS_PEAK, workload, "MB", Runs::new(peak), Target::None),
    ])
}

/// A 12 MP photo logged on a device and synced through one node of a
/// server on PostgreSQL with its photos in Garage, then its original
/// fetched from another node: how far each node's peak memory (VmHWM) rose
/// above what it held before (VmRSS).
pub fn photo_across_nodes(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let (w, h) = sizes.photo;
    let dir = tempfile::Builder::new().prefix("bench-photo-").tempdir()?;
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, data::photo_jpeg(w, h, 90)?)?;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for run in 0..runs {
        progress(&format!(
            "postgres: a {w}×{h} photo in through one node, out of another, run {}/{runs}",
            run + 1
        ));
        let workers = [Worker::grid_worker("w-photo", &[crate::local::CELL.to_owned()])];
        let first = ServerProcess::start_on(bins, &workers, crate::harness::Stores::postgres(true)?)?;
        let second = first.node(bins)?;
        let field = FieldDir::enrolled(bins, &first, "w-photo", None)?;
        let id = photo.to_str().context("a UTF-8 path")?;
        field.run(&["report", "--category", "manhole-cover", "--photo", id])?;
        up.push(growth(first.pid(), || field.run(&["sync"]).map(drop))?);
        let original = blake3::hash(&std::fs::read(&photo)?).to_hex().to_string();
        let token = std::fs::read_to_string(field.dir.path().join("device.token"))?;
        let url = format!("{}/v1/blobs/{original}", second.url);
        down.push(growth(second.pid(), || {
            let got = reqwest::blocking::Client::new()
                .get(&url)
                .bearer_auth(token.trim())
                .send()?;
            ensure!(got.status() == 200, "the other node answered {}", got.status());
            ensure!(
                got.bytes()?.len() as u64 == std::fs::metadata(&photo)?.len(),
                "the photo came back short"
            );
            Ok(())
        })?);
    }
    let workload = format!("one {w}×{h} JPEG original with its display copy and thumbnail, Garage");
    Ok(vec![
        Row::new(
            crate::PHOTO_UP_RSS,
            workload.clone(),
            "MB",
            Runs::new(up),
            Target::AtMost(16.0),
        ),
        Row::new(
            crate::PHOTO_DOWN_RSS,
            workload,
            "MB",
            Runs::new(down),
            Target::AtMost(16.0),
        ),
    ])
}

/// MB by which `pid`'s peak memory rose above its resident memory before `work`.
fn growth(pid: u32, work: impl FnOnce() -> Result<()>) -> Result<f64> {
    let (before, _) = rss_of(pid).context("cannot read the server's /proc status")?;
    work()?;
    let (_, peak) = rss_of(pid).context("cannot read the server's /proc status")?;
    Ok(peak.saturating_sub(before) as f64 / 1e6)
}

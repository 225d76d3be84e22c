//! Sync figures for one device holding a community's incidents, against a
//! real `sync-server` on loopback, each beside stock Automerge sync on the
//! same documents: a sync with nothing to do, a one-field edit, a new
//! incident, and a fresh device pulling the whole community.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use automerge::AutoCommit;
use automerge::transaction::{CommitOptions, Transactable as _};
use sync_core::protocol::{self, SyncRequest};
use sync_core::{GridMap, IncidentDoc, ListFilter, Status};
use sync_server::storage::{Accounts, SqliteStorage};
use uuid::Uuid;

use crate::baseline::{self, Peer};
use crate::data::{self, Reporter};
use crate::harness::{Binaries, Device, ServerProcess, Trip, Worker, now};
use crate::stats::Runs;
use crate::table::{Row, Target};
use crate::{Sizes, progress};

pub const COMMUNITY: &str = "HLT-CX-HX";
const WORKER: &str = "w-bench";
const CENTER: &str = "hx-center";
const ONE_FIELD: &str = "description set (one put)";
const STATUS: &str = "status → dispatched (`field update`)";

pub fn community_cells() -> Vec<String> {
    GridMap::builtin()
        .cells()
        .filter(|p| p.community.id == COMMUNITY)
        .map(|p| p.cell.id.clone())
        .collect()
}

/// The documents of every incident in a SQLite file, by id.
fn docs(conn: &rusqlite::Connection) -> Result<Vec<(String, Vec<u8>)>> {
    let mut stmt = conn.prepare("SELECT id, doc FROM incidents ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The server's handler for `POST /v1/sync` without HTTP: authenticate,
/// decode, run `sync_server::sync::sync` (which commits), encode.
fn serve_in_process(storage: &SqliteStorage, grids: &GridMap, token: &str, body: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    let device = storage
        .device_by_token(&sync_server::secrets::secret_hash(token))?
        .context("the device token is unknown to the server")?;
    let req: SyncRequest = protocol::decode(body)?;
    let scope = sync_server::accounts::scope_of(&device, grids);
    let now = sync_server::ServerTime::now();
    let caller = sync_server::sync::Caller {
        device: &device,
        scope: &scope,
        now: &now,
    };
    let resp = sync_server::sync::sync(storage, &caller, &req)?;
    std::hint::black_box(protocol::encode(&resp));
    Ok(start.elapsed())
}

fn wire(trips: &[Trip]) -> usize {
    trips.iter().map(|t| t.sent + t.received).sum()
}

pub fn figures(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let cells = community_cells();
    let n = sizes.community;
    let server = ServerProcess::start(
        bins,
        &[Worker::grid_worker(WORKER, &cells), Worker::center(CENTER, COMMUNITY)],
    )?;
    let dir = tempfile::Builder::new().prefix("bench-device-").tempdir()?;
    progress(&format!("sync: a device logs {n} incidents"));
    data::filled_device(dir.path(), WORKER, &cells, Uuid::from_u128(0xD0), n, 1)?;
    let mut device = Device::enroll(dir.path(), &server, WORKER)?;
    progress(&format!("sync: pushing {n} incidents to the server"));
    let setup = device.sync()?;
    let acked: usize = setup.iter().map(|t| t.applied.acknowledged).sum();
    ensure!(acked == n, "the server acknowledged {acked} of {n} incidents");

    // Stock sync on the same documents: the device's, and the server's.
    progress("sync: stock Automerge sync of the same documents (first session)");
    let device_docs = docs(device.store.connection())?;
    let server_docs = docs(&rusqlite::Connection::open(
        server.data_dir().join(sync_server::DB_FILE),
    )?)?;
    ensure!(
        device_docs.iter().map(|d| &d.0).eq(server_docs.iter().map(|d| &d.0)),
        "device and server hold different incidents"
    );
    let index: HashMap<String, usize> = device_docs
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.clone(), i))
        .collect();
    let load = |docs: &[(String, Vec<u8>)]| -> Result<Vec<AutoCommit>> {
        docs.iter()
            .map(|(_, b)| AutoCommit::load(b).context("loading a document"))
            .collect()
    };
    let mut stock_device = Peer::new(load(&device_docs)?);
    let mut stock_server = Peer::new(load(&server_docs)?);
    let all: Vec<usize> = (0..n).collect();
    let first = baseline::session(&mut stock_device, &mut stock_server, &all)?;
    progress(&format!(
        "sync: stock first session {} round trips, {} bytes",
        first.round_trips,
        first.bytes()
    ));

    // No-op sync.
    let storage = sync_server::open_storage(server.data_dir())?;
    let grids = GridMap::builtin();
    let mut noop = NoOp::default();
    for run in 0..runs {
        progress(&format!("sync: no-op, run {}/{runs}", run + 1));
        let start = Instant::now();
        let trips = device.sync()?;
        noop.device_ms.push(start.elapsed().as_secs_f64() * 1e3);
        ensure!(trips.iter().all(|t| t.pushed == 0 && t.applied.pulled_changes == 0));
        noop.round_trips.push(trips.len() as f64);
        noop.bytes.push(wire(&trips) as f64);
        noop.http_ms
            .push(trips.iter().map(|t| t.http.as_secs_f64() * 1e3).sum());

        let body = protocol::encode(&device.next_request()?.request);
        if run == 0 {
            serve_in_process(&storage, &grids, device.token(), &body)?; // warm the connection
        }
        noop.server_ms
            .push(serve_in_process(&storage, &grids, device.token(), &body)?.as_secs_f64() * 1e3);

        let ex = baseline::session(&mut stock_device, &mut stock_server, &all)?;
        noop.stock_round_trips.push(f64::from(ex.round_trips));
        noop.stock_bytes.push(ex.bytes() as f64);
        noop.stock_server_ms.push(ex.server.as_secs_f64() * 1e3);
    }
    drop(storage);

    // A fresh device of the community center pulls everything.
    let mut pull_rate = Vec::new();
    let mut pulled = 0;
    for run in 0..runs {
        progress(&format!(
            "sync: fresh device pulls the community, run {}/{runs}",
            run + 1
        ));
        let dir = tempfile::Builder::new().prefix("bench-center-").tempdir()?;
        data::init_device(dir.path(), CENTER, &cells, Uuid::from_u128(0xC0 + run as u128))?;
        let mut center = Device::enroll(dir.path(), &server, CENTER)?;
        let start = Instant::now();
        let trips = center.sync()?;
        let took = start.elapsed();
        pulled = trips.iter().map(|t| t.applied.new_incidents).sum::<usize>();
        ensure!(pulled >= n, "the fresh device got {pulled} of {n} incidents");
        pull_rate.push(pulled as f64 / took.as_secs_f64());
    }

    // Edits: one field put (the "one-field edit"), and a status
    // change as `field update ID --status dispatched` makes it.
    let ids: Vec<_> = device
        .store
        .list(&ListFilter::default())?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let actor = device.store.profile()?.actor();
    let (mut one_field, mut status) = (Edit::default(), Edit::default());
    for run in 0..runs {
        progress(&format!("sync: edits, run {}/{runs}", run + 1));
        for (k, edit) in [&mut one_field, &mut status].into_iter().enumerate() {
            let id = ids[((2 * run + k) * 7919) % ids.len()];
            let mut doc = device.store.load(&id, actor.clone())?;
            let before = doc.heads();
            let t = now();
            if k == 0 {
                let am = doc.automerge();
                am.put(automerge::ROOT, "description", "井盖已更换")?;
                am.commit_with(
                    CommitOptions::default()
                        .with_message("description".to_owned())
                        .with_time(t.timestamp()),
                );
            } else {
                doc.set_status(Status::Dispatched, WORKER, t)?;
            }
            device.store.save(&mut doc, &[], t)?;
            let trips = device.sync()?;
            edit.change
                .push(trips.iter().map(|t| t.change_bytes).sum::<usize>() as f64);
            edit.wire.push(wire(&trips) as f64);
            edit.round_trips.push(trips.len() as f64);

            let i = index[&id.to_string()];
            let mut changes = doc.automerge().get_changes(&before);
            edit.own
                .push(changes.iter_mut().map(|c| c.bytes().len()).sum::<usize>() as f64);
            stock_device.docs[i].apply_changes(changes)?;
            let ex = baseline::session(&mut stock_device, &mut stock_server, &[i])?;
            edit.stock_wire.push(ex.bytes() as f64);
            edit.stock_round_trips.push(f64::from(ex.round_trips));
        }
    }

    // A new incident, as `field report` stores it.
    let profile = device.store.profile()?;
    let mut reporter = Reporter::new(&profile, 0xEE);
    let mut new = New::default();
    for run in 0..runs {
        progress(&format!("sync: new incident, run {}/{runs}", run + 1));
        let incident = reporter.incident();
        let mut doc = IncidentDoc::create(&incident, actor.clone())?;
        device.store.save(&mut doc, &[], incident.captured_at)?;
        let saved = doc.save();
        let trips = device.sync()?;
        let change: usize = trips.iter().map(|t| t.change_bytes).sum();
        new.saved.push(saved.len() as f64);
        new.ratio.push(change as f64 / saved.len() as f64);
        new.wire.push(wire(&trips) as f64);
        new.round_trips.push(trips.len() as f64);

        let mut d = Peer::new(vec![AutoCommit::load(&saved)?]);
        let mut s = Peer::new(vec![AutoCommit::new()]);
        let ex = baseline::session(&mut d, &mut s, &[0])?;
        ensure!(
            s.docs[0].get_heads() == d.docs[0].get_heads(),
            "stock sync did not deliver the incident"
        );
        new.stock_ratio.push(ex.bytes() as f64 / saved.len() as f64);
        new.stock_wire.push(ex.bytes() as f64);
        new.stock_round_trips.push(f64::from(ex.round_trips));
    }

    let community = format!("device holding {} incidents", thousands(n));
    Ok(vec![
        Row::new(
            crate::NOOP_RT,
            community.clone(),
            "round trips",
            Runs::new(noop.round_trips),
            Target::AtMost(1.0),
        )
        .baseline(Runs::new(noop.stock_round_trips)),
        Row::new(
            crate::NOOP_BYTES,
            community.clone(),
            "bytes",
            Runs::new(noop.bytes),
            Target::AtMost(1024.0),
        )
        .target_text("≤ 1 KB (1,024)")
        .baseline(Runs::new(noop.stock_bytes)),
        Row::new(
            crate::NOOP_SERVER,
            community.clone(),
            "ms",
            Runs::new(noop.server_ms),
            Target::AtMost(5.0),
        )
        .baseline(Runs::new(noop.stock_server_ms)),
        Row::new(
            crate::NOOP_HTTP,
            community.clone(),
            "ms",
            Runs::new(noop.http_ms),
            Target::None,
        ),
        Row::new(
            crate::NOOP_DEVICE,
            community,
            "ms",
            Runs::new(noop.device_ms),
            Target::None,
        ),
        Row::new(
            crate::EDIT_WIRE,
            ONE_FIELD,
            "bytes",
            Runs::new(one_field.wire),
            Target::AtMost(150.0),
        )
        .baseline(Runs::new(one_field.stock_wire)),
        Row::new(
            crate::EDIT_CHANGE,
            ONE_FIELD,
            "bytes",
            Runs::new(one_field.change),
            Target::AtMost(150.0),
        ),
        Row::new(
            crate::EDIT_OWN,
            ONE_FIELD,
            "bytes",
            Runs::new(one_field.own),
            Target::None,
        ),
        Row::new(
            crate::EDIT_RT,
            ONE_FIELD,
            "round trips",
            Runs::new(one_field.round_trips),
            Target::None,
        )
        .baseline(Runs::new(one_field.stock_round_trips)),
        Row::new(
            crate::STATUS_WIRE,
            STATUS,
            "bytes",
            Runs::new(status.wire),
            Target::None,
        )
        .baseline(Runs::new(status.stock_wire)),
        Row::new(
            crate::STATUS_CHANGE,
            STATUS,
            "bytes",
            Runs::new(status.change),
            Target::None,
        ),
        Row::new(crate::STATUS_OWN, STATUS, "bytes", Runs::new(status.own), Target::None),
        Row::new(
            crate::NEW_RATIO,
            format!("saved size {} B", crate::table::number(Runs::new(new.saved).median())),
            "× saved size",
            Runs::new(new.ratio),
            Target::AtMost(1.3),
        )
        .baseline(Runs::new(new.stock_ratio)),
        Row::new(
            crate::NEW_WIRE,
            "one new incident",
            "bytes",
            Runs::new(new.wire),
            Target::None,
        )
        .baseline(Runs::new(new.stock_wire)),
        Row::new(
            crate::NEW_RT,
            "one new incident",
            "round trips",
            Runs::new(new.round_trips),
            Target::None,
        )
        .baseline(Runs::new(new.stock_round_trips)),
        Row::new(
            crate::PULL,
            format!("{} incidents, empty device", thousands(pulled)),
            "incidents/s",
            Runs::new(pull_rate),
            Target::AtLeast(5000.0),
        ),
    ])
}

#[derive(Default)]
struct NoOp {
    round_trips: Vec<f64>,
    bytes: Vec<f64>,
    server_ms: Vec<f64>,
    http_ms: Vec<f64>,
    device_ms: Vec<f64>,
    stock_round_trips: Vec<f64>,
    stock_bytes: Vec<f64>,
    stock_server_ms: Vec<f64>,
}

#[derive(Default)]
struct Edit {
    /// The edit's own Automerge change, however it travels.
    own: Vec<f64>,
    change: Vec<f64>,
    wire: Vec<f64>,
    round_trips: Vec<f64>,
    stock_wire: Vec<f64>,
    stock_round_trips: Vec<f64>,
}

#[derive(Default)]
struct New {
    saved: Vec<f64>,
    ratio: Vec<f64>,
    wire: Vec<f64>,
    round_trips: Vec<f64>,
    stock_ratio: Vec<f64>,
    stock_wire: Vec<f64>,
    stock_round_trips: Vec<f64>,
}

pub fn thousands(n: usize) -> String {
    crate::table::number(n as f64)
}

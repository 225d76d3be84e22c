//! Reads on a large server: a data dir holding many incidents in ten
//! communities (written straight through the server's storage, a day's
//! batch per community at a time, as pushes would leave them, without the
//! change feed, which these reads never touch), served by a real
//! `sync-server`; then the daily report, Open311 `requests.json` and one
//! day's CSV export over HTTP, and the server's peak memory.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use automerge::ActorId;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta};
use serde_json::Value;
use sync_core::incident::{Location, NewIncident, rfc3339};
use sync_core::{IncidentDoc, IncidentId, Status};
use sync_server::storage::{IncidentWrite, Role};

use crate::harness::{Binaries, ServerProcess};
use crate::machine::rss_of;
use crate::stats::Runs;
use crate::table::{Row, Target};
use crate::{Sizes, progress};

/// The communities and the days the incidents are spread over.
const COMMUNITIES: usize = 10;
const DAYS: usize = 100;
const CATEGORIES: [&str; 6] = [
    "manhole-cover",
    "road-surface",
    "illegal-parking",
    "lawn",
    "clutter",
    "house-leak",
];

/// The grid map: the built-in community HLT-CX-HX ten times over, as
/// HLT-CX-C0 … HLT-CX-C9, each with its four cells.
fn ten_communities() -> Result<Value> {
    let map: Value = serde_json::from_str(sync_core::taxonomy::DEFAULT_GRIDS_JSON)?;
    let template = map["districts"][0]["streets"][0]["communities"][0].clone();
    let communities: Vec<Value> = (0..COMMUNITIES)
        .map(|n| {
            let mut c = template.clone();
            c["id"] = Value::from(format!("HLT-CX-C{n}"));
            for (k, cell) in c["cells"].as_array_mut().into_iter().flatten().enumerate() {
                cell["id"] = Value::from(format!("HLT-CX-C{n}-0{}", k + 1));
            }
            c
        })
        .collect();
    let mut out = map.clone();
    out["districts"] = Value::from(vec![map["districts"][0].clone()]);
    out["districts"][0]["streets"] = Value::from(vec![map["districts"][0]["streets"][0].clone()]);
    out["districts"][0]["streets"][0]["communities"] = Value::from(communities);
    Ok(out)
}

fn cells_of(community: usize) -> Vec<String> {
    (1..=4).map(|k| format!("HLT-CX-C{community}-0{k}")).collect()
}

/// The first day of the data, in Asia/Shanghai; the report asks for the last.
fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 8, 1).expect("a date")
}

/// 09:00 local on day `d`, and `i` minutes on.
fn captured(d: usize, i: usize) -> DateTime<FixedOffset> {
    let zone = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let day = first_day() + TimeDelta::days(d as i64);
    let start = day
        .and_hms_opt(8, 0, 0)
        .expect("a time")
        .and_local_timezone(zone)
        .unwrap();
    start + TimeDelta::seconds((i as i64 * 37) % (12 * 3600))
}

/// One generated incident, as the server stores it: most are fixed on the
/// spot the same day; one in 30 stays open.
fn incident(community: usize, d: usize, i: usize, serial: u64) -> Result<IncidentWrite> {
    let cell = format!("HLT-CX-C{community}-0{}", i % 4 + 1);
    let reporter = format!("w{community}-{}", i % 4 + 1);
    let at = captured(d, i);
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&serial.to_be_bytes());
    let new = NewIncident {
        id: IncidentId::new(at.timestamp_millis() as u64, random),
        case: None,
        category: CATEGORIES[i % CATEGORIES.len()].to_owned(),
        description: format!("第{i}号 巡查发现的问题"),
        location: Location::default(),
        grid: cell,
        reporter: reporter.clone(),
        device: format!("00000000-0000-4000-8000-{:012}", community * 10 + i % 4),
        captured_at: at,
        photos: vec![],
    };
    let actor = ActorId::from(serial.to_be_bytes().to_vec());
    let mut doc = IncidentDoc::create(&new, actor)?;
    if i % 30 != 0 {
        doc.set_status(Status::Resolved, &reporter, at + TimeDelta::hours(1))?;
    }
    let read = doc.read()?;
    let sealed = doc.seal()?;
    Ok(sync_server::sync::write_of(
        &read.id.to_string(),
        None,
        sealed,
        &read,
        vec![],
    ))
}

/// Makes the data dir: the map, the accounts, `total` incidents.
fn fill(dir: &Path, total: usize) -> Result<String> {
    let map = dir.join("grids.json");
    std::fs::write(&map, serde_json::to_vec_pretty(&ten_communities()?)?)?;
    let storage = sync_server::create_storage(dir, None)?;
    let grids = sync_server::load_grids(Some(&map))?;
    for c in 0..COMMUNITIES {
        let cells = cells_of(c);
        for (k, cell) in cells.iter().enumerate() {
            let id = format!("w{c}-{}", k + 1);
            add(&*storage, &grids, &id, Role::Worker, std::slice::from_ref(cell), None)?;
        }
        add(
            &*storage,
            &grids,
            &format!("c{c}"),
            Role::Center,
            &[],
            Some(&format!("HLT-CX-C{c}")),
        )?;
    }
    let per_batch = total / (DAYS * COMMUNITIES);
    let mut serial = 0u64;
    for d in 0..DAYS {
        for c in 0..COMMUNITIES {
            let writes = (0..per_batch)
                .map(|i| {
                    serial += 1;
                    incident(c, d, i, serial)
                })
                .collect::<Result<Vec<_>>>()?;
            let received = rfc3339(&(captured(d, 0) + TimeDelta::hours(12)));
            storage.commit_push(&writes, "bench", &received)?;
        }
        if d % 10 == 9 {
            progress(&format!(
                "reads: {} of {total} incidents stored",
                (d + 1) * per_batch * COMMUNITIES
            ));
        }
    }
    Ok(sync_server::accounts::create_token(&*storage, "c0")?.token)
}

fn add(
    storage: &dyn sync_server::storage::Storage,
    grids: &sync_core::GridMap,
    id: &str,
    role: Role,
    cells: &[String],
    community: Option<&str>,
) -> Result<()> {
    let new = sync_server::accounts::NewWorker {
        id,
        name: id,
        role,
        cells,
        community,
        department: None,
    };
    sync_server::accounts::add_worker(storage, grids, &new)?;
    Ok(())
}

/// Times `GET path` with the token, `runs` times after one warm-up;
/// checks every answer is 200 and passes `check`.
fn timed(url: &str, token: &str, runs: usize, check: &dyn Fn(&[u8]) -> Result<()>) -> Result<Vec<f64>> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let mut ms = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let resp = http.get(url).bearer_auth(token).send()?;
        let status = resp.status();
        let body = resp.bytes()?;
        let took = start.elapsed().as_secs_f64() * 1e3;
        ensure!(
            status.is_success(),
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        check(&body)?;
        if run > 0 {
            ms.push(took);
        }
    }
    Ok(ms)
}

pub fn figures(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let total = sizes.reads_incidents;
    progress(&format!(
        "reads: writing {total} incidents in {COMMUNITIES} communities"
    ));
    let dir = tempfile::Builder::new().prefix("bench-reads-").tempdir()?;
    let token = fill(dir.path(), total)?;
    let map = dir.path().join("grids.json");
    let server = ServerProcess::serve_dir(bins, dir, &["--grid-map", map.to_str().context("a UTF-8 path")?])?;
    let last = first_day() + TimeDelta::days(DAYS as i64 - 1);
    let per_day = total / (DAYS * COMMUNITIES);
    let report = format!("{}/v1/reports/daily?community=HLT-CX-C0&date={last}", server.url);
    let report_ms = timed(&report, &token, runs, &|body| {
        let r: Value = serde_json::from_slice(body)?;
        let n = r["incidents"].as_array().map_or(0, Vec::len);
        ensure!(n == per_day, "the report lists {n} of the day's {per_day} incidents");
        Ok(())
    })?;
    let open311 = format!("{}/open311/v2/requests.json", server.url);
    let open311_ms = timed(&open311, &token, runs, &|body| {
        let list: Vec<Value> = serde_json::from_slice(body)?;
        ensure!(!list.is_empty(), "Open311 listed nothing");
        Ok(())
    })?;
    let export = format!(
        "{}/v1/exports/incidents.csv?community=HLT-CX-C0&from={last}&to={last}",
        server.url
    );
    let export_ms = timed(&export, &token, runs, &|body| {
        let lines = body.iter().filter(|b| **b == b'\n').count();
        ensure!(
            lines == per_day + 1,
            "the export has {lines} lines for {per_day} incidents"
        );
        Ok(())
    })?;
    let (_, peak) = rss_of(server.pid()).context("the server's memory")?;
    let workload = format!("{total} incidents, {COMMUNITIES} communities, {DAYS} days; {per_day} on the day asked");
    let row = |figure, ms: Vec<f64>, target: f64| {
        Row::new(figure, workload.clone(), "ms", Runs::new(ms), Target::AtMost(target))
    };
    Ok(vec![
        row(crate::READ_REPORT, report_ms, 300.0),
        row(crate::READ_OPEN311, open311_ms, 100.0),
        row(crate::READ_EXPORT, export_ms, 200.0),
        Row::new(
            crate::READ_RSS,
            workload.clone(),
            "MB",
            Runs::new(vec![peak as f64 / 1e6]),
            Target::AtMost(300.0),
        ),
    ])
}

//! Figures on the device alone: logging incidents, `field report` as a
//! process, and the photo pipeline.

use std::time::Instant;

use anyhow::{Result, ensure};
use sync_core::{IncidentDoc, Store};
use uuid::Uuid;

use crate::data::{self, Reporter};
use crate::harness::Binaries;
use crate::stats::{Runs, percentile};
use crate::table::{Row, Target};
use crate::{Sizes, progress};

pub const CELL: &str = "HLT-CX-HX-01";

pub fn logging(sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let cells = vec![CELL.to_owned()];
    let mut batched = Vec::new();
    let mut durable = Vec::new();
    for run in 0..runs {
        progress(&format!("logging, run {}/{runs}", run + 1));
        // Batched: every incident's document and row, one transaction
        // (`Store::save_many`).
        let dir = tempfile::Builder::new().prefix("bench-device-").tempdir()?;
        let profile = data::init_device(dir.path(), "w-bench", &cells, Uuid::from_u128(run as u128 + 1))?;
        let mut reporter = Reporter::new(&profile, 100 + run as u64);
        let mut store = Store::open(dir.path())?;
        let took = data::log_batched(&mut store, &mut reporter, sizes.log_batched, usize::MAX)?;
        batched.push(sizes.log_batched as f64 / took.as_secs_f64());

        // Durable: Store::save per incident, as `field report` does.
        let dir = tempfile::Builder::new().prefix("bench-device-").tempdir()?;
        let profile = data::init_device(dir.path(), "w-bench", &cells, Uuid::from_u128(run as u128 + 1))?;
        let mut reporter = Reporter::new(&profile, 200 + run as u64);
        let actor = reporter.actor();
        let mut store = Store::open(dir.path())?;
        let start = Instant::now();
        for _ in 0..sizes.log_durable {
            let new = reporter.incident();
            let mut doc = IncidentDoc::create(&new, actor.clone())?;
            store.save(&mut doc, &[], new.captured_at)?;
        }
        durable.push(sizes.log_durable as f64 / start.elapsed().as_secs_f64());
    }
    Ok(vec![
        Row::new(
            crate::LOG_BATCHED,
            format!(
                "{} incidents in one transaction",
                crate::sync::thousands(sizes.log_batched)
            ),
            "incidents/s",
            Runs::new(batched),
            Target::AtLeast(3000.0),
        ),
        Row::new(
            crate::LOG_DURABLE,
            format!("{} × Store::save", sizes.log_durable),
            "incidents/s",
            Runs::new(durable),
            Target::AtLeast(1000.0),
        ),
    ])
}

/// `field report` without a photo, spawned and waited for, timed from
/// outside: process start, opening the store, the durable commit, exit.
pub fn field_report(bins: &Binaries, sizes: &Sizes, runs: usize) -> Result<Vec<Row>> {
    let dir = tempfile::Builder::new().prefix("bench-field-").tempdir()?;
    let field = |args: &[&str]| crate::harness::run_field(&bins.field, dir.path(), args);
    field(&["init", "--worker", "w-report", "--grid", CELL])?;
    let report = [
        "report",
        "--category",
        "manhole-cover",
        "--desc",
        "井盖缺了一角，鹤乡路12号门前",
        "--lat",
        "41.1205",
        "--lon",
        "122.0712",
        "--address",
        "鹤乡路12号",
    ];
    for _ in 0..3 {
        field(&report)?; // warm the page cache
    }
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for run in 0..runs {
        progress(&format!("field report, run {}/{runs}", run + 1));
        let mut ms = Vec::with_capacity(sizes.report_processes);
        for _ in 0..sizes.report_processes {
            ms.push(field(&report)?.as_secs_f64() * 1e3);
        }
        p50.push(percentile(&ms, 50.0));
        p99.push(percentile(&ms, 99.0));
    }
    let workload = format!("{} processes per run", sizes.report_processes);
    Ok(vec![
        Row::new(
            crate::REPORT_P50,
            workload.clone(),
            "ms",
            Runs::new(p50),
            Target::AtMost(10.0),
        ),
        Row::new(crate::REPORT_P99, workload, "ms", Runs::new(p99), Target::AtMost(25.0)),
    ])
}

/// `sync_core::photo::process` (EXIF, decode, display copy, thumbnail) and
/// the blake3 hash of the original, in-process, on a generated JPEG.
pub fn photo(sizes: &Sizes, runs: usize) -> Result<Row> {
    let (w, h) = sizes.photo;
    progress(&format!("photo: generating a {w}×{h} JPEG"));
    let jpeg = data::photo_jpeg(w, h, 90)?;
    let once = || -> Result<f64> {
        let start = Instant::now();
        std::hint::black_box(blake3::hash(&jpeg));
        let p = sync_core::photo::process(&jpeg)?;
        let took = start.elapsed().as_secs_f64() * 1e3;
        ensure!(p.exif.gps.is_some(), "the photo's EXIF was not read");
        Ok(took)
    };
    once()?; // warm-up
    let mut ms = Vec::new();
    for run in 0..runs {
        progress(&format!("photo, run {}/{runs}", run + 1));
        ms.push(once()?);
    }
    Ok(Row::new(
        crate::PHOTO,
        format!(
            "{w}×{h} ({:.1} MP) JPEG q90, {:.1} MB",
            f64::from(w) * f64::from(h) / 1e6,
            jpeg.len() as f64 / 1e6
        ),
        "ms",
        Runs::new(ms),
        Target::AtMost(100.0),
    ))
}

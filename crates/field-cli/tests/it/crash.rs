//! `field report` killed with SIGKILL at pseudo-random moments, again and
//! again, must leave a store that is whole: a sound SQLite file, every id a
//! worker was shown still there, every published blob named by its hash and
//! known to the database, and nothing left in `staging/` once the next
//! command has run.
//!
//! Delays come from a seeded xorshift (printed; set `FIELD_CRASH_SEED` to
//! replay). Kills land in three places:
//!
//! * reports without a photo, 0–30 ms after the start: these run start to
//!   end in a few milliseconds, so kills hit opening, committing and exiting;
//! * reports with `manhole-exif.jpg`, 0–30 ms after the start: start-up,
//!   recovery of the last crash, reading and decoding the photo;
//! * reports with a copy of `manhole-exif.jpg` made unique by a JPEG comment
//!   (so its original really is staged and published each time, instead of
//!   being found already stored), killed 0–30 ms around the end of the run.
//!   Decoding the photo takes hundreds of milliseconds in a debug build, so
//!   "the end" is an offset that adapts to this machine: later after a child
//!   was killed before staging anything, earlier after one finished.

#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Device, assert_uuid_v7, blake3_hex, fixture, s};

const ITERATIONS: usize = 60;
const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// Marsaglia's xorshift64: enough randomness for kill times, and the same
/// sequence on every machine for a given seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A whole number of milliseconds in `0..=max`.
    fn ms(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.next() % (max + 1))
    }
}

/// `jpeg` with a comment segment after SOI: the same picture, other bytes.
fn with_comment(jpeg: &[u8], text: &str) -> Vec<u8> {
    assert_eq!(&jpeg[..2], [0xFF, 0xD8], "not a JPEG");
    let len = u16::try_from(text.len() + 2).unwrap();
    let mut out = Vec::with_capacity(jpeg.len() + text.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

struct Outcome {
    /// The id the child printed before it died or finished, if any.
    printed: Option<String>,
    killed: bool,
}

/// Starts `field report`, kills it after `delay` unless it finished, and
/// reads what it printed.
fn run_and_kill(dev: &Device, photo: Option<&Path>, delay: Duration) -> Outcome {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("field"));
    cmd.env_remove("FIELD_DATA_DIR")
        .env_remove("FIELD_LOG")
        .arg("--data-dir")
        .arg(dev.path())
        .args(["report", "--category", "lawn"]);
    if let Some(p) = photo {
        cmd.arg("--photo").arg(p);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start field");
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().expect("poll field").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Fails only when the child is already gone, which is a finish.
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait for field");
    let killed = out.status.signal() == Some(9);
    assert!(
        killed || out.status.success(),
        "a report that was not killed failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let printed = match stdout.as_str() {
        "" => None,
        line => {
            let id = line
                .strip_suffix('\n')
                .unwrap_or_else(|| panic!("a partial line on stdout: {line:?}"));
            assert_uuid_v7(id);
            Some(id.to_owned())
        }
    };
    if !killed {
        assert!(printed.is_some(), "a finished report printed no id");
    }
    Outcome { printed, killed }
}

/// Hash → kind for every row of the `blobs` table.
fn blob_rows(db: &rusqlite::Connection) -> BTreeMap<String, String> {
    let mut stmt = db.prepare("SELECT hash, kind FROM blobs").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[track_caller]
fn check_integrity(db: &rusqlite::Connection) {
    let rows: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, ["ok"], "integrity_check");
    let fk: i64 = db
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 0, "foreign_key_check");
}

#[test]
fn reports_killed_at_random_moments_leave_a_whole_store() {
    let seed = std::env::var("FIELD_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("FIELD_CRASH_SEED is a number"))
        .unwrap_or(DEFAULT_SEED);
    eprintln!("crash test: seed {seed} (replay with FIELD_CRASH_SEED={seed})");
    let mut rng = XorShift(seed.max(1));
    let started = Instant::now();

    let dev = Device::setup();
    let manhole_path = fixture("manhole-exif.jpg");
    let manhole = Path::new(&manhole_path);
    let manhole_bytes = std::fs::read(manhole).unwrap();
    let copies = tempfile::tempdir().unwrap();

    // One uninterrupted run tells how long a report with a photo takes here.
    let t = Instant::now();
    let first = run_and_kill(&dev, Some(manhole), Duration::from_secs(60));
    let full = t.elapsed();
    let mut printed: BTreeSet<String> = first.printed.into_iter().collect();
    let mut tail = full.saturating_sub(Duration::from_millis(20));

    let (mut killed, mut finished, mut in_window) = (0, 0, 0);
    for i in 0..ITERATIONS {
        let outcome = match i % 5 {
            0 | 1 => run_and_kill(&dev, None, rng.ms(30)),
            2 => run_and_kill(&dev, Some(manhole), rng.ms(30)),
            _ => {
                let copy = copies.path().join(format!("manhole-{i}.jpg"));
                std::fs::write(&copy, with_comment(&manhole_bytes, &format!("crash {i}"))).unwrap();
                let out = run_and_kill(&dev, Some(&copy), tail + rng.ms(30));
                // Steer the next kill towards staging, commit and publish.
                if !out.killed || out.printed.is_some() {
                    tail = tail.saturating_sub(Duration::from_millis(15));
                } else if dev.staging().is_empty() {
                    tail += Duration::from_millis(8);
                } else {
                    in_window += 1;
                }
                out
            }
        };
        if outcome.killed {
            killed += 1;
        } else {
            finished += 1;
        }
        printed.extend(outcome.printed);
    }
    eprintln!(
        "crash test: {ITERATIONS} runs after a {full:?} calibration run: {killed} killed \
         ({in_window} with blobs staged), {finished} finished, {} ids printed",
        printed.len()
    );

    // Before any other `field` command can recover anything: the database is
    // sound, and every published blob is one the database committed.
    let db = dev.db();
    check_integrity(&db);
    let rows = blob_rows(&db);
    for name in dev.blob_files().keys() {
        assert!(rows.contains_key(name), "blob {name} was published without a row");
    }
    drop(db);

    // The next command finishes or discards what the kills interrupted.
    dev.ok(["status"]);
    assert_eq!(dev.staging(), Vec::<String>::new(), "staging/ after `field status`");

    let listed: BTreeSet<String> = dev.ids(&[]).into_iter().collect();
    let lost: Vec<_> = printed.difference(&listed).collect();
    assert!(lost.is_empty(), "ids shown to the worker but not stored: {lost:?}");

    let db = dev.db();
    check_integrity(&db);
    let rows = blob_rows(&db);
    let files = dev.blob_files();
    let mut originals = BTreeSet::new();
    for id in &listed {
        let incident = dev.show(id);
        assert_eq!(s(&incident, "id"), id);
        for photo in incident["photos"].as_array().unwrap() {
            for kind in ["original", "display", "thumb"] {
                let hash = s(photo, kind);
                assert!(files.contains_key(hash), "{id}: {kind} blob {hash} is missing");
                assert_eq!(rows.get(hash).map(String::as_str), Some(kind), "{id}: row of {hash}");
            }
            originals.insert(s(photo, "original").to_owned());
        }
    }
    for (name, rel) in &files {
        let bytes = std::fs::read(dev.path().join(rel)).unwrap();
        assert_eq!(&blake3_hex(&bytes), name, "{} holds other bytes", rel.display());
        assert_eq!(rel, &Path::new("blobs").join(&name[..2]).join(name));
        assert!(rows.contains_key(name), "blob {name} has no row");
    }
    for hash in rows.keys() {
        assert!(files.contains_key(hash), "row {hash} has no blob file");
    }
    // At least the calibration run stored its photo.
    assert!(originals.contains(&blake3_hex(&manhole_bytes)));
    eprintln!(
        "crash test: {} incidents stored ({} killed after commit, before printing), \
         {} photos, {} blob files, {:?} in all",
        listed.len(),
        listed.len() - printed.len(),
        originals.len(),
        files.len(),
        started.elapsed()
    );
}

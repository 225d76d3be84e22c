//! field-cli's one integration-test binary: every test runs the real `field`
//! binary against its own temporary data directory, as a worker would.
//!
//! * `setup`: `field init`, `field categories`, and every command before init.
//! * `report`: logging incidents, choosing the grid cell, bad arguments.
//! * `photos`: the photo pipeline seen from the command line and the blob folder.
//! * `browse`: `field list` and `field show`.
//! * `update`: status changes, notes and photos added later.
//! * `status`: counts and what waits for sync.
//! * `export`: CSV, GeoJSON and JSON, checked with real parsers (and GDAL).
//! * `crash`: `field report` killed at random moments leaves a whole store.

mod browse;
mod crash;
mod export;
mod photos;
mod report;
mod setup;
mod status;
mod update;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

pub const WORKER: &str = "gw-0042";
pub const HX01: &str = "HLT-CX-HX-01";
pub const HX02: &str = "HLT-CX-HX-02";
pub const HX03: &str = "HLT-CX-HX-03";

/// A point inside HLT-CX-HX-02; also where `manhole-exif.jpg` was taken.
pub const IN_HX02: [&str; 4] = ["--lat", "41.1205", "--lon", "122.0712"];
/// A point inside HLT-CX-HX-01.
pub const IN_HX01: [&str; 4] = ["--lat", "41.122", "--lon", "122.066"];
/// A point inside HLT-CX-HX-03.
pub const IN_HX03: [&str; 4] = ["--lat", "41.118", "--lon", "122.066"];

/// The path of a file in `fixtures/photos/`, as a command-line argument.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/photos")
        .join(name);
    assert!(path.is_file(), "missing fixture {}", path.display());
    path.to_str().expect("fixture paths are UTF-8").to_owned()
}

/// One device: a data directory of its own, removed when the test ends.
pub struct Device {
    dir: TempDir,
}

impl Device {
    /// A device that has not been set up.
    pub fn empty() -> Device {
        Device {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    /// A device set up for [`WORKER`] patrolling `cells`.
    #[track_caller]
    pub fn init(cells: &[&str]) -> Device {
        let dev = Device::empty();
        let mut args = vec!["init", "--worker", WORKER];
        for c in cells {
            args.extend(["--grid", c]);
        }
        dev.ok(&args);
        dev
    }

    /// A device whose worker patrols HLT-CX-HX-01 only, so reports need no
    /// `--grid`.
    #[track_caller]
    pub fn setup() -> Device {
        Device::init(&[HX01])
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `field --data-dir DIR`, with logging at its default.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("field").expect("the field binary is built");
        cmd.env_remove("FIELD_DATA_DIR")
            .env_remove("FIELD_LOG")
            .arg("--data-dir")
            .arg(self.path());
        cmd
    }

    pub fn field<I, S>(&self, args: I) -> Assert
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd().args(args).assert()
    }

    /// Runs a command that must succeed; returns its standard output.
    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        stdout(&self.field(args).success())
    }

    /// Runs a command that must succeed and print JSON.
    #[track_caller]
    pub fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }

    /// Runs a command that must exit with `code` and name each of `needles`
    /// on standard error, printing nothing on standard output. Returns the
    /// error text.
    #[track_caller]
    pub fn fails<I, S>(&self, args: I, code: i32, needles: &[&str]) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut a = self.field(args).code(code).stdout(predicate::str::is_empty());
        for n in needles {
            a = a.stderr(predicate::str::contains(*n));
        }
        stderr(&a)
    }

    /// `field report ARGS`: checks that it printed exactly one line, the new
    /// incident's UUIDv7, and returns it.
    #[track_caller]
    pub fn report(&self, args: &[&str]) -> String {
        let mut full = vec!["report"];
        full.extend_from_slice(args);
        let out = self.ok(&full);
        let id = out
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("report output does not end a line: {out:?}"));
        assert!(!id.contains('\n'), "report printed more than one line: {out:?}");
        assert_uuid_v7(id);
        id.to_owned()
    }

    #[track_caller]
    pub fn show(&self, id: &str) -> Value {
        self.json(["show", id, "--json"])
    }

    /// `field list --json FILTERS`.
    #[track_caller]
    pub fn list(&self, filters: &[&str]) -> Vec<Value> {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(filters);
        match self.json(&args) {
            Value::Array(rows) => rows,
            other => panic!("list --json is not an array: {other}"),
        }
    }

    /// Ids from `field list --json FILTERS`, in list order.
    #[track_caller]
    pub fn ids(&self, filters: &[&str]) -> Vec<String> {
        self.list(filters)
            .iter()
            .map(|r| r["id"].as_str().expect("rows have an id").to_owned())
            .collect()
    }

    /// Every file under `blobs/`: its name and its path relative to the data
    /// directory.
    pub fn blob_files(&self) -> BTreeMap<String, PathBuf> {
        let mut out = BTreeMap::new();
        let root = self.path().join("blobs");
        let Ok(dirs) = std::fs::read_dir(&root) else {
            return out;
        };
        for dir in dirs {
            let dir = dir.unwrap().path();
            assert!(dir.is_dir(), "{} is not a fan-out folder", dir.display());
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                let name = f.file_name().unwrap().to_str().unwrap().to_owned();
                out.insert(name, f.strip_prefix(self.path()).unwrap().to_owned());
            }
        }
        out
    }

    /// Names of whatever is in `staging/`.
    pub fn staging(&self) -> Vec<String> {
        match std::fs::read_dir(self.path().join("staging")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The bytes of a published blob, from where the layout says it lives:
    /// `blobs/<first 2 hex>/<hash>`.
    #[track_caller]
    pub fn blob(&self, hash: &str) -> Vec<u8> {
        let path = self.path().join("blobs").join(&hash[..2]).join(hash);
        std::fs::read(&path).unwrap_or_else(|e| panic!("blob {}: {e}", path.display()))
    }

    /// The device database, opened the way any SQLite client would.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path().join("field.sqlite3")).expect("open field.sqlite3")
    }
}

pub fn stdout(a: &Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(a: &Assert) -> String {
    String::from_utf8(a.get_output().stderr.clone()).expect("stderr is UTF-8")
}

pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[track_caller]
pub fn assert_uuid_v7(s: &str) {
    let ok = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            14 => c == '7',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        });
    assert!(ok, "{s:?} is not a lowercase hyphenated UUIDv7");
}

#[track_caller]
pub fn assert_near(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((got - want).abs() < 1e-6, "{got} is not ≈ {want}");
}

/// `value[key]` as a string, or a panic naming what was there.
#[track_caller]
pub fn s<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {value}"))
}

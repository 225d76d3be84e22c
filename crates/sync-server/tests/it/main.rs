//! sync-server's one integration-test binary. Tests run the real
//! `sync-server` and `field` binaries as processes on loopback, each with
//! data dirs of their own, and drive them as an operator and workers would.
//!
//! `field` is another crate's binary: the harness finds it next to this
//! test's target folder and builds it with cargo if it is missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

mod adversarial;
mod convergence;
mod crash;
mod cut;
mod harness_checks;
mod property;
mod restore;

pub const HX01: &str = "HLT-CX-HX-01";
pub const HX02: &str = "HLT-CX-HX-02";

pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sync-server"))
}

/// The `field` binary of this workspace, built on first use if needed.
pub fn field_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = server_bin().parent().expect("binary has a folder").to_owned();
        let bin = dir.join("field");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "field-cli", "--bin", "field"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building field failed");
        assert!(bin.is_file(), "no field binary at {}", bin.display());
        bin
    })
    .clone()
}

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/photos")
        .join(name);
    assert!(path.is_file(), "missing fixture {}", path.display());
    path.to_str().expect("UTF-8 path").to_owned()
}

/// A server data dir, and the server process while it runs.
pub struct Server {
    pub dir: TempDir,
    child: Option<Child>,
    pub url: String,
    /// Port to reuse across restarts, so enrolled devices keep their URL.
    port: u16,
}

impl Server {
    /// A new, empty data dir with workers added; not yet running.
    pub fn new() -> Server {
        Server {
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            url: String::new(),
            port: 0,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs an operator command on the data dir and returns its stdout.
    #[track_caller]
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(server_bin())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .output()
            .expect("sync-server runs");
        assert!(
            out.status.success(),
            "sync-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
    }

    pub fn add_worker(&self, id: &str, cells: &[&str]) {
        let mut args = vec!["worker", "add", "--id", id, "--name", id];
        for c in cells {
            args.extend(["--grid", c]);
        }
        self.admin(&args);
    }

    pub fn code(&self, worker: &str) -> String {
        self.admin(&["device", "enroll", "--worker", worker])
    }

    /// Starts the server (on the same port as before, after a restart).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let listen = format!("127.0.0.1:{}", self.port);
        let mut child = Command::new(server_bin())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["serve", "--listen", &listen])
            .env("SYNC_SERVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sync-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout piped"))
            .read_line(&mut line)
            .expect("server prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        self.port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        self.url = url;
        self.child = Some(child);
    }

    /// SIGKILL, as a power cut or a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Opens the server database read-only for checks.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data_dir().join("server.sqlite3")).expect("server db opens")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A field device: its own data dir, set up for a worker.
pub struct Device {
    pub dir: TempDir,
    pub worker: String,
}

impl Device {
    #[track_caller]
    pub fn new(worker: &str, cells: &[&str]) -> Device {
        let d = Device {
            dir: tempfile::tempdir().expect("temp dir"),
            worker: worker.to_owned(),
        };
        let mut args = vec!["init", "--worker", worker];
        for c in cells {
            args.extend(["--grid", c]);
        }
        d.ok(&args);
        d
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(field_bin())
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env("FIELD_LOG", "warn")
            .output()
            .expect("field runs")
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "field {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
    }

    #[track_caller]
    pub fn enroll(&self, server: &Server) {
        let code = server.code(&self.worker);
        self.ok(&["enroll", "--server", &server.url, "--code", &code]);
    }

    #[track_caller]
    pub fn report(&self, args: &[&str]) -> String {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// `field sync --json`, parsed.
    #[track_caller]
    pub fn sync(&self, extra: &[&str]) -> Value {
        let mut args = vec!["sync", "--json", "--retries", "1"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).expect("sync --json is JSON")
    }

    #[track_caller]
    pub fn show(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["show", id, "--json"])).expect("show --json is JSON")
    }

    #[track_caller]
    pub fn list(&self) -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&self.ok(&["list", "--json"])).expect("list --json is JSON")
    }

    #[track_caller]
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status --json is JSON")
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("field.sqlite3")).expect("device db opens")
    }

    /// The device's heads of every incident, by id.
    pub fn heads(&self) -> Vec<(String, Vec<u8>)> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT id, heads FROM incidents ORDER BY id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

/// The server's heads of every incident, by id.
pub fn server_heads(server: &Server) -> Vec<(String, Vec<u8>)> {
    let db = server.db();
    let mut stmt = db.prepare("SELECT id, heads FROM incidents ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Waits for `f` to hold, polling; panics after `secs` seconds.
#[track_caller]
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("condition not met within {secs} s");
}

//! sync-server's one integration-test binary. Most tests run the real
//! `sync-server` and `field` binaries as processes on loopback, each with
//! data dirs of their own, and drive them as an operator and workers would
//! (`property` drives the same protocol steps in process).
//!
//! `field` is another crate's binary, which cargo does not build for this
//! test: the harness runs `cargo build` for it once, into the folder that
//! holds `sync-server`, and runs it from there.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use backend::{on_postgres, sqlite_only};
use serde_json::Value;
pub use sync_core::testing::XorShift64;
use tempfile::TempDir;

mod adversarial;
mod backend;
mod center;
mod city;
mod cli;
mod convergence;
mod crash;
mod cut;
mod dashboard;
mod department;
mod dispatch;
mod enrolment;
mod exports;
mod feed;
mod fuzz_replay;
mod guard;
mod harness_checks;
mod manifest;
mod nodes;
mod objects;
mod open311;
mod operator;
mod property;
mod proxy;
mod reconcile;
mod restore;
mod security;
mod tls;
mod watch;
mod worker;

pub const HX01: &str = "HLT-CX-HX-01";
pub const HX02: &str = "HLT-CX-HX-02";

pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sync-server"))
}

/// The `field` binary of this workspace, beside `sync-server`. The first
/// call in a test run runs `cargo build` for it (quick when it is up to
/// date), with the target folder and profile `sync-server` was built with.
pub fn field_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = server_bin().parent().expect("binary has a folder").to_owned();
        let target_dir = dir.parent().expect("a profile folder is in a target folder");
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("{} is not a profile folder", dir.display()),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "field-cli", "--bin", "field", "--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building field failed");
        let bin = dir.join("field");
        assert!(bin.is_file(), "no field binary at {}", bin.display());
        bin
    })
    .clone()
}

/// How long a test waits for a process to say or finish something before
/// it fails: far longer than any of them takes, even on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(120);

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
    /// Run every `sync-server` command under `umask 000`.
    pub open_umask: bool,
    /// The PostgreSQL database of the records, in the PostgreSQL suite.
    pg: Option<std::sync::Arc<backend::PgDatabase>>,
    /// Another node's data dir this one shares (its photo folder).
    shared_dir: Option<PathBuf>,
    /// The bucket of the photos, in the PostgreSQL suite (Garage).
    bucket: Option<std::sync::Arc<backend::Bucket>>,
    /// Reach the bucket through this endpoint (a proxy) instead.
    pub photos_via: Option<String>,
}

impl Default for Server {
    fn default() -> Server {
        Server::new()
    }
}

impl Server {
    /// A new server (`sync-server init`), with no workers yet; not running.
    pub fn new() -> Server {
        let server = Server::uninitialised();
        server.admin(&["init"]);
        server
    }

    /// An empty folder where no `sync-server init` has run.
    pub fn uninitialised() -> Server {
        let pg = backend::on_postgres().then(|| std::sync::Arc::new(backend::fresh_database()));
        let bucket = backend::on_postgres().then(|| std::sync::Arc::new(backend::Garage::get().bucket()));
        Server::stopped(pg, bucket)
    }

    /// Not running, in a new temporary data dir, on these stores.
    fn stopped(
        pg: Option<std::sync::Arc<backend::PgDatabase>>,
        bucket: Option<std::sync::Arc<backend::Bucket>>,
    ) -> Server {
        Server {
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            url: String::new(),
            port: 0,
            open_umask: false,
            pg,
            shared_dir: None,
            bucket,
            photos_via: None,
        }
    }

    /// Another node of this server: the same PostgreSQL database, a data
    /// dir of its own, or this one's (`share_photos`: one photo folder for
    /// all, as a shared file system gives nodes); not running.
    pub fn node(&self, share_photos: bool) -> Server {
        assert!(self.pg.is_some(), "nodes share a PostgreSQL database");
        let mut node = Server::stopped(self.pg.clone(), self.bucket.clone());
        node.shared_dir = share_photos.then(|| self.data_dir().to_owned());
        node.photos_via = self.photos_via.clone();
        node
    }

    /// The `--database` of this server: `None` on SQLite.
    pub fn database(&self) -> Option<&str> {
        self.pg.as_ref().map(|p| p.url.as_str())
    }

    /// A copy of the whole data dir and, on PostgreSQL, of the database,
    /// as a backup of the stopped server is.
    pub fn backup(&self) -> Backup {
        assert!(self.child.is_none(), "a backup is of a stopped server");
        let dir = tempfile::tempdir().unwrap();
        copy_tree(self.data_dir(), dir.path());
        Backup {
            dir,
            database: self.pg.as_deref().map(|pg| pg.copy().expect("the database copies")),
        }
    }

    /// Puts a backup in place of the stopped server's data dir and database.
    pub fn restore(&self, backup: &Backup) {
        assert!(self.child.is_none(), "a restore is onto a stopped server");
        if let (Some(pg), Some(copy)) = (&self.pg, &backup.database) {
            pg.restore_from(copy).expect("the backup comes back");
        }
        std::fs::remove_dir_all(self.data_dir()).unwrap();
        std::fs::create_dir_all(self.data_dir()).unwrap();
        copy_tree(backup.dir.path(), self.data_dir());
    }

    /// Writes to the server's database behind its back, as a damaged disk
    /// or a hand-edited file would: `sqlite` on SQLite, `postgres` on
    /// PostgreSQL (the dialects differ in places). Rows changed, or the
    /// database's refusal.
    pub fn exec(&self, sqlite: &str, postgres: &str) -> Result<u64, String> {
        match &self.pg {
            Some(pg) => pg.exec(postgres),
            None => rusqlite::Connection::open(self.data_dir().join("server.sqlite3"))
                .and_then(|db| db.execute(sqlite, []))
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
        }
    }

    /// The server's storage opened in this process, as its commands open it.
    pub fn storage(&self) -> Box<dyn sync_server::storage::Storage> {
        sync_server::open_storage(self.data_dir(), self.database()).expect("the server's storage opens")
    }

    /// `sync-server --data-dir DIR`, under `umask 000` if asked for.
    fn command(&self) -> Command {
        let mut cmd = if self.open_umask {
            let mut sh = Command::new("sh");
            sh.args(["-c", "umask 000 && exec \"$@\"", "sh"]).arg(server_bin());
            sh
        } else {
            Command::new(server_bin())
        };
        cmd.arg("--data-dir").arg(self.data_dir());
        if let Some(url) = self.database() {
            cmd.arg("--database").arg(url);
        }
        if let Some(bucket) = &self.bucket {
            cmd.arg("--photos")
                .arg(bucket.url(self.photos_via.as_deref()))
                .envs(bucket.env());
        }
        cmd
    }

    /// A stored photo's bytes, from the photo folder or the bucket.
    pub fn photo(&self, hash: &str) -> Option<Vec<u8>> {
        match &self.bucket {
            Some(b) => b.get(&format!("photos/{hash}")),
            None => std::fs::read(self.data_dir().join("photos").join(&hash[..2]).join(hash)).ok(),
        }
    }

    /// `dev`'s unfinished upload of a photo, where this server keeps it.
    pub fn part(&self, dev: &Device, hash: &str) -> Part {
        let device = device_id(dev);
        match &self.bucket {
            Some(b) => Part::Chunks(b.clone(), format!("uploads/{device}/{hash}")),
            None => Part::File(
                self.data_dir()
                    .join("uploads")
                    .join(device)
                    .join(format!("{hash}.part")),
            ),
        }
    }

    /// Every unfinished upload (files, or chunk objects), of any device.
    pub fn upload_parts(&self) -> Vec<String> {
        match &self.bucket {
            Some(b) => b.list("uploads").into_iter().map(|(k, _)| k).collect(),
            None => upload_files(self.data_dir()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.shared_dir.as_deref().unwrap_or(self.dir.path())
    }

    /// Runs an operator command on the data dir and returns its stdout.
    #[track_caller]
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("sync-server runs");
        assert!(
            out.status.success(),
            "sync-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
    }

    /// Runs an operator command that may fail; its whole output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .env("SYNC_SERVER_LOG", "warn")
            .output()
            .expect("sync-server runs")
    }

    pub fn add_worker(&self, id: &str, cells: &[&str]) {
        let mut args = vec!["worker", "add", "--id", id, "--name", id];
        for c in cells {
            args.extend(["--grid", c]);
        }
        self.admin(&args);
    }

    /// A community center account.
    pub fn add_center(&self, id: &str, community: &str) {
        self.admin(&[
            "worker",
            "add",
            "--id",
            id,
            "--name",
            id,
            "--role",
            "center",
            "--community",
            community,
        ]);
    }

    /// A read-only token for a center or operator account.
    pub fn token(&self, worker: &str) -> String {
        self.admin(&["token", "create", "--worker", worker])
    }

    pub fn code(&self, worker: &str) -> String {
        self.admin(&["device", "enroll", "--worker", worker])
    }

    /// Starts the server (on the same port as before, after a restart).
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts the server with more `serve` flags.
    pub fn start_with(&mut self, flags: &[&str]) {
        assert!(self.child.is_none(), "server already running");
        let listen = format!("127.0.0.1:{}", self.port);
        let mut child = self
            .command()
            .args(["serve", "--listen", &listen])
            .args(flags)
            .env("SYNC_SERVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sync-server starts");
        // Read on a thread, so a server that never prints fails the test.
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(read) => read.expect("reading the server's stdout"),
            Err(_) => {
                let _ = child.kill();
                panic!("sync-server printed no address within {PATIENCE:?}");
            }
        };
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("sync-server printed {line:?}, not its address"))
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

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// The server database, opened read-only for checks (while the server
    /// runs too): a check cannot change what it looks at.
    pub fn db(&self) -> rusqlite::Connection {
        match &self.pg {
            Some(pg) => backend::snapshot(pg),
            None => open_read_only(&self.data_dir().join("server.sqlite3")),
        }
    }
}

/// A device's unfinished upload on the server: a file, or chunk objects
/// (`uploads/<device>/<hash>/<offset>`) whose run from offset 0 is what it holds.
pub enum Part {
    File(PathBuf),
    Chunks(std::sync::Arc<backend::Bucket>, String),
}

impl Part {
    /// The bytes held, in order (none if there is no upload).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Part::File(path) => std::fs::read(path).unwrap_or_default(),
            Part::Chunks(bucket, prefix) => {
                let mut out = Vec::new();
                for (key, _) in bucket.list(prefix) {
                    let offset: u64 = key.rsplit('/').next().and_then(|o| o.parse().ok()).unwrap_or(u64::MAX);
                    if offset != out.len() as u64 {
                        break;
                    }
                    out.extend(bucket.get(&key).unwrap_or_default());
                }
                out
            }
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Part::File(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
            Part::Chunks(..) => self.bytes().len() as u64,
        }
    }

    pub fn exists(&self) -> bool {
        match self {
            Part::File(path) => path.exists(),
            Part::Chunks(bucket, prefix) => !bucket.list(prefix).is_empty(),
        }
    }

    /// Puts `bytes` there as the whole upload so far (the server stopped).
    pub fn write(&self, bytes: &[u8]) {
        match self {
            Part::File(path) => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            Part::Chunks(bucket, prefix) => bucket.put(&format!("{prefix}/{:020}", 0), bytes),
        }
    }
}

/// A stopped server's data dir and database, copied ([`Server::backup`]).
pub struct Backup {
    dir: TempDir,
    database: Option<backend::PgDatabase>,
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
        self.enroll_via(server, &server.url);
    }

    /// Enrols with a code of `server`'s, reaching it at `url` (a proxy in front).
    pub fn enroll_via(&self, server: &Server, url: &str) {
        let code = server.code(&self.worker);
        self.ok(&["enroll", "--server", url, "--code", &code]);
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

    /// The device database, opened read-only for checks.
    pub fn db(&self) -> rusqlite::Connection {
        open_read_only(&self.dir.path().join("field.sqlite3"))
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

#[track_caller]
fn open_read_only(path: &Path) -> rusqlite::Connection {
    use rusqlite::OpenFlags;
    rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .unwrap_or_else(|e| panic!("{} does not open read-only: {e}", path.display()))
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

/// Polls `f` until it gives a value and returns it; fails, naming `what`
/// it waited for, after `limit`.
#[track_caller]
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Checks and tools the test modules share.

/// A JPEG of `width`×`height` pixels of noise: a different file for each
/// seed, and one that does not compress much.
pub fn noise_jpeg(width: u32, height: u32, seed: u64, quality: u8) -> Vec<u8> {
    let mut rng = XorShift64::new(seed);
    let img = image::RgbImage::from_fn(width, height, |_, _| {
        let b = rng.next_u64().to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img)
        .expect("encoding a JPEG into a Vec");
    out
}

/// `field ARGS` as a child process with its output piped, so a test can
/// SIGKILL it or let it finish.
pub fn spawn_field(dev: &Device, args: &[&str]) -> Child {
    Command::new(field_bin())
        .arg("--data-dir")
        .arg(dev.dir.path())
        .args(args)
        .env("FIELD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("field starts")
}

/// Waits for `child` (its output piped) to exit and returns what it wrote;
/// kills it and fails if it runs past `limit`.
#[track_caller]
pub fn output_within(mut child: Child, limit: Duration, what: &str) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut bytes).expect("reading a child's output");
            }
            bytes
        })
    }
    // Drained while it runs, so a full pipe cannot stall it.
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling a child") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// [`sync_core::testing::assert_sqlite_whole`], saying first whose database
/// it checks: one call site can check several devices'.
#[track_caller]
pub fn assert_sqlite_sound(db: &rusqlite::Connection, what: &str) {
    eprintln!("checking that the database of {what} is whole");
    sync_core::testing::assert_sqlite_whole(db);
}

/// The change hashes of an Automerge document's whole history.
pub fn doc_change_hashes(doc: &[u8]) -> std::collections::BTreeSet<[u8; 32]> {
    automerge::Automerge::load(doc)
        .expect("a stored document loads")
        .get_changes(&[])
        .iter()
        .map(|c| c.hash().0)
        .collect()
}

/// Incident id → the change hashes of its stored document, from any
/// database with an `incidents (id, doc)` table.
pub fn docs_changes(
    db: &rusqlite::Connection,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<[u8; 32]>> {
    let mut stmt = db.prepare("SELECT id, doc FROM incidents ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
        .map(|row| {
            let (id, doc) = row.unwrap();
            (id, doc_change_hashes(&doc))
        })
        .collect()
}

/// The server's feed holds each change once, and lists for each incident
/// exactly the changes of the document it stores.
#[track_caller]
pub fn assert_server_feed_consistent(server: &Server) {
    let db = server.db();
    let (rows, distinct): (i64, i64) = db
        .query_row("SELECT count(*), count(DISTINCT hash) FROM changes", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(rows, distinct, "the server's feed holds a change twice");
    let mut feed: std::collections::BTreeMap<String, std::collections::BTreeSet<[u8; 32]>> = Default::default();
    let mut stmt = db.prepare("SELECT incident_id, hash FROM changes").unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
    {
        let (id, hash) = row.unwrap();
        feed.entry(id)
            .or_default()
            .insert(hash.try_into().expect("32-byte hash"));
    }
    let docs = docs_changes(&db);
    assert_eq!(
        docs.keys().collect::<Vec<_>>(),
        feed.keys().collect::<Vec<_>>(),
        "incidents in the server's documents and in its feed"
    );
    for (id, hashes) in &docs {
        assert_eq!(
            &feed[id], hashes,
            "incident {id}: the feed and the stored document differ"
        );
    }
}

/// Every photo file an incident on the server names is stored under
/// `photos/`, hashes to its name, and is recorded in `blobs` with its size;
/// no upload is left half done. Returns how many files there are.
#[track_caller]
pub fn assert_server_photos_whole(server: &Server) -> usize {
    let db = server.db();
    let refs: Vec<String> = db
        .prepare("SELECT DISTINCT hash FROM blob_refs ORDER BY hash")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for hash in &refs {
        let bytes = server
            .photo(hash)
            .unwrap_or_else(|| panic!("photo {hash} is not on the server"));
        assert_eq!(
            &blake3::hash(&bytes).to_hex().to_string(),
            hash,
            "photo {hash} holds other bytes"
        );
        let size: Option<i64> = db
            .query_row("SELECT size FROM blobs WHERE hash = ?1", [hash], |r| r.get(0))
            .ok();
        assert_eq!(
            size,
            Some(bytes.len() as i64),
            "photo {hash} is not recorded as verified"
        );
    }
    let parts = server.upload_parts();
    assert!(parts.is_empty(), "uploads left half done: {parts:?}");
    refs.len()
}

/// Every photo file the device holds is whole on the server.
#[track_caller]
pub fn assert_device_photos_on_server(server: &Server, dev: &Device) {
    let hashes: Vec<String> = dev
        .db()
        .prepare("SELECT hash FROM blobs ORDER BY hash")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let db = server.db();
    for hash in hashes {
        let bytes = server
            .photo(&hash)
            .unwrap_or_else(|| panic!("{}'s photo {hash} is not on the server", dev.worker));
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), hash);
        let verified: bool = db
            .query_row("SELECT count(*) FROM blobs WHERE hash = ?1", [&hash], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
            == 1;
        assert!(verified, "{}'s photo {hash} is not recorded as verified", dev.worker);
    }
}

/// Every device holds exactly the server's incidents, at the server's heads.
#[track_caller]
pub fn assert_same_heads(server: &Server, devices: &[&Device]) {
    let on_server = server_heads(server);
    assert!(!on_server.is_empty(), "the server has no incidents");
    for dev in devices {
        assert_eq!(
            dev.heads(),
            on_server,
            "{}'s heads differ from the server's",
            dev.worker
        );
    }
}

/// Copies a folder tree, files and subfolders.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's folder");
    for entry in std::fs::read_dir(from).expect("list the folder") {
        let entry = entry.expect("read a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// An enrolled device's token, as `field enroll` saved it.
pub fn token_of(dev: &Device) -> String {
    std::fs::read_to_string(dev.dir.path().join("device.token"))
        .expect("an enrolled device has a token file")
        .trim()
        .to_owned()
}

/// The signing key `field init` made for the device.
pub fn device_key(dev: &Device) -> sync_core::signing::DeviceKey {
    let hex: String = dev
        .db()
        .query_row("SELECT value FROM meta WHERE key = 'signing_key'", [], |r| r.get(0))
        .expect("an initialised device has a signing key");
    sync_core::signing::DeviceKey::from_seed_hex(&hex).expect("the stored key is 64 hex digits")
}

/// Signs every change of a push with `key`, as the device that made them;
/// bytes that are no change (hostile ones of the adversarial tests) get an
/// empty signature. They are read with `decode_change`, whose frame check
/// keeps a bomb from inflating in the test process.
pub fn sign_push(key: &sync_core::signing::DeviceKey, push: &mut sync_core::protocol::PushDoc) {
    push.sigs = push
        .changes
        .iter()
        .map(|raw| {
            let hash = sync_core::incident::decode_change(raw.to_vec()).map(|c| c.hash());
            let sig = hash.map(|h| key.sign(&h).to_vec()).unwrap_or_default();
            serde_bytes::ByteBuf::from(sig)
        })
        .collect();
}

/// The device id `field init` made, as `field status` shows it.
pub fn device_id(dev: &Device) -> String {
    dev.status()["profile"]["device"]
        .as_str()
        .expect("status shows the device id")
        .to_owned()
}

/// Where the server keeps `dev`'s unfinished upload of a photo.
pub fn upload_part(server: &Server, dev: &Device, hash: &str) -> Part {
    server.part(dev, hash)
}

/// Every unfinished upload file under a data dir, of any device.
fn upload_files(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![data_dir.join("uploads")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

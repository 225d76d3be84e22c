//! Helpers the test suites of every crate share (feature `test-support`).

/// Marsaglia's xorshift64: delays and choices that are the same on every
/// machine for a given seed. The seed is printed; setting `var` replays one.
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(seed.max(1))
    }

    /// The seed from environment variable `var`, else `default`; printed.
    pub fn from_env(var: &str, default: u64) -> XorShift64 {
        let seed = std::env::var(var)
            .ok()
            .map(|s| s.parse().unwrap_or_else(|_| panic!("{var} must be a number")))
            .unwrap_or(default);
        eprintln!("seed {seed} (replay with {var}={seed})");
        XorShift64::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A whole number of milliseconds in `0..=max`.
    pub fn ms(&mut self, max: u64) -> std::time::Duration {
        std::time::Duration::from_millis(self.below(max + 1))
    }
}

/// Asserts that a SQLite database is whole: `integrity_check` says ok and
/// no foreign key dangles.
#[track_caller]
pub fn assert_sqlite_whole(db: &rusqlite::Connection) {
    let rows: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("integrity_check runs");
    assert_eq!(rows, ["ok"], "integrity_check");
    let dangling: i64 = db
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))
        .expect("foreign_key_check runs");
    assert_eq!(dangling, 0, "foreign_key_check");
}

/// How many cells LibreOffice Calc turns into formulas when it opens `csv`
/// splitting on comma, semicolon and tab alike (headless `soffice`, Debian
/// package `libreoffice-calc`; each call has a profile of its own, so
/// tests may call it in parallel).
pub fn calc_formula_cells(csv: &[u8]) -> usize {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("calc-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder for soffice");
    let input = dir.join("in.csv");
    std::fs::write(&input, csv).expect("the CSV is written");
    // CSV filter options: separators , ; tab; text delimiter "; UTF-8; from line 1.
    let out = std::process::Command::new("soffice")
        .arg(format!(
            "-env:UserInstallation=file://{}",
            dir.join("profile").display()
        ))
        .args([
            "--headless",
            "--infilter=CSV:44/59/9,34,76,1",
            "--convert-to",
            "fods",
            "--outdir",
        ])
        .arg(&dir)
        .arg(&input)
        .output()
        .expect("soffice runs (install libreoffice-calc, or run `cargo xtask test`)");
    let sheet = std::fs::read_to_string(dir.join("in.fods"))
        .unwrap_or_else(|e| panic!("soffice made no sheet ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let _ = std::fs::remove_dir_all(&dir);
    sheet.matches("table:formula=").count()
}

/// Every folder and file under `root` (root itself as ""), with its
/// permission bits and whether it is a folder, sorted by path.
#[cfg(unix)]
pub fn modes_under(root: &std::path::Path) -> Vec<(String, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("a listed path exists");
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).expect("a folder lists");
            stack.extend(entries.map(|e| e.expect("an entry reads").path()));
        }
        let name = path.strip_prefix(root).expect("under the root").display().to_string();
        out.push((name, meta.permissions().mode() & 0o7777, meta.is_dir()));
    }
    out.sort();
    out
}

/// An Automerge chunk of type `kind` around `data` (magic, a zero
/// checksum, the type, the length as unsigned LEB128): how a hostile
/// client frames bytes to pass or probe a check of the frame.
pub fn chunk(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, kind];
    let mut n = data.len();
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend(data);
    out
}

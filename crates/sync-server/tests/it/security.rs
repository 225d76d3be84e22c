//! What the server keeps from other local users and from the network.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Device, HX01, Server, fixture};

/// Every folder and file under `root` with its permission bits.
fn modes_under(root: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        let name = path.strip_prefix(root).unwrap().display().to_string();
        out.push((name, meta.permissions().mode() & 0o7777, meta.is_dir()));
    }
    out.sort();
    out
}

#[test]
fn the_server_data_dir_is_its_owners_alone_whatever_the_umask() {
    let mut server = Server::new();
    server.open_umask = true;
    std::fs::set_permissions(server.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    server.add_worker("w1", &[HX01]);
    server.start();
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    dev.report(&["--category", "manhole-cover", "--photo", &fixture("manhole-exif.jpg")]);
    dev.sync(&[]);
    let modes = modes_under(server.data_dir());
    server.kill();
    let names: Vec<&str> = modes.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(names.contains(&"server.sqlite3"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("photos/") && n.len() > 70),
        "{names:?}"
    );
    for (name, mode, is_dir) in &modes {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{name:?} is {mode:o} in {modes:?}");
    }
}

/// Text a spreadsheet would run as a formula in some cell if it split on
/// comma, semicolon or tab and the cell were neither quoted nor guarded.
const FORMULAS: &[&str] = &[
    "=1+1", "ok;=2+2", "ok\t=3+3", "\t=4+4", "+5+5", "-6+6", "@SUM(7)", "a,=8+8",
];

#[test]
fn csv_exports_and_reports_hold_no_formula_under_any_separator() {
    // The check itself: these cells, written plainly, are formulas in Calc.
    let naive = format!("a\n{}\n", FORMULAS.join(","));
    // (Calc runs `=` formulas from CSV; `+`, `-` and `@` matter to Excel.)
    let with_eq = FORMULAS.iter().filter(|c| c.contains('=')).count();
    assert_eq!(sync_core::testing::calc_formula_cells(naive.as_bytes()), with_eq);

    let mut server = Server::new();
    server.admin(&["worker", "add", "--id", "w1", "--name", "ok;=9+9", "--grid", HX01]);
    server.admin(&["worker", "add", "--id", "op", "--name", "op", "--role", "operator"]);
    server.start();
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    for text in FORMULAS {
        let at = "2026-11-20T09:00:00+08:00";
        dev.report(&["--category", "lawn", "--desc", text, "--address", text, "--at", at]);
    }
    dev.sync(&[]);
    let token = server.token("op");
    let export = crate::exports::get(&server, "/v1/exports/incidents.csv", Some(&token));
    assert_eq!(export.status, 200);
    let report = server.admin(&[
        "reconcile",
        "--date",
        "2026-11-20",
        "--community",
        "HLT-CX-HX",
        "--format",
        "csv",
    ]);
    assert!(report.contains("ok;=9+9"), "the report names the worker: {report}");
    for (what, csv) in [("the export", export.body), ("the report", report.into_bytes())] {
        assert_eq!(
            sync_core::testing::calc_formula_cells(&csv),
            0,
            "{what}:\n{}",
            String::from_utf8_lossy(&csv)
        );
    }
}

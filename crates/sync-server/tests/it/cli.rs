//! One exit-code rule for every `sync-server` command: 0 done, 2 a mistake
//! in the command line or its arguments, 1 any other failure; always one
//! sentence on stderr, nothing on stdout, nothing stored.

use std::process::Command;

use crate::reconcile::admin_fails;
use crate::*;

#[track_caller]
fn check(server: &Server, args: &[&str], code: i32, needle: &str) {
    let (got, err) = admin_fails(server, args);
    assert_eq!(got, code, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
}

#[test]
fn mistakes_exit_2_and_failures_exit_1_whatever_the_command() {
    let server = Server::new();
    server.add_worker("w-li", &[HX01]);
    let workers = |s: &Server| s.admin(&["device", "list", "--json"]);
    let before = workers(&server);
    for (args, needle) in [
        (
            &["worker", "add", "--id", "w li", "--name", "x", "--grid", HX01][..],
            "not a worker id",
        ),
        (
            &["worker", "add", "--id", "w-x", "--name", "x", "--grid", "HX-99"],
            "unknown grid cell",
        ),
        (&["worker", "add", "--id", "w-x", "--name", "x"], "at least one --grid"),
        (
            &["worker", "add", "--id", "c", "--name", "x", "--role", "center"],
            "needs --community",
        ),
        (
            &[
                "worker",
                "add",
                "--id",
                "c",
                "--name",
                "x",
                "--role",
                "center",
                "--community",
                "NOWHERE",
            ],
            "unknown community `NOWHERE`",
        ),
        (
            &["worker", "add", "--id", "w-li", "--name", "x", "--grid", HX01],
            "already exists",
        ),
        (&["device", "enroll", "--worker", "w-nobody"], "no worker `w-nobody`"),
        (
            &["device", "enroll", "--worker", "w-li", "--ttl-hours", "0"],
            "--ttl-hours",
        ),
        (&["device", "revoke", "no-such-device"], "no device"),
        (&["token", "create", "--worker", "w-li"], "grid worker"),
        (
            &["export", "--format", "csv", "--community", "NOWHERE"],
            "unknown community",
        ),
        (
            &["reconcile", "--date", "2026-11-20", "--community", "NOWHERE"],
            "unknown community",
        ),
        (
            &["serve", "--listen", "127.0.0.1:0", "--public-url", "ftp://x"],
            "--public-url",
        ),
    ] {
        check(&server, args, 2, needle);
    }
    assert_eq!(workers(&server), before, "a refused command stores nothing");

    // A grid file that does not parse is the operator's mistake too.
    let bad_map = server.data_dir().join("grids-bad.json");
    std::fs::write(&bad_map, "{ not json").unwrap();
    let (code, err) = admin_fails(&server, &["--grid-map", bad_map.to_str().unwrap(), "device", "list"]);
    assert_eq!(
        code, 2,
        "device list reads the grid file for each community's time zone: {err}"
    );
    assert!(err.contains("grids file is not valid"), "{err}");
    let (code, err) = admin_fails(
        &server,
        &[
            "--grid-map",
            bad_map.to_str().unwrap(),
            "reconcile",
            "--date",
            "2026-11-20",
        ],
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_data_dir_that_cannot_be_used_is_a_failure_not_a_mistake() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(server_bin())
        .arg("--data-dir")
        .arg(&file)
        .args(["init"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot create"), "{err}");

    // A database written by a newer version is refused, and left as it was.
    let server = Server::new();
    server.add_worker("w-li", &[HX01]);
    let (sqlite, postgres) = ("PRAGMA user_version = 99", "UPDATE schema_version SET version = 99");
    server.exec(sqlite, postgres).unwrap();
    let (code, err) = admin_fails(&server, &["device", "list"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("newer version"), "{err}");
    let version = match on_postgres() {
        true => "SELECT version FROM schema_version",
        false => "PRAGMA user_version",
    };
    let v: i64 = server.db().query_row(version, [], |r| r.get(0)).unwrap();
    assert_eq!(v, 99);
}

//! The operator's work through the real `sync-server` binary: making a
//! server, refusing a folder that holds none, managing workers (list,
//! update, retire) and devices (labels, local times, codes waiting,
//! revoke by a unique start of the id).

use std::process::Command;

use crate::reconcile::admin_fails;
use crate::*;

/// `sync-server --data-dir DIR ARGS`: exit code, stdout, stderr.
fn run_on(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(server_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("SYNC_SERVER_LOG", "warn")
        .output()
        .expect("sync-server runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn epoch(server: &Server) -> String {
    server
        .db()
        .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_folder_without_a_server_is_refused_and_init_makes_one_once() {
    if sqlite_only("the data dir's own database file; tests/it/postgres.rs checks the same of a database") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let typo = scratch.path().join("sync-dta");
    for args in [
        &["worker", "list"][..],
        &["device", "list"],
        &["serve", "--listen", "127.0.0.1:0"],
        &["reconcile", "--community", "HLT-CX-HX"],
        &["export", "--format", "csv"],
        &["migrate"],
    ] {
        let (code, out, err) = run_on(&typo, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
        assert!(err.contains("holds no server database"), "{args:?}: {err}");
        assert!(err.contains("sync-server init"), "{args:?}: {err}");
        // The message names the folder as an absolute path.
        assert!(err.contains(typo.to_str().unwrap()), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} made the mistyped folder");
    }
    // An empty folder that exists is refused the same way, and left empty.
    let (code, _, err) = run_on(scratch.path(), &["worker", "list"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);

    let server = Server::uninitialised();
    let (code, _, err) = run_on(server.data_dir(), &["init"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("made a new server"), "{err}");
    let first = epoch(&server);
    server.add_worker("w-li", &[HX01]);
    // A second init changes nothing: same epoch, same workers.
    let (code, _, err) = run_on(server.data_dir(), &["init"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds a server database already"), "{err}");
    assert_eq!(epoch(&server), first);
    assert!(server.admin(&["worker", "list"]).contains("w-li"));

    // `serve --init` makes a server where there is none, then serves.
    let mut fresh = Server::uninitialised();
    fresh.start_with(&["--init"]);
    assert!(fresh.data_dir().join("server.sqlite3").is_file());
    let health = reqwest::blocking::get(format!("{}/healthz", fresh.url)).unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn migrate_brings_an_older_database_up_to_date_and_refuses_a_newer_one() {
    if sqlite_only("it rewrites the SQLite file's schema; tests/it/postgres.rs migrates a database") {
        return;
    }
    let server = Server::new();
    let now = sync_server::storage::SCHEMA_VERSION;
    let (code, out, err) = run_on(server.data_dir(), &["migrate"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("schema {now}: up to date").as_str()),
        "{err}"
    );
    // The database as the build before the read model's indexes left it.
    let writable = || rusqlite::Connection::open(server.data_dir().join("server.sqlite3")).unwrap();
    let db = writable();
    for index in [
        "incidents_captured",
        "incidents_received",
        "incidents_status",
        "incidents_captured_any",
    ] {
        db.execute(&format!("DROP INDEX {index}"), []).unwrap();
    }
    db.pragma_update(None, "user_version", now - 1).unwrap();
    drop(db);
    let (code, out, err) = run_on(server.data_dir(), &["migrate"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("schema {} → {now}: 1 migration applied", now - 1));
    let indexes: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'incidents_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(indexes >= 4, "the indexes are back: {indexes}");
    // A database from a newer build is refused and left as it is.
    writable().pragma_update(None, "user_version", now + 1).unwrap();
    let (code, _, err) = run_on(server.data_dir(), &["migrate"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("newer version"), "{err}");
    let kept: i64 = server.db().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, now + 1);
}

#[test]
fn each_role_gets_what_it_needs_and_nothing_it_cannot_use() {
    let server = Server::new();
    for (args, needle) in [
        (
            &["worker", "add", "--id", "w-x", "--name", " ", "--grid", HX01][..],
            "name is empty",
        ),
        (
            &[
                "worker",
                "add",
                "--id",
                "w-x",
                "--name",
                "X",
                "--grid",
                HX01,
                "--community",
                "HLT-CX-HX",
            ],
            "leave out --community",
        ),
        (
            &[
                "worker",
                "add",
                "--id",
                "c",
                "--name",
                "C",
                "--role",
                "center",
                "--community",
                "HLT-CX-HX",
                "--grid",
                HX01,
            ],
            "leave out --grid",
        ),
        (
            &[
                "worker",
                "add",
                "--id",
                "op",
                "--name",
                "O",
                "--role",
                "operator",
                "--community",
                "HLT-CX-HX",
            ],
            "leave out --community",
        ),
    ] {
        let (code, err) = admin_fails(&server, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(server.admin(&["worker", "list", "--json"]), "[]", "nothing was added");
}

#[test]
fn the_operator_lists_changes_and_retires_workers_and_their_records_stay() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01, HX02]);
    server.add_center("center-hx", "HLT-CX-HX");
    server.start();
    let li = Device::new("w-li", &[HX01]);
    li.enroll(&server);
    let id = li.report(&["--category", "manhole-cover", "--grid", HX01, "--desc", "井盖缺了一角"]);
    li.sync(&[]);

    let list = server.admin(&["worker", "list"]);
    assert!(list.contains("w-li") && list.contains("center-hx"), "{list}");
    assert!(list.contains(&format!("{HX01} {HX02}")), "{list}");

    let out = server.admin(&["worker", "update", "w-li", "--name", "李华", "--grid", HX02]);
    assert!(
        out.contains("李华") && out.contains(HX02) && !out.contains(HX01),
        "{out}"
    );
    let workers: Vec<Value> = serde_json::from_str(&server.admin(&["worker", "list", "--json"])).unwrap();
    let w = workers.iter().find(|w| w["id"] == "w-li").unwrap();
    assert_eq!(w["name"], "李华");
    assert_eq!(w["grids"], serde_json::json!([HX02]));
    // A role change must be given what the new role needs.
    let (code, err) = admin_fails(&server, &["worker", "update", "w-li", "--role", "center"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs --community"), "{err}");
    let (code, err) = admin_fails(&server, &["worker", "update", "w-nobody", "--name", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no worker `w-nobody`"), "{err}");

    let out = server.admin(&["worker", "retire", "w-li"]);
    assert!(out.contains("retired"), "{out}");
    let failed = li.run(&["sync", "--retries", "1"]);
    assert!(!failed.status.success(), "a retired worker's device still syncs");
    let (code, err) = admin_fails(&server, &["device", "enroll", "--worker", "w-li"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("retired"), "{err}");
    let (code, err) = admin_fails(&server, &["worker", "update", "w-li", "--name", "x"]);
    assert_eq!(code, 2, "{err}");
    // The record stays, under the worker's name.
    let csv = server.admin(&["export", "--format", "csv", "--community", "HLT-CX-HX"]);
    assert!(csv.contains(&id), "{csv}");
    let list = server.admin(&["worker", "list"]);
    assert!(
        list.lines().last().unwrap().contains("w-li"),
        "retired ones last: {list}"
    );

    let audit = server.admin(&["audit", "--json"]);
    for kind in ["worker-add", "worker-update", "worker-retire"] {
        assert!(audit.contains(kind), "{kind} missing from the audit log: {audit}");
    }
}

#[test]
fn devices_show_names_labels_local_times_and_codes_and_are_revoked_by_a_unique_start() {
    let mut server = Server::new();
    server.admin(&["worker", "add", "--id", "w-li", "--name", "李华", "--grid", HX01]);
    server.add_worker("w-wang", &[HX02]);
    server.start();
    let phone = Device::new("w-li", &[HX01]);
    phone.ok(&["init", "--worker", "w-li", "--label", "李华的手机", "--change"]);
    phone.enroll(&server);
    let tablet = Device::new("w-li", &[HX01]);
    tablet.enroll(&server);
    let _waiting = server.code("w-wang");

    let text = server.admin(&["device", "list"]);
    assert!(text.contains("李华的手机") && text.contains("李华"), "{text}");
    assert!(
        !text.contains("T0") && !text.contains("T1") && !text.contains("T2"),
        "local times, not RFC 3339: {text}"
    );
    assert!(
        text.contains("enrolment codes not used yet") && text.contains("w-wang"),
        "{text}"
    );
    let codes: Vec<Value> = serde_json::from_str(&server.admin(&["device", "codes", "--json"])).unwrap();
    assert_eq!(codes.len(), 1, "{codes:?}");
    assert_eq!(codes[0]["worker"], "w-wang");

    let devices: Vec<Value> = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    let id_of = |label: Option<&str>| -> String {
        devices
            .iter()
            .find(|d| d["label"].as_str() == label)
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (phone_id, tablet_id) = (id_of(Some("李华的手机")), id_of(None));
    // Both ids are UUIDv7 made moments apart: their first characters are the same.
    let common = phone_id
        .chars()
        .zip(tablet_id.chars())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(common >= 4, "{phone_id} {tablet_id}");
    let (code, err) = admin_fails(&server, &["device", "revoke", &phone_id[..common]]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("several devices"), "{err}");
    let unique = &phone_id[..common + 1];
    let out = server.admin(&["device", "revoke", &unique.to_uppercase()]);
    assert!(out.contains(&phone_id) && out.contains("李华"), "{out}");
    assert!(!phone.run(&["sync", "--retries", "1"]).status.success());
    tablet.sync(&[]);
}

#[test]
fn a_device_label_the_rule_refuses_is_400_and_uses_up_nothing() {
    use sync_core::protocol::{self, EnrollRequest, PROTOCOL_VERSION};
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01]);
    server.start();
    let code = server.code("w-li");
    let send = |label: &str| {
        let req = EnrollRequest {
            version: PROTOCOL_VERSION,
            code: code.clone(),
            worker: "w-li".into(),
            device: uuid::Uuid::now_v7().to_string(),
            public_key: Some(vec![7; 32].into()),
            label: Some(label.into()),
        };
        reqwest::blocking::Client::new()
            .post(format!("{}/v1/enroll", server.url))
            .body(protocol::encode(&req))
            .send()
            .unwrap()
    };
    for bad in ["", "   ", "bell\u{7}", &"长".repeat(65)] {
        let resp = send(bad);
        assert_eq!(resp.status(), 400, "{bad:?}");
        assert!(resp.text().unwrap().contains("device label"), "{bad:?}");
    }
    // The code was not used up: the same code enrols with a fine label.
    assert_eq!(send("  李华的手机 ").status(), 200);
    let devices: Vec<Value> = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["label"], "李华的手机");
}

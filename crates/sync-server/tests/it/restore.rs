//! A server restored from an older copy of its data dir (the last backup,
//! after a disk failure) gets back from the devices everything it lost, and
//! no device loses anything.
//!
//! The devices notice the restore by their feed cursor: the restored server
//! has another change at the cursor's seq, or none. They then offer it every
//! incident and photo again (the reset path), and incidents whose changes
//! build on another device's lost changes wait until that device has synced.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::*;

/// Stops the server, copies its whole data dir (and database), and starts it again.
fn backup(server: &mut Server) -> Backup {
    server.kill();
    let copy = server.backup();
    server.start();
    copy
}

/// Stops the server, puts the backup in place, and starts it again on the same port.
fn restore(server: &mut Server, backup: &Backup) {
    server.kill();
    server.restore(backup);
    server.start();
}

/// What a worker sees of each incident: status moves, notes, photos.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    history: usize,
    notes: BTreeSet<String>,
    photos: BTreeSet<String>,
}

fn seen(dev: &Device) -> BTreeMap<String, Seen> {
    dev.list()
        .iter()
        .map(|row| {
            let id = row["id"].as_str().unwrap().to_owned();
            let inc = dev.show(&id);
            let texts = |key: &str, field: &str| -> BTreeSet<String> {
                inc[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v[field].as_str().unwrap().to_owned())
                    .collect()
            };
            let s = Seen {
                history: inc["status_history"].as_array().unwrap().len(),
                notes: texts("notes", "text"),
                photos: texts("photos", "original"),
            };
            (id, s)
        })
        .collect()
}

/// Nothing the device showed before is gone now.
#[track_caller]
fn assert_nothing_lost(dev: &Device, before: &BTreeMap<String, Seen>) -> BTreeMap<String, Seen> {
    let now = seen(dev);
    assert!(
        now.len() >= before.len(),
        "{} went from {} incidents to {}",
        dev.worker,
        before.len(),
        now.len()
    );
    for (id, was) in before {
        let is = now
            .get(id)
            .unwrap_or_else(|| panic!("{} lost incident {id}", dev.worker));
        assert!(is.history >= was.history, "{}: {id} lost a status move", dev.worker);
        assert!(is.notes.is_superset(&was.notes), "{}: {id} lost a note", dev.worker);
        assert!(is.photos.is_superset(&was.photos), "{}: {id} lost a photo", dev.worker);
    }
    now
}

fn converged(server: &Server, devices: &[&Device]) -> bool {
    let on_server = server_heads(server);
    devices.iter().all(|d| {
        let st = d.status();
        d.heads() == on_server && st["unsynced_incidents"] == 0 && st["unsynced_blobs"] == 0
    })
}

fn ids_of(heads: &[(String, Vec<u8>)]) -> Vec<&str> {
    heads.iter().map(|(id, _)| id.as_str()).collect()
}

fn restored_server_gets_everything_back(a_first: bool) {
    let mut server = Server::new();
    server.add_worker("w-a", &[HX02]);
    server.add_worker("w-b", &[HX02]);
    server.start();
    let a = Device::new("w-a", &[HX02]);
    let b = Device::new("w-b", &[HX02]);
    a.enroll(&server);
    b.enroll(&server);

    // What the backup holds.
    let x = a.report(&["--category", "manhole-cover", "--photo", &fixture("manhole-exif.jpg")]);
    let q = b.report(&["--category", "clutter", "--photo", &fixture("wide-2400x1000.jpg")]);
    a.sync(&[]);
    b.sync(&[]);
    a.sync(&[]);
    let old = backup(&mut server);

    // What the restore loses: new incidents and photos, and edits that
    // build on one another across the two devices.
    let dir = tempfile::tempdir().unwrap();
    let y_photo = dir.path().join("y.jpg");
    std::fs::write(&y_photo, noise_jpeg(800, 600, 7, 80)).unwrap();
    let y = a.report(&["--category", "road-surface", "--photo", y_photo.to_str().unwrap()]);
    a.ok(&["update", &q, "--status", "resolved"]);
    a.sync(&[]);
    b.sync(&[]);
    b.ok(&[
        "update",
        &y,
        "--note",
        "road closed for repair",
        "--photo",
        &fixture("curb.png"),
    ]);
    b.ok(&["update", &x, "--note", "cover still loose"]);
    b.sync(&[]);
    a.sync(&[]);
    let z = a.report(&["--category", "lawn", "--desc", "after the backup"]);
    a.sync(&[]);
    let mut seen_a = seen(&a);
    let mut seen_b = seen(&b);
    assert_eq!(seen_a.len(), 4);
    assert_eq!(seen_b.len(), 3, "B has not pulled z yet");

    restore(&mut server, &old);
    let on_server = server_heads(&server);
    assert!(
        !ids_of(&on_server).contains(&y.as_str()) && !ids_of(&on_server).contains(&z.as_str()),
        "the restored server still has the newer incidents"
    );

    // Both devices sync, alternating, until all agree.
    let order = if a_first { [&a, &b] } else { [&b, &a] };
    let mut syncs: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut done = false;
    for dev in order.iter().cycle().take(6) {
        let summary = dev.sync(&[]);
        syncs.entry(dev.worker.as_str()).or_default().push(summary);
        seen_a = assert_nothing_lost(&a, &seen_a);
        seen_b = assert_nothing_lost(&b, &seen_b);
        if converged(&server, &[&a, &b]) {
            done = true;
            break;
        }
    }
    for (who, s) in &syncs {
        eprintln!("{who}: {} syncs after the restore: {s:?}", s.len());
    }
    assert!(
        done,
        "the devices and the restored server did not converge in 3 syncs each"
    );
    for (who, s) in &syncs {
        assert!(
            s[0]["resets"].as_u64().unwrap() >= 1,
            "{who} did not notice the restore: {}",
            s[0]
        );
    }

    // Everyone holds everything, the lost edits included.
    assert_same_heads(&server, &[&a, &b]);
    assert_eq!(server_heads(&server).len(), 4);
    for id in [&x, &q, &y, &z] {
        assert_eq!(a.show(id), b.show(id), "A and B show {id} differently");
    }
    assert_eq!(a.show(&q)["status"], "resolved");
    let yi = a.show(&y);
    assert_eq!(yi["notes"][0]["text"], "road closed for repair");
    assert_eq!(yi["photos"].as_array().unwrap().len(), 2);
    assert_eq!(a.show(&x)["notes"][0]["text"], "cover still loose");
    assert_eq!(b.show(&z)["description"], "after the backup");
    assert_eq!(assert_server_photos_whole(&server), 12, "4 photos × 3 files");
    for dev in [&a, &b] {
        assert_device_photos_on_server(&server, dev);
    }
    assert_server_feed_consistent(&server);
    assert_sqlite_sound(&server.db(), "server");
}

#[test]
fn a_restored_server_gets_everything_back_when_the_author_syncs_first() {
    restored_server_gets_everything_back(true);
}

#[test]
fn a_restored_server_gets_everything_back_when_the_editor_syncs_first() {
    restored_server_gets_everything_back(false);
}

/// A device that only pulls, whose cursor the restored feed happens to
/// reuse: after the restore, E logs a new incident (feed seq M+1), then B
/// pushes again the one change it had pushed after the backup, which lands
/// at seq M+2 exactly as before. The center's cursor is (M+2, that change),
/// so the server finds it valid and pages on from M+2, past E's incident.
#[test]
fn a_pull_only_device_gets_what_the_restored_feed_put_below_its_cursor() {
    let mut server = Server::new();
    for w in ["w-a", "w-b", "w-e"] {
        server.add_worker(w, &[HX02]);
    }
    server.add_worker("w-center", &[HX01, HX02]);
    server.start();
    let a = Device::new("w-a", &[HX02]);
    let b = Device::new("w-b", &[HX02]);
    let e = Device::new("w-e", &[HX02]);
    let center = Device::new("w-center", &[HX01, HX02]);
    for d in [&a, &b, &e, &center] {
        d.enroll(&server);
    }

    let x = a.report(&["--category", "lawn"]);
    for d in [&a, &b, &e, &center] {
        d.sync(&[]);
    }
    let old = backup(&mut server);

    // After the backup: A's note (seq M+1), B's note (seq M+2); the center
    // pulls both, so its cursor is (M+2, B's note).
    a.ok(&["update", &x, "--note", "from A"]);
    a.sync(&[]);
    b.ok(&["update", &x, "--note", "from B"]);
    b.sync(&[]);
    center.sync(&[]);
    assert_eq!(center.show(&x)["notes"].as_array().unwrap().len(), 2);

    restore(&mut server, &old);
    let w = e.report(&["--category", "clutter", "--desc", "logged after the restore"]);
    e.sync(&[]);
    b.sync(&[]);
    a.sync(&[]);
    // How it happens: the center's cursor names the change the restored
    // feed again holds at that seq, and E's incident sits below it.
    let state: Value = serde_json::from_str(
        &center
            .db()
            .query_row("SELECT value FROM meta WHERE key = 'sync'", [], |r| {
                r.get::<_, String>(0)
            })
            .unwrap(),
    )
    .unwrap();
    // The cursor is stored as the pair [seq, hash].
    let seq = state["cursor"][0].as_i64().expect("the center has a cursor");
    let cursor_hash: Vec<u8> = serde_json::from_value(state["cursor"][1].clone()).unwrap();
    let db = server.db();
    let at_seq: Vec<u8> = db
        .query_row("SELECT hash FROM changes WHERE seq = ?1", [seq], |r| r.get(0))
        .unwrap();
    let w_seq: i64 = db
        .query_row("SELECT min(seq) FROM changes WHERE incident_id = ?1", [&w], |r| {
            r.get(0)
        })
        .unwrap();
    eprintln!(
        "center's cursor: seq {seq}, the change there {}; E's incident at seq {w_seq}",
        if at_seq.starts_with(&cursor_hash) {
            "matches"
        } else {
            "differs"
        }
    );
    assert!(w_seq < seq, "the scenario needs E's incident below the center's cursor");
    drop(db);
    let pulled = center.sync(&[]);
    eprintln!("center after the restore: {pulled}");
    assert!(
        center.list().iter().any(|i| i["id"] == w.as_str()),
        "the center never receives E's incident {w}"
    );

    for d in [&b, &a, &e, &center] {
        d.sync(&[]);
    }
    assert_same_heads(&server, &[&a, &b, &e, &center]);
}

/// `docs/protocol.md`, signed changes: after a restore, a colleague's
/// device brings back the changes of an author whose device is gone, with
/// the author's signatures; changes of a device the restored server does
/// not know wait in quarantine until the operator accepts them.
#[test]
fn a_restored_server_takes_back_a_lost_devices_changes_from_a_colleague() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.add_worker("w-wang", &[HX02]);
    server.add_worker("w-zhao", &[HX02]);
    server.add_worker("w-sun", &[HX02]);
    server.admin(&["worker", "add", "--id", "op", "--name", "运维", "--role", "operator"]);
    server.start();
    let li = Device::new("w-li", &[HX02]);
    let wang = Device::new("w-wang", &[HX02]);
    li.enroll(&server);
    wang.enroll(&server);
    let old = backup(&mut server);

    // After the backup: Li reports; Zhao's device is enrolled and reports.
    let lis = li.report(&["--category", "manhole-cover", "--desc", "李的井盖"]);
    li.ok(&["update", &lis, "--note", "已拍照"]);
    assert_eq!(li.sync(&[])["acknowledged"], 1);
    let zhao = Device::new("w-zhao", &[HX02]);
    zhao.enroll(&server);
    let zhaos = zhao.report(&["--category", "lawn"]);
    assert_eq!(zhao.sync(&[])["acknowledged"], 1);
    let sun = Device::new("w-sun", &[HX02]);
    sun.enroll(&server);
    let suns = sun.report(&["--category", "clutter", "--desc", "测试用，作废"]);
    assert_eq!(sun.sync(&[])["acknowledged"], 1);
    assert_eq!(wang.sync(&[])["new_incidents"], 3);

    // The disk fails; the backup comes back. Li's, Zhao's and Sun's phones are lost.
    restore(&mut server, &old);
    drop((li, zhao, sun));
    let synced = wang.sync(&[]);
    assert!(synced["resets"].as_u64().unwrap() >= 1, "{synced}");
    let on_server: Vec<String> = server_heads(&server).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        on_server,
        std::slice::from_ref(&lis),
        "Li's incident is back, by Li's signatures"
    );
    let back = crate::exports::get(&server, "/v1/exports/incidents.json", Some(&server.token("op")));
    let inc = back.json().as_array().unwrap()[0].clone();
    assert_eq!(
        (inc["reporter"].as_str(), inc["notes"].as_array().map(Vec::len)),
        (Some("w-li"), Some(1))
    );

    // Zhao's device is unknown to the restored server: its change waits.
    let listed = server.admin(&["quarantine", "list"]);
    assert!(listed.contains(&zhaos) && listed.contains("relayed change"), "{listed}");
    let item_of = |incident: &str| {
        let line = listed.lines().find(|l| l.contains(incident)).unwrap();
        line.split_whitespace().next().unwrap().to_owned()
    };
    server.admin(&["quarantine", "accept", &item_of(&zhaos), "--as", "w-zhao"]);
    let audited = server.admin(&["audit", "--kind", "quarantine-accept", "--json"]);
    assert!(
        audited.contains("\"w-zhao\"") && audited.contains("\"local\""),
        "{audited}"
    );
    let on_server: Vec<String> = server_heads(&server).into_iter().map(|(id, _)| id).collect();
    assert!(on_server.contains(&zhaos), "{on_server:?}");
    assert!(!server.admin(&["quarantine", "list"]).contains(&zhaos));

    // Sun's report was a test: the operator drops it, and the log says so.
    let dropped = item_of(&suns);
    server.admin(&["quarantine", "drop", &dropped]);
    let audited = server.admin(&["audit", "--kind", "quarantine-drop", "--json"]);
    assert!(
        audited.contains(&format!("quarantined item {dropped} dropped")) && audited.contains("\"local\""),
        "{audited}"
    );
    assert!(!server.admin(&["quarantine", "list"]).contains(&suns));
    let on_server: Vec<String> = server_heads(&server).into_iter().map(|(id, _)| id).collect();
    assert!(!on_server.contains(&suns), "{on_server:?}");
    assert_server_feed_consistent(&server);
}

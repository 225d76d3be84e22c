//! The manifest each device sends: the server can tell whether it holds
//! everything a device logged, and what the device still has waiting,
//! including when the device only reports (`field sync --manifest-only`)
//! and after the server was restored from an older copy.

use serde_json::Value;

use crate::*;

const CELL: &str = "HLT-CX-HX-01";

/// The `sync` object of the device's row in `sync-server device list --json`.
pub fn sync_row(server: &Server, dev: &Device) -> Value {
    let device_id = dev.status()["profile"]["device"]
        .as_str()
        .expect("status names the device")
        .to_owned();
    let rows: Vec<Value> = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    rows.into_iter()
        .find(|r| r["id"] == device_id.as_str())
        .unwrap_or_else(|| panic!("device {device_id} is listed"))["sync"]
        .clone()
}

fn server_incidents(server: &Server) -> i64 {
    server
        .db()
        .query_row("SELECT count(*) FROM incidents", [], |r| r.get(0))
        .unwrap()
}

/// A running server with worker `w1` and one enrolled device of theirs.
fn enrolled() -> (Server, Device) {
    let mut server = Server::new();
    server.add_worker("w1", &[CELL]);
    server.start();
    let dev = Device::new("w1", &[CELL]);
    dev.enroll(&server);
    (server, dev)
}

#[test]
fn the_server_knows_whether_a_device_is_in_step() {
    let (server, dev) = enrolled();
    assert_eq!(
        sync_row(&server, &dev),
        Value::Null,
        "no manifest before the first sync"
    );

    let photo = fixture("manhole-exif.jpg");
    dev.report(&["--category", "manhole-cover", "--photo", &photo]);
    dev.report(&["--category", "clutter"]);
    let summary = dev.sync(&[]);
    assert_eq!(summary["in_step"], true, "{summary}");
    let row = sync_row(&server, &dev);
    assert_eq!(row["in_step"], true, "{row}");
    assert_eq!(
        (row["device_own"].as_u64(), row["server_own"].as_u64()),
        (Some(2), Some(2))
    );

    // Two more, and only the manifest goes up: nothing is pushed.
    dev.report(&["--category", "lawn"]);
    dev.report(&["--category", "tree-missing"]);
    let only = dev.sync(&["--manifest-only"]);
    assert_eq!(only["in_step"], false, "{only}");
    assert_eq!(
        (only["own"].as_u64(), only["server_own"].as_u64()),
        (Some(4), Some(2)),
        "{only}"
    );
    assert_eq!(only["pending_docs"], 2, "{only}");
    assert_eq!(server_incidents(&server), 2, "a manifest-only sync pushes nothing");
    let row = sync_row(&server, &dev);
    assert_eq!(row["in_step"], false, "{row}");
    assert_eq!(
        (row["pending_docs"].as_u64(), row["pending_photos"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(
        (row["device_own"].as_u64(), row["server_own"].as_u64()),
        (Some(4), Some(2))
    );

    // Records only: the photos still wait, so not in step.
    dev.report(&["--category", "curb-stone", "--photo", &fixture("curb.png")]);
    let summary = dev.sync(&["--photos", "none"]);
    assert_eq!(
        summary["round_trips"], 1,
        "no photo moved, so no closing manifest: {summary}"
    );
    let row = sync_row(&server, &dev);
    assert_eq!(
        (row["pending_docs"].as_u64(), row["pending_photos"].as_u64()),
        (Some(0), Some(3)),
        "{row}"
    );
    assert_eq!(
        (row["device_own"].as_u64(), row["server_own"].as_u64()),
        (Some(5), Some(5))
    );

    dev.sync(&[]);
    assert_eq!(sync_row(&server, &dev)["in_step"], true);

    // A sync with nothing to move sends no extra manifest round trip.
    let noop = dev.sync(&[]);
    assert_eq!(
        (noop["round_trips"].as_u64(), noop["in_step"].clone()),
        (Some(1), Value::Null),
        "{noop}"
    );
}

#[test]
fn a_restored_server_sees_the_device_out_of_step_until_it_syncs() {
    let (mut server, dev) = enrolled();
    dev.report(&["--category", "clutter"]);
    let summary = dev.sync(&[]);
    // No photo: the one round trip's manifest already counts its push as done.
    assert_eq!(summary["round_trips"], 1, "{summary}");
    assert_eq!(sync_row(&server, &dev)["in_step"], true);

    server.kill();
    let backup = server.backup();
    server.start();
    dev.report(&["--category", "lawn"]);
    dev.sync(&[]);

    // Back to the copy that lacks the second incident.
    server.kill();
    server.restore(&backup);
    server.start();

    // The device has nothing pending, yet the server lacks one of its incidents.
    let only = dev.sync(&["--manifest-only"]);
    assert_eq!(
        (only["pending_docs"].as_u64(), only["in_step"].clone()),
        (Some(0), Value::Bool(false)),
        "{only}"
    );
    assert_eq!(
        (only["own"].as_u64(), only["server_own"].as_u64()),
        (Some(2), Some(1)),
        "{only}"
    );

    dev.sync(&[]);
    let row = sync_row(&server, &dev);
    assert_eq!(row["in_step"], true, "{row}");
    assert_eq!(server_incidents(&server), 2);
}

/// The device's clock offset as the server holds it.
fn held_offset(server: &Server) -> Option<i64> {
    server
        .db()
        .query_row("SELECT clock_offset_ms FROM devices WHERE kind = 'device'", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[test]
fn a_sync_repeats_nothing_the_server_holds_and_a_server_that_lost_it_asks() {
    let (server, dev) = enrolled();
    dev.report(&["--category", "clutter"]);
    dev.sync(&[]);
    dev.sync(&[]);
    let offset = held_offset(&server);
    assert!(offset.is_some(), "the first syncs leave a clock offset");

    // Neither the own digest nor an offset within a second is sent again,
    // and what the server holds stays.
    let noop = dev.sync(&[]);
    assert_eq!(noop["round_trips"], 1, "{noop}");
    let row = sync_row(&server, &dev);
    assert_eq!(row["in_step"], true, "{row}");
    assert_eq!(
        (row["device_own"].as_u64(), row["server_own"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(held_offset(&server).is_some());

    // A server whose record of the device has no manifest (as a database
    // from before manifests holds it) asks for the digest, and gets it in
    // the same sync.
    let clear = "UPDATE devices SET manifest = NULL WHERE kind = 'device'";
    server.exec(clear, clear).unwrap();
    let asked = dev.sync(&[]);
    assert_eq!(
        asked["round_trips"], 2,
        "one more round trip carries the digest: {asked}"
    );
    let row = sync_row(&server, &dev);
    assert_eq!(row["in_step"], true, "{row}");
    assert_eq!(
        (row["device_own"].as_u64(), row["server_own"].as_u64()),
        (Some(1), Some(1))
    );
}

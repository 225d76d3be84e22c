//! Edits made offline on two devices to the same incident reach every
//! device and the server whole, whatever order the devices sync in: A moves
//! the incident to `resolved` (fixed on the spot) while B adds a note and a photo.

use serde_json::Value;

use crate::*;

const NOTE: &str = "cover replaced with a temporary plate; 井盖已临时覆盖";

struct World {
    server: Server,
    a: Device,
    b: Device,
    /// A worker over both cells, like a community center: it only pulls.
    center: Device,
}

fn world() -> World {
    let mut server = Server::new();
    server.add_worker("w-a", &[HX02]);
    server.add_worker("w-b", &[HX02]);
    server.add_worker("w-center", &[HX01, HX02]);
    server.start();
    let a = Device::new("w-a", &[HX02]);
    let b = Device::new("w-b", &[HX02]);
    let center = Device::new("w-center", &[HX01, HX02]);
    for d in [&a, &b, &center] {
        d.enroll(&server);
    }
    World { server, a, b, center }
}

#[derive(Debug, Clone, Copy)]
enum Who {
    A,
    B,
}

fn ids(dev: &Device) -> Vec<String> {
    let mut ids: Vec<String> = dev
        .list()
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn originals(incident: &Value) -> Vec<String> {
    let mut o: Vec<String> = incident["photos"]
        .as_array()
        .expect("photos")
        .iter()
        .map(|p| p["original"].as_str().expect("original").to_owned())
        .collect();
    o.sort();
    o
}

fn concurrent_edits_converge(order: [Who; 3]) {
    let w = world();
    let (a, b, center) = (&w.a, &w.b, &w.center);
    let manhole = fixture("manhole-exif.jpg");
    let curb = fixture("curb.png");
    let wide = fixture("wide-2400x1000.jpg");

    // Offline, each worker logs incidents of their own.
    let shared = a.report(&[
        "--category",
        "manhole-cover",
        "--desc",
        "cover cracked at gate 3",
        "--photo",
        &manhole,
    ]);
    let a_own = a.report(&["--category", "lawn"]);
    let b_own = b.report(&["--category", "illegal-parking", "--desc", "van on the sidewalk"]);
    let b_photo = b.report(&["--category", "clutter", "--photo", &wide]);

    // A's incidents reach B.
    assert_eq!(a.sync(&[])["acknowledged"], 2);
    let pulled = b.sync(&[]);
    assert_eq!(pulled["new_incidents"], 2, "B pulls A's two incidents: {pulled}");
    assert_eq!(b.show(&shared)["status"], "reported");

    // Offline again, both edit the shared incident.
    a.ok(&["update", &shared, "--status", "resolved"]);
    b.ok(&["update", &shared, "--note", NOTE, "--photo", &curb]);
    for who in order {
        match who {
            Who::A => a.sync(&[]),
            Who::B => b.sync(&[]),
        };
    }
    let pulled = center.sync(&[]);
    assert_eq!(pulled["new_incidents"], 4, "the center pulls every incident: {pulled}");

    // Every device and the server hold the same four incidents, at the same heads.
    let mut all = vec![shared.clone(), a_own, b_own, b_photo];
    all.sort();
    for dev in [a, b, center] {
        assert_eq!(ids(dev), all, "{}'s list", dev.worker);
    }
    assert_same_heads(&w.server, &[a, b, center]);
    for id in &all {
        let seen = a.show(id);
        assert_eq!(b.show(id), seen, "B shows {id} otherwise than A");
        assert_eq!(center.show(id), seen, "the center shows {id} otherwise than A");
    }

    // Both edits survived the merge.
    let inc = a.show(&shared);
    assert_eq!(inc["status"], "resolved");
    assert!(inc.get("status_conflicts").is_none(), "no conflict: {inc}");
    let history = inc["status_history"].as_array().expect("history");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1]["from"], "reported");
    assert_eq!(history[1]["to"], "resolved");
    assert_eq!(history[1]["by"], "w-a");
    let notes = inc["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["text"], NOTE);
    assert_eq!(notes[0]["author"], "w-b");
    let hash_of = |path: &str| blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string();
    let mut expected = vec![hash_of(&manhole), hash_of(&curb)];
    expected.sort();
    assert_eq!(originals(&inc), expected, "photos of the shared incident");
    let by_b = inc["photos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["original"] == hash_of(&curb).as_str())
        .unwrap();
    assert_eq!(by_b["added_by"], "w-b");

    // What the center's dashboard reads.
    let status: String = w
        .server
        .db()
        .query_row("SELECT status FROM incidents WHERE id = ?1", [&shared], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "resolved");

    // Photos are whole on the server, and each device can look at every
    // incident's thumbnails offline.
    assert_eq!(assert_server_photos_whole(&w.server), 9, "3 photos × 3 files");
    assert_server_feed_consistent(&w.server);
    for dev in [a, b] {
        assert_device_photos_on_server(&w.server, dev);
    }
    for dev in [a, b, center] {
        for id in &all {
            for p in dev.show(id)["photos"].as_array().unwrap() {
                let thumb = p["thumb"].as_str().unwrap();
                let path = dev.dir.path().join("blobs").join(&thumb[..2]).join(thumb);
                assert!(path.is_file(), "{} lacks the thumbnail of a photo of {id}", dev.worker);
            }
        }
        let st = dev.status();
        assert_eq!(st["unsynced_incidents"], 0, "{}: {st}", dev.worker);
        assert_eq!(st["unsynced_blobs"], 0, "{}: {st}", dev.worker);
        // Nothing is left in flight.
        let again = dev.sync(&[]);
        assert_eq!(again["pulled_changes"], 0, "{}: {again}", dev.worker);
        assert_eq!(again["pushed"], 0, "{}: {again}", dev.worker);
    }
    assert_same_heads(&w.server, &[a, b, center]);
}

#[test]
fn concurrent_status_and_note_converge_when_a_syncs_first() {
    concurrent_edits_converge([Who::A, Who::B, Who::A]);
}

#[test]
fn concurrent_status_and_note_converge_when_b_syncs_first() {
    concurrent_edits_converge([Who::B, Who::A, Who::B]);
}

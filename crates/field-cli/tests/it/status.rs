//! `field status`: counts by status and what still waits for a sync.

use serde_json::json;

use crate::{Device, HX01, WORKER, fixture, s};

#[test]
fn status_counts_by_status_and_what_waits_for_sync() {
    let dev = Device::setup();
    let empty = dev.json(["status", "--json"]);
    assert_eq!(s(&empty, "data_dir"), dev.path().to_str().unwrap());
    assert_eq!(empty["profile"]["worker"], WORKER);
    assert_eq!(empty["profile"]["grids"], json!([HX01]));
    assert_eq!(empty["total"], 0);
    assert_eq!(empty["by_status"], json!([]));
    assert_eq!(empty["unsynced_incidents"], 0);
    assert_eq!(empty["photo_blobs"], 0);
    assert_eq!(empty["unsynced_blobs"], 0);
    assert_eq!(empty["last_sync"], serde_json::Value::Null);

    let a = dev.report(&["--category", "lawn", "--photo", &fixture("rotated-exif6.jpg")]);
    dev.report(&["--category", "lawn"]);
    let c = dev.report(&["--category", "other"]);
    dev.ok(["update", &a, "--status", "dispatched"]);
    dev.ok(["update", &c, "--status", "rejected"]);
    dev.report(&["--category", "clutter"]);

    let st = dev.json(["status", "--json"]);
    assert_eq!(st["total"], 4);
    assert_eq!(
        st["by_status"],
        json!([["reported", 2], ["dispatched", 1], ["rejected", 1]])
    );
    assert_eq!(st["unsynced_incidents"], 4);
    assert_eq!(st["photo_blobs"], 1);
    assert_eq!(st["unsynced_blobs"], 3);

    let text = dev.ok(["status"]);
    let device = s(&st["profile"], "device");
    for want in [
        format!("worker     {WORKER}\n"),
        format!("device     {device}\n"),
        format!("grid cells {HX01}\n"),
        format!("data dir   {}\n", dev.path().display()),
        "incidents  4\n".into(),
        "unsynced   4 incidents, 3 photo files\n".into(),
        "last sync  never\n".into(),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }
    for (status, n, zh) in [
        ("reported", 2, "已上报"),
        ("dispatched", 1, "已派遣"),
        ("rejected", 1, "不予受理"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(status))
            .unwrap_or_else(|| panic!("no {status} line in:\n{text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words, [status, &n.to_string(), zh], "{line:?}");
    }
    assert!(!text.contains("closed"), "{text}");
}

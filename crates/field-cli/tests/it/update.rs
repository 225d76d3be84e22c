//! `field update`: status changes along the workflow, notes, photos added
//! later, and refusals that leave the incident as it was.

use serde_json::Value;

use crate::{Device, WORKER, fixture, s};

/// (from, to) of each history entry.
fn history(incident: &Value) -> Vec<(Option<String>, String)> {
    incident["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(s(h, "by"), WORKER);
            (h["from"].as_str().map(str::to_owned), s(h, "to").to_owned())
        })
        .collect()
}

fn step(from: Option<&str>, to: &str) -> (Option<String>, String) {
    (from.map(str::to_owned), to.to_owned())
}

#[test]
fn status_moves_along_the_workflow_and_history_grows() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "road-surface"]);
    assert_eq!(history(&dev.show(&id)), [step(None, "reported")]);

    let out = dev
        .field(["update", &id[..13], "--status", "dispatched"])
        .success()
        .stdout("");
    let said = crate::stderr(&out);
    assert!(said.contains(&format!("updated {id}: dispatched")), "{said}");
    let i = dev.show(&id);
    assert_eq!(s(&i, "status"), "dispatched");
    assert_eq!(
        history(&i),
        [step(None, "reported"), step(Some("reported"), "dispatched")]
    );

    dev.ok(["update", &id, "--status", "in_progress"]);
    let i = dev.show(&id);
    assert_eq!(s(&i, "status"), "in_progress");
    assert_eq!(
        history(&i),
        [
            step(None, "reported"),
            step(Some("reported"), "dispatched"),
            step(Some("dispatched"), "in_progress"),
        ]
    );
    assert_eq!(s(&dev.list(&[])[0], "status"), "in_progress");
    assert!(dev.ok(["list"]).contains("处置中 in_progress"));

    // The rest of the way to closed.
    for to in ["resolved", "verified", "closed"] {
        dev.ok(["update", &id, "--status", to]);
    }
    let i = dev.show(&id);
    assert_eq!(s(&i, "status"), "closed");
    assert_eq!(history(&i).len(), 6);
}

#[test]
fn a_move_the_workflow_forbids_changes_nothing() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "road-surface"]);
    let before = dev.show(&id);
    dev.fails(
        [
            "update",
            &id,
            "--status",
            "closed",
            "--note",
            "done",
            "--photo",
            &fixture("curb.png"),
        ],
        1,
        &[
            "cannot move an incident from `reported` to `closed`",
            "it can go to: dispatched, in_progress, resolved, rejected, duplicate",
        ],
    );
    assert_eq!(dev.show(&id), before);
    assert!(dev.blob_files().is_empty());

    // Nothing leaves a final status.
    dev.ok(["update", &id, "--status", "rejected"]);
    let rejected = dev.show(&id);
    dev.fails(
        ["update", &id, "--status", "dispatched"],
        1,
        &["from `rejected`", "nothing (it is final)"],
    );
    dev.fails(["update", &id, "--status", "rejected"], 1, &["from `rejected`"]);
    assert_eq!(dev.show(&id), rejected);
}

#[test]
fn notes_are_added_in_order() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "house-leak"]);
    dev.ok(["update", &id, "--note", "楼上住户不在家"]);
    dev.ok(["update", &id, "--note", "second visit: fixed"]);
    let i = dev.show(&id);
    let notes: Vec<(&str, &str)> = i["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (s(n, "author"), s(n, "text")))
        .collect();
    assert_eq!(notes, [(WORKER, "楼上住户不在家"), (WORKER, "second visit: fixed")]);
    assert_eq!(s(&i, "status"), "reported", "a note alone leaves the status");
    assert_eq!(dev.list(&[])[0]["notes"], 2);
}

/// `docs/data-model.md`, limits: an edit the server would refuse forever is
/// refused on the device, in a sentence, and nothing is stored.
#[test]
fn an_edit_over_a_limit_is_refused_and_nothing_is_stored() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "house-leak"]);
    let before = dev.show(&id);
    let long = "漏".repeat(3_000); // 9,000 bytes of UTF-8
    dev.fails(
        ["update", &id, "--note", &long],
        1,
        &["a note is 9000 bytes; the limit is 8192"],
    );
    assert_eq!(dev.show(&id), before);
    dev.fails(
        ["report", "--category", "lawn", "--desc", &long],
        1,
        &["the description is 9000 bytes; the limit is 8192"],
    );
    assert_eq!(dev.list(&[]).len(), 1, "the over-long report is not stored");
}

#[test]
fn a_photo_can_be_added_later() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "tree-missing"]);
    let path = fixture("rotated-exif6.jpg");
    dev.ok(["update", &id, "--photo", &path]);
    let i = dev.show(&id);
    let photos = i["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 1);
    let original = s(&photos[0], "original");
    assert_eq!(dev.blob(original), std::fs::read(&path).unwrap());
    assert_eq!(dev.blob_files().len(), 3);
    assert_eq!(dev.list(&[])[0]["photos"], 1);

    // A bad photo spoils the whole update, the note with it.
    let before = dev.show(&id);
    let blobs = dev.blob_files();
    let bad = fixture("not-an-image.jpg");
    dev.fails(
        [
            "update",
            &id,
            "--note",
            "more",
            "--photo",
            &fixture("curb.png"),
            "--photo",
            &bad,
        ],
        1,
        &[&bad, "not a JPEG or PNG"],
    );
    assert_eq!(dev.show(&id), before);
    assert_eq!(dev.blob_files(), blobs);
    dev.ok(["status"]);
    assert!(dev.staging().is_empty());
}

#[test]
fn update_refuses_bad_arguments() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "lawn"]);
    let before = dev.show(&id);
    #[rustfmt::skip]
    let usage: &[(&[&str], &[&str])] = &[
        (&["update", &id], &["nothing to change; give --status, --note or --photo"]),
        (&["update", &id, "--status", "done"], &["unknown status `done`", "in_progress"]),
        (&["update", &id, "--note", "  "], &["--note is empty"]),
        (&["update"], &["<ID>"]),
    ];
    for (args, needles) in usage {
        dev.fails(*args, 2, needles);
    }
    dev.fails(
        ["update", "ffffffff", "--note", "x"],
        1,
        &["no incident matches `ffffffff`"],
    );
    assert_eq!(dev.show(&id), before);
}

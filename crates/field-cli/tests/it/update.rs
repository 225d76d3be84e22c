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
        2,
        &["--note is 3000 characters (9000 bytes); the limit is 8192 bytes"],
    );
    assert_eq!(dev.show(&id), before);
    dev.fails(
        ["report", "--category", "lawn", "--desc", &long],
        2,
        &["--desc is 3000 characters (9000 bytes); the limit is 8192 bytes"],
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
        (&["update", &id], &["nothing to change; give --status, --note, --photo, or a correction"]),
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

#[test]
fn corrections_are_kept_in_the_history_and_bad_ones_store_nothing() {
    let dev = Device::init(&[crate::HX01, crate::HX02]);
    let mut args = vec!["--category", "lawn", "--desc", "草坪", "--grid", crate::HX02];
    args.extend(crate::IN_HX02);
    let id = dev.report(&args);
    let stderr = dev
        .field([
            "update",
            &id,
            "--category",
            "井盖破损",
            "--desc",
            "其实是井盖",
            "--address",
            "鹤乡路12号",
        ])
        .success()
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&stderr).starts_with("updated"),
        "no warning for a point in its cell"
    );
    let shown = dev.show(&id);
    assert_eq!(s(&shown, "category"), "manhole-cover");
    assert_eq!(s(&shown, "description"), "其实是井盖");
    assert_eq!(s(&shown["location"], "address"), "鹤乡路12号");
    assert_eq!(shown["location"]["lat"], 41.1205, "the point is kept");
    let note = &shown["notes"][0];
    assert_eq!(s(note, "kind"), "correction");
    assert_eq!(
        s(note, "text"),
        "category: lawn → manhole-cover; description corrected; location corrected"
    );

    // A point moved out of the cell is kept, with a warning naming the cell it is in.
    let out = dev
        .field(["update", &id, "--lat", "41.122", "--lon", "122.066"])
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("lies outside cell HLT-CX-HX-02 (in HLT-CX-HX-01)"),
        "{err}"
    );

    let before = dev.show(&id);
    let long = "长".repeat(3000);
    for (args, needles) in [
        (vec!["--grid", crate::HX03], vec!["not one of this worker's cells"]),
        (vec!["--category", "lawnn"], vec!["did you mean"]),
        (
            vec!["--desc", long.as_str()],
            vec!["--desc is 3000 characters (9000 bytes); the limit is 8192 bytes"],
        ),
        (vec!["--lat", "91", "--lon", "122"], vec!["--lat 91 is outside -90..90"]),
    ] {
        let mut all = vec!["update", id.as_str()];
        all.extend(args);
        dev.fails(&all, 2, &needles);
    }
    assert_eq!(dev.show(&id), before, "a refused correction stores nothing");
}

#[test]
fn a_report_too_long_is_refused_and_one_dated_ahead_is_warned_of() {
    let dev = Device::setup();
    let long = "长".repeat(15_000);
    dev.fails(
        ["report", "--category", "lawn", "--desc", &long],
        2,
        &["the limit is 8192 bytes"],
    );
    assert_eq!(dev.json(["list", "--json"]), serde_json::json!([]));
    let out = dev
        .field(["report", "--category", "lawn", "--at", "2099-01-05T10:00:00+08:00"])
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("warning: --at 2099-01-05 10:00 is") && err.contains("days ahead"),
        "{err}"
    );
}

#[test]
fn an_incident_is_found_by_a_unique_end_of_its_id() {
    let dev = Device::setup();
    let a = dev.report(&["--category", "lawn"]);
    let b = dev.report(&["--category", "clutter"]);
    // Made moments apart, the two ids share their start.
    dev.fails(["show", &a[..8]], 1, &["matches more than one incident"]);
    assert_eq!(s(&dev.show(&a[a.len() - 6..]), "id"), a);
    assert_eq!(s(&dev.show(&b[b.len() - 6..].to_uppercase()), "id"), b);
}

//! `field report`: the id it prints, the grid cell it picks, and the
//! arguments it refuses.

use crate::{Device, HX01, HX02, HX03, IN_HX01, IN_HX02, IN_HX03, WORKER, assert_near, s};

#[test]
fn report_prints_only_the_new_id() {
    let dev = Device::setup();
    let out = dev.field(["report", "--category", "lawn"]).success().stderr("");
    let id = crate::stdout(&out);
    let id = id.trim_end_matches('\n');
    crate::assert_uuid_v7(id);
    assert_eq!(dev.ids(&[]), [id]);

    let i = dev.show(id);
    assert_eq!(s(&i, "id"), id);
    assert_eq!(s(&i, "category"), "lawn");
    assert_eq!(s(&i, "status"), "reported");
    assert_eq!(s(&i, "reporter"), WORKER);
    assert_eq!(s(&i, "grid"), HX01);
    assert_eq!(s(&i, "description"), "");
    let status = dev.json(["status", "--json"]);
    assert_eq!(s(&i, "device"), s(&status["profile"], "device"));
}

#[test]
fn everything_a_worker_types_is_kept() {
    let dev = Device::setup();
    let desc = "井盖缺失, \"危险\"\n第二行";
    let id = dev.report(&[
        "--category",
        "manhole-cover",
        "--desc",
        desc,
        "--lat",
        "41.1221",
        "--lon",
        "122.0655",
        "--accuracy",
        "4.5",
        "--address",
        "鹤乡路 12 号",
    ]);
    let i = dev.show(&id);
    assert_eq!(s(&i, "description"), desc);
    assert_near(&i["location"]["lat"], 41.1221);
    assert_near(&i["location"]["lon"], 122.0655);
    assert_near(&i["location"]["accuracy_m"], 4.5);
    assert_eq!(s(&i["location"], "address"), "鹤乡路 12 号");
    assert_eq!(s(&i, "category_zh"), "井盖破损");
    assert_eq!(s(&i, "category_en"), "Broken manhole cover");
}

#[test]
fn the_grid_cell_comes_from_the_location_when_the_worker_has_several() {
    let dev = Device::init(&[HX01, HX02]);
    let mut args = vec!["--category", "road-surface"];
    args.extend(IN_HX02);
    let id = dev.report(&args);
    assert_eq!(s(&dev.show(&id), "grid"), HX02);

    let mut args = vec!["--category", "road-surface"];
    args.extend(IN_HX01);
    let id = dev.report(&args);
    assert_eq!(s(&dev.show(&id), "grid"), HX01);

    // --grid wins over the location.
    let mut args = vec!["--category", "road-surface", "--grid", HX01];
    args.extend(IN_HX02);
    let id = dev.report(&args);
    assert_eq!(s(&dev.show(&id), "grid"), HX01);

    // A point in a cell that is not the worker's does not choose for them.
    let mut args = vec!["report", "--category", "road-surface"];
    args.extend(IN_HX03);
    dev.fails(&args, 2, &["say which with --grid", HX01, HX02]);
}

#[test]
fn a_worker_with_one_cell_reports_into_it() {
    let dev = Device::init(&[HX03]);
    let id = dev.report(&["--category", "clutter"]);
    assert_eq!(s(&dev.show(&id), "grid"), HX03);
    let mut args = vec!["--category", "clutter"];
    args.extend(IN_HX02);
    let id = dev.report(&args);
    assert_eq!(s(&dev.show(&id), "grid"), HX03);
}

#[test]
fn bad_report_arguments_are_usage_errors_and_store_nothing() {
    let dev = Device::init(&[HX01, HX02]);
    #[rustfmt::skip]
    let cases: &[(&[&str], &[&str])] = &[
        (&["--category", "lawn"], &["several cells", "say which with --grid"]),
        (&["--category", "lawn", "--grid", HX03],
            &["`HLT-CX-HX-03` is not one of this worker's cells", HX01]),
        (&["--category", "pothole", "--grid", HX01],
            &["unknown category `pothole`", "manhole-cover", "lawn", "neighbor-dispute", "other"]),
        (&["--category", "lawn", "--grid", HX01, "--lat", "41.12"], &["--lon"]),
        (&["--category", "lawn", "--grid", HX01, "--lon", "122.07"], &["--lat"]),
        (&["--category", "lawn", "--grid", HX01, "--lat", "91", "--lon", "122"],
            &["--lat 91 is outside -90..90"]),
        (&["--category", "lawn", "--grid", HX01, "--lat", "-90.5", "--lon", "122"],
            &["--lat -90.5"]),
        (&["--category", "lawn", "--grid", HX01, "--lat", "41", "--lon", "180.01"],
            &["--lon 180.01 is outside"]),
        (&["--category", "lawn", "--grid", HX01, "--lat", "NaN", "--lon", "122"], &["--lat"]),
        (&["--category", "lawn", "--grid", HX01, "--lat", "north", "--lon", "122"], &["north"]),
        (&["--category", "lawn", "--grid", HX01, "--lat", "41", "--lon", "122", "--accuracy=-3"],
            &["--accuracy -3 must be a distance in metres"]),
        (&["--category", "lawn", "--grid", HX01, "--accuracy", "3"], &["--lat"]),
        (&["--category", "lawn", "--grid", HX01, "--at", "yesterday"],
            &["--at `yesterday` is not an RFC 3339 time"]),
        (&["--category", "lawn", "--grid", HX01, "--at", "2026-11-20T09:15:30"], &["RFC 3339"]),
        (&["--category", "lawn", "--grid", HX01, "--at", "2026-02-30T09:15:30+08:00"],
            &["RFC 3339"]),
        (&["--grid", HX01], &["--category"]),
    ];
    for (args, needles) in cases {
        let mut full = vec!["report"];
        full.extend_from_slice(args);
        dev.fails(&full, 2, needles);
    }
    assert_eq!(dev.list(&[]), Vec::<serde_json::Value>::new());
}

#[test]
fn a_description_may_start_with_a_dash() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "lawn", "--desc", "-1 lamp broken", "--address", "-"]);
    assert_eq!(s(&dev.show(&id), "description"), "-1 lamp broken");
    dev.ok(["update", &id, "--note", "- called the office"]);
}

#[test]
fn a_given_capture_time_is_kept_with_its_offset() {
    let dev = Device::setup();
    let at = "2026-11-20T09:15:30+08:00";
    let id = dev.report(&["--category", "lawn", "--at", at]);
    let i = dev.show(&id);
    assert_eq!(s(&i, "captured_at"), at);
    assert_eq!(s(&i["status_history"][0], "at"), at);
    assert_eq!(s(&dev.list(&[])[0], "captured_at"), at);
    let text = dev.ok(["show", &id]);
    assert!(text.contains(&format!("captured  {at} by {WORKER}")), "{text}");

    // A time in another zone keeps that zone, not the device's.
    let at = "2026-11-20T23:59:59.250-05:00";
    let id = dev.report(&["--category", "lawn", "--at", at]);
    assert_eq!(s(&dev.show(&id), "captured_at"), at);
}

#[test]
fn reports_started_together_all_land() {
    let dev = Device::setup();
    let bin = assert_cmd::cargo::cargo_bin("field");
    let children: Vec<_> = (0..6)
        .map(|n| {
            std::process::Command::new(&bin)
                .env_remove("FIELD_DATA_DIR")
                .arg("--data-dir")
                .arg(dev.path())
                .args(["report", "--category", "other", "--desc", &format!("#{n}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut printed = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }
    printed.sort();
    let mut stored = dev.ids(&[]);
    stored.sort();
    assert_eq!(stored, printed);
}

#[test]
fn categories_and_statuses_are_taken_as_a_worker_types_them() {
    let dev = Device::setup();
    for (typed, code) in [
        ("井盖破损", "manhole-cover"),
        ("Manhole_Cover", "manhole-cover"),
        (" sidewalk_slab ", "sidewalk-slab"),
        ("Broken Manhole Cover", "manhole-cover"),
    ] {
        let id = dev.report(&[
            "--category",
            typed,
            "--desc",
            "一块很长的描述：路边的井盖缺失，晚上看不见，行人和车辆都有危险",
        ]);
        assert_eq!(s(&dev.show(&id), "category"), code, "typed {typed:?}");
    }
    let id = dev.ids(&[])[0].clone();
    for (typed, status) in [
        ("已派遣", "dispatched"),
        ("In-Progress", "in_progress"),
        ("已处置", "resolved"),
    ] {
        dev.ok(["update", &id, "--status", typed]);
        assert_eq!(s(&dev.show(&id), "status"), status, "typed {typed:?}");
    }
    assert_eq!(dev.ids(&["--status", "已处置"]), [id.clone()]);
    assert_eq!(dev.ids(&["--category", "道板破损"]).len(), 1);
    // The table names the reporter and shows the start of the description.
    let table = dev.ok(["list"]);
    assert!(table.contains("REPORTER") && table.contains(WORKER), "{table}");
    assert!(table.contains("一块很长的描述：路边的井盖缺失，…"), "{table}");
    assert!(!table.contains("行人和车辆"), "{table}");
}

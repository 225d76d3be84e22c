//! `field init`, `field categories`, and what every other command does on a
//! device that has not been set up.

use crate::{Device, HX01, HX02, HX03, WORKER, s};

/// The device id in `device <uuid> is set up for ...`.
#[track_caller]
fn device_in(line: &str) -> String {
    let rest = line
        .strip_prefix("device ")
        .unwrap_or_else(|| panic!("init printed {line:?}"));
    let id = rest.split(' ').next().unwrap();
    crate::assert_uuid_v7(id);
    id.to_owned()
}

#[test]
fn init_prints_the_device_line_and_re_init_keeps_the_device() {
    let dev = Device::empty();
    let out = dev.ok([
        "init", "--worker", WORKER, "--name", "张伟", "--grid", HX01, "--grid", HX02,
    ]);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    let device = device_in(&out);
    assert_eq!(
        out,
        format!("device {device} is set up for worker {WORKER} (张伟) in {HX01}, {HX02}\n")
    );
    let status = dev.json(["status", "--json"]);
    assert_eq!(s(&status["profile"], "device"), device);
    assert_eq!(s(&status["profile"], "worker"), WORKER);
    assert_eq!(s(&status["profile"], "name"), "张伟");

    // The same again changes nothing and says so.
    let same = dev.ok([
        "init", "--worker", WORKER, "--name", "张伟", "--grid", HX01, "--grid", HX02,
    ]);
    assert!(same.ends_with("; nothing changed\n"), "{same:?}");
    // Left out, the name and cells are kept, not dropped.
    let kept = dev.ok(["init", "--worker", WORKER]);
    assert!(kept.contains("(张伟)") && kept.contains("nothing changed"), "{kept:?}");

    // Other cells, a new name or a new categories file are refused without
    // --change, naming each change, and nothing is touched.
    let file = dev.path().join("cats.json");
    std::fs::write(
        &file,
        r#"{"version": 2, "categories": [{"code": "snow", "name_zh": "积雪", "name_en": "Snow", "group": "event"}]}"#,
    )
    .unwrap();
    let asked = [
        "init",
        "--worker",
        WORKER,
        "--name",
        "张薇",
        "--grid",
        HX03,
        "--categories",
        file.to_str().unwrap(),
    ];
    dev.fails(
        asked,
        2,
        &[
            &format!("drop cell {HX01}, {HX02}"),
            &format!("add cell {HX03}"),
            "change the name to 张薇",
            "replace the categories list",
            "--change",
        ],
    );
    let status = dev.json(["status", "--json"]);
    assert_eq!(status["profile"]["grids"], serde_json::json!([HX01, HX02]));
    assert_eq!(s(&status["profile"], "name"), "张伟");

    // With --change: same device, new cells, name and list.
    let mut changed = asked.to_vec();
    changed.push("--change");
    let again = dev.ok(changed);
    assert_eq!(device_in(&again), device);
    let status = dev.json(["status", "--json"]);
    assert_eq!(s(&status["profile"], "device"), device);
    assert_eq!(status["profile"]["grids"], serde_json::json!([HX03]));
    assert_eq!(s(&status["profile"], "name"), "张薇");
    assert_eq!(dev.json(["categories", "--json"]).as_array().unwrap().len(), 1);
}

#[test]
fn init_keeps_a_label_for_the_operators_device_list() {
    let dev = Device::empty();
    let out = dev.ok(["init", "--worker", WORKER, "--grid", HX01, "--label", "  李华的手机 "]);
    assert!(out.contains("(李华的手机) is set up"), "{out:?}");
    assert_eq!(s(&dev.json(["status", "--json"])["profile"], "label"), "李华的手机");
    dev.fails(
        ["init", "--worker", WORKER, "--label", "  "],
        2,
        &["--label is 1 to 64 characters"],
    );
    dev.fails(["init", "--worker", WORKER, "--label", "x\u{7}"], 2, &["--label"]);
}

#[test]
fn init_for_another_worker_is_refused() {
    let dev = Device::setup();
    let before = dev.json(["status", "--json"]);
    dev.fails(
        ["init", "--worker", "gw-9999", "--grid", HX01],
        1,
        &["belongs to worker `gw-0042`", "`gw-9999`"],
    );
    assert_eq!(dev.json(["status", "--json"])["profile"], before["profile"]);
}

#[test]
fn init_rejects_bad_arguments() {
    let long = "w".repeat(65);
    #[rustfmt::skip]
    let cases: &[(&[&str], &[&str])] = &[
        (&["--worker", WORKER, "--grid", "HLT-CX-HX-99"],
            &["unknown grid cell `HLT-CX-HX-99`", "valid cells are", HX01, "STZ-HQ-SL-02"]),
        (&["--worker", WORKER, "--grid", HX01, "--grid", "nowhere"], &["`nowhere`", HX02]),
        (&["--worker", "a b", "--grid", HX01], &["`a b` is not a worker id"]),
        (&["--worker", "", "--grid", HX01], &["is not a worker id"]),
        (&["--worker", "gw/../x", "--grid", HX01], &["is not a worker id"]),
        (&["--worker", &long, "--grid", HX01], &["1 to 64"]),
        (&["--worker", WORKER], &["--grid"]),
        (&["--grid", HX01], &["--worker"]),
    ];
    for (args, needles) in cases {
        let dev = Device::empty();
        let mut full = vec!["init"];
        full.extend_from_slice(args);
        dev.fails(&full, 2, needles);
        // Nothing was set up.
        dev.fails(["status"], 1, &["not set up yet"]);
    }
}

#[test]
fn init_lists_each_cell_once() {
    let dev = Device::empty();
    let out = dev.ok([
        "init", "--worker", WORKER, "--grid", HX01, "--grid", HX02, "--grid", HX01,
    ]);
    assert!(out.ends_with(&format!(" in {HX01}, {HX02}\n")), "{out:?}");
}

#[test]
fn commands_before_init_say_so_and_create_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("never-set-up");
    let cases: &[&[&str]] = &[
        &["list"],
        &["list", "--json"],
        &["show", "0190abcd"],
        &["status"],
        &["status", "--json"],
        &["report", "--category", "lawn"],
        &["update", "0190abcd", "--note", "hello"],
        &["export", "--format", "csv"],
    ];
    for args in cases {
        assert_cmd::Command::cargo_bin("field")
            .unwrap()
            .env_remove("FIELD_DATA_DIR")
            .arg("--data-dir")
            .arg(&dir)
            .args(*args)
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicates::str::contains(
                "not set up yet; run `field init --worker ID --grid CELL` first",
            ));
        assert!(!dir.exists(), "`field {}` created {}", args.join(" "), dir.display());
    }
}

#[test]
fn data_dir_comes_from_the_environment_unless_given() {
    let env_dir = tempfile::tempdir().unwrap();
    let field = || {
        let mut c = assert_cmd::Command::cargo_bin("field").unwrap();
        c.env("FIELD_DATA_DIR", env_dir.path());
        c
    };
    field()
        .args(["init", "--worker", WORKER, "--grid", HX01])
        .assert()
        .success();
    let out = field().args(["status", "--json"]).assert().success();
    let status: serde_json::Value = serde_json::from_str(&crate::stdout(&out)).unwrap();
    assert_eq!(s(&status, "data_dir"), env_dir.path().to_str().unwrap());
    assert!(env_dir.path().join("field.sqlite3").is_file());

    // --data-dir wins over the environment.
    let other = tempfile::tempdir().unwrap();
    field()
        .arg("--data-dir")
        .arg(other.path())
        .arg("status")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("not set up yet"));
}

#[test]
fn init_can_install_a_city_category_list() {
    let dev = Device::empty();
    let file = dev.path().join("city-categories.json");
    std::fs::write(
        &file,
        r#"{"version": 7, "categories": [
            {"code": "snow", "name_zh": "积雪", "name_en": "Snow on the road", "group": "event"},
            {"code": "manhole-cover", "name_zh": "井盖", "name_en": "Manhole cover", "group": "facility"}
        ]}"#,
    )
    .unwrap();
    dev.ok([
        "init",
        "--worker",
        WORKER,
        "--grid",
        HX01,
        "--categories",
        file.to_str().unwrap(),
    ]);
    let cats = dev.json(["categories", "--json"]);
    let codes: Vec<&str> = cats.as_array().unwrap().iter().map(|c| s(c, "code")).collect();
    assert_eq!(codes, ["snow", "manhole-cover"]);
    let id = dev.report(&["--category", "snow"]);
    assert_eq!(s(&dev.show(&id), "category_zh"), "积雪");
    dev.fails(
        ["report", "--category", "lawn"],
        2,
        &["unknown category `lawn`", "snow (积雪), manhole-cover (井盖)"],
    );
}

#[test]
fn init_with_an_unreadable_category_list_sets_nothing_up() {
    let dev = Device::empty();
    let file = dev.path().join("broken.json");
    std::fs::write(&file, "{\"version\": 1, \"categories\": [").unwrap();
    dev.fails(
        [
            "init",
            "--worker",
            WORKER,
            "--grid",
            HX01,
            "--categories",
            file.to_str().unwrap(),
        ],
        1,
        &["categories file is not valid"],
    );
    dev.fails(
        [
            "init",
            "--worker",
            WORKER,
            "--grid",
            HX01,
            "--categories",
            "/no/such/file.json",
        ],
        1,
        &["cannot read /no/such/file.json"],
    );
    dev.fails(["status"], 1, &["not set up yet"]);
}

#[test]
fn categories_before_init_list_the_builtin_twelve() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("fresh");
    let field = || {
        let mut c = assert_cmd::Command::cargo_bin("field").unwrap();
        c.env_remove("FIELD_DATA_DIR").arg("--data-dir").arg(&dir);
        c
    };
    let json = field().args(["categories", "--json"]).assert().success();
    let cats: serde_json::Value = serde_json::from_str(&crate::stdout(&json)).unwrap();
    let cats = cats.as_array().unwrap();
    let codes: Vec<&str> = cats.iter().map(|c| s(c, "code")).collect();
    assert_eq!(
        codes,
        [
            "manhole-cover",
            "road-surface",
            "curb-stone",
            "sidewalk-slab",
            "lawn",
            "tree-missing",
            "illegal-parking",
            "illegal-construction",
            "clutter",
            "house-leak",
            "neighbor-dispute",
            "other",
        ]
    );
    assert_eq!(
        cats[0],
        serde_json::json!({
            "code": "manhole-cover",
            "name_zh": "井盖破损",
            "name_en": "Broken manhole cover",
            "group": "facility",
            "department": "shizheng",
            "time_limit_hours": 24,
        })
    );

    let table = crate::stdout(&field().arg("categories").assert().success());
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 13, "a header and 12 rows:\n{table}");
    for word in ["CODE", "中文", "ENGLISH", "GROUP"] {
        assert!(lines[0].contains(word), "header {:?}", lines[0]);
    }
    let manhole = lines.iter().find(|l| l.contains("manhole-cover")).unwrap();
    for word in ["井盖破损", "Broken manhole cover", "部件 facility"] {
        assert!(manhole.contains(word), "{manhole:?}");
    }
    let dispute = lines.iter().find(|l| l.contains("neighbor-dispute")).unwrap();
    assert!(
        dispute.contains("邻里纠纷") && dispute.contains("事件 event"),
        "{dispute:?}"
    );
    assert!(!dir.exists(), "`field categories` created {}", dir.display());
}

#[test]
fn categories_after_init_are_the_same_list() {
    let dev = Device::setup();
    let cats = dev.json(["categories", "--json"]);
    assert_eq!(cats.as_array().unwrap().len(), 12);
    assert!(dev.ok(["categories"]).contains("井盖破损"));
}

#[test]
fn enroll_refuses_a_server_address_it_should_not_speak_and_stores_nothing() {
    let dev = Device::setup();
    for (url, needle) in [
        ("http://10.1.2.3:8780", "--allow-http"),
        ("https://grid.example.org/v1", "leave `/v1` off"),
        ("https://grid.example.org:99999", "is not a port"),
        ("http://127.0.0.1:8780 ", "spaces around it"),
        ("127.0.0.1:8780", "must start with https://"),
    ] {
        let err = dev.fails(["enroll", "--server", url, "--code", "K7QF-M2XD-9PRT"], 2, &[needle]);
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
    assert!(!dev.path().join("device.token").exists());
    let status = dev.json(["status", "--json"]);
    assert!(status["server"].is_null(), "no server recorded: {status}");
}

/// `field ARGS` under `umask 000`, the most permissive a user could set.
fn field_with_open_umask(data_dir: &std::path::Path, args: &[&str]) {
    let field = assert_cmd::cargo::cargo_bin("field");
    let status = std::process::Command::new("sh")
        .args(["-c", "umask 000 && exec \"$@\"", "sh"])
        .arg(field)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("FIELD_DATA_DIR")
        .status()
        .unwrap();
    assert!(status.success(), "field {args:?} failed");
}

#[test]
fn the_data_dir_and_everything_in_it_are_its_owners_alone_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // A folder made open by hand before, and one field makes itself.
    let given = tmp.path().join("given");
    std::fs::create_dir(&given).unwrap();
    std::fs::set_permissions(&given, std::fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [given, tmp.path().join("made/by/field")] {
        field_with_open_umask(&dir, &["init", "--worker", WORKER, "--grid", HX01]);
        let photo = crate::fixture("manhole-exif.jpg");
        field_with_open_umask(&dir, &["report", "--category", "manhole-cover", "--photo", &photo]);
        let modes = sync_core::testing::modes_under(&dir);
        assert!(modes.iter().any(|(n, _, _)| n == "field.sqlite3"), "{modes:?}");
        assert!(
            modes.iter().any(|(n, _, _)| n.starts_with("blobs/") && n.len() > 70),
            "{modes:?}"
        );
        for (name, mode, is_dir) in &modes {
            let want = if *is_dir { 0o700 } else { 0o600 };
            assert_eq!(*mode, want, "{name:?} is {mode:o} in {modes:?}");
        }
    }
}

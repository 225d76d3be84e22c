//! `field list` and `field show`.

use serde_json::Value;

use crate::{Device, HX02, IN_HX02, WORKER, s};

#[test]
fn list_shows_a_table_with_both_category_names() {
    let dev = Device::setup();
    let empty = dev.field(["list"]).success().stdout("");
    assert!(crate::stderr(&empty).contains("no incidents match"));

    let a = dev.report(&["--category", "manhole-cover", "--at", "2026-11-20T09:15:30+08:00"]);
    let b = dev.report(&["--category", "illegal-parking", "--at", "2026-11-20T10:00:00+08:00"]);
    let table = dev.ok(["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{table}");
    for word in ["ID", "CAPTURED", "STATUS", "CATEGORY", "GRID", "PHOTOS", "SYNC"] {
        assert!(lines[0].contains(word), "{:?}", lines[0]);
    }
    for (line, id, names, at) in [
        (lines[1], &a, "井盖破损 Broken manhole cover", "2026-11-20 09:15"),
        (lines[2], &b, "车辆违停 Illegal parking", "2026-11-20 10:00"),
    ] {
        for want in [id.as_str(), names, at, "已上报 reported", "HLT-CX-HX-01", "pending"] {
            assert!(line.contains(want), "{want:?} missing from {line:?}");
        }
    }
}

#[test]
fn list_json_and_filters() {
    let dev = Device::setup();
    // UTC: a 2026-11-20 01:00, b 2026-11-21 02:00, c 2026-11-21 04:30; but c
    // was captured on the 20th where it was captured.
    let a = dev.report(&["--category", "manhole-cover", "--at", "2026-11-20T09:00:00+08:00"]);
    let b = dev.report(&["--category", "lawn", "--at", "2026-11-21T10:00:00+08:00"]);
    let c = dev.report(&["--category", "lawn", "--at", "2026-11-20T23:30:00-05:00"]);
    dev.ok(["update", &b, "--status", "dispatched"]);

    let rows = dev.list(&[]);
    let row = &rows[0];
    assert_eq!(s(row, "id"), a);
    assert_eq!(s(row, "category"), "manhole-cover");
    assert_eq!(s(row, "category_zh"), "井盖破损");
    assert_eq!(s(row, "category_en"), "Broken manhole cover");
    assert_eq!(s(row, "status"), "reported");
    assert_eq!(s(row, "captured_at"), "2026-11-20T09:00:00+08:00");
    assert_eq!(row["photos"], 0);
    assert_eq!(row["notes"], 0);
    assert_eq!(row["unsynced"], true);
    assert_eq!(row["lat"], Value::Null);

    #[rustfmt::skip]
    let cases: &[(&[&str], &[&String])] = &[
        (&[], &[&a, &b, &c]),
        (&["--status", "reported"], &[&a, &c]),
        (&["--status", "dispatched"], &[&b]),
        (&["--status", "closed"], &[]),
        (&["--category", "lawn"], &[&b, &c]),
        (&["--category", "manhole-cover"], &[&a]),
        (&["--category", "other"], &[]),
        (&["--date", "2026-11-20"], &[&a, &c]),
        (&["--date", "2026-11-21"], &[&b]),
        (&["--date", "2026-11-22"], &[]),
        (&["--category", "lawn", "--date", "2026-11-20"], &[&c]),
        (&["--status", "reported", "--category", "lawn", "--date", "2026-11-21"], &[]),
    ];
    for (filters, want) in cases {
        let want: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
        assert_eq!(dev.ids(filters), want, "list {filters:?}");
    }
    // The table filters the same way.
    let table = dev.ok(["list", "--category", "lawn", "--date", "2026-11-20"]);
    assert!(
        table.contains(&c) && !table.contains(&a) && !table.contains(&b),
        "{table}"
    );
}

#[test]
fn list_refuses_bad_filters() {
    let dev = Device::setup();
    dev.report(&["--category", "lawn"]);
    #[rustfmt::skip]
    let cases: &[(&[&str], &[&str])] = &[
        (&["--status", "open"], &["unknown status `open`", "reported", "in_progress", "duplicate"]),
        (&["--status", "已完成"], &["unknown status `已完成`", "closed (已结案)"]),
        (&["--status", "resolvd"], &["did you mean `resolved`?"]),
        (&["--category", "井盖"], &["did you mean `井盖破损`?"]),
        (&["--category", "grass"], &["unknown category `grass`", "lawn"]),
        (&["--date", "2026-13-01"], &["`2026-13-01` is not a date; use YYYY-MM-DD"]),
        (&["--date", "20-11-2026"], &["YYYY-MM-DD"]),
        (&["--date", "yesterday"], &["YYYY-MM-DD"]),
        (&["--colour", "red"], &["--colour"]),
    ];
    for (args, needles) in cases {
        for json in [false, true] {
            let mut full = vec!["list"];
            full.extend_from_slice(args);
            if json {
                full.push("--json");
            }
            dev.fails(&full, 2, needles);
        }
    }
}

/// The length of the common start of two strings.
fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

#[test]
fn show_finds_an_incident_by_id_or_unique_prefix() {
    let dev = Device::setup();
    let a = dev.report(&["--category", "lawn", "--desc", "first"]);
    let b = dev.report(&["--category", "lawn", "--desc", "second"]);
    // UUIDv7s start with the time in milliseconds: ids made moments apart
    // share their first hex digits.
    let shared = common_prefix(&a, &b);
    assert!(shared >= 4, "{a} and {b} share only {shared} characters");

    let found = |given: &str| s(&dev.show(given), "id").to_owned();
    assert_eq!(found(&a), a);
    assert_eq!(found(&b), b);
    assert_eq!(found(&a.to_uppercase()), a);
    assert_eq!(found(&a[..shared + 1]), a);
    assert_eq!(found(&b[..shared + 1]), b);
    assert_eq!(found(&format!("  {}  ", &a[..shared + 1])), a);

    // Text output takes the same ids.
    assert!(dev.ok(["show", &a[..shared + 1]]).contains("first"));

    for prefix in [&a[..4], &a[..shared]] {
        for json in [false, true] {
            let mut args = vec!["show", prefix];
            if json {
                args.push("--json");
            }
            dev.fails(
                &args,
                1,
                &[
                    &format!("`{prefix}` matches more than one incident"),
                    &a,
                    &b,
                    "give more of the id",
                ],
            );
        }
    }
}

#[test]
fn show_refuses_ids_it_does_not_have() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "lawn"]);
    // The same time, other random bits: a well-formed id that is not there.
    let other = format!("{}{}", &id[..24], if id.ends_with('0') { "1" } else { "0" }.repeat(12));
    assert_ne!(other, id);
    #[rustfmt::skip]
    let cases: &[(&str, &[&str])] = &[
        ("ffffffff", &["no incident matches `ffffffff`"]),
        (&other, &["no incident matches"]),
        ("abc", &["`abc` is not an incident id or a start or end of one"]),
        ("xyz-1234", &["is not an incident id or a start or end of one"]),
        ("../../etc", &["is not an incident id or a start or end of one"]),
    ];
    for (given, needles) in cases {
        dev.fails(["show", given], 1, needles);
        dev.fails(["show", given, "--json"], 1, needles);
    }
}

#[test]
fn show_text_has_names_notes_and_history() {
    let dev = Device::init(&[crate::HX01, HX02]);
    let mut args = vec![
        "--category",
        "manhole-cover",
        "--desc",
        "井盖缺了一角",
        "--address",
        "鹤乡路 12 号",
        "--accuracy",
        "5",
        "--at",
        "2026-11-20T09:15:30+08:00",
    ];
    args.extend(IN_HX02);
    let id = dev.report(&args);
    dev.ok(["update", &id, "--status", "dispatched", "--note", "已联系市政"]);
    let text = dev.ok(["show", &id]);
    let device = dev.json(["status", "--json"])["profile"]["device"]
        .as_str()
        .unwrap()
        .to_owned();
    for want in [
        format!("incident  {id}\n"),
        "category  井盖破损 Broken manhole cover\n".into(),
        "status    已派遣 dispatched\n".into(),
        format!("grid      {HX02} ("),
        "鹤乡社区".into(),
        format!("captured  2026-11-20T09:15:30+08:00 by {WORKER} on device {device}\n"),
        "location  41.120500, 122.071200 ±5 m\n".into(),
        "address   鹤乡路 12 号\n".into(),
        "\n井盖缺了一角\n".into(),
        "\nnotes\n  ".into(),
        format!(" {WORKER}: 已联系市政\n"),
        format!("\nhistory\n  2026-11-20 09:15 reported by {WORKER}\n"),
        // A plain dispatch goes to the category's department with its time limit.
        "reported → dispatched to 市政 Municipal works, due ".into(),
        format!(" by {WORKER}\n"),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("photos ("), "{text}");
}

//! The grid worker's side of the people's work, through the real binaries:
//! the server decides a worker's cells and the device learns them, and a
//! reporter corrects a report, kept in the history, that a colleague may not.

use crate::*;

fn cells_of(dev: &Device) -> Value {
    dev.status()["profile"]["grids"].clone()
}

#[test]
fn the_server_decides_a_workers_cells_and_the_device_learns_them_at_every_sync() {
    let mut server = Server::new();
    server.admin(&[
        "worker", "add", "--id", "w-li", "--name", "李华", "--grid", HX01, "--grid", HX02,
    ]);
    server.start();
    // Set up by hand with the wrong cell: enrolment puts the server's in place.
    let li = Device::new("w-li", &["HLT-CX-HX-03"]);
    let code = server.code("w-li");
    let out = li.ok(&["enroll", "--server", &server.url, "--code", &code]);
    assert!(
        out.contains("the server's cells; this device had HLT-CX-HX-03"),
        "{out}"
    );
    assert_eq!(cells_of(&li), serde_json::json!([HX01, HX02]));
    assert_eq!(li.status()["profile"]["name"], "李华");
    let refused = li.run(&["report", "--category", "lawn", "--grid", "HLT-CX-HX-03"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not one of this worker's cells"));
    assert!(li.list().is_empty(), "a refused report is not stored");

    // In step, a sync carries no account; after the operator's change, the next one does.
    assert!(li.sync(&[]).get("cells").is_none());
    server.admin(&["worker", "update", "w-li", "--grid", HX02]);
    let synced = li.sync(&[]);
    assert_eq!(synced["cells"], serde_json::json!([HX02]), "{synced}");
    assert_eq!(cells_of(&li), serde_json::json!([HX02]));
    assert!(li.sync(&[]).get("cells").is_none(), "told once");
    let refused = li.run(&["report", "--category", "lawn", "--grid", HX01]);
    assert_eq!(refused.status.code(), Some(2));
    let id = li.report(&["--category", "lawn"]);
    li.sync(&[]);
    assert!(server_heads(&server).iter().any(|(i, _)| *i == id));

    // Once enrolled, `field init` cannot change the cells the server keeps.
    let out = li.run(&["init", "--worker", "w-li", "--grid", HX01, "--change"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sync-server worker update"));
    assert_eq!(cells_of(&li), serde_json::json!([HX02]));
}

#[test]
fn a_reporter_corrects_a_report_in_the_history_and_a_colleague_may_not() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01, HX02]);
    server.add_worker("w-wang", &[HX01, HX02]);
    server.start();
    let li = Device::new("w-li", &[HX01, HX02]);
    li.enroll(&server);
    let wang = Device::new("w-wang", &[HX01, HX02]);
    wang.enroll(&server);
    let id = li.report(&["--category", "lawn", "--desc", "草坪", "--grid", HX01]);
    li.sync(&[]);

    // A suffix of the id names it too.
    let suffix = &id[id.len() - 6..];
    let out = li.run(&[
        "update",
        suffix,
        "--category",
        "井盖破损",
        "--desc",
        "其实是井盖",
        "--address",
        "鹤乡路12号",
        "--grid",
        HX02,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    li.sync(&[]);
    wang.sync(&[]);
    let seen = wang.show(&id);
    assert_eq!(seen["category"], "manhole-cover");
    assert_eq!(seen["description"], "其实是井盖");
    assert_eq!(seen["grid"], HX02);
    assert_eq!(seen["location"]["address"], "鹤乡路12号");
    let notes = seen["notes"].as_array().unwrap();
    let fix = notes
        .iter()
        .find(|n| n["kind"] == "correction")
        .expect("a correction note");
    assert_eq!(fix["author"], "w-li");
    assert!(fix["text"].as_str().unwrap().contains("lawn → manhole-cover"), "{fix}");
    let csv = server.admin(&["export", "--format", "csv", "--community", "HLT-CX-HX"]);
    assert!(csv.contains("manhole-cover") && !csv.contains(",lawn,"), "{csv}");

    // The colleague is refused on the device, in a sentence, before anything is stored.
    let before = wang.show(&id);
    let out = wang.run(&["update", &id, "--desc", "我来改"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only the reporter (w-li) or the center corrects"), "{err}");
    assert_eq!(wang.show(&id), before);
}

/// `field report ARGS`: the id on stdout and the case number on stderr.
fn report_case(dev: &Device, args: &[&str]) -> (String, Option<String>) {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    let out = dev.run(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let case = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("case ").map(str::to_owned));
    (id, case)
}

#[test]
fn case_numbers_are_short_unique_and_name_an_incident_on_every_device() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01]);
    server.add_worker("w-wang", &[HX01]);
    server.start();
    let li = Device::new("w-li", &[HX01]);
    // Wang logs one before the enrolment: no number yet.
    let wang = Device::new("w-wang", &[HX01]);
    let (early, none) = report_case(&wang, &["--category", "lawn"]);
    assert_eq!(none, None);
    li.enroll(&server);
    let code = server.code("w-wang");
    let out = wang.run(&["enroll", "--server", &server.url, "--code", &code]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("gave 1 incident its case number"));

    let (a, case_a) = report_case(&li, &["--category", "manhole-cover"]);
    let (b, case_b) = report_case(&li, &["--category", "井盖破损"]);
    let (c, case_c) = report_case(&wang, &["--category", "clutter"]);
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%y%m%d")
        .to_string();
    let (case_a, case_b, case_c) = (case_a.unwrap(), case_b.unwrap(), case_c.unwrap());
    let case_early = wang.show(&early)["case"].as_str().unwrap().to_owned();
    assert!(
        case_a.starts_with(&format!("HX-{today}-")) && case_a.ends_with("-1"),
        "{case_a}"
    );
    assert!(case_b.ends_with("-2"), "{case_b}");
    let all = [&case_a, &case_b, &case_c, &case_early];
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 4, "{all:?}");

    li.sync(&[]);
    wang.sync(&[]);
    li.sync(&[]);
    // A case number, with or without its community, names the incident on any device.
    for (dev, case, id) in [
        (&wang, &case_a, &a),
        (&li, &case_c, &c),
        (&li, &case_early, &early),
        (&wang, &case_b, &b),
    ] {
        assert_eq!(dev.show(case)["id"], id.as_str(), "{case}");
        let short = case.split_once('-').unwrap().1.to_lowercase();
        assert_eq!(dev.show(&short)["id"], id.as_str(), "{short}");
    }
    let listed = li.list();
    assert!(listed.iter().any(|r| r["case"] == case_c.as_str()), "{listed:?}");
    assert!(li.ok(&["list"]).contains(&case_a), "the table shows it");
    let csv = server.admin(&["export", "--format", "csv", "--community", "HLT-CX-HX"]);
    for case in all {
        assert!(csv.contains(case.as_str()), "{case} not in the export: {csv}");
    }
}

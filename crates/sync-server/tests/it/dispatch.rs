//! Dispatch to departments with time limits (处置时限), through the real
//! binaries: the center's device dispatches a case to a department with a
//! deadline (the category's by default), the reporter's device pulls it,
//! and the daily report lists the cases past their deadline. Clocks three
//! and four days back come from libfaketime (`faketime`), which the test
//! command installs.

use std::process::Command;

use crate::*;

/// `field ARGS` on `dev` with the device's clock `offset` back (`-3d`).
fn field_at(dev: &Device, offset: &str, args: &[&str]) -> std::process::Output {
    Command::new("faketime")
        .args(["-f", offset])
        .arg(field_bin())
        .arg("--data-dir")
        .arg(dev.dir.path())
        .args(args)
        .env("FIELD_LOG", "warn")
        .output()
        .expect("faketime runs field")
}

#[track_caller]
fn ok(out: std::process::Output) -> (String, String) {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (String::from_utf8(out.stdout).unwrap().trim().to_owned(), err)
}

#[test]
fn the_center_dispatches_with_a_deadline_and_the_report_flags_what_is_overdue() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01]);
    server.add_center("hx-center", "HLT-CX-HX");
    server.start();
    let li = Device::new("w-li", &[HX01]);
    li.enroll(&server);
    let center = Device::new("hx-center", &[HX01]);
    center.enroll(&server);

    let (late, _) = ok(field_at(
        &li,
        "-4d",
        &["report", "--category", "manhole-cover", "--desc", "井盖丢失"],
    ));
    let fresh = li.report(&["--category", "lawn"]);
    li.sync(&[]);
    center.sync(&[]);

    // The worker may not dispatch: refused on the device, in a sentence.
    let out = li.run(&["update", &fresh, "--department", "园林"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a worker account may not move an incident from `reported` to `dispatched`"),
        "{err}"
    );
    // A near miss gets "did you mean".
    let out = center.run(&["update", &fresh, "--department", "城管局"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did you mean `城管`") && err.contains("shizheng (市政)"),
        "{err}"
    );

    // Three days ago, to 市政 with the category's 24 h: two days overdue now.
    let (_, said) = ok(field_at(&center, "-3d", &["update", &late, "--department", "市政"]));
    assert!(said.contains("dispatched to 市政 Municipal works, due"), "{said}");
    // Now, with a deadline given: not overdue.
    let (_, said) = ok(center.run(&["update", &fresh, "--department", "yuanlin", "--deadline", "3d"]));
    assert!(said.contains("园林"), "{said}");
    center.sync(&[]);
    li.sync(&[]);

    let seen = li.show(&late);
    assert_eq!(seen["status"], "dispatched");
    let dispatch = seen["status_history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (dispatch["department"].as_str(), dispatch["by"].as_str()),
        (Some("shizheng"), Some("hx-center"))
    );
    assert!(
        li.ok(&["show", &late])
            .contains("dispatched to 市政 Municipal works, due")
    );

    let report: Value =
        serde_json::from_str(&server.admin(&["reconcile", "--community", "HLT-CX-HX", "--format", "json"])).unwrap();
    let overdue = report["overdue"].as_array().unwrap();
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert_eq!(overdue[0]["id"], late.as_str());
    assert_eq!(overdue[0]["department_zh"], "市政");
    let hours = overdue[0]["hours_overdue"].as_i64().unwrap();
    assert!((47..=49).contains(&hours), "{hours}");
    let text = server.admin(&["reconcile", "--community", "HLT-CX-HX"]);
    assert!(
        text.contains("超时") && text.contains("overdue") && text.contains("2 d"),
        "{text}"
    );

    // Once resolved, it is no longer overdue.
    center.ok(&["update", &late, "--status", "in_progress"]);
    center.ok(&["update", &late, "--status", "resolved"]);
    center.sync(&[]);
    let report: Value =
        serde_json::from_str(&server.admin(&["reconcile", "--community", "HLT-CX-HX", "--format", "json"])).unwrap();
    assert_eq!(report["overdue"], serde_json::json!([]));
}

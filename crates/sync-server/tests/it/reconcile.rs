//! The daily reconciliation: a scripted day in 鹤乡社区, one test per
//! anomaly kind, and the refusals. The report is read the three ways out:
//! `sync-server reconcile` (JSON, table, CSV, HTML) and `GET /v1/reports/daily`.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde_json::Value;

use crate::*;

pub const HX: &str = "HLT-CX-HX";
pub const HX03: &str = "HLT-CX-HX-03";

/// The day (Asia/Shanghai) on which the server received its latest
/// incident: the day the test's records belong to, whatever the UTC date.
pub fn server_day(server: &Server) -> String {
    let received: String = server
        .db()
        .query_row("SELECT max(first_received_at) FROM incidents", [], |r| r.get(0))
        .expect("the server holds incidents");
    let t = DateTime::parse_from_rfc3339(&received).expect("RFC 3339");
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .date_naive()
        .to_string()
}

/// `sync-server reconcile … --format json`, parsed.
#[track_caller]
pub fn reconcile_json(server: &Server, date: &str) -> Value {
    let out = server.admin(&["reconcile", "--date", date, "--community", HX, "--format", "json"]);
    serde_json::from_str(&out).expect("reconcile --format json prints JSON")
}

/// `GET /v1/reports/daily` with a bearer token (or none): status and JSON body.
pub fn http_report(server: &Server, token: Option<&str>, query: &str) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(format!("{}/v1/reports/daily?{query}", server.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("the server answers");
    let status = resp.status().as_u16();
    let body = resp.text().expect("a body");
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[track_caller]
pub fn worker<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("no row for {id} in {report:#}"))
}

fn flags(w: &Value) -> Vec<&str> {
    w["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

/// The report without the moment it was made, to compare two of them.
fn timeless(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("generated_at");
    v
}

/// Three workers and a center in 鹤乡社区, as the test describes:
/// one syncs everything, one records only, one syncs in the morning, logs
/// two more incidents and only sends its manifest.
pub struct ScriptedDay {
    pub server: Server,
    pub center_token: String,
    pub date: String,
    pub zhao: Device,
    pub qian: Device,
    pub sun: Device,
}

pub fn scripted_day() -> ScriptedDay {
    let mut server = Server::new();
    server.add_worker("w-zhao", &[HX01]);
    server.add_worker("w-qian", &[HX02]);
    server.add_worker("w-sun", &[HX03]);
    server.add_center("hx-center", HX);
    let center_token = server.token("hx-center");
    server.start();
    let zhao = Device::new("w-zhao", &[HX01]);
    let qian = Device::new("w-qian", &[HX02]);
    let sun = Device::new("w-sun", &[HX03]);
    for d in [&zhao, &qian, &sun] {
        d.enroll(&server);
    }

    // 赵: everything, photos too.
    let manhole = zhao.report(&[
        "--category",
        "manhole-cover",
        "--desc",
        "井盖缺了一角",
        "--photo",
        &fixture("manhole-exif.jpg"),
    ]);
    zhao.ok(&["update", &manhole, "--note", "已通知市政"]);
    // Three incidents carry a position, for the map (each inside its cell).
    zhao.report(&[
        "--category",
        "clutter",
        "--desc",
        "楼道堆物",
        "--lat",
        "41.122",
        "--lon",
        "122.066",
    ]);
    zhao.sync(&[]);

    // 钱: records only, on a poor link.
    qian.report(&[
        "--category",
        "curb-stone",
        "--photo",
        &fixture("curb.png"),
        "--lat",
        "41.1205",
        "--lon",
        "122.0712",
    ]);
    qian.report(&["--category", "lawn", "--photo", &fixture("wide-2400x1000.jpg")]);
    let s = qian.sync(&["--photos", "none"]);
    assert_eq!(s["acknowledged"], 2);
    assert_eq!(s["photos_uploaded"], 0);

    // 孙: a morning sync, then two more incidents and only the manifest.
    sun.report(&["--category", "illegal-parking", "--lat", "41.118", "--lon", "122.066"]);
    sun.sync(&[]);
    sun.report(&["--category", "road-surface"]);
    sun.report(&["--category", "sidewalk-slab"]);
    sun.ok(&["sync", "--manifest-only", "--retries", "1"]);

    let date = server_day(&server);
    ScriptedDay {
        server,
        center_token,
        date,
        zhao,
        qian,
        sun,
    }
}

#[test]
fn the_scripted_day_shows_who_is_in_step_complete_and_pending() {
    let day = scripted_day();
    let server = &day.server;
    let cli = reconcile_json(server, &day.date);
    let (status, http) = http_report(
        server,
        Some(&day.center_token),
        &format!("date={}&community={HX}", day.date),
    );
    assert_eq!(status, 200, "{http}");
    assert_eq!(
        timeless(cli.clone()),
        timeless(http.clone()),
        "CLI and HTTP give one report"
    );

    for r in [&cli, &http] {
        assert_eq!(r["schema"], 1);
        assert_eq!(r["community"]["id"], HX);
        assert_eq!(r["community"]["name_zh"], "鹤乡社区");
        assert_eq!(r["community"]["timezone"], "Asia/Shanghai");
        assert_eq!(r["date"], day.date.as_str());
        let ids: Vec<&str> = r["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["w-qian", "w-sun", "w-zhao"], "every worker, centers not");

        let zhao = worker(r, "w-zhao");
        assert_eq!(zhao["captured"], 2);
        assert_eq!(zhao["received"], 2);
        assert_eq!(zhao["photos_referenced"], 1);
        assert_eq!(zhao["photos_verified"], 1);
        assert_eq!(zhao["incomplete"], serde_json::json!([]));
        assert_eq!(zhao["in_step"], true);
        assert_eq!(zhao["pending_docs"], 0);
        assert_eq!(zhao["pending_photos"], 0);
        assert_eq!(zhao["no_sync_24h"], false);
        assert_eq!(zhao["clock_offset_ms"], Value::Null);
        assert!(flags(zhao).is_empty(), "{zhao:#}");

        let qian = worker(r, "w-qian");
        assert_eq!(qian["captured"], 2);
        assert_eq!(qian["received"], 2);
        assert_eq!(qian["photos_referenced"], 2);
        assert_eq!(qian["photos_verified"], 0);
        let incomplete = qian["incomplete"].as_array().unwrap();
        assert_eq!(incomplete.len(), 2, "both of 钱's incidents lack their photo");
        for i in incomplete {
            assert_eq!(i["missing_photos"], 1);
            assert_eq!(
                i["photos"][0]["files"],
                serde_json::json!(["original", "display", "thumb"])
            );
        }
        assert_eq!(qian["pending_docs"], 0);
        assert_eq!(qian["pending_photos"], 6, "three files per photo wait on the device");
        assert_eq!(qian["in_step"], false);
        assert_eq!(flags(qian), ["not_in_step", "incomplete"]);

        let sun = worker(r, "w-sun");
        // The server knows only the morning incident; the manifest counts the other two.
        assert_eq!(sun["captured"], 1);
        assert_eq!(sun["received"], 1);
        assert_eq!(sun["in_step"], false);
        assert_eq!(sun["pending_docs"], 2);
        assert_eq!(sun["pending_photos"], 0);
        assert_eq!(sun["incomplete"], serde_json::json!([]));
        assert_eq!(flags(sun), ["not_in_step"]);

        assert_eq!(r["totals"]["incidents"], 5);
        let cats: Vec<(String, String, u64)> = r["totals"]["by_category"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["code"].as_str().unwrap().to_owned(),
                    c["name_zh"].as_str().unwrap().to_owned(),
                    c["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert!(
            cats.contains(&("manhole-cover".into(), "井盖破损".into(), 1)),
            "{cats:?}"
        );
        assert_eq!(cats.iter().map(|c| c.2).sum::<u64>(), 5);
        assert_eq!(
            r["totals"]["by_status"],
            serde_json::json!([{"status": "reported", "name_zh": "已上报", "count": 5}])
        );
        assert_eq!(r["anomalies"], serde_json::json!([]));
        assert_eq!(r["open_over_3_days"], serde_json::json!([]));
    }

    // The other formats carry the same rows.
    let table = server.admin(&["reconcile", "--date", &day.date, "--community", HX]);
    for needle in ["w-zhao", "w-qian", "w-sun", "未同步完", "缺照片", "鹤乡社区", "网格员"] {
        assert!(table.contains(needle), "table lacks {needle}:\n{table}");
    }
    // It fits a 120-column terminal, and names each incomplete incident.
    for line in table.lines() {
        assert!(
            display_width(line) <= 120,
            "{} columns: {line}\n{table}",
            display_width(line)
        );
    }
    let named = table
        .lines()
        .filter(|l| l.starts_with("缺照片 incomplete:") && l.contains("w-qian"))
        .count();
    assert_eq!(named, 2, "钱's two incomplete incidents are named:\n{table}");
    let csv = server.admin(&["reconcile", "--date", &day.date, "--format", "csv"]);
    let mut rows = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(csv.as_bytes());
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    let sun = records
        .iter()
        .find(|r| &r[col("worker")] == "w-sun")
        .expect("a CSV row for w-sun");
    assert_eq!(&sun[col("pending_records")], "2");
    assert_eq!(&sun[col("in_step")], "false");
    let qian = records.iter().find(|r| &r[col("worker")] == "w-qian").unwrap();
    assert_eq!(&qian[col("missing_photos")], "2");

    let html_path = server.data_dir().join("report.html");
    server.admin(&[
        "reconcile",
        "--date",
        &day.date,
        "--format",
        "html",
        "--out",
        html_path.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("data:image/jpeg;base64,").count(),
        1,
        "赵's one thumbnail is inlined"
    );
    assert_eq!(
        html.matches("photo not on server").count(),
        2,
        "钱's two photos are missing"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "a standalone page loads nothing"
    );
    drop((day.zhao, day.qian, day.sun));
}

/// A fresh server in 鹤乡社区 whose report is read by an operator.
fn anomaly_server(workers: &[(&str, &[&str])]) -> (Server, String) {
    let mut server = Server::new();
    for (id, cells) in workers {
        server.add_worker(id, cells);
    }
    server.admin(&["worker", "add", "--id", "op", "--name", "运维", "--role", "operator"]);
    let token = server.token("op");
    server.start();
    (server, token)
}

fn report_of(server: &Server, token: &str) -> Value {
    let date = server_day(server);
    let (status, r) = http_report(server, Some(token), &format!("date={date}&community={HX}"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(timeless(reconcile_json(server, &date)), timeless(r.clone()));
    r
}

fn anomalies_of<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

#[test]
fn a_photo_taken_over_200_m_from_the_incident_is_an_anomaly() {
    let (server, token) = anomaly_server(&[("w-a", &[HX02])]);
    let a = Device::new("w-a", &[HX02]);
    a.enroll(&server);
    // manhole-exif.jpg was taken at 41.1205 N, 122.0712 E.
    let far = a.report(&[
        "--category",
        "manhole-cover",
        "--lat",
        "41.1230",
        "--lon",
        "122.0712",
        "--photo",
        &fixture("manhole-exif.jpg"),
    ]);
    let near = a.report(&[
        "--category",
        "road-surface",
        "--lat",
        "41.1206",
        "--lon",
        "122.0712",
        "--photo",
        &fixture("manhole-exif.jpg"),
    ]);
    a.sync(&[]);
    let r = report_of(&server, &token);
    let found = anomalies_of(&r, "photo_far");
    assert_eq!(found.len(), 1, "{:#}", r["anomalies"]);
    let x = found[0];
    assert_eq!(x["incident"], far.as_str());
    assert_ne!(x["incident"], near.as_str());
    let d = x["distance_m"].as_f64().unwrap();
    assert!(
        (270.0..290.0).contains(&d),
        "2.5 thousandths of a degree of latitude is about 278 m, got {d}"
    );
    assert_eq!(x["photo_lat"], 41.1205);
    assert_eq!(x["incident_lat"], 41.123);
    assert_eq!(r["anomalies"].as_array().unwrap().len(), 1);
    assert_eq!(flags(worker(&r, "w-a")), ["anomalies"]);
}

#[test]
fn a_location_outside_its_grid_cell_is_an_anomaly() {
    let (server, token) = anomaly_server(&[("w-c", &[HX01, HX02])]);
    let c = Device::new("w-c", &[HX01, HX02]);
    c.enroll(&server);
    // 41.1205 N 122.0712 E lies in HLT-CX-HX-02, but is filed under -01.
    let outside = c.report(&[
        "--category",
        "lawn",
        "--grid",
        HX01,
        "--lat",
        "41.1205",
        "--lon",
        "122.0712",
    ]);
    let inside = c.report(&[
        "--category",
        "lawn",
        "--grid",
        HX02,
        "--lat",
        "41.1205",
        "--lon",
        "122.0712",
    ]);
    c.sync(&[]);
    let r = report_of(&server, &token);
    let found = anomalies_of(&r, "outside_cell");
    assert_eq!(found.len(), 1, "{:#}", r["anomalies"]);
    assert_eq!(found[0]["incident"], outside.as_str());
    assert_eq!(found[0]["grid"], HX01);
    assert_eq!(found[0]["lat"], 41.1205);
    assert_eq!(found[0]["lon"], 122.0712);
    assert!(
        r["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["incident"] != inside.as_str())
    );
}

#[test]
fn a_capture_time_after_the_servers_receipt_is_an_anomaly() {
    let (server, token) = anomaly_server(&[("w-a", &[HX02])]);
    let a = Device::new("w-a", &[HX02]);
    a.enroll(&server);
    let two_hours_on = (Utc::now() + Duration::hours(2)).to_rfc3339();
    let future = a.report(&["--category", "tree-missing", "--at", &two_hours_on]);
    // Within the five-minute tolerance: not flagged.
    let soon = (Utc::now() + Duration::minutes(2)).to_rfc3339();
    let ok = a.report(&["--category", "tree-missing", "--at", &soon]);
    a.sync(&[]);
    let r = report_of(&server, &token);
    let found = anomalies_of(&r, "captured_after_receipt");
    assert_eq!(found.len(), 1, "{:#}", r["anomalies"]);
    assert_eq!(found[0]["incident"], future.as_str());
    let ahead = found[0]["ahead_s"].as_i64().unwrap();
    assert!((6000..=7200).contains(&ahead), "about two hours ahead, got {ahead} s");
    assert!(
        r["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["incident"] != ok.as_str())
    );
}

#[test]
fn the_same_thing_logged_by_two_workers_nearby_is_a_likely_duplicate() {
    let (server, token) = anomaly_server(&[("w-a", &[HX02]), ("w-b", &[HX02])]);
    let a = Device::new("w-a", &[HX02]);
    let b = Device::new("w-b", &[HX02]);
    a.enroll(&server);
    b.enroll(&server);
    let first = a.report(&["--category", "clutter", "--lat", "41.12100", "--lon", "122.07200"]);
    // About 7 m away, same category, another worker.
    let second = b.report(&["--category", "clutter", "--lat", "41.12105", "--lon", "122.07205"]);
    // Same spot but another category; and the same worker twice: not duplicates.
    b.report(&[
        "--category",
        "illegal-parking",
        "--lat",
        "41.12100",
        "--lon",
        "122.07200",
    ]);
    a.report(&["--category", "clutter", "--lat", "41.12101", "--lon", "122.07201"]);
    // Same category by another worker, but 100 m away.
    b.report(&["--category", "clutter", "--lat", "41.12190", "--lon", "122.07200"]);
    a.sync(&[]);
    b.sync(&[]);
    let r = report_of(&server, &token);
    let found = anomalies_of(&r, "likely_duplicate");
    // `first` and a's second clutter report each pair with `second`.
    let pairs: Vec<(String, String)> = found
        .iter()
        .map(|x| {
            (
                x["incident"].as_str().unwrap().to_owned(),
                x["other"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 2, "{:#}", r["anomalies"]);
    assert!(pairs.contains(&(first.clone(), second.clone())), "{pairs:?}");
    let x = found.iter().find(|x| x["incident"] == first.as_str()).unwrap();
    assert_eq!(x["reporter"], "w-a");
    assert_eq!(x["other_reporter"], "w-b");
    assert_eq!(x["category"], "clutter");
    let d = x["distance_m"].as_f64().unwrap();
    assert!((5.0..10.0).contains(&d), "about 7 m, got {d}");
    assert!(x["minutes_apart"].as_i64().unwrap() <= 1);
    assert_eq!(r["anomalies"].as_array().unwrap().len(), 2);
}

#[test]
fn incidents_open_for_more_than_three_days_are_listed() {
    let (server, token) = anomaly_server(&[("w-b", &[HX02])]);
    let b = Device::new("w-b", &[HX02]);
    b.enroll(&server);
    let five_days_ago = (Utc::now() - Duration::days(5) - Duration::hours(1)).to_rfc3339();
    let two_days_ago = (Utc::now() - Duration::days(2)).to_rfc3339();
    let old = b.report(&["--category", "house-leak", "--at", &five_days_ago]);
    b.report(&["--category", "house-leak", "--at", &two_days_ago]);
    let fixed = b.report(&["--category", "clutter", "--at", &five_days_ago]);
    b.ok(&["update", &fixed, "--status", "resolved", "--note", "已清理"]);
    b.sync(&[]);
    let r = report_of(&server, &token);
    let open = r["open_over_3_days"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["id"], old.as_str());
    assert_eq!(open[0]["status"], "reported");
    assert_eq!(open[0]["days_open"], 5);
    let w = worker(&r, "w-b");
    assert_eq!(w["received"], 3);
    assert_eq!(w["captured"], 0, "none was captured that day");
}

/// Runs `sync-server ARGS` on the data dir; exit code and stderr.
/// Columns a terminal gives `line`: two for each wide (CJK) character.
fn display_width(line: &str) -> usize {
    let wide = |c: char| matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6);
    line.chars().map(|c| if wide(c) { 2 } else { 1 }).sum()
}

pub fn admin_fails(server: &Server, args: &[&str]) -> (i32, String) {
    let out = server.run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn reports_are_refused_without_a_reader_token_outside_scope_or_on_bad_input() {
    let mut server = Server::new();
    server.add_worker("w-a", &[HX01]);
    server.add_worker("w-x", &["HLT-XS-XS-01"]);
    server.add_center("hx-center", HX);
    server.add_center("xs-center", "HLT-XS-XS");
    server.admin(&["worker", "add", "--id", "op", "--name", "运维", "--role", "operator"]);
    let center = server.token("hx-center");
    let op = server.token("op");
    let revoked = server.token("xs-center");
    server.start();
    let a = Device::new("w-a", &[HX01]);
    a.enroll(&server);
    a.report(&["--category", "lawn"]);
    a.sync(&[]);
    let device_token = std::fs::read_to_string(a.dir.path().join("device.token")).unwrap();
    let date = server_day(&server);
    let q = format!("date={date}&community={HX}");

    let check = |token: Option<&str>, query: &str, status: u16, code: &str| {
        let (got, body) = http_report(&server, token, query);
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["code"], code, "{query}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(!message.is_empty() && !message.contains('\n'), "{message}");
        message.to_owned()
    };
    check(None, &q, 401, "unauthorized");
    check(Some("not-a-token"), &q, 401, "unauthorized");
    check(Some(device_token.trim()), &q, 403, "forbidden_role");
    check(
        Some(&center),
        &format!("date={date}&community=HLT-XS-XS"),
        403,
        "out_of_scope",
    );
    check(
        Some(&center),
        &format!("date=2026-02-30&community={HX}"),
        400,
        "bad_date",
    );
    check(Some(&center), "date=tomorrow", 400, "bad_date");
    check(Some(&center), &format!("community={HX}"), 400, "bad_date");
    check(
        Some(&op),
        &format!("date={date}&community=NOWHERE"),
        400,
        "unknown_community",
    );
    check(
        Some(&center),
        &format!("date={date}&community=NOWHERE"),
        400,
        "unknown_community",
    );
    let m = check(Some(&op), &format!("date={date}"), 400, "community_needed");
    assert!(m.contains(HX) && m.contains("HLT-XS-XS"), "{m}");
    server.admin(&["device", "revoke", &revoked_id(&server, "xs-center")]);
    check(
        Some(&revoked),
        &format!("date={date}&community=HLT-XS-XS"),
        401,
        "unauthorized",
    );

    // A center needs no community= (its own), an operator names one.
    let (s, r) = http_report(&server, Some(&center), &format!("date={date}"));
    assert_eq!((s, r["community"]["id"].as_str()), (200, Some(HX)));
    let (s, r) = http_report(&server, Some(&op), &format!("date={date}&community=HLT-XS-XS"));
    assert_eq!(s, 200);
    assert_eq!(
        worker(&r, "w-x")["captured"],
        0,
        "a worker with nothing that day has a row"
    );
    assert_eq!(flags(worker(&r, "w-x")), ["never_synced"]);

    // The CLI: a bad date, a community left out or unknown are all
    // mistakes in the command line (2), as they are for `export`.
    let (code, err) = admin_fails(&server, &["reconcile", "--date", "2026-13-01"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("2026-13-01") && err.contains("YYYY-MM-DD"), "{err}");
    let (code, err) = admin_fails(&server, &["reconcile", "--date", &date]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--community") && err.contains(HX) && err.contains("HLT-XS-XS"),
        "{err}"
    );
    let (code, err) = admin_fails(&server, &["reconcile", "--date", &date, "--community", "NOWHERE"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown community `NOWHERE`") && err.contains(HX), "{err}");
    let (code, err) = admin_fails(&server, &["reconcile", "--date", &date, "--format", "pdf"]);
    assert_eq!(code, 2, "{err}");
}

fn revoked_id(server: &Server, worker: &str) -> String {
    let list: Value = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["worker"]["id"] == worker)
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .expect("the token is listed")
}

#[test]
fn reconcile_without_a_date_is_today_in_the_communitys_zone() {
    let (server, _token) = anomaly_server(&[("w1", &[HX01])]);
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    let id = dev.report(&["--category", "lawn"]);
    dev.sync(&[]);
    let out = server.admin(&["reconcile", "--community", HX, "--format", "json"]);
    let today: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(today["date"], crate::guard::today(), "{today}");
    assert!(
        today["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id.as_str()),
        "{today}"
    );
    assert_eq!(
        timeless(today),
        timeless(reconcile_json(&server, &crate::guard::today()))
    );
}

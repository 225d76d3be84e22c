//! Exports from the server: incidents logged and synced by real `field`
//! devices, exported over HTTP and with `sync-server export`, read back with
//! the csv crate and with GDAL's `ogrinfo` and `ogr2ogr`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use crate::*;

pub const XS01: &str = "HLT-XS-XS-01";
pub const HYPERLINK: &str = "=HYPERLINK(\"http://evil.example/\",\"click\")";

/// A server with two communities' incidents on it, synced from devices.
pub struct Seeded {
    pub server: Server,
    /// 鹤乡社区, HX01, manhole-cover, 2026-11-20 09:00 +08:00, located, photo synced whole; reported.
    pub a: String,
    /// 鹤乡社区, HX02, lawn, 2026-11-20 23:30 UTC = 2026-11-21 07:30 in Shanghai; resolved.
    pub b: String,
    /// 鹤乡社区, HX01, clutter, 2026-11-22 10:00 +08:00; dispatched.
    pub c: String,
    /// 兴盛社区, XS01, illegal-parking, 2026-11-21 08:00 +08:00, no position, photo not uploaded.
    pub d: String,
    /// Read-only tokens: operator, 鹤乡 center, 兴盛 center; a grid worker's device token.
    pub operator: String,
    pub hx_center: String,
    pub xs_center: String,
    pub worker: String,
}

pub fn seed(flags: &[&str]) -> Seeded {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01, HX02]);
    server.add_worker("w-zhao", &[XS01]);
    server.add_center("hx-center", "HLT-CX-HX");
    server.add_center("xs-center", "HLT-XS-XS");
    server.admin(&["worker", "add", "--id", "op", "--name", "运维", "--role", "operator"]);
    server.start_with(flags);

    let li = Device::new("w-li", &[HX01, HX02]);
    li.enroll(&server);
    let a = li.report(&[
        "--category",
        "manhole-cover",
        "--grid",
        HX01,
        &format!("--desc={HYPERLINK}"),
        "--lat",
        "41.1221",
        "--lon",
        "122.0655",
        "--address",
        "鹤乡路12号",
        "--at",
        "2026-11-20T09:00:00+08:00",
        "--photo",
        &fixture("manhole-exif.jpg"),
    ]);
    let b = li.report(&[
        "--category",
        "lawn",
        "--grid",
        HX02,
        "--desc",
        "草坪被踩",
        "--lat",
        "41.1205",
        "--lon",
        "122.0712",
        "--at",
        "2026-11-20T23:30:00+00:00",
    ]);
    let c = li.report(&[
        "--category",
        "clutter",
        "--grid",
        HX01,
        "--at",
        "2026-11-22T10:00:00+08:00",
    ]);
    li.ok(&["update", &b, "--status", "resolved", "--note", "已补种"]);
    let synced = li.sync(&[]);
    assert_eq!(synced["acknowledged"], 3);
    // The center dispatches: a worker's device may not.
    let hx = Device::new("hx-center", &[HX01, HX02]);
    hx.enroll(&server);
    hx.sync(&[]);
    hx.ok(&["update", &c, "--status", "dispatched"]);
    assert_eq!(hx.sync(&[])["acknowledged"], 1);

    let zhao = Device::new("w-zhao", &[XS01]);
    zhao.enroll(&server);
    let d = zhao.report(&[
        "--category",
        "illegal-parking",
        "--at",
        "2026-11-21T08:00:00+08:00",
        "--photo",
        &fixture("wide-2400x1000.jpg"),
    ]);
    zhao.sync(&["--photos", "none"]);

    let worker = std::fs::read_to_string(li.dir.path().join("device.token"))
        .expect("an enrolled device has a token")
        .trim()
        .to_owned();
    Seeded {
        a,
        b,
        c,
        d,
        operator: server.token("op"),
        hx_center: server.token("hx-center"),
        xs_center: server.token("xs-center"),
        worker,
        server,
    }
}

/// An HTTP answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `GET url`, with a bearer token if given.
pub fn get_url(url: &str, token: Option<&str>) -> Answer {
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("the server answers");
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().expect("a body").to_vec(),
    }
}

pub fn get(server: &Server, path_and_query: &str, token: Option<&str>) -> Answer {
    get_url(&format!("{}{path_and_query}", server.url), token)
}

/// The ids in a CSV export, in order.
fn csv_ids(text: &str) -> Vec<String> {
    rows(text).into_iter().map(|r| r["id"].clone()).collect()
}

fn rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    r.records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[track_caller]
fn export_csv(s: &Seeded, query: &str, token: &str) -> Vec<String> {
    let a = get(&s.server, &format!("/v1/exports/incidents.csv?{query}"), Some(token));
    assert_eq!(a.status, 200, "{query}: {}", a.text());
    csv_ids(&a.text())
}

#[test]
fn csv_filters_each_work_and_formulas_are_guarded() {
    let s = seed(&[]);
    let (a, b, c, d) = (&s.a, &s.b, &s.c, &s.d);
    #[rustfmt::skip]
    let cases: &[(&str, &[&String])] = &[
        ("", &[a, b, c, d]),
        // b was captured at 23:30 UTC on the 20th: the 21st in Shanghai.
        ("from=2026-11-21&to=2026-11-21", &[b, d]),
        ("from=2026-11-21", &[b, c, d]),
        ("to=2026-11-20", &[a]),
        ("community=HLT-CX-HX", &[a, b, c]),
        ("community=HLT-XS-XS", &[d]),
        ("grid=HLT-CX-HX-01", &[a, c]),
        ("status=resolved", &[b]),
        ("status=dispatched", &[c]),
        ("category=lawn", &[b]),
        ("community=HLT-CX-HX&from=2026-11-21&category=clutter", &[c]),
        ("status=closed", &[]),
        // Empty values are no filter.
        ("from=&status=&community=", &[a, b, c, d]),
    ];
    for (query, want) in cases {
        let want: Vec<String> = want.iter().map(|s| (*s).clone()).collect();
        assert_eq!(export_csv(&s, query, &s.operator), want, "?{query}");
    }

    let answer = get(
        &s.server,
        "/v1/exports/incidents.csv?community=HLT-CX-HX",
        Some(&s.operator),
    );
    assert_eq!(answer.header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(
        answer.header("content-disposition"),
        "attachment; filename=\"incidents-HLT-CX-HX.csv\""
    );
    let all = rows(&answer.text());
    let row_a = all.iter().find(|r| &r["id"] == a).unwrap();
    assert_eq!(
        row_a["description"],
        format!("'{HYPERLINK}"),
        "the formula is made plain text"
    );
    assert_eq!(row_a["category_zh"], "井盖破损");
    assert_eq!(row_a["address"], "鹤乡路12号");
    assert_eq!(row_a["photos"], "1");
    let row_b = all.iter().find(|r| &r["id"] == b).unwrap();
    assert_eq!(
        row_b["captured_at"], "2026-11-20T23:30:00+00:00",
        "the device's own time is kept"
    );
    assert_eq!(row_b["status"], "resolved");
    assert_eq!(row_b["last_note"], "已补种");
    // What the server knows besides the document: the name, the first
    // receipt, when it was resolved, and a link its reader can open.
    assert_eq!(row_a["reporter_name"], "w-li");
    assert!(row_a["received_at"].ends_with('Z'), "{}", row_a["received_at"]);
    assert!(!row_b["resolved_at"].is_empty() && row_a["resolved_at"].is_empty());
    let photo = &row_a["photo_url"];
    assert!(photo.starts_with(&s.server.url) && photo.ends_with(".jpg"), "{photo}");
    let shown = get_url(photo, Some(&s.operator));
    assert_eq!(shown.status, 200, "the photo link opens with the same token");

    // The command line on the data dir gives the same bytes.
    for query in [
        "",
        "from=2026-11-21&to=2026-11-21",
        "grid=HLT-CX-HX-01&status=dispatched",
    ] {
        let mut args = vec!["export".to_owned(), "--format".into(), "csv".into()];
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            args.extend([format!("--{k}"), v.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let http = get(
            &s.server,
            &format!("/v1/exports/incidents.csv?{query}"),
            Some(&s.operator),
        );
        // The same but for the photo links, which only the server's
        // address makes (the command line does not know it).
        let unlinked = |text: &str| -> Vec<Vec<String>> {
            let mut r = csv::Reader::from_reader(text.as_bytes());
            let link = r.headers().unwrap().iter().position(|h| h == "photo_url").unwrap();
            r.records()
                .map(|rec| {
                    let rec = rec.unwrap();
                    rec.iter()
                        .enumerate()
                        .filter(|(i, _)| *i != link)
                        .map(|(_, v)| v.to_owned())
                        .collect()
                })
                .collect()
        };
        assert_eq!(unlinked(&s.server.admin(&args)), unlinked(&http.text()), "{query}");
    }
}

#[test]
fn json_holds_whole_incidents_and_geojson_has_points() {
    let s = seed(&[]);
    let answer = get(
        &s.server,
        "/v1/exports/incidents.json?grid=HLT-CX-HX-02",
        Some(&s.operator),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), "application/json");
    let all = answer.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], s.b.as_str());
    assert_eq!(all[0]["category_en"], "Damaged lawn");
    assert_eq!(all[0]["status_history"].as_array().unwrap().len(), 2);
    assert_eq!(all[0]["notes"][0]["text"], "已补种");

    let answer = get(
        &s.server,
        "/v1/exports/incidents.geojson?from=2026-11-20&to=2026-11-21",
        Some(&s.operator),
    );
    assert_eq!(answer.header("content-type"), "application/geo+json");
    assert_eq!(
        answer.header("content-disposition"),
        "attachment; filename=\"incidents-2026-11-20-to-2026-11-21.geojson\""
    );
    let gj = answer.json();
    assert_eq!(gj["type"], "FeatureCollection");
    let features = gj["features"].as_array().unwrap();
    let ids: Vec<&str> = features.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [&s.a, &s.b, &s.d]);
    assert_eq!(features[0]["geometry"]["coordinates"][0], 122.0655);
    assert_eq!(features[0]["geometry"]["coordinates"][1], 41.1221);
    assert_eq!(features[2]["geometry"], serde_json::Value::Null);
}

/// A GDAL tool from PATH; `cargo xtask test` installs gdal-bin, so its absence is a failure.
fn gdal(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{tool}` (GDAL) is not on PATH; install gdal-bin to check the GeoJSON export"))
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn geojson_opens_in_gdal_and_round_trips_ids() {
    let (ogrinfo, ogr2ogr) = (gdal("ogrinfo"), gdal("ogr2ogr"));
    let s = seed(&[]);
    let folder = tempfile::tempdir().unwrap();

    // From the command line on the data dir, every community.
    let file = folder.path().join("all.geojson");
    let out = s
        .server
        .run(&["export", "--format", "geojson", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "--out prints nothing on stdout");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("wrote 4 incidents to"), "{said}");

    let info = run_ok(Command::new(&ogrinfo).args(["-ro", "-al", "-so"]).arg(&file));
    for want in [
        "Geometry: Point",
        "Feature Count: 4",
        "category_zh: String",
        "status: String",
    ] {
        assert!(info.contains(want), "{want:?} missing from ogrinfo:\n{info}");
    }
    let csv_file = folder.path().join("all.csv");
    run_ok(Command::new(&ogr2ogr).args(["-f", "CSV"]).arg(&csv_file).arg(&file));
    let text = std::fs::read_to_string(&csv_file).unwrap();
    let got: BTreeSet<String> = csv_ids(&text).into_iter().collect();
    let want: BTreeSet<String> = [&s.a, &s.b, &s.c, &s.d].into_iter().cloned().collect();
    assert_eq!(got, want, "ids through GDAL:\n{text}");
    let by_id: BTreeMap<String, BTreeMap<String, String>> =
        rows(&text).into_iter().map(|r| (r["id"].clone(), r)).collect();
    assert_eq!(by_id[&s.a]["description"], HYPERLINK, "GeoJSON keeps text as typed");
    assert_eq!(by_id[&s.b]["category_zh"], "草坪破损");

    // Over HTTP, one community's.
    let answer = get(
        &s.server,
        "/v1/exports/incidents.geojson?community=HLT-CX-HX",
        Some(&s.hx_center),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let file = folder.path().join("hx.geojson");
    std::fs::write(&file, &answer.body).unwrap();
    let info = run_ok(Command::new(&ogrinfo).args(["-ro", "-al", "-so"]).arg(&file));
    assert!(info.contains("Feature Count: 3"), "{info}");
}

#[test]
fn a_center_sees_only_its_community_and_a_worker_none() {
    let s = seed(&[]);
    assert_eq!(export_csv(&s, "", &s.hx_center), [&*s.a, &s.b, &s.c]);
    assert_eq!(export_csv(&s, "status=resolved", &s.hx_center), [&*s.b]);
    assert_eq!(export_csv(&s, "", &s.xs_center), [&*s.d]);
    assert_eq!(export_csv(&s, "community=HLT-CX-HX", &s.operator).len(), 3);

    #[rustfmt::skip]
    let refused: &[(&str, Option<&str>, u16, &str)] = &[
        ("community=HLT-XS-XS", Some(&s.hx_center), 403, "out_of_scope"),
        ("grid=HLT-XS-XS-01", Some(&s.hx_center), 403, "out_of_scope"),
        ("grid=HLT-CX-HX-01", Some(&s.xs_center), 403, "out_of_scope"),
        ("", Some(&s.worker), 403, "forbidden_role"),
        ("", None, 401, "unauthorized"),
        ("", Some("not-a-token"), 401, "unauthorized"),
    ];
    for (query, token, status, code) in refused {
        let a = get(&s.server, &format!("/v1/exports/incidents.csv?{query}"), *token);
        assert_eq!(a.status, *status, "?{query}: {}", a.text());
        assert_eq!(a.json()["code"], *code, "?{query}");
        assert!(
            !a.text().contains(&s.d) && !a.text().contains(&s.a),
            "no incident leaks"
        );
    }
}

#[test]
fn bad_filters_are_refused_with_a_clear_400() {
    let s = seed(&[]);
    #[rustfmt::skip]
    let cases: &[(&str, u16, &str, &str)] = &[
        ("incidents.csv?from=2026-11-31", 400, "bad_date", "YYYY-MM-DD"),
        ("incidents.csv?to=yesterday", 400, "bad_date", "`to`"),
        ("incidents.csv?from=2026-11-22&to=2026-11-21", 400, "bad_date", "after"),
        ("incidents.csv?status=open", 400, "unknown_status", "in_progress"),
        ("incidents.json?category=grass", 400, "unknown_category", "lawn"),
        ("incidents.csv?community=HLT-XX", 400, "unknown_community", "HLT-CX-HX"),
        ("incidents.geojson?grid=HX-99", 400, "unknown_grid", "HLT-CX-HX-01"),
        ("incidents.csv?community=HLT-XS-XS&grid=HLT-CX-HX-01", 400, "bad_filter", "not in community"),
        ("incidents.csv?stauts=closed", 400, "bad_query", "stauts"),
        ("incidents.xlsx", 404, "no_such_export", "incidents.csv"),
    ];
    for (path, status, code, needle) in cases {
        let a = get(&s.server, &format!("/v1/exports/{path}"), Some(&s.operator));
        assert_eq!(a.status, *status, "{path}: {}", a.text());
        let body = a.json();
        assert_eq!(body["code"], *code, "{path}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{path}: {message}");
        assert!(!message.contains('\n'), "one sentence: {message}");
    }

    // The command line: exit code 2 and the same sentence.
    for (args, needle) in [
        (&["--status", "open"][..], "unknown status `open`"),
        (&["--from", "2026-02-30"][..], "YYYY-MM-DD"),
        (&["--community", "HLT-XX"][..], "unknown community"),
    ] {
        let out = s.server.run(&[&["export", "--format", "csv"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

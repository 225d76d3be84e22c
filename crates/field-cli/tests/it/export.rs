//! `field export`: CSV read back with the csv crate, GeoJSON read back with
//! serde_json and with GDAL's `ogrinfo`, JSON, `--out`, and the filters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Device, HX01, IN_HX02, WORKER, s};

const HEADER: [&str; 24] = [
    "id",
    "case",
    "captured_at",
    "category",
    "category_zh",
    "category_en",
    "status",
    "grid",
    "lat",
    "lon",
    "accuracy_m",
    "address",
    "description",
    "reporter",
    "device",
    "photos",
    "notes",
    "last_note",
    "department",
    "deadline",
    "reporter_name",
    "received_at",
    "resolved_at",
    "photo_url",
];

/// Parses CSV into its header and one map per row.
#[track_caller]
fn parse_csv(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|e| panic!("bad CSV record ({e}):\n{text}"));
            header.iter().cloned().zip(rec.iter().map(str::to_owned)).collect()
        })
        .collect();
    (header, rows)
}

#[test]
fn csv_has_a_header_one_row_per_incident_and_no_live_formulas() {
    let dev = Device::setup();
    // (what the worker typed, what a spreadsheet must receive)
    let descriptions = [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tTAB", "'\tTAB"),
        ("a, \"quoted\"\nsecond line", "a, \"quoted\"\nsecond line"),
        ("1+1=2", "1+1=2"),
        ("", ""),
    ];
    let mut want = BTreeMap::new();
    for (typed, written) in descriptions {
        // `--desc=TEXT`: clap takes `--desc -1` for two flags (see below).
        let id = dev.report(&["--category", "lawn", &format!("--desc={typed}")]);
        want.insert(id, written);
    }
    let mut args = vec![
        "--category",
        "manhole-cover",
        "--desc",
        "located",
        "--address",
        "=HYPERLINK(\"http://x\")",
        "--accuracy",
        "3.5",
        "--at",
        "2026-11-20T09:15:30+08:00",
    ];
    args.extend(IN_HX02);
    let located = dev.report(&args);
    dev.ok(["update", &located, "--note", "first"]);
    dev.ok(["update", &located, "--note=-danger"]);

    let text = dev.ok(["export", "--format", "csv"]);
    let (header, rows) = parse_csv(&text);
    assert_eq!(header, HEADER);
    assert_eq!(rows.len(), descriptions.len() + 1);
    let by_id: BTreeMap<&str, &BTreeMap<String, String>> = rows.iter().map(|r| (r["id"].as_str(), r)).collect();
    for (id, written) in &want {
        let row = by_id[id.as_str()];
        assert_eq!(row["description"], *written, "row {id}");
        assert_eq!(row["category_zh"], "草坪破损");
        assert_eq!(row["category_en"], "Damaged lawn");
        assert_eq!(row["status"], "reported");
        assert_eq!(row["grid"], HX01);
        assert_eq!(row["lat"], "");
        assert_eq!(row["reporter"], WORKER);
    }
    let row = by_id[located.as_str()];
    assert_eq!(row["captured_at"], "2026-11-20T09:15:30+08:00");
    assert_eq!(row["category"], "manhole-cover");
    assert_eq!(row["category_zh"], "井盖破损");
    assert_eq!(row["grid"], HX01, "a one-cell worker reports into that cell");
    assert_eq!(row["lat"].parse::<f64>().unwrap(), 41.1205);
    assert_eq!(row["lon"].parse::<f64>().unwrap(), 122.0712);
    assert_eq!(row["accuracy_m"], "3.5");
    assert_eq!(row["address"], "'=HYPERLINK(\"http://x\")");
    assert_eq!(row["notes"], "2");
    assert_eq!(row["last_note"], "'-danger");
    assert_eq!(row["photos"], "0");
}

#[test]
fn geojson_is_a_feature_collection_of_points() {
    let dev = Device::setup();
    let mut args = vec!["--category", "manhole-cover", "--desc", "井盖"];
    args.extend(IN_HX02);
    let located = dev.report(&args);
    let nowhere = dev.report(&["--category", "neighbor-dispute"]);
    let gj = dev.json(["export", "--format", "geojson"]);
    assert_eq!(gj["type"], "FeatureCollection");
    let features = gj["features"].as_array().unwrap();
    assert_eq!(features.len(), 2);
    let find = |id: &str| {
        features
            .iter()
            .find(|f| f["properties"]["id"] == id)
            .unwrap_or_else(|| panic!("no feature {id}"))
    };
    let f = find(&located);
    assert_eq!(f["type"], "Feature");
    assert_eq!(f["geometry"]["type"], "Point");
    let coords = f["geometry"]["coordinates"].as_array().unwrap();
    assert_eq!(coords.len(), 2);
    crate::assert_near(&coords[0], 122.0712);
    crate::assert_near(&coords[1], 41.1205);
    assert_eq!(f["properties"]["category"], "manhole-cover");
    assert_eq!(f["properties"]["category_zh"], "井盖破损");
    assert_eq!(f["properties"]["category_en"], "Broken manhole cover");
    assert_eq!(f["properties"]["status"], "reported");
    assert_eq!(f["properties"]["grid"], HX01);
    assert_eq!(f["properties"]["description"], "井盖");
    assert_eq!(f["properties"]["reporter"], WORKER);

    let f = find(&nowhere);
    assert_eq!(f["geometry"], Value::Null);
    assert_eq!(f["properties"]["category_zh"], "邻里纠纷");
}

/// `ogrinfo` from PATH; `cargo xtask test` installs GDAL, so its absence is a failure.
fn ogrinfo() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("ogrinfo"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`ogrinfo` (GDAL) is not on PATH; install gdal-bin \
                 (`apt-get install -y gdal-bin`) to check the GeoJSON export"
            )
        })
}

#[test]
fn geojson_opens_in_gdal() {
    let ogrinfo = ogrinfo();
    let dev = Device::setup();
    for at in ["41.1205,122.0712", "41.1221,122.0655", ""] {
        let mut args = vec!["--category", "road-surface"];
        if let Some((lat, lon)) = at.split_once(',') {
            args.extend(["--lat", lat, "--lon", lon]);
        }
        dev.report(&args);
    }
    let file = dev.path().join("incidents.geojson");
    dev.ok(["export", "--format", "geojson", "--out", file.to_str().unwrap()]);
    let out = std::process::Command::new(ogrinfo)
        .args(["-ro", "-al", "-so"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ogrinfo failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in ["Geometry: Point", "Feature Count: 3", "category_zh: String"] {
        assert!(text.contains(want), "{want:?} missing from ogrinfo:\n{text}");
    }
}

#[test]
fn json_is_an_array_of_whole_incidents() {
    let dev = Device::setup();
    let id = dev.report(&["--category", "house-leak", "--desc", "漏水"]);
    dev.ok(["update", &id, "--status", "dispatched", "--note", "called"]);
    let all = dev.json(["export", "--format", "json"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1);
    let i = &all[0];
    assert_eq!(i, &dev.show(&id), "export json and show --json disagree");
    assert_eq!(s(i, "category_zh"), "房屋漏水");
    assert_eq!(i["notes"][0]["text"], "called");
    assert_eq!(i["status_history"].as_array().unwrap().len(), 2);

    let empty = dev.json(["export", "--format", "json", "--status", "closed"]);
    assert_eq!(empty, json!([]));
}

#[test]
fn out_writes_the_file_and_nothing_to_stdout() {
    let dev = Device::setup();
    dev.report(&["--category", "lawn", "--desc", "=1"]);
    dev.report(&["--category", "clutter"]);
    let folder = tempfile::tempdir().unwrap();
    for format in ["csv", "geojson", "json"] {
        let printed = dev.ok(["export", "--format", format]);
        let file = folder.path().join(format!("out.{format}"));
        std::fs::write(&file, "an older export that must be replaced whole").unwrap();
        let a = dev
            .field(["export", "--format", format, "--out", file.to_str().unwrap()])
            .success()
            .stdout("");
        let said = crate::stderr(&a);
        assert!(
            said.contains(&format!("wrote 2 incidents to {}", file.display())),
            "{said}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), printed, "{format}");
    }
    // Only the three exports: no temporary files left beside them.
    let mut names: Vec<String> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["out.csv", "out.geojson", "out.json"]);

    // A relative path is relative to where the worker is.
    dev.cmd()
        .current_dir(folder.path())
        .args(["export", "--format", "csv", "--out", "here.csv"])
        .assert()
        .success()
        .stdout("");
    assert!(Path::new(&folder.path().join("here.csv")).is_file());
}

#[test]
fn export_filters_apply() {
    let dev = Device::setup();
    let a = dev.report(&["--category", "lawn", "--at", "2026-11-20T09:00:00+08:00"]);
    let b = dev.report(&["--category", "lawn", "--at", "2026-11-21T09:00:00+08:00"]);
    let c = dev.report(&["--category", "clutter", "--at", "2026-11-21T10:00:00+08:00"]);
    dev.ok(["update", &c, "--status", "resolved"]);
    #[rustfmt::skip]
    let cases: &[(&[&str], &[&String])] = &[
        (&[], &[&a, &b, &c]),
        (&["--category", "lawn"], &[&a, &b]),
        (&["--status", "resolved"], &[&c]),
        (&["--date", "2026-11-21"], &[&b, &c]),
        (&["--date", "2026-11-21", "--category", "lawn"], &[&b]),
        (&["--status", "closed"], &[]),
    ];
    for (filters, want) in cases {
        let want: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
        let run = |format: &str| {
            let mut args = vec!["export", "--format", format];
            args.extend_from_slice(filters);
            dev.ok(&args)
        };
        let (_, rows) = parse_csv(&run("csv"));
        let csv_ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str()).collect();
        assert_eq!(csv_ids, want, "csv {filters:?}");
        let gj: Value = serde_json::from_str(&run("geojson")).unwrap();
        let gj_ids: Vec<&str> = gj["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        assert_eq!(gj_ids, want, "geojson {filters:?}");
        let js: Value = serde_json::from_str(&run("json")).unwrap();
        let js_ids: Vec<&str> = js.as_array().unwrap().iter().map(|i| s(i, "id")).collect();
        assert_eq!(js_ids, want, "json {filters:?}");
    }
}

#[test]
fn export_refuses_bad_arguments() {
    let dev = Device::setup();
    dev.report(&["--category", "lawn"]);
    #[rustfmt::skip]
    let usage: &[(&[&str], &[&str])] = &[
        (&["export", "--format", "xlsx"], &["invalid value 'xlsx'", "csv", "geojson", "json"]),
        (&["export"], &["--format"]),
        (&["export", "--format", "csv", "--status", "open"], &["unknown status `open`"]),
        (&["export", "--format", "csv", "--category", "grass"], &["unknown category `grass`"]),
        (&["export", "--format", "csv", "--date", "2026-11-31"], &["YYYY-MM-DD"]),
    ];
    for (args, needles) in usage {
        dev.fails(*args, 2, needles);
    }
    let nowhere = dev.path().join("no/such/folder/out.csv");
    dev.fails(
        ["export", "--format", "csv", "--out", nowhere.to_str().unwrap()],
        1,
        &["cannot write", "out.csv"],
    );
}

#[test]
fn the_csv_export_holds_no_formula_under_any_separator() {
    let cells = [
        "=1+1", "ok;=2+2", "ok\t=3+3", "\t=4+4", "+5+5", "-6+6", "@SUM(7)", "a,=8+8",
    ];
    let naive = format!("a\n{}\n", cells.join(","));
    // (Calc runs `=` formulas from CSV; `+`, `-` and `@` matter to Excel.)
    let with_eq = cells.iter().filter(|c| c.contains('=')).count();
    assert_eq!(sync_core::testing::calc_formula_cells(naive.as_bytes()), with_eq);
    let dev = Device::setup();
    for text in cells {
        let id = dev.report(&["--category", "lawn", "--desc", text, "--address", text]);
        dev.ok(["update", &id, &format!("--note={text}")]);
    }
    let csv = dev.ok(["export", "--format", "csv"]);
    assert_eq!(sync_core::testing::calc_formula_cells(csv.as_bytes()), 0, "{csv}");
}

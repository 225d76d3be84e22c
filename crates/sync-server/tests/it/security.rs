//! What the server keeps from other local users and from the network.

use std::os::unix::fs::PermissionsExt;

use crate::{Device, HX01, Server, fixture};

#[test]
fn the_server_data_dir_is_its_owners_alone_whatever_the_umask() {
    let mut server = Server::new();
    server.open_umask = true;
    std::fs::set_permissions(server.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    server.add_worker("w1", &[HX01]);
    server.start();
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    dev.report(&["--category", "manhole-cover", "--photo", &fixture("manhole-exif.jpg")]);
    dev.sync(&[]);
    let modes = sync_core::testing::modes_under(server.data_dir());
    server.kill();
    let names: Vec<&str> = modes.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(crate::on_postgres() || names.contains(&"server.sqlite3"), "{names:?}");
    assert!(
        crate::on_postgres() || names.iter().any(|n| n.starts_with("photos/") && n.len() > 70),
        "{names:?}"
    );
    for (name, mode, is_dir) in &modes {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{name:?} is {mode:o} in {modes:?}");
    }
}

/// Text a spreadsheet would run as a formula in some cell if it split on
/// comma, semicolon or tab and the cell were neither quoted nor guarded.
const FORMULAS: &[&str] = &[
    "=1+1", "ok;=2+2", "ok\t=3+3", "\t=4+4", "+5+5", "-6+6", "@SUM(7)", "a,=8+8",
];

#[test]
fn csv_exports_and_reports_hold_no_formula_under_any_separator() {
    // The check itself: these cells, written plainly, are formulas in Calc.
    let naive = format!("a\n{}\n", FORMULAS.join(","));
    // (Calc runs `=` formulas from CSV; `+`, `-` and `@` matter to Excel.)
    let with_eq = FORMULAS.iter().filter(|c| c.contains('=')).count();
    assert_eq!(sync_core::testing::calc_formula_cells(naive.as_bytes()), with_eq);

    let mut server = Server::new();
    server.admin(&["worker", "add", "--id", "w1", "--name", "ok;=9+9", "--grid", HX01]);
    server.admin(&["worker", "add", "--id", "op", "--name", "op", "--role", "operator"]);
    server.start();
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    for text in FORMULAS {
        let at = "2026-11-20T09:00:00+08:00";
        dev.report(&["--category", "lawn", "--desc", text, "--address", text, "--at", at]);
    }
    dev.sync(&[]);
    let token = server.token("op");
    let export = crate::exports::get(&server, "/v1/exports/incidents.csv", Some(&token));
    assert_eq!(export.status, 200);
    let report = server.admin(&[
        "reconcile",
        "--date",
        "2026-11-20",
        "--community",
        "HLT-CX-HX",
        "--format",
        "csv",
    ]);
    assert!(report.contains("ok;=9+9"), "the report names the worker: {report}");
    for (what, csv) in [("the export", export.body), ("the report", report.into_bytes())] {
        assert_eq!(
            sync_core::testing::calc_formula_cells(&csv),
            0,
            "{what}:\n{}",
            String::from_utf8_lossy(&csv)
        );
    }
}

/// The audit log's events as (kind, account, client), oldest first.
fn audit_events(server: &Server) -> Vec<(String, String, String)> {
    let rows: serde_json::Value = serde_json::from_str(&server.admin(&["audit", "--json"])).unwrap();
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("-").to_owned();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (text(r, "kind"), text(r, "account"), text(r, "client")))
        .collect()
}

#[test]
fn the_audit_log_records_each_security_and_data_event_with_account_and_client() {
    use crate::dashboard::{form_csrf, get as page, post_form, session_cookie};
    use crate::exports::get;
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.add_center("hx-center", "HLT-CX-HX");
    let center = server.token("hx-center");
    server.start();
    // A device set up for a cell the server did not give it: its push is refused.
    let dev = Device::new("w1", &[HX01, crate::HX02]);
    let bad = dev.run(&["enroll", "--server", &server.url, "--code", "AAAA-BBBB-CCCC"]);
    assert!(!bad.status.success());
    // Logged before the enrolment, when the device still had the cell.
    dev.report(&["--category", "lawn", "--grid", crate::HX02]);
    dev.enroll(&server);
    let id = dev.report(&["--category", "lawn", "--grid", HX01, "--photo", &fixture("curb.png")]);
    dev.sync(&[]);
    let device_id = crate::device_id(&dev);
    let again = server.admin(&["device", "enroll", "--worker", "w1", "--device", &device_id]);
    dev.ok(&["enroll", "--server", &server.url, "--code", &again]);

    assert_eq!(
        get(&server, "/v1/exports/incidents.csv", Some("not-a-token")).status,
        401
    );
    assert_eq!(get(&server, "/v1/exports/incidents.csv", Some(&center)).status, 200);
    let report = get(
        &server,
        "/v1/reports/daily?date=2026-11-20&community=HLT-CX-HX",
        Some(&center),
    );
    assert_eq!(report.status, 200);
    let requests = get(&server, "/open311/v2/requests.json", Some(&center));
    assert_eq!(requests.status, 200, "{}", requests.text());
    let photo = requests.json()[0]["media_url"].as_str().unwrap().to_owned();
    assert_eq!(crate::exports::get_url(&photo, Some(&center)).status, 200);

    let session = session_cookie(&server, &center);
    assert_eq!(
        page(&server, &format!("/center/incidents/{id}"), Some(&session)).status(),
        200
    );
    let csrf = form_csrf(&page(&server, "/center", Some(&session)).text().unwrap());
    let out = post_form(
        &server,
        "/center/sign-out",
        Some(&session),
        Some(&server.url),
        &format!("csrf={csrf}"),
    );
    assert_eq!(out.status(), 303);
    server.admin(&["export", "--format", "json"]);
    server.admin(&["reconcile", "--date", "2026-11-20", "--community", "HLT-CX-HX"]);
    server.admin(&["device", "revoke", &device_id]);
    let events = audit_events(&server);

    let has = |kind: &str, account: &str, client: &str| {
        events.iter().any(|(k, a, c)| k == kind && a == account && c == client)
    };
    let ip = "127.0.0.1";
    for (kind, account, client) in [
        ("token-create", "hx-center", "local"),
        ("enrol-failed", "-", ip),
        ("enrol", "w1", ip),
        ("push-refused", "w1", ip),
        ("re-enrol", "w1", ip),
        ("auth-failed", "-", ip),
        ("export", "hx-center", ip),
        ("report-read", "hx-center", ip),
        ("open311-read", "hx-center", ip),
        ("photo-read", "hx-center", ip),
        ("sign-in", "hx-center", ip),
        ("dashboard-read", "hx-center", ip),
        ("sign-out", "hx-center", ip),
        ("export", "-", "local"),
        ("report-read", "-", "local"),
        ("revoke", "w1", "local"),
    ] {
        assert!(
            has(kind, account, client),
            "no {kind} by {account} from {client} in {events:#?}"
        );
    }
    // Append-only: the database itself refuses to change or remove an event.
    for sql in ["UPDATE audit_log SET detail = 'x'", "DELETE FROM audit_log"] {
        let err = server.exec(sql, sql).unwrap_err();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(audit_events(&server), events);
    let since = server.admin(&["audit", "--since", "2999-01-01"]);
    assert_eq!(since.lines().count(), 1, "only the header: {since}");
    let refused = server.run(&["audit", "--kind", "nonsense"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the kinds are"));
}

/// An HTTP client whose connections come from `source` (any 127.0.0.0/8
/// address reaches the server on loopback).
fn client_from(source: [u8; 4]) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from(source))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn enrol_status(http: &reqwest::blocking::Client, server: &Server, worker: &str, code: &str) -> (u16, Option<String>) {
    let req = sync_core::protocol::EnrollRequest {
        version: sync_core::protocol::PROTOCOL_VERSION,
        code: code.to_owned(),
        worker: worker.to_owned(),
        device: uuid::Uuid::now_v7().to_string(),
        public_key: None,
        label: None,
    };
    let resp = http
        .post(format!("{}/v1/enroll", server.url))
        .header("content-type", "application/cbor")
        .body(sync_core::protocol::encode(&req))
        .send()
        .unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry)
}

#[test]
fn guessing_codes_tokens_and_sign_ins_is_limited_per_address_and_account_and_logged() {
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.add_worker("w2", &[HX01]);
    server.add_center("hx-center", "HLT-CX-HX");
    let center = server.token("hx-center");
    server.start();
    let attacker = client_from([127, 0, 0, 2]);
    let export = format!("{}/v1/exports/incidents.csv", server.url);

    // Tokens: ten wrong ones answer 401, then the address is refused 429,
    // even with a valid token; another address is unaffected.
    let statuses: Vec<u16> = (0..12)
        .map(|i| {
            attacker
                .get(&export)
                .bearer_auth(format!("guess{i}"))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 2], "{statuses:?}");
    let blocked = attacker.get(&export).bearer_auth(&center).send().unwrap();
    assert_eq!(blocked.status(), 429);
    let retry: u64 = blocked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        crate::exports::get_url(&export, Some(&center)).status,
        200,
        "127.0.0.1 is not blocked"
    );

    // Enrolment codes: per address and per worker. From a third address,
    // w1's codes are still refused; w2's are not.
    let other = client_from([127, 0, 0, 3]);
    let tries: Vec<u16> = (0..11)
        .map(|_| enrol_status(&other, &server, "w1", "AAAA-BBBB-CCCC").0)
        .collect();
    assert_eq!(tries[..10], [401; 10], "{tries:?}");
    assert_eq!(tries[10], 429, "the tenth failure started the block: {tries:?}");
    let (status, retry) = enrol_status(&other, &server, "w2", "AAAA-BBBB-CCCC");
    assert_eq!((status, retry.is_some()), (429, true), "the address is blocked");
    let good = server.code("w1");
    let fourth = client_from([127, 0, 0, 4]);
    assert_eq!(
        enrol_status(&fourth, &server, "w1", &good).0,
        429,
        "w1 is blocked from anywhere"
    );
    let good2 = server.code("w2");
    assert_eq!(
        enrol_status(&fourth, &server, "w2", &good2).0,
        200,
        "w2 enrols from elsewhere"
    );

    // The dashboard's sign-in, through its own form, from a fifth address.
    let browser = client_from([127, 0, 0, 5]);
    let sign_in = |token: &str| crate::dashboard::sign_in_via(&browser, &server.url, &server.url, token);
    let statuses: Vec<u16> = (0..12)
        .map(|i| sign_in(&format!("{i:064x}")).status().as_u16())
        .collect();
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 2], "{statuses:?}");
    let last = sign_in(&center);
    assert_eq!(last.status(), 429, "even the right token, while blocked");
    assert!(last.headers().contains_key("retry-after"));
    let events: serde_json::Value =
        serde_json::from_str(&server.admin(&["audit", "--kind", "rate-limited", "--json"])).unwrap();
    let clients: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["client"].as_str().unwrap())
        .collect();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.5"] {
        assert!(clients.contains(&ip), "{ip} in {events}");
    }
    let failed: serde_json::Value =
        serde_json::from_str(&server.admin(&["audit", "--kind", "auth-failed", "--json"])).unwrap();
    // 10 wrong tokens from .2 and 10 from the sign-in form at .5; the
    // refused tries behind a block are not checked, so not recorded.
    assert_eq!(failed.as_array().unwrap().len(), 20, "{failed}");
}

/// Reads from `stream` until the server closes it (true) or `patience` ends.
fn closed_by_server(stream: &mut std::net::TcpStream, patience: std::time::Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn idle_and_slow_header_clients_cannot_lock_a_worker_out() {
    use std::io::Write;
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.start_with(&["--max-connections", "40"]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    // More idle and slow-header connections than the server takes.
    let mut held = Vec::new();
    for i in 0..60 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        if i % 3 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
        }
        held.push(s);
    }
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    dev.report(&["--category", "lawn"]);
    let synced = dev.sync(&[]);
    assert_eq!(synced["acknowledged"], 1, "{synced}");
    // Every held connection is closed by the server: the oldest to make
    // room, the rest when their header time runs out.
    let patience = std::time::Duration::from_secs(60);
    for (i, s) in held.iter_mut().enumerate() {
        assert!(closed_by_server(s, patience), "connection {i} is still open");
    }
}

/// Sends a request head announcing `length` body bytes, none of them, and
/// returns the status line the server answers with.
fn answer_to_head(server: &Server, head: &str) -> String {
    use std::io::{BufRead, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line
}

/// The status line the server answers on `stream`, or "" if it closes first.
fn status_line(stream: &std::net::TcpStream, patience: std::time::Duration) -> String {
    use std::io::BufRead;
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut line = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut line);
    line
}

#[test]
fn an_enrolled_devices_slow_bodies_time_out_while_its_colleague_syncs() {
    use std::io::Write;
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.add_worker("w2", &[HX01]);
    server.start_with(&["--body-idle-timeout", "2", "--request-timeout", "6"]);
    let hostile = Device::new("w2", &[HX01]);
    hostile.enroll(&server);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/cbor\r\nContent-Length: 100000\r\n\r\n",
        crate::token_of(&hostile)
    );
    // One body stops after two bytes; the other sends a byte a second,
    // never pausing past the body timeout, and never ends.
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled.write_all(format!("{head}\u{a1}").as_bytes()).unwrap();
    let mut dribbled = std::net::TcpStream::connect(&addr).unwrap();
    dribbled.write_all(head.as_bytes()).unwrap();
    let mut writer = dribbled.try_clone().unwrap();
    let dribbler = std::thread::spawn(move || {
        for _ in 0..30 {
            if writer.write_all(b"\0").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    });
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    dev.report(&["--category", "lawn"]);
    assert_eq!(dev.sync(&[])["acknowledged"], 1);
    let patience = std::time::Duration::from_secs(30);
    let line = status_line(&stalled, patience);
    assert!(line.starts_with("HTTP/1.1 408"), "the stalled body: {line:?}");
    let line = status_line(&dribbled, patience);
    assert!(line.starts_with("HTTP/1.1 408"), "the dribbled body: {line:?}");
    drop(dribbled);
    dribbler.join().unwrap();
    // Neither half-body stored anything; the device itself syncs as before.
    assert_eq!(crate::server_heads(&server).len(), 1);
    hostile.report(&["--category", "clutter"]);
    assert_eq!(hostile.sync(&[])["acknowledged"], 1);
}

#[test]
fn one_device_cannot_hold_more_than_two_bodies_in_progress() {
    use std::io::{Read, Write};
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.add_worker("w2", &[HX01]);
    server.start();
    let hostile = Device::new("w2", &[HX01]);
    hostile.enroll(&server);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let head = |length: usize| {
        format!(
            "POST /v1/sync HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/cbor\r\nContent-Length: {length}\r\n\r\n",
            crate::token_of(&hostile)
        )
    };
    // Two bodies of 16 MiB, half sent and held.
    let big = 16 * 1024 * 1024 - 1;
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(head(big).as_bytes()).unwrap();
            s.write_all(&vec![0u8; big / 2]).unwrap();
            s
        })
        .collect();
    // A third request of the device is refused before its body is read
    // (until both are in progress it reaches the handler: 400).
    let answer = crate::eventually(std::time::Duration::from_secs(10), "a 429 for the third body", || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(format!("{}\0", head(1)).as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 429").then_some(answer)
    });
    assert!(
        answer.contains("device_busy") && answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Another device is not held up; the device itself is not, once its
    // bodies are gone.
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    dev.report(&["--category", "lawn"]);
    assert_eq!(dev.sync(&[])["acknowledged"], 1);
    drop(held);
    hostile.report(&["--category", "clutter"]);
    assert_eq!(hostile.sync(&[])["acknowledged"], 1);
}

#[test]
fn bodies_are_refused_before_they_are_read_without_a_token_or_over_the_routes_cap() {
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.start();
    let big = 16 * 1024 * 1024;
    for (what, head, status) in [
        (
            "a sync without a token",
            format!("POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n"),
            "401",
        ),
        (
            "a sync with a wrong token",
            format!("POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: {big}\r\n\r\n"),
            "401",
        ),
        (
            "a photo chunk without a token",
            format!("PUT /v1/blobs/{} HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n", "ab".repeat(32)),
            "401",
        ),
        (
            "an enrolment the size of a sync",
            format!("POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n"),
            "413",
        ),
        (
            "a sign-in form of 1 MiB",
            "POST /center/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1048576\r\n\r\n".to_owned(),
            "413",
        ),
    ] {
        let line = answer_to_head(&server, &head);
        assert!(line.starts_with(&format!("HTTP/1.1 {status}")), "{what}: {line:?}");
    }
    // The server is fine afterwards.
    let dev = Device::new("w1", &[HX01]);
    dev.enroll(&server);
    dev.sync(&[]);
}

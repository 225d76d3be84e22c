//! Department accounts over the real binaries and real HTTP: the operator
//! adds one (`--role department --department 市政`) and gives it a token;
//! it signs in to `/center`, sees only the cases whose last dispatch names
//! it, records its progress there, and the worker's device pulls that
//! progress attributed to the department. Everything else it tries (other
//! departments' cases, their photos, deciding a case, reports, exports,
//! Open311, syncing, a field device) is refused and changes nothing.

use crate::dashboard::{form_csrf, get, post_form, session_cookie};
use crate::exports::get as api_get;
use crate::reconcile::admin_fails;
use crate::*;

struct Town {
    server: Server,
    li: Device,
    center: (String, String),
    dept: (String, String),
    /// Dispatched to 市政, to 园林, never dispatched.
    ours: String,
    theirs: String,
    waiting: String,
}

fn add_department(server: &Server, id: &str, department: &str) -> String {
    let args = [
        "worker",
        "add",
        "--id",
        id,
        "--name",
        "市政维修班",
        "--role",
        "department",
        "--community",
        "HLT-CX-HX",
        "--department",
        department,
    ];
    server.admin(&args)
}

/// A signed-in session: its cookie and CSRF token.
fn session(server: &Server, token: &str) -> (String, String) {
    let cookie = session_cookie(server, token);
    let page = get(server, "/center", Some(&cookie)).text().unwrap();
    (cookie.clone(), form_csrf(&page))
}

fn town() -> Town {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01]);
    server.add_center("hx-center", "HLT-CX-HX");
    let added = add_department(&server, "sz-hx", "市政");
    assert_eq!(
        added,
        "added department sz-hx (市政维修班) shizheng cases in community HLT-CX-HX"
    );
    let center_token = server.token("hx-center");
    let dept_token = server.token("sz-hx");
    server.start();
    let li = Device::new("w-li", &[HX01]);
    li.enroll(&server);
    let photo = fixture("manhole-exif.jpg");
    let ours = li.report(&["--category", "manhole-cover", "--desc", "井盖丢失", "--photo", &photo]);
    let curb = fixture("curb.png");
    let theirs = li.report(&["--category", "lawn", "--desc", "草坪被踩", "--photo", &curb]);
    let waiting = li.report(&["--category", "manhole-cover", "--desc", "还没派"]);
    li.sync(&[]);
    let center = session(&server, &center_token);
    let town = Town {
        dept: session(&server, &dept_token),
        center,
        server,
        li,
        ours,
        theirs,
        waiting,
    };
    for (id, to) in [(&town.ours, "shizheng"), (&town.theirs, "yuanlin")] {
        let resp = town.act(&town.center, id, &format!("action=dispatch&department={to}&hours=24"));
        assert_eq!(resp.status(), 303, "dispatch to {to}");
    }
    town
}

impl Town {
    fn act(&self, who: &(String, String), id: &str, fields: &str) -> reqwest::blocking::Response {
        let body = format!("csrf={}&{fields}", who.1);
        let path = format!("/center/incidents/{id}/act");
        post_form(&self.server, &path, Some(&who.0), Some(&self.server.url), &body)
    }

    fn page(&self, path: &str) -> (u16, String) {
        let resp = get(&self.server, path, Some(&self.dept.0));
        (resp.status().as_u16(), resp.text().unwrap())
    }

    fn changes(&self) -> i64 {
        self.server
            .db()
            .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
            .unwrap()
    }

    fn photo(&self, id: &str) -> String {
        self.server
            .db()
            .query_row(
                "SELECT hash FROM blob_refs WHERE incident_id = ?1 AND kind = 'display'",
                [id],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn case_of(&self, id: &str) -> String {
        self.li.show(id)["case"].as_str().unwrap().to_owned()
    }
}

#[test]
fn a_department_sees_only_its_cases_and_its_progress_reaches_the_worker() {
    let t = town();
    let (status, home) = t.page("/center");
    assert_eq!(status, 200);
    let (ours, theirs, waiting) = (t.case_of(&t.ours), t.case_of(&t.theirs), t.case_of(&t.waiting));
    assert!(home.contains("市政") && home.contains("待处置 To do (1)"), "{home}");
    assert!(
        home.contains(&ours) && !home.contains(&theirs) && !home.contains(&waiting),
        "{home}"
    );
    assert!(
        !home.contains("w-li") && !home.contains("草坪被踩"),
        "nothing of other cases: {home}"
    );

    // Its case's page offers progress and notes only; the others are closed to it.
    let (status, page) = t.page(&format!("/center/incidents/{}", t.ours));
    assert_eq!(status, 200);
    assert!(
        page.contains("处置中 In progress") && page.contains("添加备注 Add note"),
        "{page}"
    );
    for absent in ["派遣 Dispatch", "不予受理 Reject", "结案 Close", "标记重复"] {
        assert!(!page.contains(absent), "{absent} offered to a department: {page}");
    }
    for other in [&t.theirs, &t.waiting] {
        let (status, page) = t.page(&format!("/center/incidents/{other}"));
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("not dispatched to your department"), "{page}");
    }
    assert_eq!(t.page(&format!("/center/photos/{}", t.photo(&t.ours))).0, 200);
    assert_eq!(t.page(&format!("/center/photos/{}", t.photo(&t.theirs))).0, 403);
    // Search finds its own case by number and no other.
    let found = get(&t.server, &format!("/center?q={ours}"), Some(&t.dept.0));
    assert_eq!(found.status(), 303);
    assert_eq!(t.page(&format!("/center?q={theirs}")).0, 404);

    // It records its progress, with a note.
    let note = "%E5%B7%B2%E5%88%B0%E7%8E%B0%E5%9C%BA"; // 已到现场
    assert_eq!(
        t.act(&t.dept, &t.ours, &format!("action=in_progress&note={note}"))
            .status(),
        303
    );
    assert_eq!(t.act(&t.dept, &t.ours, "action=resolved").status(), 303);
    t.li.sync(&[]);
    let seen = t.li.show(&t.ours);
    assert_eq!(seen["status"], "resolved");
    let history = seen["status_history"].as_array().unwrap();
    let last_two: Vec<_> = history[history.len() - 2..]
        .iter()
        .map(|h| (h["to"].clone(), h["by"].clone()))
        .collect();
    assert_eq!(
        last_two,
        [
            (serde_json::json!("in_progress"), serde_json::json!("sz-hx")),
            (serde_json::json!("resolved"), serde_json::json!("sz-hx"))
        ]
    );
    let last_note = seen["notes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last_note["author"].as_str(), last_note["text"].as_str()),
        (Some("sz-hx"), Some("已到现场"))
    );
    // The worker checks it on site; the center closes it.
    t.li.ok(&["update", &t.ours, "--status", "verified"]);
    t.li.sync(&[]);
    assert_eq!(t.act(&t.center, &t.ours, "action=closed").status(), 303);
}

#[test]
fn a_department_cannot_decide_a_case_or_touch_another_and_reads_nothing_else() {
    let t = town();
    let before = t.changes();
    // Deciding is the center's: every such post is refused by the rules.
    for fields in [
        "action=rejected",
        "action=closed",
        "action=dispatch&department=yuanlin&hours=4",
        &format!("action=duplicate&of={}", t.case_of(&t.waiting)),
    ] {
        let resp = t.act(&t.dept, &t.ours, fields);
        assert_eq!(resp.status(), 422, "{fields}");
    }
    // Other cases do not exist for it, not even to annotate.
    for other in [&t.theirs, &t.waiting] {
        let resp = t.act(&t.dept, other, "action=note&note=x");
        assert_eq!(resp.status(), 422);
        assert!(resp.text().unwrap().contains("holds no incident"));
    }
    assert_eq!(t.changes(), before, "nothing of the refused posts is stored");

    // A case sent on to another department is no longer its own.
    assert_eq!(t.act(&t.dept, &t.ours, "action=in_progress").status(), 303);
    let on = t.act(&t.center, &t.ours, "action=dispatch&department=yuanlin&hours=8");
    assert_eq!(on.status(), 303);
    assert_eq!(t.page(&format!("/center/incidents/{}", t.ours)).0, 403);
    assert_eq!(t.act(&t.dept, &t.ours, "action=in_progress").status(), 422);
    assert_eq!(t.page(&format!("/center/photos/{}", t.photo(&t.ours))).0, 403);
    assert!(t.page("/center").1.contains("待处置 To do (0)"));

    // Its token reads no report, export, Open311 list or photo outside the
    // dashboard's rules, and cannot sync.
    let token = t.server.token("sz-hx");
    for path in [
        "/v1/reports/daily?community=HLT-CX-HX".to_owned(),
        "/v1/exports/incidents.csv?community=HLT-CX-HX".to_owned(),
        "/open311/v2/requests.json".to_owned(),
        format!("/v1/blobs/{}", t.photo(&t.theirs)),
    ] {
        let answer = api_get(&t.server, &path, Some(&token));
        assert_eq!(answer.status, 403, "{path}: {}", answer.text());
    }
    let sync = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", t.server.url))
        .bearer_auth(&token)
        .body(vec![0xa0])
        .send()
        .unwrap();
    assert_eq!(sync.status(), 403);
    // The field keeps working.
    t.li.ok(&["update", &t.waiting, "--note", "还在"]);
    t.li.sync(&[]);
}

/// Runs an operator command (words split on spaces) that must be refused
/// as a mistake (exit 2) with a sentence containing each of `says`.
#[track_caller]
fn refused(server: &Server, command: &str, says: &[&str]) {
    let args: Vec<&str> = command.split(' ').collect();
    let (code, err) = admin_fails(server, &args);
    assert_eq!(code, 2, "{command}: {err}");
    assert!(says.iter().all(|s| err.contains(s)), "{command}: {err}");
}

#[test]
fn the_operator_adds_department_accounts_only_with_what_they_need() {
    let server = Server::new();
    let add = "worker add --id d1 --name 市政 --role department --community HLT-CX-HX";
    refused(&server, add, &["needs --department"]);
    refused(
        &server,
        &format!("{add} --department shizhen"),
        &["did you mean", "shizheng"],
    );
    let worker = format!("worker add --id d1 --name x --grid {HX01} --department shizheng");
    refused(&server, &worker, &["only a department account names a department"]);
    add_department(&server, "sz-hx", "Municipal works");
    refused(&server, "device enroll --worker sz-hx", &["token create"]);
    let listed = server.admin(&["worker", "list"]);
    assert!(
        listed.contains("sz-hx") && listed.contains("HLT-CX-HX shizheng"),
        "{listed}"
    );
    // Sent to 园林 instead; as a center it no longer names a department.
    let moved = server.admin(&["worker", "update", "sz-hx", "--department", "园林"]);
    assert!(moved.contains("yuanlin cases"), "{moved}");
    let center = server.admin(&[
        "worker",
        "update",
        "sz-hx",
        "--role",
        "center",
        "--community",
        "HLT-CX-HX",
    ]);
    assert!(center.contains("center sz-hx"), "{center}");
    let json: serde_json::Value = serde_json::from_str(&server.admin(&["worker", "list", "--json"])).unwrap();
    assert!(
        json.as_array().unwrap().iter().all(|w| w.get("department").is_none()),
        "{json}"
    );
}

//! The center acts on cases from `/center` over real HTTP: dispatch with a
//! department and a time limit, progress, reject, duplicate, close and
//! notes, each a form with the session's CSRF token. Each change is made as
//! the center's token, signed, admitted by the same rules as a device's
//! push, and reaches the worker's device at its next sync attributed to the
//! center. Forged, cross-site and out-of-scope posts change nothing.

use crate::dashboard::{form_csrf, get, post_form, session_cookie};
use crate::*;

struct Desk {
    server: Server,
    li: Device,
    cookie: String,
    csrf: String,
    a: String,
    b: String,
}

fn desk() -> Desk {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX01]);
    server.add_center("hx-center", "HLT-CX-HX");
    let token = server.token("hx-center");
    server.start();
    let li = Device::new("w-li", &[HX01]);
    li.enroll(&server);
    let a = li.report(&["--category", "manhole-cover", "--desc", "井盖丢失"]);
    let b = li.report(&["--category", "manhole-cover", "--desc", "同一个井盖"]);
    li.sync(&[]);
    let cookie = session_cookie(&server, &token);
    let page = get(&server, &format!("/center/incidents/{a}"), Some(&cookie))
        .text()
        .unwrap();
    assert!(
        page.contains("派遣 Dispatch") && page.contains(r#"value="shizheng" selected"#),
        "{page}"
    );
    let csrf = form_csrf(&page);
    Desk {
        server,
        li,
        cookie,
        csrf,
        a,
        b,
    }
}

impl Desk {
    fn post(&self, id: &str, fields: &str) -> reqwest::blocking::Response {
        self.post_as(id, fields, Some(&self.cookie), Some(&self.server.url), &self.csrf)
    }

    fn post_as(
        &self,
        id: &str,
        fields: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        csrf: &str,
    ) -> reqwest::blocking::Response {
        let body = format!("csrf={csrf}&{fields}");
        post_form(
            &self.server,
            &format!("/center/incidents/{id}/act"),
            cookie,
            origin,
            &body,
        )
    }

    fn status_on_server(&self, id: &str) -> String {
        self.server
            .db()
            .query_row("SELECT status FROM incidents WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    }
}

#[test]
fn the_center_dispatches_from_its_page_and_the_worker_sees_it_signed_by_the_center() {
    let d = desk();
    let resp = d.post(
        &d.a,
        "action=dispatch&department=shizheng&hours=24&note=%E8%AF%B7%E5%B8%82%E6%94%BF%E5%A4%84%E7%90%86",
    );
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], format!("/center/incidents/{}", d.a));
    assert_eq!(d.status_on_server(&d.a), "dispatched");

    d.li.sync(&[]);
    let seen = d.li.show(&d.a);
    assert_eq!(seen["status"], "dispatched");
    let last = seen["status_history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["by"].as_str(), last["department"].as_str()),
        (Some("hx-center"), Some("shizheng"))
    );
    let note = seen["notes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (note["author"].as_str(), note["text"].as_str()),
        (Some("hx-center"), Some("请市政处理"))
    );
    // Signed like any device's change, by the key the server keeps for the token.
    let unsigned: i64 = d
        .server
        .db()
        .query_row(
            "SELECT count(*) FROM changes c JOIN devices t ON t.id = c.device_id WHERE t.kind = 'token' AND c.sig IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unsigned, 0);

    // The department's progress, then the worker checks it on site, then the center closes.
    for action in ["in_progress", "resolved"] {
        assert_eq!(d.post(&d.a, &format!("action={action}")).status(), 303, "{action}");
    }
    d.li.sync(&[]);
    d.li.ok(&["update", &d.a, "--status", "verified"]);
    d.li.sync(&[]);
    assert_eq!(d.post(&d.a, "action=closed&note=done").status(), 303);
    assert_eq!(d.status_on_server(&d.a), "closed");

    // The second report is the same manhole: marked a duplicate of the first's case.
    let case_a = d.li.show(&d.a)["case"].as_str().unwrap().to_owned();
    assert_eq!(d.post(&d.b, &format!("action=duplicate&of={case_a}")).status(), 303);
    d.li.sync(&[]);
    let b = d.li.show(&d.b);
    assert_eq!(b["status"], "duplicate");
    assert!(
        b["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["text"].as_str().unwrap().contains(&case_a))
    );

    let audit = d.server.admin(&["audit", "--kind", "center-action", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&audit).unwrap().as_array().unwrap().len(),
        5,
        "dispatch, in progress, resolved, closed, duplicate: {audit}"
    );
}

#[test]
fn forged_cross_site_and_impossible_posts_change_nothing() {
    let mut d = desk();
    let other_community = {
        d.server.add_worker("w-zhang", &["HLT-XS-XS-01"]);
        let zhang = Device::new("w-zhang", &["HLT-XS-XS-01"]);
        zhang.enroll(&d.server);
        let id = zhang.report(&["--category", "lawn"]);
        zhang.sync(&[]);
        id
    };
    let dispatch = "action=dispatch&department=shizheng&hours=24";
    for (what, resp, code) in [
        (
            "no CSRF token",
            d.post_as(&d.a, dispatch, Some(&d.cookie), Some(&d.server.url), ""),
            403,
        ),
        (
            "another site",
            d.post_as(&d.a, dispatch, Some(&d.cookie), Some("http://evil.example"), &d.csrf),
            403,
        ),
        (
            "no Origin",
            d.post_as(&d.a, dispatch, Some(&d.cookie), None, &d.csrf),
            403,
        ),
        (
            "no session",
            d.post_as(&d.a, dispatch, None, Some(&d.server.url), &d.csrf),
            401,
        ),
        ("another community's case", d.post(&other_community, dispatch), 422),
        ("a move the workflow lacks", d.post(&d.a, "action=closed"), 422),
        (
            "no such department",
            d.post(&d.a, "action=dispatch&department=nowhere&hours=24"),
            422,
        ),
        (
            "a time limit of 0 h",
            d.post(&d.a, "action=dispatch&department=shizheng&hours=0"),
            422,
        ),
        (
            "a duplicate of nothing",
            d.post(&d.a, "action=duplicate&of=HX-991231-9-9"),
            422,
        ),
        ("an empty note", d.post(&d.a, "action=note&note=+"), 422),
        ("no such action", d.post(&d.a, "action=delete"), 422),
    ] {
        assert_eq!(
            resp.status().as_u16(),
            code,
            "{what}: {}",
            resp.text().unwrap_or_default()
        );
    }
    assert_eq!(d.status_on_server(&d.a), "reported");
    let notes: i64 = d
        .server
        .db()
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap();
    // Three reports, each one change; nothing else was stored.
    assert_eq!(notes, 3);
    // The page still works, and a proper post still does.
    assert_eq!(d.post(&d.a, dispatch).status(), 303);
    d.server.kill();
    d.server.start();
    assert_eq!(d.status_on_server(&d.a), "dispatched");
}

#[test]
fn the_operator_picks_any_community_and_acts_there() {
    let d = desk();
    d.server.add_worker("w-zhang", &["HLT-XS-XS-01"]);
    d.server
        .admin(&["worker", "add", "--id", "op", "--name", "运维", "--role", "operator"]);
    let zhang = Device::new("w-zhang", &["HLT-XS-XS-01"]);
    zhang.enroll(&d.server);
    let theirs = zhang.report(&["--category", "lawn"]);
    zhang.sync(&[]);
    let op = session_cookie(&d.server, &d.server.token("op"));
    // No community asked: the first one, with a picker of every one that has workers.
    let page = get(&d.server, "/center", Some(&op));
    assert_eq!(page.status(), 200);
    let page = page.text().unwrap();
    assert!(page.contains(r#"<select name="community">"#), "{page}");
    assert!(page.contains("HLT-CX-HX") && page.contains("HLT-XS-XS"), "{page}");
    let xs = get(&d.server, "/center?community=HLT-XS-XS", Some(&op)).text().unwrap();
    assert!(xs.contains("兴盛"), "the picked community's report: {xs}");
    // The incident page names the worker, and the operator may act there.
    let page = get(&d.server, &format!("/center/incidents/{theirs}"), Some(&op))
        .text()
        .unwrap();
    assert!(
        page.contains("w-zhang (w-zhang)") && page.contains("派遣 Dispatch"),
        "{page}"
    );
    let csrf = form_csrf(&page);
    let resp = d.post_as(
        &theirs,
        "action=dispatch&department=yuanlin&hours=48",
        Some(&op),
        Some(&d.server.url),
        &csrf,
    );
    assert_eq!(resp.status(), 303);
    zhang.sync(&[]);
    assert_eq!(zhang.show(&theirs)["status"], "dispatched");
}

/// The incidents of the day's table on a `/center` page.
fn rows(page: &str) -> Vec<String> {
    page.split(r#"<tr data-incident=""#)
        .skip(1)
        .map(|r| r.split('"').next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_days_cases_are_filtered_and_a_case_is_found_by_its_number() {
    let d = desk();
    assert_eq!(
        d.post(&d.a, "action=dispatch&department=shizheng&hours=24").status(),
        303
    );
    let page = |query: &str| get(&d.server, &format!("/center?{query}"), Some(&d.cookie));
    let all = rows(&page("").text().unwrap());
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(rows(&page("department=shizheng").text().unwrap()), [d.a.clone()]);
    assert_eq!(rows(&page("status=reported").text().unwrap()), [d.b.clone()]);
    assert_eq!(
        rows(&page("worker=w-li&status=dispatched").text().unwrap()),
        [d.a.clone()]
    );
    assert!(
        rows(&page("overdue=1").text().unwrap()).is_empty(),
        "nothing is overdue yet"
    );
    assert!(rows(&page("category=lawn").text().unwrap()).is_empty());

    let case_b = d.li.show(&d.b)["case"].as_str().unwrap().to_owned();
    for typed in [case_b.clone(), case_b.to_lowercase(), d.b.clone()] {
        let found = page(&format!("q={typed}"));
        assert_eq!(found.status(), 303, "{typed}");
        assert_eq!(found.headers()["location"], format!("/center/incidents/{}", d.b));
    }
    let missing = page("q=HX-991231-9-9");
    assert_eq!(missing.status(), 404);
    assert!(missing.text().unwrap().contains("No case HX-991231-9-9"));
}

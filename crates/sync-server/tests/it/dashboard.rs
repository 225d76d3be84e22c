//! The center's dashboard at `/center`: sign-in, cookie, scope and headers
//! over plain HTTP, then the scripted day in a real headless Chromium
//! driven over the DevTools protocol: it signs in through the form as a
//! clerk would, sees the workers and flags, loads the thumbnails, opens an
//! incident, and a screenshot is taken and decoded.
//!
//! Chromium is Debian's `chromium` (installed by `cargo xtask test`);
//! without it the browser test fails, it does not skip. Every wait on the
//! browser has a deadline, so a browser that hangs fails the test.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use crate::reconcile::{HX, scripted_day};
use crate::*;

/// How long one DevTools command, or the browser's start, may take.
const BROWSER_PATIENCE: Duration = Duration::from_secs(30);

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(BROWSER_PATIENCE)
        .build()
        .unwrap()
}

/// The `csrf` value of the first form in a page.
pub(crate) fn form_csrf(page: &str) -> String {
    let (_, rest) = page
        .split_once(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no csrf field in {page}"));
    rest.split('"').next().unwrap().to_owned()
}

/// A cookie a response sets, as `name=value`, if it sets it non-empty.
fn set_cookie(resp: &reqwest::blocking::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")) && !v.starts_with(&format!("{name}=;")))
}

/// The sign-in form as the server's own page serves it: its login cookie
/// and the token the form carries.
fn sign_in_form(server: &Server) -> (String, String) {
    let resp = get(server, "/center", None);
    let cookie = set_cookie(&resp, "center_login").expect("the form sets its login cookie");
    let csrf = form_csrf(&resp.text().unwrap());
    (cookie.split(';').next().unwrap().to_owned(), csrf)
}

/// `POST /center/sign-in` as a browser sends the form: with its cookie,
/// its token and this server as `Origin`.
fn sign_in(server: &Server, token: &str) -> reqwest::blocking::Response {
    let (cookie, csrf) = sign_in_form(server);
    post_form(
        server,
        "/center/sign-in",
        Some(&cookie),
        Some(&server.url),
        &format!("token={token}&csrf={csrf}"),
    )
}

/// A form POST with the cookie and `Origin` given.
pub(crate) fn post_form(
    server: &Server,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    body: &str,
) -> reqwest::blocking::Response {
    let mut req = client()
        .post(format!("{}{path}", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().unwrap()
}

/// The session cookie a successful sign-in sets, as `name=value`.
#[track_caller]
pub(crate) fn session_cookie(server: &Server, token: &str) -> String {
    let resp = sign_in(server, token);
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/center");
    let set = set_cookie(&resp, "center_session").expect("a sign-in sets the session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/center", "Max-Age="] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    assert!(!set.contains(token), "the cookie never holds the token");
    set.split(';').next().unwrap().to_owned()
}

pub(crate) fn get(server: &Server, path: &str, cookie: Option<&str>) -> reqwest::blocking::Response {
    let mut req = client().get(format!("{}{path}", server.url));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().unwrap()
}

#[test]
fn sign_in_cookie_headers_and_scope() {
    let mut server = Server::new();
    server.add_worker("w-a", &[HX01]);
    server.add_worker("w-x", &["HLT-XS-XS-01"]);
    server.add_center("hx-center", HX);
    server.add_center("xs-center", "HLT-XS-XS");
    let hx = server.token("hx-center");
    let xs = server.token("xs-center");
    server.start();
    let a = Device::new("w-a", &[HX01]);
    a.enroll(&server);
    let id = a.report(&["--category", "lawn", "--photo", &fixture("curb.png")]);
    a.sync(&[]);
    let x = Device::new("w-x", &["HLT-XS-XS-01"]);
    x.enroll(&server);
    let xid = x.report(&["--category", "clutter"]);
    x.sync(&[]);
    let thumb: String = server
        .db()
        .query_row(
            "SELECT hash FROM blob_refs WHERE incident_id = ?1 AND kind = 'thumb'",
            [&id],
            |r| r.get(0),
        )
        .unwrap();

    // Signed out: the sign-in form, with the strict headers.
    let resp = get(&server, "/center", None);
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
    for part in [
        "default-src 'none'",
        "img-src 'self';",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "CSP lacks {part}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "{csp}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let body = resp.text().unwrap();
    assert!(
        body.contains(r#"action="/center/sign-in""#) && !body.contains("<script"),
        "{body}"
    );
    assert_eq!(get(&server, "/center/style.css", None).status(), 200);

    // Wrong tokens get the form again with a sentence, and no session.
    for (token, status) in [("0123abcd", 401), ("not hex at all", 401)] {
        let resp = sign_in(&server, token);
        assert_eq!(resp.status(), status);
        assert_eq!(set_cookie(&resp, "center_session"), None);
        assert!(resp.text().unwrap().contains("role=\"alert\""));
    }
    let device_token = std::fs::read_to_string(a.dir.path().join("device.token")).unwrap();
    let resp = sign_in(&server, device_token.trim());
    assert_eq!(resp.status(), 403, "a grid worker's token is not a center's");
    assert_eq!(set_cookie(&resp, "center_session"), None);
    // A forged cookie, or the token itself as the cookie, is no sign-in.
    for forged in ["center_session=00ff".to_owned(), format!("center_session={hx}")] {
        let body = get(&server, "/center", Some(&forged)).text().unwrap();
        assert!(body.contains(r#"action="/center/sign-in""#));
    }
    let body = get(&server, "/center", Some("center_token=00ff")).text().unwrap();
    assert!(body.contains(r#"action="/center/sign-in""#));

    let hx_cookie = session_cookie(&server, &hx);
    let xs_cookie = session_cookie(&server, &xs);
    let page = get(&server, "/center", Some(&hx_cookie));
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(html.contains(r#"data-worker="w-a""#) && !html.contains(r#"data-worker="w-x""#));
    assert!(html.contains(&format!("/center/photos/{thumb}")));

    // Photos and incidents: cookie and scope checked.
    let photo = format!("/center/photos/{thumb}");
    assert_eq!(get(&server, &photo, None).status(), 401);
    assert_eq!(get(&server, &photo, Some(&xs_cookie)).status(), 403);
    let resp = get(&server, &photo, Some(&hx_cookie));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    image::load_from_memory(&resp.bytes().unwrap()).expect("the thumbnail decodes");
    assert_eq!(get(&server, "/center/photos/xyz", Some(&hx_cookie)).status(), 400);
    assert_eq!(
        get(&server, &format!("/center/incidents/{id}"), Some(&hx_cookie)).status(),
        200
    );
    assert_eq!(
        get(&server, &format!("/center/incidents/{id}"), Some(&xs_cookie)).status(),
        403
    );
    assert_eq!(
        get(&server, &format!("/center/incidents/{xid}"), Some(&hx_cookie)).status(),
        403
    );
    assert_eq!(get(&server, &format!("/center/incidents/{id}"), None).status(), 401);
    assert_eq!(
        get(&server, "/center/incidents/not-an-id", Some(&hx_cookie)).status(),
        400
    );
    let missing = "01930000-0000-7000-8000-000000000000";
    assert_eq!(
        get(&server, &format!("/center/incidents/{missing}"), Some(&hx_cookie)).status(),
        404
    );

    // Bad input is a page with a sentence, never a 5xx.
    let resp = get(&server, "/center?date=2026-02-30", Some(&hx_cookie));
    assert_eq!(resp.status(), 400);
    assert!(resp.text().unwrap().contains("is not a date"));
    assert_eq!(
        get(&server, "/center?community=HLT-XS-XS", Some(&hx_cookie)).status(),
        403
    );
    assert_eq!(
        get(&server, "/center?community=NOWHERE", Some(&hx_cookie)).status(),
        400
    );

    // Sign-out ends the session and clears the cookie; a revoked token's
    // sessions end at once.
    let csrf = form_csrf(&get(&server, "/center", Some(&hx_cookie)).text().unwrap());
    let body = format!("csrf={csrf}");
    let resp = post_form(&server, "/center/sign-out", Some(&hx_cookie), Some(&server.url), &body);
    assert_eq!(resp.status(), 303);
    assert!(resp.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = get(&server, "/center", Some(&hx_cookie)).text().unwrap();
    assert!(
        after.contains(r#"action="/center/sign-in""#),
        "the old cookie is no session"
    );
    let list: Value = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    let xs_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["worker"]["id"] == "xs-center")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.admin(&["device", "revoke", &xs_id]);
    let body = get(&server, "/center", Some(&xs_cookie)).text().unwrap();
    assert!(
        body.contains(r#"action="/center/sign-in""#),
        "a revoked token is signed out"
    );
}

// ---------------------------------------------------------------------------
// Headless Chromium over the DevTools protocol.

/// A headless Chromium with its own profile, and a DevTools connection to its page.
struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1400,1600",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromium ({e}); install Debian's `chromium` package (`cargo xtask test` does)")
            });
        // Chromium writes the port it picked into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let port: u16 = eventually(BROWSER_PATIENCE, "Chromium's DevTools port", || {
            if let Some(status) = child.try_wait().expect("polling chromium") {
                panic!("chromium exited ({status}) before it opened DevTools");
            }
            std::fs::read_to_string(&port_file).ok()?.lines().next()?.parse().ok()
        });
        // Its page can show up in the list a moment after the port.
        let page_url = eventually(BROWSER_PATIENCE, "Chromium's page", || {
            let list = client()
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .send()
                .and_then(|r| r.text())
                .ok()?;
            let list: Value = serde_json::from_str(&list).ok()?;
            let page = list.as_array()?.iter().find(|t| t["type"] == "page")?;
            Some(page["webSocketDebuggerUrl"].as_str()?.to_owned())
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, BROWSER_PATIENCE).expect("DevTools accepts a connection");
        // Reads get their own deadline in `request`; the handshake uses this one.
        stream.set_read_timeout(Some(BROWSER_PATIENCE)).unwrap();
        stream.set_write_timeout(Some(BROWSER_PATIENCE)).unwrap();
        let (ws, _) = tungstenite::client(page_url.as_str(), stream)
            .unwrap_or_else(|e| panic!("the DevTools handshake with {page_url} failed: {e}"));
        Browser {
            child,
            ws,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends one DevTools command; its result, or the error it got. Fails
    /// the test if no answer comes within [`BROWSER_PATIENCE`], however
    /// many events the page sends meanwhile.
    fn request(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(Message::text(msg))
            .unwrap_or_else(|e| panic!("sending {method} to Chromium: {e}"));
        let end = Instant::now() + BROWSER_PATIENCE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "Chromium did not answer {method} within {BROWSER_PATIENCE:?}"
            );
            self.ws.get_ref().set_read_timeout(Some(left)).unwrap();
            let msg = self
                .ws
                .read()
                .unwrap_or_else(|e| panic!("reading Chromium's answer to {method} (at most {left:?} more): {e}"));
            let Message::Text(text) = msg else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                return match v.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    }

    #[track_caller]
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.request(method, params)
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// Evaluates JavaScript in the page; `None` while the page is between
    /// documents (a navigation destroys the context) or when it throws.
    fn try_eval(&mut self, js: &str) -> Option<Value> {
        let r = self
            .request(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .ok()?;
        r.get("exceptionDetails")
            .is_none()
            .then(|| r["result"]["value"].clone())
    }

    #[track_caller]
    fn eval(&mut self, js: &str) -> Value {
        self.try_eval(js).unwrap_or_else(|| panic!("evaluating {js} failed"))
    }

    /// Waits until `js` evaluates to true; fails with `what` after
    /// [`BROWSER_PATIENCE`].
    #[track_caller]
    fn wait_until(&mut self, js: &str, what: &str) {
        let end = Instant::now() + BROWSER_PATIENCE;
        while self.try_eval(js) != Some(Value::Bool(true)) {
            assert!(Instant::now() < end, "{what} within {BROWSER_PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the page at `path` has loaded with its images.
    #[track_caller]
    fn wait_for(&mut self, path: &str) {
        self.wait_until(
            &format!(
                "location.pathname === {} && document.readyState === 'complete' \
                 && Array.from(document.images).every(i => i.complete)",
                json!(path)
            ),
            &format!("the page did not load {path}"),
        );
    }

    fn goto(&mut self, url: &str, path: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(path);
    }

    /// A PNG of the whole page.
    fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PNG of the map's SVG alone.
fn map_screenshot(b: &mut Browser) -> Vec<u8> {
    let rect = b.eval(
        "(() => { const r = document.querySelector('#map svg').getBoundingClientRect(); \
         return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()",
    );
    let [x, y, w, h] = [0, 1, 2, 3].map(|i| rect[i].as_f64().unwrap());
    let r = b.call(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true,
               "clip": {"x": x, "y": y, "width": w, "height": h, "scale": 1}}),
    );
    base64::engine::general_purpose::STANDARD
        .decode(r["data"].as_str().unwrap())
        .unwrap()
}

fn text_of(b: &mut Browser, selector: &str) -> String {
    b.eval(&format!(
        "(document.querySelector({}) || {{innerText: ''}}).innerText",
        json!(selector)
    ))
    .as_str()
    .unwrap()
    .to_owned()
}

#[test]
fn the_dashboard_in_headless_chromium_shows_the_scripted_day() {
    let day = scripted_day();
    let server = &day.server;
    let mut b = Browser::launch();
    b.call("Page.enable", json!({}));

    // Sign in through the form, as a clerk would.
    b.goto(&format!("{}/center", server.url), "/center");
    assert_eq!(b.eval("document.forms.length"), 1);
    b.eval(&format!(
        "document.getElementById('token').value = {}; document.forms[0].submit(); true",
        json!(day.center_token)
    ));
    b.wait_until(
        "!!document.getElementById('workers')",
        "sign-in did not reach the reconciliation",
    );
    b.wait_for("/center");
    assert_eq!(b.eval("document.cookie"), "", "the session cookie is HttpOnly");
    assert_eq!(
        b.eval("document.getElementById('date').value"),
        day.date.as_str(),
        "the date defaults to today in Asia/Shanghai"
    );

    // The workers and their flags.
    let rows = b.eval("Array.from(document.querySelectorAll('tr[data-worker]')).map(r => r.dataset.worker)");
    assert_eq!(rows, json!(["w-qian", "w-sun", "w-zhao"]));
    let flags_of = |b: &mut Browser, w: &str| {
        b.eval(&format!(
            "Array.from(document.querySelectorAll('tr[data-worker={}] [data-flag]')).map(f => f.dataset.flag)",
            json!(w)
        ))
    };
    assert_eq!(flags_of(&mut b, "w-zhao"), json!([]));
    assert_eq!(flags_of(&mut b, "w-qian"), json!(["not_in_step", "incomplete"]));
    assert_eq!(flags_of(&mut b, "w-sun"), json!(["not_in_step"]));
    let sun = text_of(&mut b, "tr[data-worker=w-sun]");
    assert!(sun.contains("2 / 0"), "two records pending: {sun}");
    let qian = text_of(&mut b, "tr[data-worker=w-qian]");
    assert!(qian.contains("1 missing"), "{qian}");

    // 赵's thumbnail came through the cookie-checked photo route.
    let thumbs = b.eval("Array.from(document.querySelectorAll('img.thumb')).map(i => i.naturalWidth)");
    assert_eq!(thumbs.as_array().unwrap().len(), 1, "{thumbs}");
    assert!(thumbs[0].as_u64().unwrap() > 0, "the thumbnail loaded: {thumbs}");
    assert_eq!(b.eval("document.querySelectorAll('.missing').length"), 2);
    // The stylesheet applied under the CSP.
    assert_eq!(
        b.eval("getComputedStyle(document.querySelector('table')).borderCollapse"),
        "collapse"
    );

    let png = b.screenshot();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {}", out.display());
    let img = image::load_from_memory(&png)
        .expect("the screenshot is a PNG")
        .to_rgb8();
    assert!(
        img.width() >= 1000 && img.height() >= 600,
        "{}x{}",
        img.width(),
        img.height()
    );
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels().step_by(7) {
        colours.insert(p.0);
    }
    assert!(
        colours.len() > 50,
        "the screenshot is blank ({} colours)",
        colours.len()
    );

    // The map: the community's four cells, the day's cases as points
    // coloured by status, drawn as SVG by the server; a screenshot of it
    // shows the cells' fill and the points' colour.
    assert_eq!(b.eval("document.querySelectorAll('#map path.cell').length"), 4);
    let placed = day.zhao.list().len() + day.qian.list().len() + day.sun.list().len();
    let points = b
        .eval("document.querySelectorAll('#map circle.case').length")
        .as_u64()
        .unwrap() as usize;
    assert_eq!(points, 3, "the three incidents with a position, of {placed}");
    assert_eq!(
        b.eval("Array.from(document.querySelectorAll('#map circle.case')).every(c => c.dataset.status === 'reported')"),
        json!(true)
    );
    let map = map_screenshot(&mut b);
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("map.png"), &map).unwrap();
    let map = image::load_from_memory(&map)
        .expect("the map screenshot is a PNG")
        .to_rgb8();
    let near = |p: &image::Rgb<u8>, c: [u8; 3]| p.0.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 8);
    let cell_fill = map.pixels().filter(|p| near(p, [0xee, 0xf3, 0xf8])).count();
    let reported = map.pixels().filter(|p| near(p, [0xd7, 0x30, 0x1f])).count();
    assert!(
        cell_fill > 10_000,
        "the cells are drawn ({cell_fill} pixels of their fill)"
    );
    assert!(
        reported > 20 * points,
        "the points are drawn ({reported} red pixels for {points} points)"
    );

    // An incident page: the display photo, notes and status history.
    let id = b.eval("document.querySelector('tr[data-incident] a').getAttribute('href')");
    let path = id.as_str().unwrap().to_owned();
    let manhole = day
        .zhao
        .list()
        .into_iter()
        .find(|i| i["category"] == "manhole-cover")
        .unwrap();
    let manhole_id = manhole["id"].as_str().unwrap().to_owned();
    assert!(path.starts_with("/center/incidents/"));
    b.goto(
        &format!("{}/center/incidents/{manhole_id}", server.url),
        &format!("/center/incidents/{manhole_id}"),
    );
    let display = b.eval("Array.from(document.querySelectorAll('img.display')).map(i => i.naturalWidth)");
    assert_eq!(display, json!([1200]), "the display copy of the 1200×900 photo");
    let png = b.screenshot();
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("incident.png"),
        &png,
    )
    .unwrap();
    let body = text_of(&mut b, "body");
    for needle in [
        "井盖缺了一角",
        "井盖破损",
        "已通知市政",
        "Status history",
        "reported",
        "w-zhao",
    ] {
        assert!(body.contains(needle), "incident page lacks {needle}");
    }

    // Dispatch it through the page, as the clerk would: department,
    // time limit and a note; the worker's device then pulls it.
    b.eval(
        "const f = document.querySelector('#actions input[name=action][value=dispatch]').form; \
         f.department.value = 'shizheng'; f.hours.value = '12'; f.note.value = '请市政12小时内处理'; \
         f.submit(); true",
    );
    b.wait_until(
        "document.readyState === 'complete' && document.body.innerText.includes('dispatched')",
        "the dispatch did not come back to the incident page",
    );
    assert_eq!(
        b.eval("!!document.querySelector('#actions input[name=action][value=dispatch]')"),
        json!(false),
        "a dispatched case offers no second dispatch"
    );
    day.zhao.sync(&[]);
    let seen = day.zhao.show(&manhole_id);
    assert_eq!(seen["status"], "dispatched");
    let last = seen["status_history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["by"].as_str(), last["department"].as_str()),
        (Some("hx-center"), Some("shizheng"))
    );
    let deadline = chrono::DateTime::parse_from_rfc3339(last["deadline"].as_str().unwrap()).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(last["at"].as_str().unwrap()).unwrap();
    assert_eq!((deadline - at).num_hours(), 12);
    assert!(day.zhao.ok(&["show", &manhole_id]).contains("请市政12小时内处理"));

    // Sign out: the next visit shows the form.
    b.eval("document.querySelector('form[action=\"/center/sign-out\"]').submit(); true");
    b.wait_until(
        "!!document.getElementById('token')",
        "sign-out did not return to the form",
    );
    b.goto(&format!("{}/center", server.url), "/center");
    assert_eq!(b.eval("!!document.getElementById('workers')"), false);
}

#[test]
fn cross_site_sign_in_and_sign_out_are_refused() {
    let mut server = Server::new();
    server.add_center("hx-center", HX);
    server.add_center("xs-center", "HLT-XS-XS");
    let hx = server.token("hx-center");
    let xs = server.token("xs-center");
    server.start();
    let evil = Some("http://evil.example");

    // Login CSRF: another site posts its own center's token into the
    // victim's browser. Without the page's login cookie (SameSite=Strict
    // keeps it from cross-site posts), with a wrong one, or from another
    // origin, no session starts.
    let (cookie, csrf) = sign_in_form(&server);
    let body = format!("token={xs}&csrf={csrf}");
    for (cookie, origin) in [
        (None, evil),
        (None, Some(server.url.as_str())),
        (Some(cookie.as_str()), evil),
        (Some(cookie.as_str()), None),
        (Some("center_login=0000"), Some(server.url.as_str())),
    ] {
        let resp = post_form(&server, "/center/sign-in", cookie, origin, &body);
        assert_eq!(resp.status(), 403, "cookie {cookie:?}, origin {origin:?}");
        assert_eq!(set_cookie(&resp, "center_session"), None);
    }

    // Logout CSRF: a cross-site post, or one without the session's token,
    // leaves the session signed in.
    let session = session_cookie(&server, &hx);
    let csrf = form_csrf(&get(&server, "/center", Some(&session)).text().unwrap());
    for (origin, body) in [
        (evil, format!("csrf={csrf}")),
        (Some(server.url.as_str()), "csrf=0000".to_owned()),
    ] {
        let resp = post_form(&server, "/center/sign-out", Some(&session), origin, &body);
        assert_eq!(resp.status(), 403);
        let page = get(&server, "/center", Some(&session)).text().unwrap();
        assert!(
            page.contains("signed in as hx-center"),
            "still signed in after {origin:?}"
        );
    }
    let failed: Value = serde_json::from_str(&server.admin(&["audit", "--kind", "sign-in-failed", "--json"])).unwrap();
    assert_eq!(failed.as_array().unwrap().len(), 5, "{failed}");
    assert!(
        failed.as_array().unwrap().iter().all(|r| r["client"] == "127.0.0.1"),
        "{failed}"
    );
}

/// The sign-in form as a browser using `http` submits it: the form page
/// first (its login cookie and token), then the post with `origin`.
pub(crate) fn sign_in_via(
    http: &reqwest::blocking::Client,
    base: &str,
    origin: &str,
    token: &str,
) -> reqwest::blocking::Response {
    let form = http.get(format!("{base}/center")).send().unwrap();
    let cookie = set_cookie(&form, "center_login").expect("the form sets its login cookie");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = form_csrf(&form.text().unwrap());
    http.post(format!("{base}/center/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .header("origin", origin)
        .body(format!("token={token}&csrf={csrf}"))
        .send()
        .unwrap()
}

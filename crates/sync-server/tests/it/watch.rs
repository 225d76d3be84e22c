//! `field sync --watch` against a real server behind a proxy that loses
//! the link: records logged offline arrive once the server is back, within
//! the watcher's backoff bound; nothing is stored twice; SIGKILL leaves a
//! whole store; SIGTERM stops it cleanly; one sync at a time per device;
//! and a slow link sends thumbnails first and leaves the rest for later.

use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::manifest::sync_row;
use crate::proxy::Proxy;
use crate::*;

/// The watcher's longest wait between probes in these tests.
const BOUND: Duration = Duration::from_secs(4);
/// Room beyond the bound for one round on a slow, loaded test machine.
const ROUND: Duration = Duration::from_secs(20);

fn upstream(server: &Server) -> std::net::SocketAddr {
    server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address")
}

/// A server with worker `w1`, a proxy in front of it, and w1's device
/// enrolled through the proxy.
fn behind_proxy() -> (Server, Proxy, Device) {
    let mut server = Server::new();
    server.add_worker("w1", &[HX01]);
    server.admin(&["worker", "add", "--id", "op", "--name", "运维", "--role", "operator"]);
    server.start();
    let proxy = Proxy::start(upstream(&server));
    let dev = Device::new("w1", &[HX01]);
    let code = server.code("w1");
    dev.ok(&["enroll", "--server", &proxy.url, "--code", &code]);
    (server, proxy, dev)
}

fn watch(dev: &Device, extra: &[&str]) -> Child {
    let mut args = vec![
        "sync",
        "--watch",
        "--json",
        "--retry-from",
        "1",
        "--retry-up-to",
        "4",
        "--pull-every",
        "3600",
    ];
    args.extend_from_slice(extra);
    spawn_field(dev, &args)
}

fn on_server(server: &Server) -> Vec<String> {
    server_heads(server).into_iter().map(|(id, _)| id).collect()
}

#[track_caller]
fn arrive(server: &Server, ids: &[String], within: Duration) {
    eventually(within, "the incidents on the server", || {
        let there = on_server(server);
        ids.iter().all(|id| there.contains(id)).then_some(())
    });
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The watcher's JSON lines.
fn lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn records_logged_offline_arrive_once_the_server_is_back_and_nothing_twice() {
    let (mut server, proxy, dev) = behind_proxy();
    let watcher = watch(&dev, &[]);
    let first = dev.report(&["--category", "lawn", "--desc", "在线时记录"]);
    arrive(&server, std::slice::from_ref(&first), BOUND + ROUND);

    // The link goes, then the server too; the worker goes on logging.
    proxy.down();
    let mut offline = vec![dev.report(&["--category", "manhole-cover"])];
    server.kill();
    proxy.up();
    offline.push(dev.report(&["--category", "clutter"]));
    // The link comes and goes while the server is away.
    let mut rng = XorShift64::new(0x5EED);
    for _ in 0..6 {
        proxy.down();
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
        proxy.up();
        std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
    }
    offline.push(dev.report(&["--category", "illegal-parking"]));
    eventually(ROUND, "the watcher seeing the server gone", || {
        (dev.status()["watcher"]["online"] == false).then_some(())
    });
    server.start();
    arrive(&server, &offline, BOUND + ROUND);
    eventually(ROUND, "the device in step", || {
        (sync_row(&server, &dev)["in_step"] == true).then_some(())
    });
    let path = format!("/v1/reports/daily?community=HLT-CX-HX&date={}", crate::guard::today());
    let daily = crate::exports::get(&server, &path, Some(&server.token("op"))).json();
    let row = daily["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "w1")
        .cloned();
    assert_eq!(row.map(|w| w["in_step"].clone()), Some(true.into()), "{daily}");

    signal(&watcher, "-TERM");
    let out = output_within(watcher, ROUND, "the watcher after SIGTERM");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = lines(&out);
    assert_eq!(
        lines.last().map(|l| l["event"].clone()),
        Some("stopped".into()),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l["event"] == "unreachable"), "{lines:?}");
    // Each incident was acknowledged once, and stored once.
    let acknowledged: u64 = lines.iter().filter_map(|l| l["summary"]["acknowledged"].as_u64()).sum();
    assert_eq!(acknowledged, 4, "{lines:?}");
    assert_eq!(on_server(&server).len(), 4);
    assert_server_feed_consistent(&server);
    let status = dev.status();
    assert_eq!(status["watcher"]["running"], false, "{status}");
    assert!(status["watcher"]["stopped_at"].is_string(), "{status}");
}

#[test]
fn a_watcher_killed_at_random_leaves_a_whole_store_and_the_next_one_resumes() {
    let (server, _proxy, dev) = behind_proxy();
    let mut rng = XorShift64::new(0xD1E);
    let mut logged = Vec::new();
    for round in 0..4 {
        let watcher = watch(&dev, &[]);
        for i in 0..3 {
            let photo = dev.dir.path().join(format!("p{round}-{i}.jpg"));
            std::fs::write(&photo, noise_jpeg(900, 700, rng.below(1 << 30), 85)).unwrap();
            logged.push(dev.report(&["--category", "road-surface", "--photo", photo.to_str().unwrap()]));
        }
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        let mut watcher = watcher;
        watcher.kill().unwrap();
        watcher.wait().unwrap();
        assert_sqlite_sound(&dev.db(), "the device after SIGKILL of its watcher");
    }
    let watcher = watch(&dev, &[]);
    arrive(&server, &logged, BOUND + ROUND);
    eventually(ROUND, "every photo uploaded", || {
        let waiting: i64 = dev
            .db()
            .query_row("SELECT count(*) FROM blobs WHERE uploaded_at IS NULL", [], |r| r.get(0))
            .unwrap();
        (waiting == 0).then_some(())
    });
    assert_eq!(dev.status()["watcher"]["running"], true);
    // A second watcher of the same data dir refuses to start.
    let second = dev.run(&["sync", "--watch"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("a watcher already runs"),
        "{second:?}"
    );
    signal(&watcher, "-INT");
    assert!(
        output_within(watcher, ROUND, "the watcher after SIGINT")
            .status
            .success()
    );
    assert_device_photos_on_server(&server, &dev);
    assert_server_feed_consistent(&server);
}

/// The device's photo files by kind: (kind, uploaded).
fn blobs(dev: &Device) -> Vec<(String, bool)> {
    let db = dev.db();
    let mut stmt = db
        .prepare("SELECT kind, uploaded_at IS NOT NULL FROM blobs ORDER BY kind")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_slow_link_sends_thumbnails_first_and_the_rest_when_it_is_fast() {
    let (server, proxy, dev) = behind_proxy();
    // About 6 KB/s: a thumbnail, then one probe of the display copy.
    proxy.pace(6_000);
    let photo = dev.dir.path().join("slab.jpg");
    std::fs::write(&photo, noise_jpeg(640, 480, 7, 80)).unwrap();
    let id = dev.report(&["--category", "sidewalk-slab", "--photo", photo.to_str().unwrap()]);
    let watcher = watch(&dev, &[]);
    arrive(&server, std::slice::from_ref(&id), BOUND + ROUND);
    eventually(ROUND * 3, "the thumbnail uploaded", || {
        blobs(&dev).contains(&("thumb".into(), true)).then_some(())
    });
    eventually(ROUND, "a round that leaves the rest for later", || {
        let state: Value = serde_json::from_slice(&std::fs::read(dev.dir.path().join("watch.json")).ok()?).ok()?;
        state["link_bytes_per_sec"].as_f64().filter(|b| *b < 8192.0)
    });
    let left = blobs(&dev);
    assert!(left.iter().any(|(kind, up)| kind != "thumb" && !up), "{left:?}");
    // The link is fast again; the next round (woken by a note) sends the rest.
    proxy.pace(1 << 30);
    dev.ok(&["update", &id, "--note", "到了有信号的地方"]);
    eventually(ROUND * 2, "every photo file uploaded", || {
        blobs(&dev).iter().all(|(_, up)| *up).then_some(())
    });
    signal(&watcher, "-TERM");
    let out = output_within(watcher, ROUND, "the watcher");
    let lines = lines(&out);
    let deferred: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["summary"]["photos_deferred"].as_u64())
        .collect();
    assert!(deferred.iter().any(|d| *d > 0), "the larger copies waited: {lines:?}");
    assert_device_photos_on_server(&server, &dev);
}

#[test]
fn a_second_sync_of_one_device_waits_for_the_first_and_says_so() {
    let (_server, proxy, dev) = behind_proxy();
    proxy.pace(100_000);
    let photo = dev.dir.path().join("big.jpg");
    std::fs::write(&photo, noise_jpeg(1200, 900, 3, 90)).unwrap();
    dev.report(&["--category", "clutter", "--photo", photo.to_str().unwrap()]);
    let first = spawn_field(&dev, &["sync", "--json"]);
    eventually(ROUND, "the first sync holding the lock", || {
        let f = std::fs::File::open(dev.dir.path().join("sync.lock")).ok()?;
        matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)).then_some(())
    });
    let second = dev.run(&["sync", "--json"]);
    assert!(second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("another sync of this device is running"), "{said}");
    let second: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(second["photos_uploaded"], 0, "the first sync sent them: {second}");
    let first = output_within(first, ROUND * 3, "the first sync");
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["photos_uploaded"], 3, "{first}");
}

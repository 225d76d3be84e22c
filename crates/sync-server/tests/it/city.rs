//! A city's deployment, on PostgreSQL: three `serve` nodes on one
//! database and one photo folder, behind a real haproxy (Debian's), with
//! twenty devices syncing through it while the nodes are SIGKILLed and
//! started again one at a time. Every record and photo a device logged is
//! on the server at the end, nothing is stored twice, the feed's sequence
//! has no gap, and the devices converge.

#![cfg(unix)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::*;

const DEVICES: usize = 20;
const ROUNDS: usize = 4;

/// haproxy in front of `nodes`, in the foreground, with its config in `dir`.
struct Haproxy {
    child: Child,
    url: String,
}

impl Haproxy {
    fn start(dir: &Path, nodes: &[&Server]) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let backends: String = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let addr = n.url.trim_start_matches("http://");
                format!("    server node{i} {addr} check inter 200ms fall 1 rise 1\n")
            })
            .collect();
        let config = format!(
            "global\n    maxconn 512\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 120s\n    \
             timeout server 120s\n    retries 3\n    option redispatch\n    retry-on conn-failure empty-response\n\
             frontend devices\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /healthz\n{backends}"
        );
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run haproxy ({e}); install Debian's `haproxy` (`cargo xtask test` does)")
            });
        let url = format!("http://127.0.0.1:{port}");
        let end = Instant::now() + PATIENCE;
        while reqwest::blocking::get(format!("{url}/healthz")).map_or(true, |r| r.status() != 200) {
            assert!(Instant::now() < end, "haproxy never answered on {url}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy { child, url }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One device's work: each round an incident (every other one with a new
/// photo) and a sync, which may fail while a node dies under it. The
/// incidents logged, and how many syncs failed.
fn work(d: &Device, photos: &Path, i: usize) -> (Vec<String>, usize) {
    let (mut logged, mut failed) = (Vec::new(), 0);
    for round in 0..ROUNDS {
        let mut args = vec!["--category".to_owned(), "clutter".to_owned()];
        args.extend(["--desc".to_owned(), format!("{i}号第{round}件")]);
        if round % 2 == 0 {
            let photo = photos.join(format!("{i}-{round}.jpg"));
            std::fs::write(&photo, noise_jpeg(1600, 1200, (i * 100 + round) as u64, 80)).unwrap();
            args.extend(["--photo".to_owned(), photo.to_str().unwrap().to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        logged.push(d.report(&args));
        failed += usize::from(!d.run(&["sync", "--json", "--retries", "2"]).status.success());
    }
    (logged, failed)
}

/// Syncs until the device has nothing left to send, as it would once the
/// city's nodes are steady again.
fn drain(d: &Device) {
    let end = Instant::now() + PATIENCE;
    loop {
        let _ = d.run(&["sync", "--json", "--retries", "2"]);
        let st = d.status();
        if st["unsynced_incidents"] == 0 && st["unsynced_blobs"] == 0 {
            return;
        }
        assert!(Instant::now() < end, "{} never finished syncing: {st}", d.worker);
    }
}

#[test]
fn a_city_of_three_nodes_behind_haproxy_loses_nothing_while_nodes_are_killed() {
    if !on_postgres() {
        eprintln!("runs in the PostgreSQL suite: SQLite serves one node per data dir");
        return;
    }
    let mut first = Server::new();
    for i in 0..DEVICES {
        first.add_worker(&format!("w-{i}"), &[HX01]);
    }
    first.start();
    let mut others = [first.node(true), first.node(true)];
    for n in &mut others {
        n.start();
    }
    let scratch = tempfile::tempdir().unwrap();
    let proxy = Haproxy::start(scratch.path(), &[&first, &others[0], &others[1]]);
    let devices: Vec<Device> = (0..DEVICES)
        .map(|i| {
            let d = Device::new(&format!("w-{i}"), &[HX01]);
            d.enroll_via(&first, &proxy.url);
            d
        })
        .collect();
    let photos = scratch.path().to_owned();
    let working: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let photos = photos.clone();
            std::thread::spawn(move || {
                let (logged, failed) = work(&d, &photos, i);
                (d, logged, failed)
            })
        })
        .collect();
    // Kill and restart the nodes one at a time while the devices work.
    let mut kills = 0;
    while !working.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(150));
        let node = match kills % 3 {
            0 => &mut first,
            k => &mut others[k - 1],
        };
        node.kill();
        std::thread::sleep(Duration::from_millis(300));
        node.start();
        kills += 1;
    }
    let (mut done, mut failed) = (Vec::new(), 0);
    for t in working {
        let (d, logged, f) = t.join().expect("a device");
        done.push((d, logged));
        failed += f;
    }
    eprintln!("{kills} nodes killed and restarted while {DEVICES} devices worked; {failed} syncs failed");
    assert!(kills >= 3, "every node was killed at least once ({kills} kills)");
    for (d, _) in &done {
        drain(d);
    }
    for (d, _) in &done {
        d.sync(&[]);
    }
    assert_nothing_lost(&first, &done);
}

fn assert_nothing_lost(server: &Server, done: &[(Device, Vec<String>)]) {
    let db = server.db();
    let on_server: BTreeSet<String> = db
        .prepare("SELECT id FROM incidents")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let logged: BTreeSet<String> = done.iter().flat_map(|(_, ids)| ids.iter().cloned()).collect();
    assert_eq!(logged.len(), DEVICES * ROUNDS);
    let missing: Vec<&String> = logged.difference(&on_server).collect();
    assert!(
        missing.is_empty(),
        "incidents the devices logged are not on the server: {missing:?}"
    );
    assert_eq!(on_server.len(), logged.len(), "no incident is stored twice or made up");
    let seqs: Vec<i64> = db
        .prepare("SELECT seq FROM changes ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "the feed's sequence has no gap and no repeat");
    assert_server_feed_consistent(server);
    let devices: Vec<&Device> = done.iter().map(|(d, _)| d).collect();
    for d in &devices {
        assert_device_photos_on_server(server, d);
    }
    assert_same_heads(server, &devices);
}

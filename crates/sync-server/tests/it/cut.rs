//! A connection cut in the middle of a sync: a TCP proxy in front of the
//! server forwards a set number of bytes from the device, then drops the
//! connection, as a lost mobile link would. The server keeps the whole
//! chunks it got; the next sync resumes from there.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sync_core::BlobHash;

use crate::*;

/// Forwards bytes both ways between devices and a server. While a budget is
/// set, only that many more bytes go from devices to the server; the
/// connection that runs out is cut (and so is any opened after).
struct Proxy {
    url: String,
    addr: SocketAddr,
    budget: Arc<Mutex<Option<u64>>>,
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let budget = Arc::new(Mutex::new(None));
        let relays = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (budget, relays, stop) = (budget.clone(), relays.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let budget = budget.clone();
                    let relay = std::thread::spawn(move || relay(client, upstream, &budget));
                    relays.lock().unwrap().push(relay);
                }
            });
        }
        Proxy {
            url: format!("http://{addr}"),
            addr,
            budget,
            relays,
            stop,
        }
    }

    /// From now on, forward only `bytes` more bytes towards the server.
    fn cut_after(&self, bytes: u64) {
        *self.budget.lock().unwrap() = Some(bytes);
    }

    fn pass_all(&self) {
        *self.budget.lock().unwrap() = None;
    }

    /// Waits until every connection so far is closed at both ends. The server
    /// closes its end only after answering what it received, so whatever it
    /// stores of those bytes is stored by then.
    fn settle(&self) {
        loop {
            let relays: Vec<_> = std::mem::take(&mut *self.relays.lock().unwrap());
            if relays.is_empty() {
                return;
            }
            for r in relays {
                r.join().expect("relay thread");
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, budget: &Mutex<Option<u64>>) {
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        // Read until the server closes, even once the device is gone.
        while let Ok(n @ 1..) = from_server.read(&mut buf) {
            let _ = to_client.write_all(&buf[..n]);
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let (mut from_client, mut to_server) = (client, server);
    let mut buf = vec![0; 64 * 1024];
    let mut cut = false;
    while let Ok(n @ 1..) = from_client.read(&mut buf) {
        let allowed = {
            let mut left = budget.lock().unwrap();
            match *left {
                None => n,
                Some(l) => {
                    let a = l.min(n as u64);
                    *left = Some(l - a);
                    a as usize
                }
            }
        };
        if to_server.write_all(&buf[..allowed]).is_err() {
            break;
        }
        if allowed < n {
            cut = true;
            break;
        }
    }
    if cut {
        let _ = from_client.shutdown(Shutdown::Both);
    }
    // The server sees the end of the stream after the forwarded bytes.
    let _ = to_server.shutdown(Shutdown::Write);
    back.join().expect("relay thread");
}

fn server_addr(server: &Server) -> SocketAddr {
    server
        .url
        .strip_prefix("http://")
        .expect("http URL")
        .parse()
        .expect("a socket address")
}

fn count(server: &Server, table: &str) -> i64 {
    server
        .db()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Generous room for the headers and the small sync request that come
/// before a run's first photo chunk.
const OVERHEAD: u64 = 4096;

#[test]
fn a_photo_upload_cut_mid_way_resumes_from_the_bytes_the_server_kept() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.start();
    let proxy = Proxy::start(server_addr(&server));
    let dev = Device::new("w-li", &[HX02]);
    let code = server.code("w-li");
    dev.ok(&["enroll", "--server", &proxy.url, "--code", &code]);
    proxy.settle();

    let photos = tempfile::tempdir().unwrap();
    let path = photos.path().join("noise.jpg");
    let original = noise_jpeg(1200, 900, 41, 90);
    assert!(
        (1_700_000..2_600_000).contains(&original.len()),
        "photo of {} bytes",
        original.len()
    );
    std::fs::write(&path, &original).unwrap();
    let size = original.len() as u64;
    let hash = BlobHash::of(&original).to_hex();
    let id = dev.report(&["--category", "manhole-cover", "--photo", path.to_str().unwrap()]);

    // Cut inside the first request: the push is not stored, and not lost.
    proxy.cut_after(300);
    let out = dev.run(&["sync", "--retries", "0"]);
    assert!(!out.status.success(), "a sync cut in its first request succeeded");
    proxy.settle();
    assert_eq!(count(&server, "incidents"), 0, "a cut-off push was stored");
    assert_eq!(dev.status()["unsynced_incidents"], 1);

    // The incident and the small copies get through; the original waits.
    proxy.pass_all();
    let first = dev.sync(&["--photos", "display"]);
    assert_eq!(
        (first["acknowledged"].as_u64(), first["photos_uploaded"].as_u64()),
        (Some(1), Some(2)),
        "{first}"
    );
    proxy.settle();
    assert_eq!(server_heads(&server), dev.heads());

    // Cuts ever further into the original: each run adds whole chunks.
    let part = upload_part(&server, &dev, &hash);
    let mut have = 0_u64;
    for target in [300_000_u64, 900_000, 1_500_000] {
        proxy.cut_after(OVERHEAD + target - have);
        let out = dev.run(&["sync", "--retries", "0"]);
        assert!(!out.status.success(), "a sync cut at {target} bytes succeeded");
        proxy.settle();
        let stored = std::fs::read(&part).unwrap_or_default();
        let n = stored.len() as u64;
        assert!(
            n > have && n <= target + OVERHEAD,
            "cut at {target}: the server holds {n} bytes, {have} before"
        );
        assert!(
            stored == original[..stored.len()],
            "cut at {target}: the stored bytes are not the photo's start"
        );
        assert_eq!(
            count(&server, "blobs"),
            2,
            "cut at {target}: the original counts as verified"
        );
        assert_eq!(dev.status()["unsynced_blobs"], 1);
        have = n;
    }

    // A whole connection again: the upload goes on from the stored bytes.
    proxy.pass_all();
    let done = dev.sync(&[]);
    proxy.settle();
    assert_eq!(done["photos_uploaded"], 1, "{done}");
    assert_eq!(done["photo_bytes_uploaded"].as_u64(), Some(size - have), "{done}");
    let sent = done["bytes_sent"].as_u64().unwrap();
    assert!(
        sent < size,
        "sent {sent} bytes for a photo of {size} of which {have} were on the server"
    );
    assert_eq!(dev.status()["unsynced_blobs"], 0);

    let stored_size: i64 = server
        .db()
        .query_row("SELECT size FROM blobs WHERE hash = ?1", [&hash], |r| r.get(0))
        .expect("the original is recorded as verified");
    assert_eq!(stored_size as u64, size);
    let file = std::fs::read(server.data_dir().join("photos").join(&hash[..2]).join(&hash)).unwrap();
    assert_eq!(
        blake3::hash(&file).to_hex().as_str(),
        hash,
        "the stored photo hashes to another name"
    );
    assert!(file == original, "the stored photo differs from the device's");
    assert!(!part.exists(), "the partial upload is left behind");

    // Another device in the cell gets the incident and its thumbnail.
    let other = Device::new("w-li", &[HX02]);
    other.ok(&["enroll", "--server", &proxy.url, "--code", &server.code("w-li")]);
    let pulled = other.sync(&[]);
    assert_eq!(
        (pulled["new_incidents"].as_u64(), pulled["thumbs_fetched"].as_u64()),
        (Some(1), Some(1)),
        "{pulled}"
    );
    assert_eq!(other.show(&id)["photos"].as_array().map(Vec::len), Some(1));
}

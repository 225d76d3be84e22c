//! A TCP proxy between devices and the server, standing in for a mobile
//! link: it can forward only so many more bytes towards the server and
//! then cut (`cut_after`), go down and come back (`down`, `up`: while
//! down, every open connection is cut and new ones are closed at once),
//! and pace what devices send to a rate (`pace`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct Rules {
    /// Bytes still allowed towards the server; `None`: no limit.
    budget: Option<u64>,
    down: bool,
    /// Bytes a second towards the server; `None`: as fast as it goes.
    rate: Option<u64>,
    /// Both ends of every open connection, to cut them when it goes down.
    live: Vec<(TcpStream, TcpStream)>,
}

pub struct Proxy {
    pub url: String,
    addr: SocketAddr,
    rules: Arc<Mutex<Rules>>,
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let rules = Arc::new(Mutex::new(Rules::default()));
        let relays = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (rules, relays, stop) = (rules.clone(), relays.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    if rules.lock().unwrap().down {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let rules = rules.clone();
                    let relay = std::thread::spawn(move || relay(client, upstream, &rules));
                    relays.lock().unwrap().push(relay);
                }
            });
        }
        Proxy {
            url: format!("http://{addr}"),
            addr,
            rules,
            relays,
            stop,
        }
    }

    /// From now on, forward only `bytes` more bytes towards the server.
    pub fn cut_after(&self, bytes: u64) {
        self.rules.lock().unwrap().budget = Some(bytes);
    }

    pub fn pass_all(&self) {
        self.rules.lock().unwrap().budget = None;
    }

    /// The link is lost: open connections are cut, new ones refused.
    pub fn down(&self) {
        let mut rules = self.rules.lock().unwrap();
        rules.down = true;
        for (client, server) in rules.live.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    pub fn up(&self) {
        self.rules.lock().unwrap().down = false;
    }

    /// What devices send reaches the server at about `bytes_per_sec`.
    pub fn pace(&self, bytes_per_sec: u64) {
        self.rules.lock().unwrap().rate = Some(bytes_per_sec);
    }

    /// Waits until every connection so far is closed at both ends. The server
    /// closes its end only after answering what it received, so whatever it
    /// stores of those bytes is stored by then.
    pub fn settle(&self) {
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
        self.down();
        let _ = TcpStream::connect(self.addr);
    }
}

/// How much of `n` bytes read from the device may go on now, and how long
/// to wait before sending them.
fn allowance(rules: &Mutex<Rules>, n: usize) -> (usize, Duration) {
    let mut rules = rules.lock().unwrap();
    let allowed = match rules.budget {
        None => n,
        Some(left) => {
            let a = left.min(n as u64);
            rules.budget = Some(left - a);
            a as usize
        }
    };
    let pause = rules.rate.map_or(Duration::ZERO, |r| {
        Duration::from_secs_f64(allowed as f64 / r.max(1) as f64)
    });
    (allowed, pause)
}

fn relay(client: TcpStream, upstream: SocketAddr, rules: &Mutex<Rules>) {
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    rules
        .lock()
        .unwrap()
        .live
        .push((client.try_clone().unwrap(), server.try_clone().unwrap()));
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
    // Small reads, so a paced link sends steadily.
    let mut buf = vec![0; 16 * 1024];
    let mut cut = false;
    while let Ok(n @ 1..) = from_client.read(&mut buf) {
        let (allowed, pause) = allowance(rules, n);
        std::thread::sleep(pause);
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

//! Hostile clients on the network against a real `sync-server`: idle,
//! slow-header and slow-body connections held while a worker's `field
//! sync` runs, half-sent bodies and the server's memory, online guessing
//! after the burst, and what TLS adds to a no-op sync.
//!
//! These figures come from one window each (60 s in full mode), not from
//! `--runs` repetitions: each window holds several samples, and the table
//! shows their median, min and max.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sync_core::protocol::{self, EnrollRequest, PROTOCOL_VERSION};
use tempfile::TempDir;

use crate::harness::{Binaries, FieldDir, ServerProcess, Worker};
use crate::local::CELL;
use crate::machine::rss_of;
use crate::stats::Runs;
use crate::table::{Row, Target};
use crate::{Sizes, progress};

/// The server's header timeout (`sync_server`'s listener): idle and
/// slow-header connections must be closed by then.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// What the measurement adds to it: the holder looks every 200 ms.
const SLACK: Duration = Duration::from_secs(1);
const FIELD_WORKER: &str = "w-net-field";
const HOSTILE_WORKER: &str = "w-net-hostile";
/// `field sync` samples taken while connections are held.
const HOLD_SYNCS: usize = 6;

/// How much hostile work each figure does.
#[derive(Debug, Clone)]
pub struct NetSizes {
    pub hold: Duration,
    pub idle: usize,
    pub slow_bodies: usize,
    pub slow_headers: usize,
    pub guessing: Duration,
    /// Half-sent bodies and the size each announces.
    pub big_bodies: (usize, usize),
    pub tls_syncs: usize,
}

impl NetSizes {
    pub fn full() -> NetSizes {
        NetSizes {
            hold: Duration::from_secs(60),
            idle: 1000,
            slow_bodies: 200,
            slow_headers: 100,
            guessing: Duration::from_secs(60),
            big_bodies: (24, 16 * 1024 * 1024),
            tls_syncs: 20,
        }
    }

    /// The hold stays past the header timeout so its figure means something.
    pub fn quick() -> NetSizes {
        NetSizes {
            hold: HEADER_TIMEOUT + SLACK + Duration::from_secs(1),
            idle: 30,
            slow_bodies: 5,
            slow_headers: 5,
            guessing: Duration::from_secs(3),
            big_bodies: (3, 1024 * 1024),
            tls_syncs: 3,
        }
    }
}

pub fn figures(bins: &Binaries, sizes: &Sizes) -> Result<Vec<Row>> {
    let net = &sizes.network;
    // The holder keeps well over a thousand sockets open.
    rlimit::increase_nofile_limit(u64::MAX).context("cannot raise this process's descriptor limit")?;
    let mut rows = Vec::new();
    let plain = hold(bins, net, None)?;
    let limited = hold(bins, net, Some(1024))?;
    let workload = format!(
        "{} idle, {} slow bodies, {} slow headers held {} s",
        net.idle,
        net.slow_bodies,
        net.slow_headers,
        net.hold.as_secs()
    );
    rows.push(Row::new(
        crate::HELD_SYNC,
        workload.clone(),
        "ms",
        Runs::new(plain.sync_ms),
        Target::AtMost(2000.0),
    ));
    rows.push(Row::new(
        crate::HELD_SYNC_1024,
        format!("{workload}, server under `prlimit --nofile=1024`"),
        "ms",
        Runs::new(limited.sync_ms),
        Target::AtMost(2000.0),
    ));
    rows.push(
        Row::new(
            crate::HELD_STALE,
            format!(
                "{} idle + slow-header connections, both limits",
                2 * (net.idle + net.slow_headers)
            ),
            "connections",
            Runs::new(vec![(plain.stale + limited.stale) as f64]),
            Target::AtMost(0.0),
        )
        .target_text("0"),
    );
    rows.push(Row::new(
        crate::HELD_BODIES,
        format!("{} slow bodies from an enrolled device, default limit", net.slow_bodies),
        "connections",
        Runs::new(vec![plain.bodies_open as f64]),
        Target::None,
    ));
    rows.extend(memory(bins, net)?);
    rows.extend(guessing(bins, net)?);
    rows.extend(tls(bins, net)?);
    Ok(rows)
}

/// A server with the field worker and a hostile colleague in one cell.
fn server(bins: &Binaries, args: &[&str], nofile: Option<u64>) -> Result<ServerProcess> {
    let cells = [CELL.to_owned()];
    let workers = [
        Worker::grid_worker(FIELD_WORKER, &cells),
        Worker::grid_worker(HOSTILE_WORKER, &cells),
    ];
    ServerProcess::start_with(bins, &workers, args, nofile)
}

/// The hostile colleague's device, enrolled over plain HTTP: its bearer
/// token and its data dir.
fn hostile_device(server: &ServerProcess) -> Result<(String, TempDir)> {
    let cells = [CELL.to_owned()];
    let dir = tempfile::Builder::new().prefix("bench-net-hostile-").tempdir()?;
    crate::data::init_device(dir.path(), HOSTILE_WORKER, &cells, uuid::Uuid::from_u128(0xBAD))?;
    let device = crate::harness::Device::enroll(dir.path(), server, HOSTILE_WORKER)?;
    Ok((device.token().to_owned(), dir))
}

/// [`server`] and [`hostile_device`].
fn server_and_hostile(bins: &Binaries, nofile: Option<u64>) -> Result<(ServerProcess, String, TempDir)> {
    let server = server(bins, &[], nofile)?;
    let (token, dir) = hostile_device(&server)?;
    Ok((server, token, dir))
}

fn addr_of(server: &ServerProcess) -> Result<SocketAddr> {
    let host = server
        .url
        .split("://")
        .nth(1)
        .context("the server's URL has no scheme")?;
    host.parse()
        .with_context(|| format!("the server's address {host:?} does not parse"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request head one byte a second, never ending it.
    SlowHeader,
    /// Sends a whole head with a token, then its body one byte a second.
    SlowBody,
}

/// One hostile connection, and when the server closed it.
struct Held {
    stream: TcpStream,
    kind: Hostile,
    opened: Instant,
    closed: Option<Instant>,
}

impl Held {
    fn open(addr: SocketAddr, kind: Hostile, token: &str) -> Result<Held> {
        let mut stream = TcpStream::connect(addr).context("cannot open a held connection")?;
        let head = match kind {
            Hostile::Idle => String::new(),
            Hostile::SlowHeader => "GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: ".to_owned(),
            Hostile::SlowBody => format!(
                "POST /v1/sync HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/cbor\r\nContent-Length: 1000000\r\n\r\n"
            ),
        };
        stream.write_all(head.as_bytes())?;
        stream.set_nonblocking(true)?;
        Ok(Held {
            stream,
            kind,
            opened: Instant::now(),
            closed: None,
        })
    }

    /// Sends the next slow byte if `send`, and notes whether the server
    /// has closed the connection (it may answer first, e.g. 408).
    fn tick(&mut self, send: bool) {
        if self.closed.is_some() {
            return;
        }
        let byte: &[u8] = match self.kind {
            Hostile::Idle => b"",
            Hostile::SlowHeader => b"x",
            Hostile::SlowBody => b"\0",
        };
        let gone = |e: &std::io::Error| e.kind() != std::io::ErrorKind::WouldBlock;
        if send && !byte.is_empty() && self.stream.write(byte).as_ref().is_err_and(gone) {
            self.closed = Some(Instant::now());
            return;
        }
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break self.closed = Some(Instant::now()),
                Ok(_) => continue,
                Err(e) if !gone(&e) => break,
                Err(_) => break self.closed = Some(Instant::now()),
            }
        }
    }

    /// Open longer than the header timeout allows (idle and slow-header only).
    fn stale(&self, now: Instant) -> bool {
        self.kind != Hostile::SlowBody && self.closed.unwrap_or(now) - self.opened > HEADER_TIMEOUT + SLACK
    }
}

/// What one hold window showed.
struct Hold {
    sync_ms: Vec<f64>,
    stale: usize,
    bodies_open: usize,
}

/// Opens the hostile connections (slow bodies first, then slow headers,
/// then idle ones), keeps them going for the window while `field sync`
/// runs [`HOLD_SYNCS`] times from another thread.
fn hold(bins: &Binaries, net: &NetSizes, nofile: Option<u64>) -> Result<Hold> {
    let limit = nofile.map_or("the default descriptor limit".to_owned(), |n| {
        format!("a {n} descriptor limit")
    });
    progress(&format!(
        "network: holding hostile connections for {} s, {limit}",
        net.hold.as_secs()
    ));
    let (server, token, _hostile) = server_and_hostile(bins, nofile)?;
    let field = FieldDir::enrolled(bins, &server, FIELD_WORKER, None)?;
    let addr = addr_of(&server)?;
    let mut held = Vec::new();
    for (kind, n) in [
        (Hostile::SlowBody, net.slow_bodies),
        (Hostile::SlowHeader, net.slow_headers),
        (Hostile::Idle, net.idle),
    ] {
        for _ in 0..n {
            held.push(Held::open(addr, kind, &token)?);
        }
    }
    let start = Instant::now();
    let gap = net.hold / HOLD_SYNCS as u32;
    let syncs = std::thread::spawn(move || -> Result<Vec<f64>> {
        let mut ms = Vec::new();
        for i in 0..HOLD_SYNCS {
            std::thread::sleep(
                (start + Duration::from_secs(1) + gap * i as u32).saturating_duration_since(Instant::now()),
            );
            ms.push(field.sync_ms()?);
        }
        Ok(ms)
    });
    let mut ticks = 0u64;
    while start.elapsed() < net.hold {
        ticks += 1;
        held.iter_mut().for_each(|h| h.tick(ticks % 5 == 0));
        std::thread::sleep(Duration::from_millis(200));
    }
    let sync_ms = syncs
        .join()
        .map_err(|_| anyhow::anyhow!("the syncing thread panicked"))??;
    let now = Instant::now();
    held.iter_mut().for_each(|h| h.tick(false));
    Ok(Hold {
        sync_ms,
        stale: held.iter().filter(|h| h.stale(now)).count(),
        bodies_open: held
            .iter()
            .filter(|h| h.kind == Hostile::SlowBody && h.closed.is_none())
            .count(),
    })
}

/// Server RSS in MB.
fn rss_mb(server: &ServerProcess) -> Result<f64> {
    let (rss, _) = rss_of(server.pid()).context("cannot read the server's /proc status")?;
    Ok(rss as f64 / 1e6)
}

/// Sends `n` sync requests announcing `size` body bytes and half of each
/// body, with `token` or none, keeps them open a moment and returns the
/// server's RSS rise in MB.
fn half_bodies(server: &ServerProcess, n: usize, size: usize, token: Option<&str>) -> Result<f64> {
    let addr = addr_of(server)?;
    let before = rss_mb(server)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/cbor\r\nContent-Length: {size}\r\n\r\n"
    );
    let chunk = vec![0u8; 64 * 1024];
    let mut open = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr)?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(head.as_bytes())?;
        // An unauthenticated body is refused before it is read: the
        // server closes, and the writes stop failing here.
        for _ in 0..size / 2 / chunk.len() {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        open.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_mb(server)?;
    drop(open);
    Ok(after - before)
}

fn memory(bins: &Binaries, net: &NetSizes) -> Result<Vec<Row>> {
    let (n, size) = net.big_bodies;
    progress(&format!("network: {n} half-sent bodies of {} MiB", size >> 20));
    let (server, token, _hostile) = server_and_hostile(bins, None)?;
    let anonymous = half_bodies(&server, n, size, None)?;
    let enrolled = half_bodies(&server, n, size, Some(&token))?;
    let workload = |who: &str| format!("{n} × {} MiB announced, half sent, {who}", size >> 20);
    Ok(vec![
        Row::new(
            crate::BODIES_RSS,
            workload("no token"),
            "MB",
            Runs::new(vec![anonymous]),
            Target::AtMost(20.0),
        ),
        Row::new(
            crate::BODIES_RSS_ENROLLED,
            workload("an enrolled device's token"),
            "MB",
            Runs::new(vec![enrolled]),
            Target::None,
        ),
    ])
}

/// What a guesser from one address saw.
#[derive(Default)]
struct Guesses {
    /// Tries the server checked before its first 429.
    burst: usize,
    /// Tries it checked after that, and how long after.
    later: usize,
    since_first_429: Option<Instant>,
}

impl Guesses {
    fn per_minute(&self, end: Instant) -> f64 {
        let secs = self.since_first_429.map_or(0.0, |t| (end - t).as_secs_f64());
        if secs > 0.0 {
            self.later as f64 * 60.0 / secs
        } else {
            f64::NAN
        }
    }
}

/// Guesses as fast as one connection allows for `window`, from `source`.
fn guess(
    url: &str,
    source: Ipv4Addr,
    window: Duration,
    send: &dyn Fn(&reqwest::blocking::Client, &str, usize) -> Result<u16>,
) -> Result<(Guesses, Instant)> {
    let http = reqwest::blocking::Client::builder()
        .local_address(IpAddr::V4(source))
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut g = Guesses::default();
    let end = Instant::now() + window;
    let mut i = 0;
    while Instant::now() < end {
        i += 1;
        match (send(&http, url, i)?, g.since_first_429) {
            (429, None) => g.since_first_429 = Some(Instant::now()),
            (429, Some(_)) => {}
            (_, None) => g.burst += 1,
            (_, Some(_)) => g.later += 1,
        }
    }
    Ok((g, Instant::now()))
}

fn wrong_code(http: &reqwest::blocking::Client, url: &str, i: usize) -> Result<u16> {
    let req = EnrollRequest {
        version: PROTOCOL_VERSION,
        code: format!("WRNG-{i:04}-CODE"),
        worker: HOSTILE_WORKER.to_owned(),
        device: uuid::Uuid::from_u128(i as u128).to_string(),
        public_key: None,
        label: None,
    };
    let resp = http
        .post(format!("{url}/v1/enroll"))
        .header("content-type", "application/cbor")
        .body(protocol::encode(&req))
        .send()?;
    Ok(resp.status().as_u16())
}

fn wrong_token(http: &reqwest::blocking::Client, url: &str, i: usize) -> Result<u16> {
    let resp = http
        .post(format!("{url}/v1/sync"))
        .bearer_auth(format!("guess-{i}"))
        .header("content-type", "application/cbor")
        .body(Vec::new())
        .send()?;
    Ok(resp.status().as_u16())
}

/// An enrolment-code guesser and a token guesser, each from its own
/// address, at once.
fn guessing(bins: &Binaries, net: &NetSizes) -> Result<Vec<Row>> {
    progress(&format!(
        "network: guessing codes and tokens for {} s",
        net.guessing.as_secs()
    ));
    let (server, _token, _hostile) = server_and_hostile(bins, None)?;
    let window = net.guessing;
    let (codes, tokens) = std::thread::scope(|s| {
        let url = server.url.as_str();
        let codes = s.spawn(move || guess(url, Ipv4Addr::new(127, 0, 0, 2), window, &wrong_code));
        let tokens = s.spawn(move || guess(url, Ipv4Addr::new(127, 0, 0, 3), window, &wrong_token));
        (codes.join(), tokens.join())
    });
    let mut rows = Vec::new();
    for (figure, what, result) in [
        (crate::GUESS_CODES, "enrolment codes", codes),
        (crate::GUESS_TOKENS, "bearer tokens", tokens),
    ] {
        let (g, end) = result.map_err(|_| anyhow::anyhow!("a guessing thread panicked"))??;
        ensure!(g.since_first_429.is_some(), "{what}: the server never answered 429");
        rows.push(
            Row::new(
                figure,
                format!(
                    "wrong {what}, one address, {} s; {} checked before the first 429",
                    window.as_secs(),
                    g.burst
                ),
                "tries/min",
                Runs::new(vec![g.per_minute(end)]),
                Target::AtMost(36.0),
            )
            .target_text("a few dozen (≤ 36)"),
        );
    }
    Ok(rows)
}

/// A throw-away CA and a certificate for 127.0.0.1 it signed, as PEM files.
fn tls_files(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "bench CA");
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &issuer)?;
    let paths = (dir.join("ca.pem"), dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&paths.0, ca_pem)?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// No-op `field sync` as whole processes: each opens a new connection, so
/// over HTTPS each includes a full TLS handshake.
fn tls(bins: &Binaries, net: &NetSizes) -> Result<Vec<Row>> {
    progress(&format!(
        "network: {} no-op syncs over HTTPS and over HTTP",
        net.tls_syncs
    ));
    let files = tempfile::Builder::new().prefix("bench-tls-").tempdir()?;
    let (ca, cert, key) = tls_files(files.path())?;
    let tls_args = [
        "--tls-cert",
        &*cert.to_string_lossy(),
        "--tls-key",
        &*key.to_string_lossy(),
    ]
    .map(str::to_owned);
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let https = server(bins, &tls_args, None)?;
    let http = server(bins, &[], None)?;
    ensure!(https.url.starts_with("https://"), "the TLS server serves {}", https.url);
    let secure = FieldDir::enrolled(bins, &https, FIELD_WORKER, Some(&ca))?;
    let plain = FieldDir::enrolled(bins, &http, FIELD_WORKER, None)?;
    let (mut over_tls, mut over_http) = (Vec::new(), Vec::new());
    for _ in 0..net.tls_syncs {
        over_tls.push(secure.sync_ms()?);
        over_http.push(plain.sync_ms()?);
    }
    let workload = format!("{} `field sync` processes, nothing to do", net.tls_syncs);
    Ok(vec![
        Row::new(
            crate::TLS_SYNC,
            workload.clone(),
            "ms",
            Runs::new(over_tls),
            Target::None,
        ),
        Row::new(crate::PLAIN_SYNC, workload, "ms", Runs::new(over_http), Target::None),
    ])
}

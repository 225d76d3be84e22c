//! The project's benchmark: every figure of issue 5 in one run, each the
//! median of several runs with their min and max, beside its target and,
//! for sync, beside stock Automerge per-document sync on the same data.
//!
//! Everything runs on loopback in temporary folders and stops by itself;
//! `sync-server` and `field` run as real processes, built first with the
//! profile this crate was built with. [`run`] is what `grid-bench` calls
//! and what the test calls in quick mode.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub mod baseline;
pub mod data;
pub mod harness;
pub mod load;
pub mod local;
pub mod machine;
pub mod network;
pub mod reads;
pub mod stats;
pub mod sync;
pub mod table;
pub mod watch;

use machine::Machine;
use table::Row;

pub const LOG_BATCHED: &str = "incidents logged in-process, batched";
pub const LOG_DURABLE: &str = "incidents logged, one durable transaction each";
pub const REPORT_P50: &str = "`field report` without photo, whole process, p50";
pub const REPORT_P99: &str = "`field report` without photo, whole process, p99";
pub const PHOTO: &str = "photo ingest (hash, EXIF, display, thumbnail)";
pub const NOOP_RT: &str = "no-op sync: round trips";
pub const NOOP_BYTES: &str = "no-op sync: bytes both ways";
pub const NOOP_SERVER: &str = "no-op sync: server time";
pub const NOOP_HTTP: &str = "no-op sync: HTTP round trip seen by the device";
pub const NOOP_DEVICE: &str = "no-op sync: whole sync on the device";
pub const EDIT_WIRE: &str = "one-field edit synced: bytes both ways";
pub const EDIT_CHANGE: &str = "one-field edit synced: change bytes pushed";
pub const EDIT_OWN: &str = "one-field edit: size of the edit's own change";
pub const EDIT_RT: &str = "one-field edit synced: round trips";
pub const EDIT_ENVELOPE: &str = "one-field edit synced: bytes both ways beyond the change";
pub const STATUS_WIRE: &str = "status change synced: bytes both ways";
pub const STATUS_CHANGE: &str = "status change synced: change bytes pushed";
pub const STATUS_OWN: &str = "status change: size of its own change";
pub const NEW_RATIO: &str = "new incident synced: change bytes ÷ saved size";
pub const NEW_WIRE: &str = "new incident synced: bytes both ways";
pub const NEW_OVER: &str = "new incident synced: bytes both ways beyond its saved size";
pub const NEW_RT: &str = "new incident synced: round trips";
pub const INGEST: &str = "server ingest, concurrent devices";
pub const INGEST_P50: &str = "server ingest: request latency p50";
pub const INGEST_P99: &str = "server ingest: request latency p99";
pub const NOOP_UNDER_INGEST: &str = "no-op sync p99 while devices ingest";
pub const PULL: &str = "fresh device pulling a community";
pub const INGEST_PG_1: &str = "server ingest on PostgreSQL, 1 node";
pub const INGEST_PG_3: &str = "server ingest on PostgreSQL, 3 nodes";
pub const PULL_PG: &str = "fresh device pulling a community, PostgreSQL";
pub const PHOTO_UP_RSS: &str = "server memory rise, 12 MP photo uploaded through one node";
pub const PHOTO_DOWN_RSS: &str = "server memory rise, that photo served by another node";
pub const RSS: &str = "server memory after ingest (VmRSS)";
pub const RSS_PEAK: &str = "server peak memory during ingest (VmHWM)";
pub const READ_REPORT: &str = "daily report of one community, large server";
pub const READ_OPEN311: &str = "Open311 `requests.json`, default window, large server";
pub const READ_EXPORT: &str = "one day's CSV export of one community, large server";
pub const READ_RSS: &str = "server peak memory after those reads (VmHWM)";
pub const HELD_SYNC: &str = "`field sync` while hostile connections are held";
pub const HELD_SYNC_1024: &str = "`field sync` while they are held, 1,024 descriptors";
pub const HELD_STALE: &str = "idle or slow-header connections open past the header timeout (10 s) + 1 s";
pub const HELD_BODIES: &str = "slow bodies still open at the end of the hold";
pub const BODIES_RSS: &str = "server RSS rise, unauthenticated half-sent bodies";
pub const BODIES_RSS_ENROLLED: &str = "server RSS rise, an enrolled device's half-sent bodies";
pub const GUESS_CODES: &str = "enrolment-code guesses checked after the burst";
pub const GUESS_TOKENS: &str = "token guesses checked after the burst";
pub const TLS_SYNC: &str = "no-op `field sync` over HTTPS (new TLS handshake), whole process";
pub const PLAIN_SYNC: &str = "no-op `field sync` over plain HTTP, whole process";
pub const WATCH_CPU_ONLINE: &str = "`field sync --watch` idle CPU, online";
pub const WATCH_WAKE_ONLINE: &str = "`field sync --watch` wake-ups, online";
pub const WATCH_CPU_OFFLINE: &str = "`field sync --watch` idle CPU, offline";
pub const WATCH_WAKE_OFFLINE: &str = "`field sync --watch` wake-ups, offline";
pub const WATCH_PROBES_OFFLINE: &str = "`field sync --watch` probes of the absent server";
pub const WATCH_BACK: &str = "server back → the record logged offline stored";
pub const WATCH_BACK_BEYOND: &str = "… beyond the watcher's scheduled probe";

/// Every figure, in table order; each is one row of the table.
pub const FIGURES: &[&str] = &[
    LOG_BATCHED,
    LOG_DURABLE,
    REPORT_P50,
    REPORT_P99,
    PHOTO,
    NOOP_RT,
    NOOP_BYTES,
    NOOP_SERVER,
    NOOP_HTTP,
    NOOP_DEVICE,
    EDIT_WIRE,
    EDIT_CHANGE,
    EDIT_OWN,
    EDIT_RT,
    EDIT_ENVELOPE,
    STATUS_WIRE,
    STATUS_CHANGE,
    STATUS_OWN,
    NEW_RATIO,
    NEW_WIRE,
    NEW_OVER,
    NEW_RT,
    INGEST,
    INGEST_P50,
    INGEST_P99,
    NOOP_UNDER_INGEST,
    PULL,
    INGEST_PG_1,
    INGEST_PG_3,
    PULL_PG,
    RSS,
    RSS_PEAK,
    READ_REPORT,
    READ_OPEN311,
    READ_EXPORT,
    READ_RSS,
    PHOTO_UP_RSS,
    PHOTO_DOWN_RSS,
    HELD_SYNC,
    HELD_SYNC_1024,
    HELD_STALE,
    HELD_BODIES,
    BODIES_RSS,
    BODIES_RSS_ENROLLED,
    GUESS_CODES,
    GUESS_TOKENS,
    TLS_SYNC,
    PLAIN_SYNC,
    WATCH_CPU_ONLINE,
    WATCH_WAKE_ONLINE,
    WATCH_CPU_OFFLINE,
    WATCH_WAKE_OFFLINE,
    WATCH_PROBES_OFFLINE,
    WATCH_BACK,
    WATCH_BACK_BEYOND,
];

/// Text after this line in an existing output file is kept when the bench
/// rewrites it, so the analysis of the figures survives a new run.
pub const KEEP_MARKER: &str = "<!-- grid-bench: everything below this line is kept when the file is regenerated -->";

/// Groups of figures that can be run alone (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Logging incidents in-process, batched and one transaction each.
    Logging,
    /// `field report` as a whole process.
    Report,
    /// The photo pipeline.
    Photo,
    /// No-op sync, edit, new incident, fresh pull, and the stock baseline.
    Sync,
    /// Many devices pushing at once.
    Ingest,
    /// Server memory after a large ingest.
    Memory,
    /// Reports, Open311 and exports on a server holding many incidents.
    Reads,
    /// Hostile network clients: held connections, half-sent bodies,
    /// guessing, and TLS.
    Network,
    /// `field sync --watch`: idle cost, and how soon it syncs after an outage.
    Watch,
    /// Ingest (one node and three) and a fresh pull with the records in PostgreSQL.
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Small sizes, for CI: keeps the harness working, judges nothing.
    pub quick: bool,
    /// Only these groups of figures; empty for all.
    pub only: Vec<Group>,
    /// Runs per figure; the table shows their median, min and max.
    pub runs: usize,
    /// Where to write the Markdown, besides standard output.
    pub out: Option<PathBuf>,
}

/// How much work each figure does.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub log_batched: usize,
    pub log_durable: usize,
    pub report_processes: usize,
    pub photo: (u32, u32),
    pub community: usize,
    pub ingest_devices: usize,
    pub ingest_per_device: usize,
    pub rss_devices: usize,
    pub rss_per_device: usize,
    /// Incidents on the server the reads are measured on.
    pub reads_incidents: usize,
    pub network: network::NetSizes,
    /// Each idle window of the watcher.
    pub watch_window: std::time::Duration,
}

impl Sizes {
    /// The sizes the targets are stated for.
    pub fn full() -> Sizes {
        Sizes {
            log_batched: 2_000,
            log_durable: 500,
            report_processes: 200,
            photo: (4000, 3000),
            community: 10_000,
            ingest_devices: 50,
            ingest_per_device: 200,
            rss_devices: 10,
            rss_per_device: 10_000,
            reads_incidents: 1_000_000,
            network: network::NetSizes::full(),
            watch_window: std::time::Duration::from_secs(60),
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            log_batched: 100,
            log_durable: 10,
            report_processes: 5,
            photo: (640, 480),
            community: 100,
            ingest_devices: 5,
            ingest_per_device: 20,
            rss_devices: 10,
            rss_per_device: 20,
            reads_incidents: 2_000,
            network: network::NetSizes::quick(),
            watch_window: std::time::Duration::from_secs(5),
        }
    }
}

/// What one run of the bench produced.
#[derive(Debug, Clone)]
pub struct Report {
    pub markdown: String,
    pub rows: Vec<Row>,
}

pub fn workspace_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.ancestors().nth(2).unwrap_or(crate_dir).to_owned()
}

/// Progress goes to standard error; the table to standard output.
pub fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Runs every figure, prints nothing, writes `config.out` if set.
pub fn run(config: &Config) -> Result<Report> {
    anyhow::ensure!(config.runs >= 1, "--runs must be at least 1");
    let sizes = if config.quick { Sizes::quick() } else { Sizes::full() };
    let runs = config.runs;
    let machine = Machine::describe(&std::env::temp_dir());
    let started = chrono::Local::now();
    // Per group: its name, the load average after it, and the share of the
    // CPU other processes used while it ran.
    let mut busy: Vec<(Group, f64, f64)> = Vec::new();
    let bins = harness::Binaries::build()?;

    let mut rows = Vec::new();
    let wanted = |g: Group| config.only.is_empty() || config.only.contains(&g);
    let mut phase = |group: Group, f: &dyn Fn() -> Result<Vec<Row>>| -> Result<()> {
        if wanted(group) {
            let before = machine::CpuSample::now();
            rows.extend(f()?);
            let others = before.others_share(&machine::CpuSample::now(), machine.cores);
            busy.push((group, machine::load_average(), others));
        }
        Ok(())
    };
    phase(Group::Logging, &|| local::logging(&sizes, runs))?;
    phase(Group::Report, &|| local::field_report(&bins, &sizes, runs))?;
    phase(Group::Photo, &|| local::photo(&sizes, runs).map(|r| vec![r]))?;
    phase(Group::Sync, &|| sync::figures(&bins, &sizes, runs))?;
    phase(Group::Ingest, &|| load::ingest(&bins, &sizes, runs))?;
    phase(Group::Ingest, &|| load::noop_under_ingest(&bins, &sizes, runs))?;
    phase(Group::Memory, &|| load::memory(&bins, &sizes, runs))?;
    phase(Group::Reads, &|| reads::figures(&bins, &sizes, runs))?;
    phase(Group::Postgres, &|| load::ingest_postgres(&bins, &sizes, runs))?;
    phase(Group::Postgres, &|| sync::pull_postgres(&bins, &sizes, runs))?;
    phase(Group::Postgres, &|| load::photo_across_nodes(&bins, &sizes, runs))?;
    phase(Group::Network, &|| network::figures(&bins, &sizes))?;
    phase(Group::Watch, &|| watch::figures(&bins, &sizes))?;
    rows.sort_by_key(|r| FIGURES.iter().position(|f| *f == r.figure).unwrap_or(usize::MAX));
    if config.only.is_empty() {
        let made: Vec<&str> = rows.iter().map(|r| r.figure).collect();
        anyhow::ensure!(made == FIGURES, "the bench made rows {made:?}, not one per figure");
    }
    let took = chrono::Local::now() - started;

    let markdown = document(config, &machine, &rows, &busy, started, took)?;
    if let Some(out) = &config.out {
        let kept = std::fs::read_to_string(out)
            .ok()
            .and_then(|old| old.split_once(KEEP_MARKER).map(|(_, tail)| tail.to_owned()));
        let mut text = markdown.clone();
        text.push('\n');
        text.push_str(KEEP_MARKER);
        text.push_str(kept.as_deref().unwrap_or("\n"));
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(Report { markdown, rows })
}

fn document(
    config: &Config,
    m: &Machine,
    rows: &[Row],
    busy: &[(Group, f64, f64)],
    started: chrono::DateTime<chrono::Local>,
    took: chrono::TimeDelta,
) -> Result<String> {
    let mut s = String::new();
    write_heading(&mut s, config, started, took)?;
    write_machine(&mut s, m, busy)?;
    write_figures(&mut s, config, rows)?;
    s.push_str(METHOD);
    Ok(s)
}

/// The title and the line saying how the figures were made.
fn write_heading(
    s: &mut String,
    config: &Config,
    started: chrono::DateTime<chrono::Local>,
    took: chrono::TimeDelta,
) -> std::fmt::Result {
    use std::fmt::Write as _;
    let mode = if config.quick {
        "quick (small sizes, nothing judged)"
    } else {
        "full"
    };
    writeln!(s, "# Benchmarks")?;
    writeln!(s)?;
    let mut args: Vec<String> = Vec::new();
    if config.quick {
        args.push("--quick".into());
    }
    for g in &config.only {
        args.push(format!("--only {}", group_name(g)));
    }
    writeln!(
        s,
        "Written by `cargo run {}-p bench{}{}` on {} ({} runs per figure, {} mode, {:.1} min). \
         Each figure is the median of the runs, with their min and max. Figures are not comparable across \
         machines; rerun to compare.",
        if cfg!(debug_assertions) { "" } else { "--release " },
        if args.is_empty() { "" } else { " -- " },
        args.join(" "),
        started.format("%Y-%m-%d %H:%M %:z"),
        config.runs,
        mode,
        took.as_seconds_f64() / 60.0
    )?;
    writeln!(s)
}

/// The machine, and how busy other processes kept it during each group.
fn write_machine(s: &mut String, m: &Machine, busy: &[(Group, f64, f64)]) -> std::fmt::Result {
    use std::fmt::Write as _;
    writeln!(s, "## Machine")?;
    writeln!(s)?;
    writeln!(s, "- CPU: {} ({} cores available)", m.cpu, m.cores)?;
    writeln!(s, "- Memory: {}", m.memory)?;
    writeln!(s, "- OS: {}", m.os)?;
    writeln!(s, "- Compiler: {}", m.rustc)?;
    writeln!(s, "- Data dirs: {} ({})", std::env::temp_dir().display(), m.data_fs)?;
    writeln!(s, "- Source: commit {}", m.commit)?;
    let groups: Vec<String> = busy
        .iter()
        .map(|(g, load, others)| format!("{} {:.0}% (load {load:.1})", group_name(g), others * 100.0))
        .collect();
    writeln!(
        s,
        "- CPU taken by other processes while each group ran (load average after it): {}",
        groups.join(", ")
    )?;
    let most_taken = busy.iter().map(|b| b.2).fold(0.0, f64::max);
    if most_taken > 0.1 {
        writeln!(
            s,
            "- **The machine was busy**: other processes took up to {:.0}% of the CPUs during a group of \
             figures, so those timings are slower and noisier than on an idle machine.",
            most_taken * 100.0
        )?;
    }
    writeln!(s)
}

/// The table, and in a full run which targets were missed.
fn write_figures(s: &mut String, config: &Config, rows: &[Row]) -> std::fmt::Result {
    use std::fmt::Write as _;
    writeln!(s, "## Figures")?;
    writeln!(s)?;
    s.push_str(&table::markdown(rows, config.quick));
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.met() == Some(false))
        .map(|r| r.figure)
        .collect();
    writeln!(s)?;
    if !config.quick {
        if missed.is_empty() {
            writeln!(s, "Every target was met.")?;
        } else {
            writeln!(s, "Targets missed: {}.", missed.join("; "))?;
        }
        writeln!(s)?;
    }
    Ok(())
}

/// A group's name as `--only` takes it.
fn group_name(g: &Group) -> String {
    clap::ValueEnum::to_possible_value(g)
        .expect("no skipped variants")
        .get_name()
        .to_owned()
}

/// What each figure measures, exactly. Kept beside the code that does it.
const METHOD: &str = "\
## What each figure measures

- **Logged in-process, batched.** `Store::save_many`: per incident the same work as `Store::save` (build
  the document with `IncidentDoc::create`, read it back through the schema check, `save()` its bytes,
  take its heads, write the row with its projected columns and the outbox entry), with every incident in
  **one** SQLite transaction on the device database (WAL, `synchronous=FULL`). Rate = incidents ÷ time
  from the first document to the commit.
- **One durable transaction each.** `IncidentDoc::create` + `Store::save` per incident: one fsynced
  transaction each, as `field report` does.
- **`field report`, whole process.** The release `field` binary spawned and waited for (start, open and
  lock the store, check, one durable commit, print the id, exit), no photo, timed from outside; p50 and
  p99 of each run's processes, then the median of the runs. Three warm-up reports come first.
- **Photo ingest.** A generated JPEG (photo-like gradients, texture, blocks and sensor noise, quality
  90, with EXIF orientation 6, capture time and GPS): `blake3` of the original plus
  `sync_core::photo::process` (EXIF, scaled decode, display copy ≤ 1600 px and thumbnail ≤ 320 px,
  orientation applied, JPEG encodes), in-process. One warm-up first. Writing the blobs is not included.
- **No-op sync.** A device that logged the community's incidents and pushed them all to a real
  `sync-server` on loopback syncs again with nothing to do, with `field sync`'s request limits.
  *Round trips* and *bytes* are HTTP requests and request + response **bodies** (HTTP/1.1 headers,
  about 150–250 B each way, are not counted). *Server time* is the server's handler without HTTP, run
  in this process on the server's own database: look up the token, decode the CBOR request,
  `sync_server::sync::sync` (which records the device's manifest in a durable write), encode the
  response. *HTTP round trip* is the same request timed by the device's HTTP client; *whole sync on the
  device* adds building the request (the manifest digest over every incident) and applying the response
  in one durable transaction.
- **Stock Automerge sync (baseline).** The same documents, loaded from the device's and the server's
  databases, one `automerge::sync::State` per incident per side, persisted between sessions with
  `State::encode` as Automerge recommends; a first session (not measured) brings the states level. Each
  session: the device generates a message for every incident, the server receives and answers each,
  until the device has nothing to send; a round trip is one such batch. Bytes are the encoded sync
  messages only (no incident ids, no framing); server time is decoding its states and the messages,
  `receive_sync_message`, `generate_sync_message`, encoding replies and states, with every document
  already in memory. Both simplifications favour the baseline.
- **One-field edit.** The smallest edit of one field the rules admit: the reporter corrects the
  incident's `description` to a new short text (`IncidentDoc::correct`: one Automerge `put` and the
  correction note every correction carries), then `Store::save` and a sync. *Change bytes pushed* are
  the Automerge change bytes in the push; *the edit's own change* is the size of the change the edit made
  (`get_changes` after the heads before it), whatever else the push carries; *bytes both ways* are the
  request + response bodies, the change's signature included; *beyond the change* is bytes both ways
  less the change bytes pushed: what the protocol itself costs. The baseline applies the same change to
  its copy and runs a session for that incident.
- **Status change.** The smallest edit `field` itself makes: `IncidentDoc::set_status(resolved)`
  (the status and a status-history entry), as `field update ID --status dispatched`; measured the same
  way, on another incident. Reported beside the one-field edit, not judged.
- **New incident.** One incident logged as `field report` logs it, then a sync: the change bytes pushed
  ÷ the size of the saved document (`IncidentDoc::save`), request + response bodies, and those bodies
  less the saved size (target ≤ 200 B: a new incident costs at most its saved size + 200 B). The baseline
  starts a session for that incident with a server that does not have it.
- **Server ingest.** Devices spread over every grid cell, each with an unsynced log, enrolled at a
  fresh server process, then all sync at once, one thread and one blocking `reqwest` client each, with
  `field sync`'s limits (200 incidents per request). Devices sharing a cell also pull each other's
  incidents, as they would. Rate = incidents acknowledged ÷ time from the first request to the last
  request that pushed; latency is each request as its client saw it, every request of the run.
- **No-op sync while devices ingest.** The same ingest, with the devices spread over every cell but
  one; a device of that last cell, synced once before, syncs again and again (nothing to push, nothing
  to pull) from its own thread until the ingest ends. The figure is the p99 of its HTTP round trips
  (p50 beside the target); every one of them is checked to have pushed and pulled nothing.
- **Fresh device pull.** A new device of the community center enrols and syncs: every incident of the
  community in pages of 2,000 changes, merged into its store. Rate = new incidents ÷ whole sync time.
- **On PostgreSQL.** The same ingest and fresh pull with the server's records in a fresh PostgreSQL
  15 database on the same machine (`--database`, the machine's own server, default settings, which
  fsync every commit): ingest on one node, and on three `serve` processes sharing the database with
  device `i` syncing with node `i % 3` (each node its own data dir; nothing is behind a proxy, so the
  figure is the database's and the nodes', not a proxy's). All on the same two cores, so three nodes
  share the CPU that one node has alone. **Photo memory:** a device (the real `field`) logs one
  photo of the photo figure's size and syncs it through one node of a server on PostgreSQL whose photos
  are in Garage (a bucket on a one-node Garage the bench starts); the node's VmHWM after the sync less its
  VmRSS before. Then the original is fetched from a second node with the device's token, measured the
  same way on that node.
- **Server memory.** A fresh server process ingests the incidents from devices in separate cells (so
  nothing is pulled back); then `VmRSS` and `VmHWM` are read from `/proc/<pid>/status`. MB = 10⁶ bytes.
- **Large server reads.** A data dir with 1,000,000 incidents in ten communities (the built-in
  community's four cells ten times over, in a grid map given with `--grid-map`), a thousand per
  community per day for 100 days, one in 30 left open and the rest resolved on the spot, written
  through the server's storage (`commit_push`, a day's batch per community, as pushes leave them) but
  without the change feed, which these reads never touch. A fresh `sync-server` process serves it; a
  center token asks, one at a time, for the last day's daily report of one community (JSON), Open311
  `requests.json` with its default window (90 days, at most 1,000 requests) and that day's CSV export
  of the community, each once to warm up and then the runs; each answer is checked (the report lists
  the day's thousand incidents, the CSV has a row for each). Then the server's `VmHWM`.
- **Held hostile connections.** A fresh server with two workers in one cell. An enrolled colleague's
  device opens slow bodies (a sync head with its token and `Content-Length: 1000000`, then one byte a
  second), slow headers (an unfinished head, one byte a second) and idle connections (nothing sent),
  all from 127.0.0.1, and keeps them going for the window; meanwhile the other worker runs six no-op
  `field sync` processes spread over it (each figure is their median, min and max). This runs twice:
  with the server's default descriptor limit (which it raises to the hard maximum) and under
  `prlimit --nofile=1024`. *Open past the header timeout* counts idle and slow-header connections the
  server had not closed 11 s after they opened, over both runs; *slow bodies still open* counts the
  enrolled device's slow bodies at the end of the default-limit window (the body timeout does not end
  them, since they never pause 30 s; the 300 s request timeout does).
- **Half-sent bodies.** Sync requests announcing 16 MiB, half of each body sent, all held open at once;
  the server's `VmRSS` before and 1 s after. First without a token (refused before the body is read),
  then with the enrolled colleague's token (the body is buffered up to the route's cap).
- **Guessing.** For the window, one client from 127.0.0.2 posts enrolment requests with wrong codes and
  one from 127.0.0.3 posts syncs with wrong tokens, each as fast as one keep-alive connection allows;
  the figure is the tries the server answered with something other than 429 after its first 429,
  per minute. *Checked before the first 429* is the burst.
- **TLS.** Two servers, one with `--tls-cert`/`--tls-key` (a certificate for 127.0.0.1 from a
  throw-away CA made with rcgen, which `field enroll --ca` trusts), one on plain HTTP; the same no-op
  `field sync` process, alternately against each. Each process opens a new connection, so each HTTPS
  sample includes a full handshake and the certificate's fingerprint check.
- **Watcher.** A release `field sync --watch --json` with its defaults (pull every 600 s, probes from 5 s
  up to 300 s) on an enrolled device of a fresh server, after its first sync. *Idle CPU* is the process's
  user + system time (`/proc/<pid>/stat`, exited threads included) over the window ÷ the window;
  *wake-ups* are the voluntary and involuntary context switches of its live threads (`/proc/<pid>/task/*`)
  over the window, per minute (a thread that ends inside the window, such as an HTTP client's, is not
  counted); *probes* are the rounds it logged. Online: the server answering, nothing logged. Offline:
  the server is killed, one `field report` wakes the watcher, and the window starts. Then the server is
  started again on the same address and data dir; *server back → stored* is the time until the `at` of
  the watcher's next `synced` line (written after the sync that stored the record; the device's outbox
  is then checked empty), and *beyond the scheduled probe* subtracts the wait to the probe the watcher
  had written in `watch.json` before the server came back.
";

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde::Serialize;
use sync_core::protocol::{
    self, BlobStatus, ClockSample, MAX_PULL, ManifestReply, ManifestReport, SyncResponse, clock_sample,
};
use sync_core::sync::{Outgoing, PendingBlob, PhotoLevel};
use sync_core::{BlobHash, Store};

use crate::app::{count, emit, now, print_json};
use crate::client::{CallError, Client};
use crate::lock;
use crate::watch::plan::Link;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How far to go with photos on a poor link: none, thumbs, display, or all.
    #[arg(long, value_enum, default_value = "all")]
    photos: Photos,
    /// Attempts per request while the server is unreachable.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Only tell the server what this device holds and what still waits
    /// (a few hundred bytes), without pushing, uploading or pulling.
    #[arg(long, conflicts_with = "photos")]
    manifest_only: bool,
    /// Print a JSON summary (with --watch, one JSON line per round).
    #[arg(long)]
    json: bool,
    /// Keep running: sync whenever the server can be reached and there is
    /// something to send, and pull others' changes every --pull-every.
    #[arg(long, conflicts_with = "manifest_only")]
    watch: bool,
    /// With --watch: seconds between syncs when nothing new is logged here.
    #[arg(long, value_name = "SECS", default_value_t = 600, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pull_every: u64,
    /// With --watch: the first wait, in seconds, before probing an
    /// unreachable server again; each next wait doubles.
    #[arg(long, value_name = "SECS", default_value_t = 5, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    retry_from: u64,
    /// With --watch: the longest wait, in seconds, between probes.
    #[arg(long, value_name = "SECS", default_value_t = 300, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    retry_up_to: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Photos {
    None,
    Thumbs,
    Display,
    All,
}

impl From<Photos> for PhotoLevel {
    fn from(p: Photos) -> Self {
        match p {
            Photos::None => PhotoLevel::None,
            Photos::Thumbs => PhotoLevel::Thumbs,
            Photos::Display => PhotoLevel::Display,
            Photos::All => PhotoLevel::All,
        }
    }
}

/// Incidents per push request, and change bytes that end a request early.
const PUSH_DOCS: usize = 200;
const PUSH_BYTES: usize = 4 * 1024 * 1024;
/// Photo upload chunk: small enough to make progress on a poor link.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub round_trips: u32,
    pub pushed: usize,
    pub acknowledged: usize,
    pub pulled_changes: usize,
    pub new_incidents: usize,
    pub refused: Vec<String>,
    pub photos_uploaded: usize,
    pub photo_bytes_uploaded: u64,
    pub thumbs_fetched: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub resets: u32,
    pub waiting: usize,
    /// The server's answer to the closing manifest, when one was sent.
    pub in_step: Option<bool>,
    /// This device's clock minus the server's, read on the round trip with
    /// the least delay; reported in the next manifest.
    pub clock_offset_ms: Option<i64>,
    /// Photo files left for a faster link (`PhotoPlan::ByLink`).
    pub photos_deferred: usize,
    /// The link's upload speed as the photo uploads measured it.
    pub link_bytes_per_sec: Option<f64>,
    /// A stop was asked for; what is left goes on the next sync.
    pub stopped: bool,
    /// The worker's cells as the server now has them, when the operator
    /// changed them since this device last heard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cells: Option<Vec<String>>,
    #[serde(skip)]
    clock: Option<ClockSample>,
}

impl Summary {
    /// Keeps the clock reading with the least delay.
    fn clock_reading(&mut self, sample: ClockSample) {
        if self.clock.is_none_or(|c| sample.delay_ms < c.delay_ms) {
            self.clock = Some(sample);
            self.clock_offset_ms = Some(sample.offset_ms);
        }
    }
}

/// What `--manifest-only` reports.
#[derive(Debug, Serialize)]
struct ManifestSummary {
    incidents: u64,
    own: u64,
    server_own: u64,
    pending_docs: u64,
    pending_photos: u64,
    in_step: bool,
}

/// How far photo uploads go on one sync.
#[derive(Debug, Clone, Copy)]
pub enum PhotoPlan {
    /// Up to this tier, whatever the link.
    Up(PhotoLevel),
    /// Up to `cap`, and only as far as the link's measured speed allows.
    ByLink { cap: PhotoLevel, link: Link },
}

/// Never set: a one-off `field sync` runs to its end.
static NEVER: AtomicBool = AtomicBool::new(false);

pub fn run(data_dir: &Path, args: Args) -> Result<()> {
    if args.manifest_only {
        return run_manifest_only(data_dir, args.retries, args.json);
    }
    if args.watch {
        return crate::watch::run(
            data_dir,
            &crate::watch::Options {
                cap: args.photos.into(),
                pull_every: Duration::from_secs(args.pull_every),
                retry: (
                    Duration::from_secs(args.retry_from),
                    Duration::from_secs(args.retry_up_to),
                ),
                json: args.json,
            },
        );
    }
    let _one_at_a_time = match lock::try_take(data_dir, lock::SYNC_LOCK)? {
        Some(held) => held,
        None => {
            eprintln!("another sync of this device is running (a watcher or another `field sync`); waiting for it");
            lock::take(data_dir, lock::SYNC_LOCK)?
        }
    };
    let summary = sync(data_dir, PhotoPlan::Up(args.photos.into()), args.retries, &NEVER)?;
    if args.json {
        return print_json(&summary);
    }
    eprintln!("{}", summary.line());
    emit(b"")
}

impl Summary {
    /// The one line a person reads after a sync.
    pub fn line(&self) -> String {
        let mut line = format!(
            "synced: pushed {}, pulled {} ({} new), uploaded {}, {}",
            count(self.acknowledged as u64, "incident", "incidents"),
            count(self.pulled_changes as u64, "change", "changes"),
            count(self.new_incidents as u64, "incident", "incidents"),
            count(self.photos_uploaded as u64, "photo file", "photo files"),
            count(u64::from(self.round_trips), "round trip", "round trips"),
        );
        if !self.refused.is_empty() {
            line.push_str(&format!(
                "; {} refused by the server (see `field status`)",
                self.refused.len()
            ));
        }
        if self.waiting > 0 {
            let n = count(self.waiting as u64, "incident waits", "incidents wait");
            line.push_str(&format!("; {n} for other devices' changes"));
        }
        if self.photos_deferred > 0 {
            line.push_str(&format!(
                "; {} photo files wait for a faster link",
                self.photos_deferred
            ));
        }
        if self.stopped {
            line.push_str("; stopped early, the rest goes next time");
        }
        if let Some(cells) = &self.cells {
            line.push_str(&format!(
                "; the server says this worker's cells are {}",
                cells.join(", ")
            ));
        }
        line
    }
}

/// One whole sync: documents, then photos, then thumbnails of others'
/// incidents. When `stop` is set it ends after the request in flight.
pub fn sync(data_dir: &Path, photos: PhotoPlan, retries: u32, stop: &AtomicBool) -> Result<Summary> {
    // Incidents logged before the server numbered this device get their
    // case numbers now, so this sync carries them.
    Store::open(data_dir)?.number_own_cases(now())?;
    let mut client = Client::for_device(data_dir, retries)?;
    let mut summary = Summary::default();
    let bar = progress();
    sync_documents(data_dir, &mut client, &bar, &mut summary, stop)?;
    upload_photos(data_dir, &mut client, &bar, photos, &mut summary, stop)?;
    // Thumbnails of others' incidents, so a worker can check a case offline.
    let wanted = Store::open(data_dir)?.wanted_thumbs()?;
    fetch_thumbs(data_dir, &mut client, &wanted, &mut summary, stop);
    // The last request's manifest assumed its push would be acknowledged
    // and knew nothing of the photo uploads after it; when that is not how
    // things stand now, tell the server, so the center's reconciliation
    // sees this device as it is.
    if summary.photos_uploaded > 0 || summary.resets > 0 || !summary.refused.is_empty() || summary.waiting > 0 {
        let (_, reply, clock) = send_manifest(data_dir, &mut client).context(pending_note(data_dir))?;
        summary.round_trips += 1;
        summary.in_step = Some(reply.in_step);
        if let Some(c) = clock {
            summary.clock_reading(c);
        }
    }
    bar.finish_and_clear();
    if let Some(c) = summary.clock {
        Store::open(data_dir)?.set_clock_offset(c.offset_ms)?;
    }
    summary.bytes_sent = client.sent;
    summary.bytes_received = client.received;
    Ok(summary)
}

/// Documents. Each round is: build from the store, send, apply in one
/// transaction. The store is closed while the request is in flight.
fn sync_documents(
    data_dir: &Path,
    client: &mut Client,
    bar: &ProgressBar,
    summary: &mut Summary,
    stop: &AtomicBool,
) -> Result<()> {
    let mut stalled = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            summary.stopped = true;
            return Ok(());
        }
        let out = {
            let mut store = Store::open(data_dir)?;
            store.next_sync_request(now().timestamp_millis(), MAX_PULL, PUSH_DOCS, PUSH_BYTES)?
        };
        bar.set_message(format!(
            "documents: pushing {}, {} moved",
            out.pushed_docs(),
            HumanBytes(client.sent + client.received)
        ));
        let sent = now().timestamp_millis();
        let resp = send_documents(data_dir, client, &out)?;
        summary.round_trips += 1;
        // A refused incident is held with its reason (`field status`); the
        // rest of the request went through.
        for ack in &resp.acks {
            if let Some(r) = &ack.refused {
                tracing::warn!(incident = %ack.id, code = %r.code, "server refused an incident: {}", r.message);
                summary.refused.push(ack.id.clone());
            }
        }
        summary.clock_reading(clock_sample(sent, now().timestamp_millis(), resp.server_time_ms));
        summary.pushed += out.pushed_docs();
        let applied = Store::open(data_dir)?.apply_sync_response(&out, &resp, now())?;
        summary.acknowledged += applied.acknowledged;
        summary.pulled_changes += applied.pulled_changes;
        summary.new_incidents += applied.new_incidents;
        if let Some(account) = applied.account.filter(|a| !a.grids.is_empty()) {
            summary.cells = Some(account.grids);
        }
        if applied.reset {
            summary.resets += 1;
        }
        bar.inc(applied.acknowledged as u64 + applied.pulled_changes as u64);
        if !applied.more {
            return Ok(());
        }
        // Pushes the server cannot apply yet (it lacks other devices'
        // changes they build on) make no progress; stop rather than spin.
        let progressed = applied.acknowledged > 0 || applied.pulled_changes > 0 || applied.reset || resp.more;
        stalled = if progressed { 0 } else { stalled + 1 };
        if stalled >= 2 || summary.resets > 2 {
            summary.waiting = out.pushed_docs();
            return Ok(());
        }
    }
}

/// Sends one sync request.
fn send_documents(data_dir: &Path, client: &mut Client, out: &Outgoing) -> Result<SyncResponse> {
    let bytes = client
        .call(reqwest::Method::POST, "/v1/sync", protocol::encode(&out.request))
        .context(pending_note(data_dir))?;
    Client::cbor::<SyncResponse>(&bytes)
}

/// Photos, cheapest first, up to the plan's tier. By the link, every chunk
/// is timed, and a tier the link is too slow for gets one probe of
/// [`PROBE`] bytes a sync (kept on the server: uploads resume); if the
/// link is still too slow, that file and the rest wait for the next sync.
fn upload_photos(
    data_dir: &Path,
    client: &mut Client,
    bar: &ProgressBar,
    photos: PhotoPlan,
    summary: &mut Summary,
    stop: &AtomicBool,
) -> Result<()> {
    let (cap, mut link) = match photos {
        PhotoPlan::Up(level) => (level, None),
        PhotoPlan::ByLink { cap, link } => (cap, Some(link)),
    };
    let pending = Store::open(data_dir)?.pending_uploads(cap)?;
    let mut probed = false;
    for (i, blob) in pending.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            summary.stopped = true;
            break;
        }
        let fits = link.is_none_or(|l| l.level(cap).includes(&blob.kind));
        if !fits && probed {
            summary.photos_deferred = pending.len() - i;
            break;
        }
        probed |= !fits;
        bar.set_message(format!(
            "photos: {} {} ({}), {} moved",
            blob.kind,
            &blob.hash.to_hex()[..8],
            HumanBytes(blob.size),
            HumanBytes(client.sent + client.received)
        ));
        match upload_blob(data_dir, client, blob, cap, link.as_mut()) {
            Ok(Some(sent)) => {
                Store::open(data_dir)?.mark_uploaded(&blob.hash, now())?;
                summary.photos_uploaded += 1;
                summary.photo_bytes_uploaded += sent;
            }
            Ok(None) => {
                summary.photos_deferred = pending.len() - i;
                break;
            }
            Err(UploadError::Skip(reason)) => tracing::warn!(hash = %blob.hash, "photo not uploaded: {reason}"),
            Err(UploadError::Fatal(e)) => return Err(e).context(pending_note(data_dir)),
        }
    }
    summary.link_bytes_per_sec = link.and_then(|l| l.bytes_per_sec());
    Ok(())
}

/// On a link measured too slow for a tier, this much of the tier's next
/// file goes to measure the link again.
const PROBE: usize = 32 * 1024;

/// Uploads one file; with a `link` too slow for its tier, only a probe
/// first, and the rest only if the probe shows the link is fast enough
/// now. `None`: the probe went, the rest waits.
fn upload_blob(
    data_dir: &Path,
    client: &mut Client,
    blob: &PendingBlob,
    cap: PhotoLevel,
    mut link: Option<&mut Link>,
) -> Result<Option<u64>, UploadError> {
    let fits = |link: &Option<&mut Link>| link.as_ref().is_none_or(|l| l.level(cap).includes(&blob.kind));
    let mut sent = 0;
    if !fits(&link) {
        let probe = upload(data_dir, client, blob, Some(PROBE), link.as_deref_mut())?;
        sent += probe.bytes;
        if probe.complete {
            return Ok(Some(sent));
        }
        if !fits(&link) {
            return Ok(None);
        }
    }
    Ok(Some(sent + upload(data_dir, client, blob, None, link)?.bytes))
}
/// Sends the manifest alone; the server's answer and, from a server that
/// gives its time, a clock reading.
fn send_manifest(
    data_dir: &Path,
    client: &mut Client,
) -> Result<(protocol::Manifest, ManifestReply, Option<ClockSample>)> {
    let manifest = Store::open(data_dir)?.manifest()?;
    let sent = now().timestamp_millis();
    let report = ManifestReport {
        version: protocol::PROTOCOL_VERSION,
        device_time_ms: sent,
        manifest,
    };
    let bytes = client.call(reqwest::Method::POST, "/v1/manifest", protocol::encode(&report))?;
    let reply = Client::cbor::<ManifestReply>(&bytes)?;
    let clock = (reply.server_time_ms != 0).then(|| clock_sample(sent, now().timestamp_millis(), reply.server_time_ms));
    Ok((manifest, reply, clock))
}

/// Tells the server where this device stands before anything else moves
/// (after being offline, so the center sees it at once).
pub fn manifest_first(data_dir: &Path, client: &mut Client) -> Result<()> {
    let (_, _, clock) = send_manifest(data_dir, client)?;
    if let Some(c) = clock {
        Store::open(data_dir)?.set_clock_offset(c.offset_ms)?;
    }
    Ok(())
}

fn run_manifest_only(data_dir: &Path, retries: u32, json: bool) -> Result<()> {
    let mut client = Client::for_device(data_dir, retries)?;
    let (m, reply, clock) = send_manifest(data_dir, &mut client)?;
    if let Some(c) = clock {
        Store::open(data_dir)?.set_clock_offset(c.offset_ms)?;
    }
    let summary = ManifestSummary {
        incidents: Store::open(data_dir)?.incident_count()?,
        own: m.own.unwrap_or_default().count,
        server_own: reply.server_own,
        pending_docs: m.pending_docs,
        pending_photos: m.pending_photos,
        in_step: reply.in_step,
    };
    if json {
        return print_json(&summary);
    }
    if reply.in_step {
        let own = count(m.own.unwrap_or_default().count, "incident", "incidents");
        eprintln!("in step: the server holds all {own} logged on this device");
    } else {
        eprintln!(
            "not in step: the server holds {} of the {} logged on this device; {} and {} wait to sync",
            reply.server_own,
            count(m.own.unwrap_or_default().count, "incident", "incidents"),
            count(m.pending_docs, "incident", "incidents"),
            count(m.pending_photos, "photo file", "photo files"),
        );
    }
    emit(b"")
}

fn progress() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({pos} items)").expect("valid template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn pending_note(data_dir: &Path) -> String {
    match Store::open(data_dir).and_then(|s| s.manifest()) {
        Ok(m) => format!(
            "sync stopped; {} and {} wait for the next sync, nothing is lost",
            count(m.pending_docs, "incident", "incidents"),
            count(m.pending_photos, "photo file", "photo files"),
        ),
        Err(_) => "sync stopped; nothing is lost".into(),
    }
}

enum UploadError {
    Skip(String),
    Fatal(anyhow::Error),
}

/// What one call of [`upload`] sent.
struct Sent {
    bytes: u64,
    complete: bool,
}

/// Uploads a blob from where the server's copy ends, all of it or one
/// chunk of at most `at_most` bytes, timing each chunk for `link`.
fn upload(
    data_dir: &Path,
    client: &mut Client,
    blob: &PendingBlob,
    at_most: Option<usize>,
    mut link: Option<&mut Link>,
) -> Result<Sent, UploadError> {
    let path = format!("/v1/blobs/{}", blob.hash);
    let status = |client: &mut Client| -> Result<BlobStatus, UploadError> {
        match client.call(reqwest::Method::GET, &format!("{path}/status"), Vec::new()) {
            Ok(bytes) => Client::cbor(&bytes).map_err(UploadError::Fatal),
            Err(CallError::Refused { body, .. }) => Err(UploadError::Skip(body.message)),
            Err(e) => Err(UploadError::Fatal(e.into())),
        }
    };
    let mut st = status(client)?;
    let mut sent = Sent {
        bytes: 0,
        complete: st.complete,
    };
    if st.complete {
        return Ok(sent);
    }
    let bytes = Store::open(data_dir)
        .and_then(|s| Ok(s.blobs().read(&blob.hash)?))
        .map_err(|e| UploadError::Fatal(e.into()))?;
    let mut conflicts = 0;
    while !st.complete && (at_most.is_none() || sent.bytes == 0) {
        let start = st.received as usize;
        // At the end already (a server stopped before publishing): an empty
        // chunk asks it to verify what it holds.
        if start > bytes.len() {
            return Err(UploadError::Skip(
                "the server holds more bytes than the photo has".into(),
            ));
        }
        let end = (start + at_most.unwrap_or(CHUNK).min(CHUNK)).min(bytes.len());
        let url = format!("{path}?offset={start}&size={}", blob.size);
        let timed = Instant::now();
        match client.call(reqwest::Method::PUT, &url, bytes[start..end].to_vec()) {
            Ok(resp) => {
                sent.bytes += (end - start) as u64;
                if let Some(link) = link.as_deref_mut() {
                    link.observe((end - start) as u64, timed.elapsed());
                }
                st = Client::cbor(&resp).map_err(UploadError::Fatal)?;
            }
            Err(CallError::Refused { status: 409, .. }) if conflicts < 3 => {
                conflicts += 1;
                st = status(client)?;
            }
            Err(CallError::Refused { body, .. }) => return Err(UploadError::Skip(body.message)),
            Err(e) => return Err(UploadError::Fatal(e.into())),
        }
    }
    sent.complete = st.complete;
    Ok(sent)
}

fn fetch_thumbs(data_dir: &Path, client: &mut Client, wanted: &[BlobHash], summary: &mut Summary, stop: &AtomicBool) {
    for hash in wanted {
        if stop.load(Ordering::Relaxed) {
            summary.stopped = true;
            return;
        }
        match client.call(reqwest::Method::GET, &format!("/v1/blobs/{hash}"), Vec::new()) {
            Ok(bytes) => match Store::open(data_dir).and_then(|mut s| s.add_fetched_blob(hash, &bytes, "thumb", now()))
            {
                Ok(true) => summary.thumbs_fetched += 1,
                Ok(false) => tracing::warn!(%hash, "fetched thumbnail does not match its hash; dropped"),
                Err(e) => tracing::warn!(%hash, error = %e, "could not store a thumbnail"),
            },
            Err(e) => tracing::info!(%hash, error = %e, "thumbnail not fetched; the next sync tries again"),
        }
    }
}

/// Fetches display copies or originals of one incident on demand.
pub fn fetch(data_dir: &Path, hashes: &[(BlobHash, &str)]) -> Result<usize> {
    let mut client = Client::for_device(data_dir, 3)?;
    let mut fetched = 0;
    for (hash, kind) in hashes {
        if Store::open(data_dir)?.blobs().contains(hash) {
            continue;
        }
        let bytes = client
            .call(reqwest::Method::GET, &format!("/v1/blobs/{hash}"), Vec::new())
            .with_context(|| format!("cannot fetch the {kind} copy {hash}"))?;
        if !Store::open(data_dir)?.add_fetched_blob(hash, &bytes, kind, now())? {
            bail!("the server sent bytes that do not match photo {hash}");
        }
        fetched += 1;
    }
    Ok(fetched)
}

//! SIGKILL in the middle of a sync, on either side, loses nothing and stores
//! nothing twice.
//!
//! * the server killed while a device pushes documents, then started again
//!   on the same port, while `field sync` keeps retrying;
//! * the server killed halfway through a photo of several upload chunks: the
//!   upload resumes where the server's copy ends and the photo verifies;
//! * the server killed after a photo's last chunk but before its check and
//!   rename: the data dir is put in that state, since random kills rarely
//!   land there;
//! * `field sync` killed again and again while the server stays up, with new
//!   incidents logged between kills.
//!
//! Kill times come from a seeded xorshift (printed; set `SYNC_CRASH_SEED` to
//! replay).

#![cfg(unix)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::*;

const DEFAULT_SEED: u64 = 0x2545_F491_4F6C_DD1D;
/// `field sync`'s upload chunk.
const CHUNK: u64 = 256 * 1024;

/// Waits up to `delay` for the child to finish; returns whether it still runs.
fn still_running_after(child: &mut Child, delay: Duration) -> bool {
    let end = Instant::now() + delay;
    loop {
        if child.try_wait().expect("poll field").is_some() {
            return false;
        }
        if Instant::now() >= end {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Waits for a `field sync --json` child and returns its summary.
#[track_caller]
fn finished_sync(child: Child) -> Value {
    let out = output_within(child, PATIENCE, "field sync");
    assert!(
        out.status.success(),
        "field sync failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Warnings, such as a photo the sync had to skip, help explain a failure.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("sync --json is JSON")
}

/// Unique photos of `width`×`height` on disk, so each upload really sends bytes.
fn photo_files(dir: &Path, n: usize, width: u32, height: u32, seed: u64) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("photo-{i}.jpg"));
            std::fs::write(&path, noise_jpeg(width, height, seed + i as u64, 80)).unwrap();
            path
        })
        .collect()
}

/// Everything a crash could have broken, checked after the last sync.
#[track_caller]
fn assert_whole(server: &Server, devices: &[&Device]) {
    assert_same_heads(server, devices);
    assert_server_feed_consistent(server);
    // The server holds every change the devices' documents hold, no more.
    let on_server = docs_changes(&server.db());
    for dev in devices {
        assert_eq!(docs_changes(&dev.db()), on_server, "{}'s documents", dev.worker);
        assert_device_photos_on_server(server, dev);
        assert_sqlite_sound(&dev.db(), &dev.worker);
        let st = dev.status();
        assert_eq!(st["unsynced_incidents"], 0, "{}: {st}", dev.worker);
        assert_eq!(st["unsynced_blobs"], 0, "{}: {st}", dev.worker);
    }
    assert_server_photos_whole(server);
    assert_sqlite_sound(&server.db(), "server");
}

#[test]
fn server_killed_during_document_pushes_loses_nothing_and_stores_nothing_twice() {
    let mut rng = XorShift64::from_env("SYNC_CRASH_SEED", DEFAULT_SEED);
    let mut server = Server::new();
    server.add_worker("w-a", &[HX02]);
    server.start();
    let a = Device::new("w-a", &[HX02]);
    a.enroll(&server);
    let photos = tempfile::tempdir().unwrap();
    const ROUNDS: usize = 6;
    let files = photo_files(photos.path(), ROUNDS * 3, 640, 480, rng.next_u64());
    let mut next_photo = files.iter().map(|p| p.to_str().unwrap().to_owned());
    let mut reported = Vec::new();
    let (mut hits, mut before_docs) = (0, 0);
    for round in 0..ROUNDS {
        for i in 0..7 {
            let mut args = vec!["--category", "lawn"];
            let file;
            if i % 3 == 0 {
                file = next_photo.next().expect("enough photos");
                args.extend(["--photo", &file]);
            }
            reported.push(a.report(&args));
        }
        // Documents only, so every kill lands in a document push (photo
        // uploads are the next test's subject). The photos go up after the
        // last round.
        let delay = rng.ms(25);
        let mut sync = spawn_field(&a, &["sync", "--json", "--retries", "20", "--photos", "none"]);
        let running = still_running_after(&mut sync, delay);
        server.kill();
        if running {
            hits += 1;
            // Whether the kill came before the documents were stored.
            let round_ids = &reported[reported.len() - 7..];
            let stored = server_heads(&server)
                .iter()
                .filter(|(id, _)| round_ids.contains(id))
                .count();
            if stored == 0 {
                before_docs += 1;
            }
        }
        std::thread::sleep(rng.ms(100));
        server.start();
        let summary = finished_sync(sync);
        eprintln!("round {round}: killed after {delay:?} (sync running: {running}); {summary}");
    }
    eprintln!("{hits} of {ROUNDS} kills landed while field sync ran, {before_docs} before its documents were stored");
    assert!(hits > 0, "no kill landed during a sync; the test tested nothing");

    // The photos go up whole; then one more sync has nothing left to do.
    let photos = a.sync(&[]);
    assert_eq!(photos["pushed"], 0, "{photos}");
    assert_eq!(photos["photos_uploaded"], ROUNDS * 3 * 3, "{photos}");
    let last = a.sync(&[]);
    assert_eq!(last["pushed"], 0, "{last}");
    assert_eq!(last["photos_uploaded"], 0, "{last}");
    let on_server: Vec<String> = server_heads(&server).into_iter().map(|(id, _)| id).collect();
    reported.sort();
    assert_eq!(on_server, reported, "incidents on the server");
    assert_whole(&server, &[&a]);
}

#[test]
fn server_killed_during_a_large_photo_upload_resumes_it() {
    let mut rng = XorShift64::from_env("SYNC_CRASH_SEED", DEFAULT_SEED);
    let mut server = Server::new();
    server.add_worker("w-a", &[HX02]);
    server.add_worker("w-b", &[HX02]);
    server.start();
    let a = Device::new("w-a", &[HX02]);
    let b = Device::new("w-b", &[HX02]);
    a.enroll(&server);
    b.enroll(&server);

    // Kill the server once its copy holds some whole chunks, in the first
    // half. On a loaded machine the upload can run to its end before the
    // kill lands; then the attempt is repeated with another photo. (A kill
    // after the last chunk but before the rename, rare here, is the case of
    // `a_server_killed_between_the_last_chunk_and_its_check…`.)
    let dir = tempfile::tempdir().unwrap();
    let mut attempt = 0;
    let (id, bytes, hash, summary) = loop {
        attempt += 1;
        let big = dir.path().join(format!("big-{attempt}.jpg"));
        let bytes = noise_jpeg(3000, 2000, rng.next_u64(), 60);
        std::fs::write(&big, &bytes).unwrap();
        let size = bytes.len() as u64;
        let chunks = size.div_ceil(CHUNK);
        assert!(chunks >= 6, "the photo is only {size} bytes");
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let id = a.report(&["--category", "road-surface", "--photo", big.to_str().unwrap()]);

        let target = CHUNK * (1 + rng.below(chunks / 2));
        let part = upload_part(&server, &a, &hash);
        let mut sync = spawn_field(&a, &["sync", "--json", "--retries", "20"]);
        let end = Instant::now() + Duration::from_secs(60);
        while part.len() < target && sync.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "the upload never reached {target} bytes");
            std::thread::sleep(Duration::from_micros(300));
        }
        server.kill();
        // A part file still there means the photo was not finished yet.
        let at_kill = part.len();
        eprintln!("attempt {attempt}: killed the server with {at_kill} of {size} bytes stored ({chunks} chunks)");
        server.start();
        let summary = finished_sync(sync);
        if at_kill > 0 {
            break (id, bytes, hash, summary);
        }
        assert!(attempt < 3, "three kills in a row came after the upload had finished");
    };

    // The photo is whole and verified on the server.
    let stored = server.photo(&hash).unwrap();
    assert!(stored == bytes, "the server's copy differs from the photo");
    // Resumed, not started again: no byte went up twice. (`field sync`
    // counts a chunk once the server answers, so a chunk the server stored
    // just before it died is not counted at all.)
    let photo = &a.show(&id)["photos"][0];
    let total: u64 = ["original", "display", "thumb"]
        .iter()
        .map(|kind| {
            a.db()
                .query_row(
                    "SELECT size FROM blobs WHERE hash = ?1",
                    [photo[kind].as_str().unwrap()],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap() as u64
        })
        .sum();
    assert_eq!(summary["photos_uploaded"], 3, "{summary}");
    let sent = summary["photo_bytes_uploaded"].as_u64().unwrap();
    assert!(
        sent <= total && sent + CHUNK >= total,
        "{sent} photo bytes sent for {total} bytes of photo files: {summary}"
    );
    assert_whole(&server, &[&a]);

    // Another worker gets the very same original.
    b.sync(&[]);
    let paths = b.ok(&["photos", &id, "--original"]);
    let original = paths
        .lines()
        .find_map(|l| l.strip_prefix("original\t"))
        .expect("an original path");
    assert!(
        std::fs::read(original).unwrap() == bytes,
        "B's copy of the original differs"
    );
    assert_whole(&server, &[&a, &b]);
}

#[test]
fn field_sync_killed_at_random_moments_resumes_to_the_same_state() {
    let mut rng = XorShift64::from_env("SYNC_CRASH_SEED", DEFAULT_SEED);
    let mut server = Server::new();
    server.add_worker("w-a", &[HX02]);
    server.add_worker("w-b", &[HX02]);
    server.start();
    let a = Device::new("w-a", &[HX02]);
    let b = Device::new("w-b", &[HX02]);
    a.enroll(&server);
    b.enroll(&server);
    let photos = tempfile::tempdir().unwrap();
    // Photos big enough to take a few upload chunks, so kills land in uploads too.
    let files = photo_files(photos.path(), 20, 1280, 960, rng.next_u64());
    let mut next_photo = files.iter().map(|p| p.to_str().unwrap().to_owned());

    const ITERATIONS: usize = 25;
    let mut mine = Vec::new();
    let (mut killed, mut finished) = (0, 0);
    for i in 0..ITERATIONS {
        // New work between kills: A's own incidents and notes, and B's
        // incidents with photos for A to pull and fetch thumbnails of.
        let mut args = vec!["--category", "sidewalk-slab"];
        let photo;
        if i % 2 == 0 {
            photo = next_photo.next().expect("enough photos");
            args.extend(["--photo", &photo]);
        }
        mine.push(a.report(&args));
        if i % 4 == 1 {
            let note = format!("checked again ({i})");
            a.ok(&["update", &mine[i / 2], "--note", &note]);
        }
        if i % 5 == 2 {
            let photo = next_photo.next().expect("enough photos");
            b.report(&["--category", "clutter", "--photo", &photo]);
            b.sync(&[]);
        }

        let delay = rng.ms(150);
        let mut sync = spawn_field(&a, &["sync", "--json", "--retries", "3"]);
        if still_running_after(&mut sync, delay) {
            let _ = sync.kill();
        }
        let out = sync.wait_with_output().unwrap();
        if out.status.signal() == Some(9) {
            killed += 1;
        } else {
            assert!(
                out.status.success(),
                "a sync that was not killed failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            finished += 1;
        }
    }
    eprintln!("{ITERATIONS} syncs: {killed} killed, {finished} finished");
    assert!(killed > 0, "no sync was killed; the test tested nothing");

    // Before any other `field` command runs, the store is sound.
    assert_sqlite_sound(&a.db(), "A after the kills");
    let last = a.sync(&[]);
    eprintln!("final sync: {last}");
    b.sync(&[]);
    a.sync(&[]);
    let listed: Vec<String> = a.list().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
    for id in &mine {
        assert!(listed.contains(id), "A's incident {id} is gone");
    }
    assert_whole(&server, &[&a, &b]);
    // A can look at the thumbnail of every photo offline, B's included.
    for id in listed {
        for p in a.show(&id)["photos"].as_array().unwrap() {
            let thumb = p["thumb"].as_str().unwrap();
            assert!(
                a.dir.path().join("blobs").join(&thumb[..2]).join(thumb).is_file(),
                "A lacks the thumbnail of a photo of {id}"
            );
        }
    }
}

/// The moment a SIGKILL can land that random kills rarely hit: the last
/// chunk of a photo is appended and fsynced, but the server dies before it
/// hashes the file and moves it into place. The data dir is put in exactly
/// that state, and the next sync must still get the photo whole.
#[test]
fn a_server_killed_between_the_last_chunk_and_its_check_still_gets_the_photo() {
    let mut server = Server::new();
    server.add_worker("w-a", &[HX02]);
    server.start();
    let a = Device::new("w-a", &[HX02]);
    a.enroll(&server);
    let curb = fixture("curb.png");
    let bytes = std::fs::read(&curb).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    a.report(&["--category", "curb-stone", "--photo", &curb]);
    // The incident goes up first, photos not yet: the server may now take them.
    a.sync(&["--photos", "none"]);

    server.kill();
    let part = upload_part(&server, &a, &hash);
    part.write(&bytes);
    server.start();

    let summary = a.sync(&[]);
    eprintln!("{summary}");
    let st = a.status();
    assert_eq!(st["unsynced_blobs"], 0, "photo files wait forever: {st}");
    assert_whole(&server, &[&a]);
}

//! A connection cut in the middle of a sync: a TCP proxy in front of the
//! server forwards a set number of bytes from the device, then drops the
//! connection, as a lost mobile link would. The server keeps the whole
//! chunks it got; the next sync resumes from there.

use std::net::SocketAddr;

use sync_core::BlobHash;

use crate::proxy::Proxy;
use crate::*;

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
        let stored = part.bytes();
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
    let file = server.photo(&hash).unwrap();
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

//! Photos in an S3-compatible object store (Garage, in the PostgreSQL
//! suite): an upload begun on one node is finished on another and served
//! by a third; while the store is down, records keep syncing, photo
//! uploads are answered 503 with `Retry-After`, the device keeps its
//! photos, and they go up once the store is back.

use std::net::SocketAddr;

use crate::proxy::Proxy;
use crate::*;

fn put(url: &str, token: &str, hash: &str, offset: u64, size: u64, chunk: &[u8]) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .put(format!("{url}/v1/blobs/{hash}?offset={offset}&size={size}"))
        .bearer_auth(token)
        .body(chunk.to_vec())
        .send()
        .expect("the server answers")
}

fn get(url: &str, token: &str, hash: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .get(format!("{url}/v1/blobs/{hash}"))
        .bearer_auth(token)
        .send()
        .expect("the server answers")
}

/// A device with an incident naming `photo`, synced without its photos.
fn reported(server: &Server, photo: &str) -> (Device, Vec<u8>, String) {
    let dev = Device::new("w-li", &[HX01]);
    dev.enroll(server);
    dev.report(&["--category", "curb-stone", "--photo", photo]);
    let synced = dev.sync(&["--photos", "none"]);
    assert_eq!(synced["acknowledged"], 1, "{synced}");
    let bytes = std::fs::read(photo).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    (dev, bytes, hash)
}

#[test]
fn an_upload_begun_on_one_node_is_finished_on_another_and_served_by_a_third() {
    if !on_postgres() {
        eprintln!("runs in the PostgreSQL suite, whose photos are in Garage");
        return;
    }
    let mut first = Server::new();
    first.add_worker("w-li", &[HX01]);
    first.start();
    let mut second = first.node(false);
    second.start();
    let mut third = first.node(false);
    third.start();
    let (dev, bytes, hash) = reported(&first, &fixture("curb.png"));
    let token = token_of(&dev);
    let (size, half) = (bytes.len() as u64, bytes.len() / 2);
    let begun = put(&first.url, &token, &hash, 0, size, &bytes[..half]);
    assert_eq!(begun.status(), 200);
    // The other node knows where the upload stands, and takes the rest.
    let wrong = put(&second.url, &token, &hash, 0, size, &bytes[..half]);
    assert_eq!(wrong.status(), 409, "the second node sees the first half stored");
    let done = put(&second.url, &token, &hash, half as u64, size, &bytes[half..]);
    assert_eq!(done.status(), 200);
    let served = get(&third.url, &token, &hash);
    assert_eq!(served.status(), 200);
    assert!(
        served.bytes().unwrap() == bytes,
        "the third node serves the photo as uploaded"
    );
    assert_eq!(first.photo(&hash).as_deref(), Some(&bytes[..]));
    assert!(first.upload_parts().is_empty(), "{:?}", first.upload_parts());
}

#[test]
fn while_the_object_store_is_down_records_sync_and_photos_wait_on_the_device() {
    if !on_postgres() {
        eprintln!("runs in the PostgreSQL suite, whose photos are in Garage");
        return;
    }
    let garage: SocketAddr = crate::backend::Garage::get()
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = Proxy::start(garage);
    let mut server = Server::new();
    server.photos_via = Some(proxy.url.clone());
    server.add_worker("w-li", &[HX01]);
    server.start();
    let photo = fixture("curb.png");
    let dev = Device::new("w-li", &[HX01]);
    dev.enroll(&server);
    proxy.down();
    let id = dev.report(&["--category", "curb-stone", "--photo", &photo]);
    let _ = dev.run(&["sync", "--json", "--retries", "0"]);
    let st = dev.status();
    assert_eq!(st["unsynced_incidents"], 0, "the record went up: {st}");
    assert_ne!(st["unsynced_blobs"], 0, "the photos wait on the device: {st}");

    let bytes = std::fs::read(&photo).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let refused = put(&server.url, &token_of(&dev), &hash, 0, bytes.len() as u64, &bytes);
    assert_eq!(refused.status(), 503);
    let retry = refused
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(retry.as_deref(), Some("30"));
    // A second record syncs meanwhile too.
    dev.report(&["--category", "lawn"]);
    let _ = dev.run(&["sync", "--json", "--retries", "0"]);
    assert_eq!(dev.status()["unsynced_incidents"], 0);

    proxy.up();
    dev.sync(&[]);
    let st = dev.status();
    assert_eq!(
        st["unsynced_blobs"], 0,
        "the photos went up once the store was back: {st}"
    );
    assert_eq!(server.photo(&hash).as_deref(), Some(&bytes[..]));
    assert_eq!(dev.show(&id)["photos"].as_array().unwrap().len(), 1);
    assert_server_photos_whole(&server);
}

//! The feed read while devices push: pulls do not wait for pushes, so a
//! reader paging the feed in small pages while four devices push at once
//! must still get every change exactly once, in the server's order, and
//! never a cursor past a change it was not given.

use std::collections::BTreeSet;

use sync_core::protocol::{self, Manifest, PROTOCOL_VERSION, SyncRequest, SyncResponse};

use crate::*;

/// One page of the feed after `cursor`, as the reader's device asks for it.
pub(crate) fn page(server: &Server, token: &str, cursor: Option<protocol::Cursor>) -> SyncResponse {
    let req = SyncRequest {
        version: PROTOCOL_VERSION,
        device_time_ms: None,
        epoch: None,
        cursor,
        pull_limit: 3,
        push: vec![],
        want: vec![],
        manifest: Manifest::default(),
        account: None,
    };
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(token)
        .body(protocol::encode(&req))
        .send()
        .expect("the server answers");
    assert_eq!(resp.status().as_u16(), 200);
    protocol::decode(&resp.bytes().unwrap()).expect("a sync response")
}

pub(crate) fn hash_of(bytes: &[u8]) -> [u8; 32] {
    automerge::Change::from_bytes(bytes.to_vec())
        .expect("a change")
        .hash()
        .0
}

#[test]
fn a_reader_paging_the_feed_while_devices_push_misses_and_repeats_nothing() {
    let mut server = Server::new();
    let writers: Vec<String> = (0..4).map(|n| format!("w-{n}")).collect();
    for w in &writers {
        server.add_worker(w, &[HX02]);
    }
    server.add_worker("w-reader", &[HX02]);
    server.start();
    let reader = Device::new("w-reader", &[HX02]);
    reader.enroll(&server);
    let token = token_of(&reader);
    let devices: Vec<Device> = writers.iter().map(|w| Device::new(w, &[HX02])).collect();
    for d in &devices {
        d.enroll(&server);
    }
    let pushing: Vec<_> = devices
        .into_iter()
        .map(|d| {
            std::thread::spawn(move || {
                for n in 0..8 {
                    let id = d.report(&["--category", "manhole-cover", "--desc", &format!("第{n}个")]);
                    d.ok(&["update", &id, "--note", "还在"]);
                    d.sync(&[]);
                }
            })
        })
        .collect();
    let (mut cursor, mut pulled, mut pages) = (None, Vec::new(), 0);
    loop {
        let done = pushing.iter().all(|t| t.is_finished());
        let resp = page(&server, &token, cursor);
        pages += 1;
        pulled.extend(resp.changes.iter().map(|c| hash_of(&c.change)));
        cursor = resp.cursor.or(cursor);
        // Only a page asked for after every push ended, that says no more
        // waits, ends the reading.
        if done && !resp.more {
            break;
        }
    }
    for t in pushing {
        t.join().expect("a pushing device");
    }
    let stored: BTreeSet<[u8; 32]> = server
        .db()
        .prepare("SELECT hash FROM changes")
        .unwrap()
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|h| h.unwrap().try_into().unwrap())
        .collect();
    assert!(stored.len() >= 4 * 8 * 2, "every report and note is stored");
    let unique: BTreeSet<[u8; 32]> = pulled.iter().copied().collect();
    assert_eq!(unique.len(), pulled.len(), "no change came twice");
    assert_eq!(unique, stored, "the reader got every stored change ({pages} pages)");
}

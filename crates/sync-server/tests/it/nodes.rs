//! More than one writer on one database: the compare-and-swap that keeps
//! two merges of one incident from overwriting each other (both
//! backends), and, on PostgreSQL, several `serve` processes ("nodes")
//! sharing one database while devices write through all of them and a
//! reader pages the feed through all of them. Also what the operator sees
//! of a PostgreSQL server that is not there yet.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ActorId;
use chrono::DateTime;
use sync_core::IncidentDoc;
use sync_core::incident::{IncidentId, Location, NewIncident};
use sync_server::storage::{NewChange, StorageError, StoredDoc};

use crate::*;

fn new_incident() -> NewIncident {
    let captured = DateTime::parse_from_rfc3339("2026-11-20T09:30:00+08:00").unwrap();
    NewIncident {
        id: IncidentId::new(captured.timestamp_millis() as u64, [7; 10]),
        case: None,
        category: "manhole-cover".into(),
        description: "井盖松动".into(),
        location: Location::default(),
        grid: HX01.into(),
        reporter: "w-li".into(),
        device: "d".into(),
        captured_at: captured,
        photos: vec![],
    }
}

/// The write a push of `doc`'s changes since `heads` would make, merged
/// over `base` (`None`: a new incident).
fn write(
    doc: &mut IncidentDoc,
    base: Option<&StoredDoc>,
    heads: &[automerge::ChangeHash],
) -> sync_server::storage::IncidentWrite {
    let new = doc
        .changes_since(heads)
        .into_iter()
        .map(|c| NewChange {
            hash: c.hash.0,
            bytes: c.bytes,
            sig: None,
        })
        .collect();
    let read = doc.read().unwrap();
    let id = read.id.to_string();
    sync_server::sync::write_of(&id, base, doc.seal().unwrap(), &read, new)
}

fn changes_of(server: &Server) -> i64 {
    server
        .db()
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap()
}

/// Two writers (two connections, as two nodes have) read the same
/// document and merge different edits into it: the first commit stores,
/// the second is refused whole as a conflict and stores nothing; merged
/// again over the new document it stores, and the document holds both.
#[test]
fn a_merge_over_a_document_another_writer_changed_is_refused_and_stores_nothing() {
    let server = Server::new();
    let (one, two) = (server.storage(), server.storage());
    let mut doc = IncidentDoc::create(&new_incident(), ActorId::from(vec![1u8; 16])).unwrap();
    let created = write(&mut doc, None, &[]);
    let id = created.id.clone();
    one.commit_push(&[created.clone()], "d", "2026-11-20T01:31:00Z")
        .unwrap();
    // A second creation of the same incident is a conflict too.
    let again = two.commit_push(&[created], "d", "2026-11-20T01:31:00Z");
    assert!(matches!(again, Err(StorageError::Conflict(_))), "{again:?}");

    let seen = two.incident_doc(&id).unwrap().unwrap();
    let now = DateTime::parse_from_rfc3339("2026-11-20T10:00:00+08:00").unwrap();
    let mut first = IncidentDoc::load(&seen.doc, ActorId::from(vec![2u8; 16])).unwrap();
    let mut second = IncidentDoc::load(&seen.doc, ActorId::from(vec![3u8; 16])).unwrap();
    let heads = first.heads();
    first.add_note("w-li", "第一条", now).unwrap();
    second.add_note("w-wang", "第二条", now).unwrap();
    one.commit_push(&[write(&mut first, Some(&seen), &heads)], "d1", "2026-11-20T02:00:00Z")
        .unwrap();
    let before = changes_of(&server);
    let lost = two.commit_push(&[write(&mut second, Some(&seen), &heads)], "d2", "2026-11-20T02:00:01Z");
    assert!(
        matches!(lost, Err(StorageError::Conflict(ref i)) if *i == id),
        "{lost:?}"
    );
    assert_eq!(changes_of(&server), before, "the refused commit stored no change");

    let now_stored = two.incident_doc(&id).unwrap().unwrap();
    let mut merged = IncidentDoc::load(&now_stored.doc, ActorId::from(vec![3u8; 16])).unwrap();
    let stored_heads = merged.heads();
    merged.merge(&mut second).unwrap();
    two.commit_push(
        &[write(&mut merged, Some(&now_stored), &stored_heads)],
        "d2",
        "2026-11-20T02:00:02Z",
    )
    .unwrap();
    let kept = IncidentDoc::read_saved(&one.incident_doc(&id).unwrap().unwrap().doc).unwrap();
    let notes: BTreeSet<&str> = kept.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(notes, BTreeSet::from(["第一条", "第二条"]));
    assert_eq!(changes_of(&server), before + 1);
}

/// Another `serve` process on the same database, with a data dir of its own.
fn node_of(server: &Server) -> Server {
    let mut node = server.node(false);
    node.start();
    node
}

/// Every change the server stores, by incident.
fn stored_changes(server: &Server) -> BTreeMap<String, BTreeSet<Vec<u8>>> {
    let db = server.db();
    let mut stmt = db.prepare("SELECT incident_id, hash FROM changes").unwrap();
    let mut out: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
    {
        let (id, hash) = row.unwrap();
        out.entry(id).or_default().insert(hash);
    }
    out
}

/// Six devices of one cell write through three nodes at once, each note
/// on incidents all of them share (so merges of one incident race on
/// different nodes), while a reader pages the feed three changes at a time
/// through the nodes in turn. The reader gets every stored change exactly
/// once; every stored document holds every stored change of its incident
/// (no merge overwrote another); the devices converge.
#[test]
fn writers_on_three_nodes_lose_no_edit_and_a_reader_paging_them_skips_nothing() {
    if !on_postgres() {
        eprintln!("runs in the PostgreSQL suite: SQLite serves one node per data dir");
        return;
    }
    let mut server = Server::new();
    let writers: Vec<String> = (0..6).map(|n| format!("w-{n}")).collect();
    for w in writers.iter().chain([&"w-reader".to_owned()]) {
        server.add_worker(w, &[HX02]);
    }
    server.start();
    let nodes = [node_of(&server), node_of(&server)];
    let all: [&Server; 3] = [&server, &nodes[0], &nodes[1]];
    let reader = Device::new("w-reader", &[HX02]);
    reader.enroll(&server);
    let token = token_of(&reader);
    let devices: Vec<Device> = writers.iter().map(|w| Device::new(w, &[HX02])).collect();
    for (i, d) in devices.iter().enumerate() {
        d.enroll(all[i % 3]);
    }
    // Shared incidents first, so later notes on them race.
    let shared: Vec<String> = devices[..3]
        .iter()
        .map(|d| d.report(&["--category", "manhole-cover", "--desc", "共用"]))
        .collect();
    for d in &devices {
        d.sync(&[]);
    }
    for d in &devices {
        d.sync(&[]);
    }
    let pushing: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for n in 0..6 {
                    d.ok(&["update", &shared[n % 3], "--note", &format!("{i}号第{n}次")]);
                    d.report(&["--category", "clutter", "--desc", &format!("{i}-{n}")]);
                    d.sync(&[]);
                }
                d
            })
        })
        .collect();
    let (mut cursor, mut pulled, mut pages) = (None, Vec::new(), 0usize);
    loop {
        let done = pushing.iter().all(|t| t.is_finished());
        let resp = crate::feed::page(all[pages % 3], &token, cursor);
        pages += 1;
        pulled.extend(resp.changes.iter().map(|c| crate::feed::hash_of(&c.change)));
        cursor = resp.cursor.or(cursor);
        if done && !resp.more {
            break;
        }
    }
    let devices: Vec<Device> = pushing.into_iter().map(|t| t.join().expect("a device")).collect();

    let stored = stored_changes(&server);
    let every: BTreeSet<[u8; 32]> = stored
        .values()
        .flatten()
        .map(|h| h.clone().try_into().unwrap())
        .collect();
    assert!(
        every.len() >= 3 + 6 * 6 * 2,
        "every report and note is stored: {}",
        every.len()
    );
    let unique: BTreeSet<[u8; 32]> = pulled.iter().copied().collect();
    assert_eq!(unique.len(), pulled.len(), "no change came twice");
    assert_eq!(
        unique, every,
        "the reader got every stored change ({pages} pages through three nodes)"
    );
    assert_documents_hold_their_changes(&server, &stored);
    for d in &devices {
        d.sync(&[]);
    }
    for d in &devices {
        d.sync(&[]);
        let notes = d.show(&shared[0])["notes"].as_array().unwrap().len();
        assert_eq!(notes, 12, "{} sees every note on the first shared incident", d.worker);
    }
}

/// Each stored document holds every change the log has for its incident.
fn assert_documents_hold_their_changes(server: &Server, stored: &BTreeMap<String, BTreeSet<Vec<u8>>>) {
    let db = server.db();
    for (id, hashes) in stored {
        let bytes: Vec<u8> = db
            .query_row("SELECT doc FROM incidents WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        let mut doc = automerge::AutoCommit::load(&bytes).unwrap();
        for h in hashes {
            let hash = automerge::ChangeHash(h.clone().try_into().unwrap());
            assert!(
                doc.get_change_by_hash(&hash).is_some(),
                "incident {id}'s document lacks a stored change: a merge overwrote another"
            );
        }
    }
}

/// `--database` on a database with no server: refused with one sentence
/// that names it without its password; `init` makes the server once;
/// `migrate` says where the schema is and refuses a newer one untouched.
#[test]
fn a_database_without_a_server_is_refused_and_init_makes_one_once() {
    if !on_postgres() {
        eprintln!("runs in the PostgreSQL suite (tests/it/operator.rs checks the same of a data dir)");
        return;
    }
    let empty = crate::backend::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let with_password = empty.url.replacen("postgres@", "postgres:s3cret@", 1);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(server_bin())
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database", &with_password])
            .args(args)
            .env("SYNC_SERVER_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            err,
        )
    };
    for args in [
        &["worker", "list"][..],
        &["migrate"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty() && err.contains("holds no server"), "{args:?}: {err}");
        assert!(!err.contains("s3cret"), "the password is not shown: {err}");
    }
    let (code, _, err) = run(&["init"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("records in PostgreSQL"), "{err}");
    let (code, _, err) = run(&["init"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("holds a server already"), "{err}");
    let (code, out, err) = run(&["migrate"]);
    assert_eq!((code, out.as_str()), (Some(0), "schema 1: up to date"), "{err}");
    empty.exec("UPDATE schema_version SET version = 99").unwrap();
    let (code, _, err) = run(&["worker", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("newer version"), "{err}");
    // A database that does not answer is a failure, said in one sentence.
    let (code, _, err) = {
        let out = std::process::Command::new(server_bin())
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database", "postgres://postgres@127.0.0.1:1/none", "worker", "list"])
            .output()
            .unwrap();
        (out.status.code(), (), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

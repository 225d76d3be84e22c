//! Broken and hostile requests, sent as raw HTTP: each gets the documented
//! 4xx with its JSON `code` (never a 5xx), stores nothing, and the server
//! keeps serving ordinary devices afterwards. Also what `field` does with an
//! incident the server refuses.

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT};
use serde_bytes::ByteBuf;
use sync_core::protocol::{
    self, BlobStatus, EnrollRequest, EnrollResponse, ErrorBody, MAX_BODY, MAX_CHANGE, MAX_PUSH_DOCS, MAX_PUSH_INFLATED,
    Manifest, PROTOCOL_VERSION, PushDoc, SyncRequest, SyncResponse,
};
use sync_core::{BlobHash, IncidentDoc, IncidentId, Location, NewIncident};
use sync_server::secrets::{normalise_code, secret_hash};
use sync_server::storage::NewCode;

use crate::*;

const HX03: &str = "HLT-CX-HX-03";

/// A compressed change chunk (type 2) whose data is `inflated` deflated;
/// its checksum is zeros, since a check of the frame comes first.
fn compressed_chunk(inflated: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(inflated).unwrap();
    sync_core::testing::chunk(2, &enc.finish().unwrap())
}

// ---------------------------------------------------------------------------
// Raw HTTP

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> Option<ErrorBody> {
        serde_json::from_slice(&self.body).ok()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(400)]).into_owned()
    }
}

/// What a hostile or broken client sends: any bytes, any header. A push
/// sent with a token registered by `with_key` is signed with that device's
/// key first, as `field` signs; everything else goes as given.
struct Http {
    base: String,
    client: reqwest::blocking::Client,
    keys: Vec<(String, sync_core::signing::DeviceKey)>,
}

impl Http {
    fn new(base: &str) -> Http {
        Http {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("HTTP client"),
            keys: Vec::new(),
        }
    }

    fn with_key(mut self, dev: &Device) -> Http {
        self.keys.push((token_of(dev), device_key(dev)));
        self
    }

    fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Vec<u8>) -> Answer {
        self.try_send(method, path, token, body)
            .unwrap_or_else(|e| panic!("{path}: no answer: {e}"))
    }

    /// As `send`, but a connection the server closed before the client
    /// read an answer (a body refused before it was read) is an error.
    fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Result<Answer> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.body(body).send()?;
        let status = resp.status().as_u16();
        let body = resp.bytes()?.to_vec();
        Ok(Answer { status, body })
    }

    fn sync(&self, token: Option<&str>, body: Vec<u8>) -> Answer {
        let key = self
            .keys
            .iter()
            .find(|(t, _)| Some(t.as_str()) == token)
            .map(|(_, k)| k);
        let body = match (key, protocol::decode::<SyncRequest>(&body)) {
            (Some(key), Ok(mut req)) => {
                req.push.iter_mut().for_each(|p| sign_push(key, p));
                protocol::encode(&req)
            }
            _ => body,
        };
        self.send(reqwest::Method::POST, "/v1/sync", token, body)
    }

    fn enroll(&self, req: &EnrollRequest) -> Answer {
        self.send(reqwest::Method::POST, "/v1/enroll", None, protocol::encode(req))
    }

    fn put_blob(&self, token: &str, hash: &str, offset: u64, size: u64, chunk: &[u8]) -> Answer {
        let path = format!("/v1/blobs/{hash}?offset={offset}&size={size}");
        self.send(reqwest::Method::PUT, &path, Some(token), chunk.to_vec())
    }

    fn get_blob(&self, token: &str, hash: &str) -> Answer {
        self.send(
            reqwest::Method::GET,
            &format!("/v1/blobs/{hash}"),
            Some(token),
            Vec::new(),
        )
    }

    fn blob_status(&self, token: &str, hash: &str) -> Answer {
        self.send(
            reqwest::Method::GET,
            &format!("/v1/blobs/{hash}/status"),
            Some(token),
            Vec::new(),
        )
    }
}

/// The answer has this status and a JSON error body with this code.
#[track_caller]
fn check(what: &str, got: &Answer, status: u16, code: &str) {
    let err = got.error();
    assert_eq!(
        (got.status, err.as_ref().map(|e| e.code.as_str())),
        (status, Some(code)),
        "{what}: answer {}",
        got.text()
    );
}

/// The push was answered (200) and the incident's ack refuses it with
/// this code and, for `rule_broken`, this rule.
#[track_caller]
fn refusal_of(what: &str, got: &Answer, id: &str) -> sync_core::protocol::Refusal {
    assert_eq!(got.status, 200, "{what}: answer {}", got.text());
    let resp: SyncResponse = protocol::decode(&got.body).expect("a sync response");
    let ack = resp.acks.iter().find(|a| a.id == id);
    let refused = ack.and_then(|a| a.refused.clone());
    refused.unwrap_or_else(|| panic!("{what}: incident {id} was not refused: {:?}", resp.acks))
}

// ---------------------------------------------------------------------------
// A server with an enrolled device, and what the tests build on it

struct Setup {
    server: Server,
    dev: Device,
    token: String,
    uuid: uuid::Uuid,
    http: Http,
}

impl Setup {
    /// A running server, worker `w-li` in HX-02 and their enrolled device.
    fn new() -> Setup {
        let mut server = Server::new();
        server.add_worker("w-li", &[HX02]);
        server.start();
        let dev = Device::new("w-li", &[HX02]);
        dev.enroll(&server);
        let http = Http::new(&server.url).with_key(&dev);
        Setup {
            token: token_of(&dev),
            uuid: uuid_of(&dev),
            server,
            dev,
            http,
        }
    }

    fn actor(&self) -> ActorId {
        ActorId::from(self.uuid.as_bytes())
    }
}

fn uuid_of(dev: &Device) -> uuid::Uuid {
    uuid::Uuid::parse_str(&device_id(dev)).expect("the device id is a UUID")
}

/// Rows in the server's incidents, changes, quarantine and devices tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    incidents: i64,
    changes: i64,
    quarantine: i64,
    devices: i64,
}

fn counts(server: &Server) -> Counts {
    let db = server.db();
    let n = |table: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    Counts {
        incidents: n("incidents"),
        changes: n("changes"),
        quarantine: n("quarantine"),
        devices: n("devices"),
    }
}

fn new_incident(n: u8, grid: &str, device: &uuid::Uuid) -> NewIncident {
    NewIncident {
        id: IncidentId::new(1_763_600_000_000 + u64::from(n), [n; 10]),
        category: "manhole-cover".into(),
        description: format!("crafted {n}"),
        location: Location::default(),
        grid: grid.into(),
        reporter: "w-li".into(),
        device: device.to_string(),
        captured_at: chrono::DateTime::parse_from_rfc3339("2026-11-20T09:15:30+08:00").unwrap(),
        photos: vec![],
        case: None,
    }
}

fn bytes_of(changes: Vec<automerge::Change>) -> Vec<ByteBuf> {
    changes
        .into_iter()
        .map(|mut c| ByteBuf::from(c.bytes().into_owned()))
        .collect()
}

/// A push of a document's whole history under `id`.
fn push_of(doc: &mut AutoCommit, id: &str) -> PushDoc {
    PushDoc {
        id: id.to_owned(),
        changes: bytes_of(doc.get_changes(&[])),
        sigs: vec![],
    }
}

/// A push of a new incident built with `IncidentDoc::create`.
fn push_new(n: u8, grid: &str, device: &uuid::Uuid, actor: ActorId) -> PushDoc {
    let new = new_incident(n, grid, device);
    let mut doc = IncidentDoc::create(&new, actor).expect("a valid new incident");
    push_of(doc.automerge(), &new.id.to_string())
}

fn request(push: Vec<PushDoc>) -> SyncRequest {
    SyncRequest {
        version: PROTOCOL_VERSION,
        device_time_ms: Some(1_763_600_000_000),
        epoch: None,
        cursor: None,
        pull_limit: 100,
        push,
        want: vec![],
        manifest: Manifest {
            clock_offset_ms: None,
            refused_docs: 0,
            pending_docs: 0,
            pending_photos: 0,
            own: Default::default(),
        },
        account: None,
    }
}

/// The server's stored document of an incident.
fn server_doc(server: &Server, id: &str) -> AutoCommit {
    let bytes: Vec<u8> = server
        .db()
        .query_row("SELECT doc FROM incidents WHERE id = ?1", [id], |r| r.get(0))
        .expect("the incident is on the server");
    AutoCommit::load(&bytes).expect("the server's document loads")
}

/// The device's stored document of an incident, editable as `actor`.
fn device_doc(dev: &Device, id: &str, actor: ActorId) -> AutoCommit {
    let bytes: Vec<u8> = dev
        .db()
        .query_row("SELECT doc FROM incidents WHERE id = ?1", [id], |r| r.get(0))
        .expect("the incident is on the device");
    AutoCommit::load(&bytes)
        .expect("the device's document loads")
        .with_actor(actor)
}

/// A push of the changes made to `doc` since `since`.
fn push_since(doc: &mut AutoCommit, id: &str, since: &[automerge::ChangeHash]) -> PushDoc {
    PushDoc {
        id: id.to_owned(),
        changes: bytes_of(doc.get_changes(since)),
        sigs: vec![],
    }
}

// ---------------------------------------------------------------------------
// POST /v1/sync

/// What is sent, the body, the status and code expected, and the incident
/// the error should name.
type Case<'a> = (&'a str, Vec<u8>, u16, &'a str, Option<&'a str>);

#[test]
fn broken_and_hostile_pushes_are_refused_store_nothing_and_the_server_keeps_serving() {
    let s = Setup::new();
    let actor = s.actor();
    let token = Some(s.token.as_str());

    // An incident of this device already on the server, to build edits on.
    let mine = s.dev.report(&["--category", "manhole-cover", "--desc", "mine"]);
    assert_eq!(s.dev.sync(&[])["acknowledged"], 1);
    // And one in HX-03, another worker's cell.
    s.server.add_worker("w-sun", &[HX03]);
    let sun = Device::new("w-sun", &[HX03]);
    sun.enroll(&s.server);
    let theirs = sun.report(&["--category", "manhole-cover", "--desc", "theirs"]);
    assert_eq!(sun.sync(&[])["acknowledged"], 1);

    let valid = push_new(1, HX02, &s.uuid, actor.clone());
    let whole = protocol::encode(&request(vec![valid.clone()]));
    let first_change = valid.changes[0].to_vec();

    // A document with a schema and an id and nothing else, in this device's name.
    let bare_id = IncidentId::new(1_763_600_000_002, [2; 10]).to_string();
    let mut bare = AutoCommit::new().with_actor(actor.clone());
    bare.put(ROOT, "schema", 1_u64).unwrap();
    bare.put(ROOT, "id", bare_id.as_str()).unwrap();
    bare.commit();
    let bare = push_of(&mut bare, &bare_id);

    // A valid incident pushed under another incident's id.
    let other_id = IncidentId::new(1_763_600_000_003, [3; 10]).to_string();
    let misnamed = PushDoc {
        id: other_id.clone(),
        ..push_new(4, HX02, &s.uuid, actor.clone())
    };

    // This device's own incident moved to a cell it does not patrol.
    let mut moved = device_doc(&s.dev, &mine, actor.clone());
    let before_move = moved.get_heads();
    moved.put(ROOT, "grid", HX03).unwrap();
    moved.commit();
    let moved = push_since(&mut moved, &mine, &before_move);

    // A note on another cell's incident, in this device's own name.
    let mut note = server_doc(&s.server, &theirs).with_actor(actor.clone());
    let before_note = note.get_heads();
    let mut note_doc = IncidentDoc::from_automerge(note);
    note_doc
        .add_note(
            "w-li",
            "not my cell",
            chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap(),
        )
        .unwrap();
    let note = push_since(note_doc.automerge(), &theirs, &before_note);

    let mut version = request(vec![]);
    version.version = PROTOCOL_VERSION + 1;
    let with = |doc: PushDoc| protocol::encode(&request(vec![doc]));
    let with_changes = |changes: Vec<Vec<u8>>| {
        with(PushDoc {
            changes: changes.into_iter().map(ByteBuf::from).collect(),
            ..valid.clone()
        })
    };

    let valid_id = valid.id.clone();
    // The 133-byte bundle chunk the fuzzer found: its columns claim billions
    // of values, which Automerge 0.12 allocated until the server ran out of
    // memory (docs/fuzzing.md, finding 6). And a compressed change of 8 MiB
    // of zeros, a few KiB on the wire.
    let found = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/fuzz/server_sync/bundle-chunk-grows-without-bound"
    ))
    .unwrap();
    let bundle = found[5..138].to_vec();
    let bomb = compressed_chunk(&vec![0; 8 << 20]);
    let theirs_cell = push_new(5, HX03, &s.uuid, actor.clone());
    let forged = push_new(6, HX02, &s.uuid, ActorId::from([9_u8; 16]));
    let (cell_id, forged_id) = (theirs_cell.id.clone(), forged.id.clone());
    // Refused per incident: 200, and the incident's ack says why (for
    // `rule_broken`, the code below is the rule's).
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("an empty body", vec![], 400, "malformed", None),
        ("a body that is not CBOR", b"\xff\xfe\xfd not CBOR at all".to_vec(), 400, "malformed", None),
        ("a text body", b"{\"version\": 1}".to_vec(), 400, "malformed", None),
        ("CBOR of another message", protocol::encode(&EnrollRequest {
            version: PROTOCOL_VERSION, code: "X".into(), worker: "w-li".into(), device: s.uuid.to_string(), public_key: None,
            label: None,
        }), 400, "malformed", None),
        ("a request as protocol version 1 wrote it", protocol::encode(&serde_json::json!({
            "version": 1, "device_time_ms": 1, "epoch": null, "cursor": null, "pull_limit": 100, "push": [],
        })), 400, "bad_request", None),
        ("a valid request cut in half", whole[..whole.len() / 2].to_vec(), 400, "malformed", None),
        ("a valid request without its last byte", whole[..whole.len() - 1].to_vec(), 400, "malformed", None),
        ("another protocol version", protocol::encode(&version), 400, "bad_request", None),
        ("too many incidents", protocol::encode(&request(
            (0..=MAX_PUSH_DOCS).map(|_| PushDoc { changes: vec![], ..valid.clone() }).collect(),
        )), 400, "bad_request", None),
        ("an id that is not a UUIDv7", with(PushDoc { id: "6ba7b810-9dad-11d1-80b4-00c04fd430c8".into(), ..valid.clone() }),
            200, "bad_change", Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8")),
        ("change bytes that are garbage", with_changes(vec![b"garbage, not an Automerge change".to_vec()]),
            200, "bad_change", Some(valid_id.as_str())),
        ("a valid change cut in half", with_changes(vec![first_change[..first_change.len() / 2].to_vec()]),
            200, "bad_change", Some(valid_id.as_str())),
        ("a valid change without its last byte", with_changes(vec![first_change[..first_change.len() - 1].to_vec()]),
            200, "bad_change", Some(valid_id.as_str())),
        ("a change over the size limit", with_changes(vec![vec![0x85; MAX_CHANGE + 1]]), 200, "bad_change", Some(valid_id.as_str())),
        ("a bundle chunk whose columns claim billions of values", with_changes(vec![bundle]), 200, "bad_change", Some(valid_id.as_str())),
        ("a compressed change inflating to 8 MiB", with_changes(vec![bomb]), 200, "bad_change", Some(valid_id.as_str())),
        ("a document missing required fields", with(bare), 200, "schema", Some(bare_id.as_str())),
        ("a document pushed under another id", with(misnamed), 200, "wrong_incident", Some(other_id.as_str())),
        ("a new incident in another cell", with(theirs_cell), 200, "out_of_scope", Some(cell_id.as_str())),
        ("an own incident moved to another cell", with(moved), 200, "correction", Some(mine.as_str())),
        ("a note on another cell's incident", with(note), 200, "out_of_scope", Some(theirs.as_str())),
    ];

    let before = counts(&s.server);
    for (what, body, status, code, incident) in cases {
        let got = s.http.sync(token, body);
        match incident {
            None => check(what, &got, status, code),
            Some(id) => {
                let r = refusal_of(what, &got, id);
                let said = r.rule.as_deref().unwrap_or(r.code.as_str());
                assert_eq!(said, code, "{what}: {r:?}");
                assert_eq!(r.code == "rule_broken", r.rule.is_some(), "{what}: {r:?}");
            }
        }
        let now = counts(&s.server);
        assert_eq!(
            (now.incidents, now.changes),
            (before.incidents, before.changes),
            "{what} stored something"
        );
    }
    // Over 16 MiB: 413 on its Content-Length, before a byte of the body is
    // read. The server then closes the connection, so a client still
    // sending may see the reset instead of the 413; either way nothing
    // is stored and the server keeps serving.
    let over = s
        .http
        .client
        .post(format!("{}/v1/sync", s.http.base))
        .bearer_auth(token.unwrap())
        .body(vec![0; MAX_BODY + 1])
        .send();
    if let Ok(resp) = over {
        assert_eq!(resp.status().as_u16(), 413, "a body over 16 MiB");
    }
    let now = counts(&s.server);
    assert_eq!(
        (now.incidents, now.changes),
        (before.incidents, before.changes),
        "a body over 16 MiB stored something"
    );
    // Refusals are answered, not quarantined: the quarantine is for bytes
    // that made Automerge itself fail and for relayed changes of devices
    // this server does not know, like one made in a made-up device's name,
    // which is kept for the operator and stores nothing else.
    assert_eq!(counts(&s.server), before);
    let got = s.http.sync(token, with(forged));
    let resp: SyncResponse = protocol::decode(&got.body).expect("a sync response");
    let ack = resp.acks.iter().find(|a| a.id == forged_id).unwrap();
    assert!(
        ack.refused.is_none() && !ack.stored(),
        "kept aside, not stored: {ack:?}"
    );
    assert_eq!(
        counts(&s.server),
        Counts {
            quarantine: before.quarantine + 1,
            ..before
        }
    );

    // The server still serves: a new report syncs, nothing else moved.
    s.dev.report(&["--category", "manhole-cover", "--desc", "after"]);
    let synced = s.dev.sync(&[]);
    assert_eq!(synced["acknowledged"], 1, "{synced}");
    assert_eq!(synced["refused"], serde_json::json!([]));
    let after = counts(&s.server);
    assert_eq!(after.incidents, before.incidents + 1);
    let on_server = server_heads(&s.server);
    let theirs_heads = on_server.iter().find(|(id, _)| *id == theirs).cloned();
    let mut expected = s.dev.heads();
    expected.extend(theirs_heads);
    expected.sort();
    assert_eq!(on_server, expected, "the server holds exactly the honest incidents");
}

#[test]
fn a_device_clock_at_the_limits_of_its_type_is_not_a_server_error() {
    let s = Setup::new();
    for t in [i64::MIN, i64::MAX, 0] {
        let mut req = request(vec![]);
        req.device_time_ms = Some(t);
        let got = s.http.sync(Some(&s.token), protocol::encode(&req));
        assert_eq!(got.status, 200, "device_time_ms {t}: {}", got.text());
    }
}

/// A hostile client may name one incident twice in a push. Whatever the
/// server answers, its stored document must hold every change its feed holds,
/// or the center's copy silently lacks an edit devices have.
#[test]
fn an_incident_pushed_twice_in_one_request_keeps_the_stored_document_whole() {
    let s = Setup::new();
    let actor = s.actor();
    let new = new_incident(1, HX02, &s.uuid);
    let id = new.id.to_string();
    let mut doc = IncidentDoc::create(&new, actor).unwrap();
    let created = push_of(doc.automerge(), &id);
    let got = s.http.sync(Some(&s.token), protocol::encode(&request(vec![created])));
    assert_eq!(got.status, 200, "{}", got.text());

    let base = doc.heads();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap();
    doc.add_note("w-li", "first", at).unwrap();
    let mid = doc.heads();
    doc.add_note("w-li", "second", at).unwrap();
    let first = push_since(doc.automerge(), &id, &base);
    let first = PushDoc {
        changes: first.changes[..1].to_vec(),
        ..first
    };
    let second = push_since(doc.automerge(), &id, &mid);
    let got = s
        .http
        .sync(Some(&s.token), protocol::encode(&request(vec![first, second])));
    assert!(got.status < 500, "{}", got.text());

    assert_doc_matches_feed(&s.server, &id, &format!("answer {}", got.status));
}

/// Compressed changes are counted inflated against one budget for the
/// whole request (`MAX_PUSH_INFLATED`), since every pushed incident's
/// changes are held decoded until the commit: 16 MiB on the wire could
/// otherwise inflate to some 16 GiB. Past the budget incidents are refused
/// unread; the valid incident before them is stored, and the device goes
/// on syncing.
#[test]
fn changes_inflating_past_the_request_budget_are_refused_and_the_rest_is_stored() {
    let s = Setup::new();
    let valid = push_new(1, HX02, &s.uuid, s.actor());
    let zeros = compressed_chunk(&vec![0; MAX_CHANGE]);
    let count = MAX_PUSH_INFLATED / MAX_CHANGE + 2;
    let mut push = vec![valid.clone()];
    push.extend((0..count).map(|n| PushDoc {
        id: IncidentId::new(1_763_600_100_000 + n as u64, [7; 10]).to_string(),
        changes: vec![ByteBuf::from(zeros.clone())],
        sigs: vec![],
    }));
    let ids: Vec<String> = push.iter().map(|d| d.id.clone()).collect();
    let got = s.http.sync(Some(&s.token), protocol::encode(&request(push)));
    let said = |id: &str| refusal_of("a request inflating past its budget", &got, id).message;
    assert!(said(&ids[1]).contains("cannot be decoded"), "{}", said(&ids[1]));
    assert!(said(&ids[count]).contains("inflate to over"), "{}", said(&ids[count]));
    let resp: SyncResponse = protocol::decode(&got.body).unwrap();
    let valid_ack = resp.acks.iter().find(|a| a.id == valid.id);
    assert!(valid_ack.is_none_or(|a| a.refused.is_none()), "{valid_ack:?}");
    assert_eq!(counts(&s.server).incidents, 1, "the valid incident is stored");
    s.dev.report(&["--category", "manhole-cover", "--desc", "after"]);
    assert_eq!(s.dev.sync(&[])["acknowledged"], 1);
}

/// The server's stored document of an incident holds exactly the changes
/// its feed lists for that incident.
#[track_caller]
fn assert_doc_matches_feed(server: &Server, id: &str, context: &str) {
    let in_feed: BTreeSet<[u8; 32]> = server
        .db()
        .prepare("SELECT hash FROM changes WHERE incident_id = ?1")
        .unwrap()
        .query_map([id], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|h| h.unwrap().try_into().unwrap())
        .collect();
    let in_doc: BTreeSet<[u8; 32]> = server_doc(server, id)
        .get_changes(&[])
        .iter()
        .map(|c| c.hash().0)
        .collect();
    assert_eq!(
        in_doc, in_feed,
        "{context}: the stored document of {id} and the feed differ"
    );
}

/// A change the server already has may come back from any device (it is
/// not forged), but only into the incident it belongs to: merged into
/// another one it would change that incident's stored copy without ever
/// entering its feed, so no device could catch up with it.
#[test]
fn a_change_of_another_incident_cannot_be_slipped_into_this_one() {
    let mut server = Server::new();
    server.add_worker("w-wang", &[HX02]);
    server.add_worker("w-li", &[HX02]);
    server.start();
    // Made first, so its actor id sorts first and loses Automerge's ties.
    let wang = Device::new("w-wang", &[HX02]);
    let li = Device::new("w-li", &[HX02]);
    wang.enroll(&server);
    li.enroll(&server);
    let theirs = wang.report(&["--category", "manhole-cover", "--desc", "theirs"]);
    wang.sync(&[]);
    let mine = li.report(&["--category", "manhole-cover", "--desc", "mine"]);
    assert_eq!(li.sync(&[])["new_incidents"], 1);

    let their_change: Vec<u8> = server
        .db()
        .query_row("SELECT bytes FROM changes WHERE incident_id = ?1", [&theirs], |r| {
            r.get(0)
        })
        .unwrap();
    let slipped = PushDoc {
        id: mine.clone(),
        changes: vec![ByteBuf::from(their_change)],
        sigs: vec![],
    };
    let before = counts(&server);
    let got = Http::new(&server.url)
        .with_key(&li)
        .sync(Some(&token_of(&li)), protocol::encode(&request(vec![slipped])));
    assert!(got.status < 500, "{}", got.text());
    assert_eq!(counts(&server).changes, before.changes);
    assert_doc_matches_feed(&server, &mine, &format!("answer {}", got.status));
}

/// The server binds a device's actor id at enrolment. The same UUID spelt
/// another way (upper case, no dashes, braces, a URN) is the same actor and
/// must not enrol as a second device of another worker, who could then push
/// changes in the first device's name.
#[test]
fn another_spelling_of_a_device_id_cannot_enrol_as_a_second_device() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.add_worker("w-wang", &[HX02]);
    server.start();
    let li = Device::new("w-li", &[HX02]);
    li.enroll(&server);
    let li_uuid = uuid_of(&li);
    let http = Http::new(&server.url);
    let code = server.code("w-wang");
    for spelling in [
        li_uuid.to_string(),
        li_uuid.hyphenated().to_string().to_uppercase(),
        li_uuid.simple().to_string(),
        li_uuid.braced().to_string(),
        li_uuid.urn().to_string(),
    ] {
        let got = http.enroll(&EnrollRequest {
            version: PROTOCOL_VERSION,
            code: code.clone(),
            worker: "w-wang".into(),
            device: spelling.clone(),
            public_key: None,
            label: None,
        });
        if got.status == 200 {
            let resp: EnrollResponse = protocol::decode(&got.body).unwrap();
            let forged = push_new(1, HX02, &li_uuid, ActorId::from(li_uuid.as_bytes()));
            let pushed = http.sync(Some(&resp.token), protocol::encode(&request(vec![forged])));
            panic!(
                "w-wang enrolled `{spelling}`, w-li's device; a push of a change in that device's name then got {}",
                pushed.status
            );
        }
        check(&spelling, &got, 401, "bad_code");
    }
    assert_eq!(counts(&server).devices, 1);
}

// ---------------------------------------------------------------------------
// Tokens and enrolment

#[test]
fn missing_wrong_and_revoked_tokens_get_401() {
    let s = Setup::new();
    // A second device of the same worker, revoked by the operator.
    let other = Device::new("w-li", &[HX02]);
    other.enroll(&s.server);
    let revoked = token_of(&other);
    s.server.admin(&["device", "revoke", &uuid_of(&other).to_string()]);

    let body = protocol::encode(&request(vec![push_new(1, HX02, &s.uuid, s.actor())]));
    let hash = BlobHash::of(b"any photo").to_hex();
    let wrong = "0".repeat(64);
    let before = counts(&s.server);
    for (what, token) in [
        ("no token", None),
        ("an empty token", Some("")),
        ("a wrong token", Some(wrong.as_str())),
        (
            "a token with the last digit changed",
            Some(&*format!("{}x", &s.token[..63])),
        ),
        ("a revoked device's token", Some(revoked.as_str())),
    ] {
        check(what, &s.http.sync(token, body.clone()), 401, "unauthorized");
        let get = s
            .http
            .send(reqwest::Method::GET, &format!("/v1/blobs/{hash}/status"), token, vec![]);
        check(what, &get, 401, "unauthorized");
        let put = s.http.send(
            reqwest::Method::PUT,
            &format!("/v1/blobs/{hash}?offset=0&size=9"),
            token,
            b"any photo".to_vec(),
        );
        check(what, &put, 401, "unauthorized");
    }
    // A header that is not a bearer token.
    let basic = s
        .http
        .client
        .post(format!("{}/v1/sync", s.server.url))
        .header("authorization", format!("Basic {}", s.token))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
    assert_eq!(counts(&s.server), before, "a refused request stored something");

    // The revoked device's own CLI says so and keeps its incidents.
    other.report(&["--category", "manhole-cover"]);
    let out = other.run(&["sync", "--retries", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unauthorized") && err.contains("revoked"), "{err}");
    assert_eq!(other.status()["unsynced_incidents"], 1);

    // The valid token still works.
    let got = s.http.sync(Some(&s.token), body);
    assert_eq!(got.status, 200, "{}", got.text());
    let resp: SyncResponse = protocol::decode(&got.body).unwrap();
    assert!(resp.acks.is_empty(), "the push is stored: {:?}", resp.acks);
    assert_ne!(counts(&s.server), before, "the valid token's push is stored");
}

#[test]
fn read_only_tokens_read_photos_but_never_sync_or_upload() {
    let s = Setup::new();
    s.server.add_center("c-hexiang", "HLT-CX-HX");
    // A grid worker cannot get a read-only token.
    let refused = s.server.run(&["token", "create", "--worker", "w-li"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("grid worker"));
    let token = s.server.token("c-hexiang");
    assert_eq!(token.len(), 64, "{token}");

    // The device's incident and photo reach the server first.
    let photo = fixture("manhole-exif.jpg");
    let id = s.dev.report(&["--category", "manhole-cover", "--photo", &photo]);
    s.dev.sync(&[]);
    let before = counts(&s.server);

    let body = protocol::encode(&request(vec![push_new(1, HX02, &s.uuid, s.actor())]));
    check(
        "a read-only token's sync",
        &s.http.sync(Some(&token), body),
        403,
        "read_only_token",
    );
    let hash = BlobHash::of(b"any photo").to_hex();
    let put = s.http.put_blob(&token, &hash, 0, 9, b"any photo");
    check("a read-only token's upload", &put, 403, "read_only_token");
    assert_eq!(counts(&s.server), before, "a read-only token stored something");

    // It may read the photos of its community.
    let shown = s.dev.show(&id);
    let thumb = shown["photos"][0]["thumb"].as_str().expect("thumbnail hash").to_owned();
    let got = s.http.send(
        reqwest::Method::GET,
        &format!("/v1/blobs/{thumb}"),
        Some(&token),
        vec![],
    );
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(BlobHash::of(&got.body).to_hex(), thumb);

    // It is listed as a token and is revoked like a device.
    let list: serde_json::Value = serde_json::from_str(&s.server.admin(&["device", "list", "--json"])).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["read_only"] == true)
        .expect("the token is listed");
    let id = row["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("token-"), "{id}");
    s.server.admin(&["device", "revoke", &id]);
    let got = s.http.send(
        reqwest::Method::GET,
        &format!("/v1/blobs/{thumb}"),
        Some(&token),
        vec![],
    );
    check("a revoked read-only token", &got, 401, "unauthorized");
}

#[test]
fn wrong_used_expired_and_other_workers_codes_get_401_bad_code() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.add_worker("w-wang", &[HX01]);
    server.start();
    let http = Http::new(&server.url);
    let enrol = |code: &str, worker: &str| EnrollRequest {
        version: PROTOCOL_VERSION,
        code: code.to_owned(),
        worker: worker.to_owned(),
        device: uuid::Uuid::new_v4().to_string(),
        public_key: None,
        label: None,
    };

    let used = server.code("w-li");
    let ok = http.enroll(&enrol(&used, "w-li"));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let resp: EnrollResponse = protocol::decode(&ok.body).unwrap();
    assert_eq!(resp.grids, [HX02]);

    let wangs = server.code("w-wang");
    // Written straight into the store: the CLI cannot make a code that expires soon.
    let expired = "ABCD-EFGH-JKMN";
    {
        let storage = server.storage();
        let now = sync_server::ServerTime::now();
        let code = NewCode {
            code_hash: &secret_hash(&normalise_code(expired)),
            worker: "w-li",
            device: None,
            expires_ms: now.ms - 1,
        };
        storage.add_enrol_code(&code, &now.text).unwrap();
    }

    let before = counts(&server);
    for (what, req) in [
        ("an unknown code", enrol("K7QF-M2XD-9PRT", "w-li")),
        ("an empty code", enrol("", "w-li")),
        ("a code used already", enrol(&used, "w-li")),
        (
            "a code used already, spelt in lower case",
            enrol(&used.to_lowercase(), "w-li"),
        ),
        ("an expired code", enrol(expired, "w-li")),
        ("another worker's code", enrol(&wangs, "w-li")),
        ("a code for an unknown worker", enrol(&wangs, "w-nobody")),
    ] {
        check(what, &http.enroll(&req), 401, "bad_code");
    }
    let mut not_uuid = enrol(&wangs, "w-wang");
    not_uuid.device = "not-a-uuid".into();
    check(
        "a device id that is not a UUID",
        &http.enroll(&not_uuid),
        400,
        "bad_request",
    );
    check(
        "a body that is not CBOR",
        &http.send(reqwest::Method::POST, "/v1/enroll", None, b"code=K7QF".to_vec()),
        400,
        "malformed",
    );
    assert_eq!(counts(&server), before, "a refused enrolment registered a device");

    // w-wang's code survived the misuse and still works, once, from `field`.
    let wang = Device::new("w-wang", &[HX01]);
    wang.ok(&["enroll", "--server", &server.url, "--code", &wangs]);
    let again = Device::new("w-wang", &[HX01]);
    let out = again.run(&["enroll", "--server", &server.url, "--code", &wangs]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_code"));
    assert_eq!(counts(&server).devices, before.devices + 1);
}

// ---------------------------------------------------------------------------
// Photo uploads

/// A device with an incident on the server whose photo is not uploaded yet:
/// (setup, the photo's original bytes and hash).
fn photo_on_hold() -> (Setup, Vec<u8>, String) {
    let s = Setup::new();
    let path = fixture("manhole-exif.jpg");
    s.dev.report(&["--category", "manhole-cover", "--photo", &path]);
    let synced = s.dev.sync(&["--photos", "none"]);
    assert_eq!(
        (synced["acknowledged"].as_u64(), synced["photos_uploaded"].as_u64()),
        (Some(1), Some(0))
    );
    let bytes = std::fs::read(&path).unwrap();
    let hash = BlobHash::of(&bytes).to_hex();
    (s, bytes, hash)
}

fn blob_status(s: &Setup, hash: &str) -> BlobStatus {
    let got = s.http.blob_status(&s.token, hash);
    assert_eq!(got.status, 200, "{}", got.text());
    protocol::decode(&got.body).unwrap()
}

fn part_file(s: &Setup, hash: &str) -> Part {
    upload_part(&s.server, &s.dev, hash)
}

#[test]
fn bad_photo_uploads_are_refused_and_leave_nothing_half_stored() {
    let (s, bytes, hash) = photo_on_hold();
    let size = bytes.len() as u64;
    let t = &s.token;

    for bad in [
        "not-a-hash",
        &hash.to_uppercase(),
        &hash[..63],
        &format!("{hash}0"),
        "..%2F..%2Fserver.sqlite3",
    ] {
        check(bad, &s.http.put_blob(t, bad, 0, size, &bytes), 400, "bad_hash");
        check(bad, &s.http.blob_status(t, bad), 400, "bad_hash");
    }
    let stranger = BlobHash::of(b"a photo no incident names").to_hex();
    check(
        "a hash no incident names",
        &s.http.put_blob(t, &stranger, 0, 25, b"a photo no incident names"),
        403,
        "out_of_scope",
    );
    check(
        "the status of a hash no incident names",
        &s.http.blob_status(t, &stranger),
        403,
        "out_of_scope",
    );
    assert!(!part_file(&s, &stranger).exists());

    // Wrong bytes of the right length: refused once whole, and thrown away.
    let mut wrong = bytes.clone();
    wrong[size as usize / 2] ^= 1;
    let half = size / 2;
    let got = s.http.put_blob(t, &hash, 0, size, &wrong[..half as usize]);
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        blob_status(&s, &hash),
        BlobStatus {
            received: half,
            complete: false
        }
    );
    check(
        "wrong bytes",
        &s.http.put_blob(t, &hash, half, size, &wrong[half as usize..]),
        422,
        "hash_mismatch",
    );
    assert_eq!(
        blob_status(&s, &hash),
        BlobStatus {
            received: 0,
            complete: false
        }
    );
    assert!(!part_file(&s, &hash).exists(), "the mismatched upload was kept");

    // A chunk that does not start where the stored bytes end.
    let got = s.http.put_blob(t, &hash, 0, size, &bytes[..1000]);
    assert_eq!(got.status, 200, "{}", got.text());
    check(
        "a chunk past the end",
        &s.http.put_blob(t, &hash, 5000, size, &bytes[5000..6000]),
        409,
        "wrong_offset",
    );
    check(
        "a chunk sent again",
        &s.http.put_blob(t, &hash, 0, size, &bytes[..1000]),
        409,
        "wrong_offset",
    );
    check(
        "a chunk beyond the declared size",
        &s.http.put_blob(t, &hash, 1000, 1500, &bytes[1000..2000]),
        400,
        "too_long",
    );
    assert_eq!(
        blob_status(&s, &hash),
        BlobStatus {
            received: 1000,
            complete: false
        }
    );
    assert_eq!(part_file(&s, &hash).bytes(), bytes[..1000], "the stored part");
    assert_eq!(counts(&s.server).incidents, 1);

    // Another cell's device may not read or add to the photo.
    s.server.add_worker("w-wang", &[HX01]);
    let wang = Device::new("w-wang", &[HX01]);
    wang.enroll(&s.server);
    let wt = token_of(&wang);
    check(
        "another cell's read",
        &s.http
            .send(reqwest::Method::GET, &format!("/v1/blobs/{hash}"), Some(&wt), vec![]),
        403,
        "out_of_scope",
    );
    check(
        "another cell's upload",
        &s.http.put_blob(&wt, &hash, 1000, size, &bytes[1000..]),
        403,
        "out_of_scope",
    );

    // The device's own sync resumes from the 1000 bytes and finishes.
    let synced = s.dev.sync(&[]);
    assert_eq!(synced["photos_uploaded"], 3, "{synced}");
    assert_eq!(
        blob_status(&s, &hash),
        BlobStatus {
            received: size,
            complete: true
        }
    );
    let stored = s.server.photo(&hash).unwrap();
    assert_eq!(stored, bytes);
    let verified: i64 = s
        .server
        .db()
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(verified, 3);
}

/// Two requests sending the same chunk at once (two workers with the same
/// picture, or a retry while the first attempt still runs) must not both be
/// appended: the server would then hold more bytes than the photo has, and
/// no device could ever finish the upload. The race is narrow, so the burst
/// is repeated, each time throwing the stored part away with a mismatch.
#[test]
fn the_same_chunk_sent_concurrently_is_stored_once() {
    let s = Setup::new();
    let photos = tempfile::tempdir().unwrap();
    let path = photos.path().join("noise.jpg");
    let bytes = noise_jpeg(1200, 900, 7, 90);
    std::fs::write(&path, &bytes).unwrap();
    s.dev
        .report(&["--category", "manhole-cover", "--photo", path.to_str().unwrap()]);
    assert_eq!(s.dev.sync(&["--photos", "none"])["acknowledged"], 1);
    let hash = BlobHash::of(&bytes).to_hex();
    let size = bytes.len() as u64;
    let chunk = bytes.len() * 3 / 5;
    let mut wrong = bytes.clone();
    wrong[bytes.len() - 1] ^= 1;

    let senders = 12;
    let clients: Vec<Http> = (0..senders)
        .map(|_| Http::new(&s.server.url).with_key(&s.dev))
        .collect();
    let mut doubled = None;
    // Rounds in which two sends of the chunk were admitted together.
    let mut raced = 0;
    for round in 0..40 {
        let barrier = Barrier::new(senders);
        let answers: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = clients
                .iter()
                .map(|http| {
                    let (barrier, token, hash, bytes) = (&barrier, &s.token, &hash, &bytes);
                    scope.spawn(move || {
                        barrier.wait();
                        let path = format!("/v1/blobs/{hash}?offset=0&size={size}");
                        // 0: refused before the body was read, and the
                        // connection closed under the rest of it.
                        http.try_send(reqwest::Method::PUT, &path, Some(token), bytes[..chunk].to_vec())
                            .map_or(0, |a| a.status)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // One device has two requests in progress at most; the others
        // are refused before their bodies are read (429 device_busy, or a
        // closed connection), so the race is between the two it admits.
        assert!(
            answers.iter().all(|&a| matches!(a, 0 | 200 | 409 | 429)),
            "round {round}: answers {answers:?}"
        );
        assert!(answers.iter().any(|&a| a == 200), "round {round}: answers {answers:?}");
        raced += usize::from(answers.iter().filter(|&&a| a == 200 || a == 409).count() > 1);
        let received = blob_status(&s, &hash).received;
        if received != chunk as u64 {
            doubled = Some((round, received));
            break;
        }
        let rest = s.http.put_blob(&s.token, &hash, chunk as u64, size, &wrong[chunk..]);
        check("the wrong rest", &rest, 422, "hash_mismatch");
    }

    assert!(
        doubled.is_some() || raced > 0,
        "no round admitted two sends at once; nothing was tried"
    );
    // Whatever happened, the device must be able to finish the upload.
    let synced = s.dev.sync(&[]);
    assert_eq!(
        doubled, None,
        "(round, bytes stored) after {senders} concurrent sends of one {chunk}-byte chunk of a \
         {size}-byte photo; the device's sync then: {synced}"
    );
    assert_eq!(synced["photos_uploaded"], 3, "{synced}");
    assert_eq!(
        blob_status(&s, &hash),
        BlobStatus {
            received: size,
            complete: true
        }
    );
}

// ---------------------------------------------------------------------------
// What `field` does with a refusal

#[test]
fn an_incident_the_server_refuses_is_held_and_the_rest_still_sync() {
    let mut server = Server::new();
    // The device was set up for two cells and used offline before its
    // enrolment; the server assigned only one. (Once enrolled, the device
    // itself refuses a report outside the server's cells.)
    server.add_worker("w-zhao", &[HX01]);
    server.start();
    let dev = Device::new("w-zhao", &[HX01, HX02]);
    let refused = dev.report(&["--category", "manhole-cover", "--grid", HX02, "--desc", "not mine"]);
    dev.enroll(&server);
    let fine = dev.report(&["--category", "manhole-cover", "--grid", HX01, "--desc", "mine"]);

    let synced = dev.sync(&[]);
    assert_eq!(synced["refused"], serde_json::json!([refused]), "{synced}");
    assert_eq!(synced["acknowledged"], 1, "{synced}");
    let on_server: Vec<String> = server_heads(&server).into_iter().map(|(id, _)| id).collect();
    assert_eq!(on_server, [fine.as_str()]);

    let status = dev.status();
    assert_eq!(status["unsynced_incidents"], 1, "{status}");
    assert_eq!(status["refused"].as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status["refused"][0]["id"], refused.as_str());
    assert_eq!(status["refused"][0]["code"], "out_of_scope");
    assert!(
        status["refused"][0]["reason"].as_str().unwrap().contains(HX02),
        "{status}"
    );
    let text = dev.ok(&["status"]);
    assert!(text.contains(&format!("refused    {refused} (out_of_scope)")), "{text}");
    let unsynced: Vec<(String, bool)> = dev
        .list()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["unsynced"].as_bool().unwrap()))
        .collect();
    assert!(
        unsynced.contains(&(refused.clone(), true)) && unsynced.contains(&(fine, false)),
        "{unsynced:?}"
    );

    // Held: the next sync does not offer it again...
    let again = dev.sync(&[]);
    assert_eq!(
        (again["round_trips"].as_u64(), again["pushed"].as_u64()),
        (Some(1), Some(0)),
        "{again}"
    );
    assert_eq!(again["refused"], serde_json::json!([]));
    // ...until it is edited, and then it is refused and held again.
    dev.ok(&["update", &refused, "--note", "still here"]);
    let edited = dev.sync(&[]);
    assert_eq!(edited["refused"], serde_json::json!([refused]), "{edited}");
    assert_eq!(dev.status()["refused"][0]["id"], refused.as_str());
    assert_eq!(counts(&server).incidents, 1);
}

/// Letters that deflate will not shrink much, so a note's change is about
/// as large on the wire as the note.
fn noise_text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = XorShift64::new(seed);
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// One device's large notes cannot stop its cell: the feed of the cell is
/// larger than any one body a client accepts, yet every pull page stays
/// under it, so a colleague's device still pulls everything and still
/// sends its own records.
#[test]
fn an_oversized_note_is_refused_and_many_large_ones_never_make_a_page_too_large() {
    let s = Setup::new();
    s.server.add_worker("w-wang", &[HX02]);
    let wang = Device::new("w-wang", &[HX02]);
    wang.enroll(&s.server);
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap();

    // One 1 MB note: refused by the limit, and the incident stays as it was.
    let new = new_incident(1, HX02, &s.uuid);
    let id = new.id.to_string();
    let mut doc = IncidentDoc::create(&new, s.actor()).unwrap();
    let created = push_of(doc.automerge(), &id);
    let got = s.http.sync(Some(&s.token), protocol::encode(&request(vec![created])));
    assert_eq!(got.status, 200, "{}", got.text());
    let base = doc.heads();
    doc.add_note("w-li", &noise_text(1_000_000, 1), at).unwrap();
    let push = push_since(doc.automerge(), &id, &base);
    let r = refusal_of(
        "a 1 MB note",
        &s.http.sync(Some(&s.token), protocol::encode(&request(vec![push]))),
        &id,
    );
    assert_eq!(
        (r.code.as_str(), r.rule.as_deref()),
        ("rule_broken", Some("limit")),
        "{r:?}"
    );
    let changes_of = |id: &str| -> i64 {
        s.server
            .db()
            .query_row("SELECT count(*) FROM changes WHERE incident_id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert_eq!(changes_of(&id), 1);

    // Notes at the limit, on twelve incidents: the feed is larger than
    // one body, and the pull still arrives whole, page by page.
    let (incidents, notes) = (15_u8, 190_usize);
    let mut ids = Vec::new();
    for batch in (2..2 + incidents).collect::<Vec<_>>().chunks(3) {
        let mut push = Vec::new();
        for &n in batch {
            let new = new_incident(n, HX02, &s.uuid);
            let mut doc = IncidentDoc::create(&new, s.actor()).unwrap();
            for i in 0..notes {
                doc.add_note("w-li", &noise_text(8_000, (n as usize * 1000 + i) as u64), at)
                    .unwrap();
            }
            ids.push(new.id.to_string());
            push.push(push_of(doc.automerge(), &new.id.to_string()));
        }
        let got = s.http.sync(Some(&s.token), protocol::encode(&request(push)));
        let resp: SyncResponse = protocol::decode(&got.body).expect("a sync response");
        assert!(resp.acks.iter().all(|a| a.refused.is_none()), "{:?}", resp.acks);
    }
    let feed: i64 = s
        .server
        .db()
        .query_row("SELECT sum(length(bytes)) FROM changes", [], |r| r.get(0))
        .unwrap();
    assert!(
        feed as usize > MAX_BODY,
        "the feed ({feed} bytes) is larger than one body"
    );

    let pulled = wang.sync(&[]);
    assert_eq!(pulled["new_incidents"], u64::from(incidents) + 1, "{pulled}");
    assert_eq!(
        pulled["pulled_changes"],
        incidents as usize * (notes + 1) + 1,
        "{pulled}"
    );
    assert!(pulled["round_trips"].as_u64().unwrap() >= 3, "{pulled}");
    let shown: serde_json::Value = serde_json::from_str(&wang.ok(&["show", &ids[0], "--json"])).unwrap();
    assert_eq!(shown["notes"].as_array().unwrap().len(), notes);

    let own = wang.report(&["--category", "lawn"]);
    let pushed = wang.sync(&[]);
    assert_eq!(pushed["acknowledged"], 1, "{pushed}");
    assert_eq!(changes_of(&own), 1);
}

/// A colleague's device that can see an incident cannot reset or poison
/// the reporter's unfinished upload of its photo: each device's partial
/// upload is its own, and the reporter's resumes and verifies.
#[test]
fn another_devices_upload_of_the_same_photo_cannot_reset_or_poison_it() {
    let (s, bytes, hash) = photo_on_hold();
    s.server.add_worker("w-wang", &[HX02]);
    let wang = Device::new("w-wang", &[HX02]);
    wang.enroll(&s.server);
    assert_eq!(wang.sync(&[])["new_incidents"], 1, "wang sees the incident");
    let theirs = token_of(&wang);
    let size = bytes.len() as u64;
    let half = bytes.len() / 2;

    let got = s.http.put_blob(&s.token, &hash, 0, size, &bytes[..half]);
    assert_eq!(got.status, 200, "{}", got.text());
    let garbage = vec![0x5a; bytes.len()];
    check(
        "wang appends at li's offset",
        &s.http.put_blob(&theirs, &hash, half as u64, size, &garbage[half..]),
        409,
        "wrong_offset",
    );
    check(
        "wang sends other bytes whole",
        &s.http.put_blob(&theirs, &hash, 0, size, &garbage),
        422,
        "hash_mismatch",
    );
    let status = blob_status(&s, &hash);
    assert_eq!((status.received, status.complete), (half as u64, false));
    assert_eq!(part_file(&s, &hash).bytes(), &bytes[..half]);

    let got = s.http.put_blob(&s.token, &hash, half as u64, size, &bytes[half..]);
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(protocol::decode::<BlobStatus>(&got.body).unwrap().complete);
    let summary = s.dev.sync(&[]);
    assert_eq!(s.dev.status()["unsynced_blobs"], 0, "{summary}");
}

/// A device cannot fill the server's disk with uploads it never finishes:
/// it holds a bounded number of unfinished ones, and the others' uploads go on.
#[test]
fn unfinished_uploads_per_device_are_capped() {
    let s = Setup::new();
    let count = sync_server::photos::MAX_STAGED_UPLOADS + 1;
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap();
    let fake = |i: usize, kind: u8| BlobHash::of(&[kind, i as u8, (i >> 8) as u8]);
    let mut new = new_incident(7, HX02, &s.uuid);
    new.photos = (0..count)
        .map(|i| sync_core::PhotoRef {
            original: fake(i, 0),
            display: fake(i, 1),
            thumb: fake(i, 2),
            size: 1_000_000,
            mime: "image/jpeg".into(),
            width: 10,
            height: 10,
            taken_at: None,
            gps: None,
            added_at: at,
            added_by: "w-li".into(),
        })
        .collect();
    let mut doc = IncidentDoc::create(&new, s.actor()).unwrap();
    let push = push_of(doc.automerge(), &new.id.to_string());
    let got = s.http.sync(Some(&s.token), protocol::encode(&request(vec![push])));
    assert_eq!(got.status, 200, "{}", got.text());

    for i in 0..count - 1 {
        let got = s
            .http
            .put_blob(&s.token, &fake(i, 0).to_hex(), 0, 1_000_000, b"first bytes");
        assert_eq!(got.status, 200, "upload {i}: {}", got.text());
    }
    let last = fake(count - 1, 0).to_hex();
    check(
        "one unfinished upload too many",
        &s.http.put_blob(&s.token, &last, 0, 1_000_000, b"first bytes"),
        429,
        "too_many_uploads",
    );
    // Those started go on, and another device's photos still upload.
    let first = fake(0, 0).to_hex();
    let got = s.http.put_blob(&s.token, &first, 11, 1_000_000, b"more");
    assert_eq!(got.status, 200, "{}", got.text());
    s.server.add_worker("w-wang", &[HX02]);
    let wang = Device::new("w-wang", &[HX02]);
    wang.enroll(&s.server);
    wang.report(&["--category", "curb-stone", "--photo", &fixture("curb.png")]);
    let summary = wang.sync(&[]);
    assert_eq!(summary["photos_uploaded"], 3, "{summary}");
}

/// A device that names another community's photo hashes in an incident of
/// its own cell gets nothing by it: a reference gives access only once the
/// device that brought it in has uploaded the bytes itself, and Open311
/// never serves a file any incident calls an original. The victim's
/// photos still show where they belong.
#[test]
fn naming_a_photo_hash_gives_no_access_to_its_bytes() {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.add_worker("w-x", &["HLT-XS-XS-01"]);
    server.add_center("hx-center", "HLT-CX-HX");
    server.add_center("xs-center", "HLT-XS-XS");
    let hx_center = server.token("hx-center");
    let xs_center = server.token("xs-center");
    server.start_with(&["--open311-public"]);
    let li = Device::new("w-li", &[HX02]);
    li.enroll(&server);
    let victim = li.report(&["--category", "manhole-cover", "--photo", &fixture("manhole-exif.jpg")]);
    assert_eq!(li.sync(&[])["photos_uploaded"], 3);
    let shown: serde_json::Value = serde_json::from_str(&li.ok(&["show", &victim, "--json"])).unwrap();
    let photo = &shown["photos"][0];
    let hash = |k: &str| photo[k].as_str().unwrap().to_owned();
    let (original, display) = (hash("original"), hash("display"));

    // The attacker's device, in another community, lists them in its own incident,
    // the original passed off as a display copy.
    let x = Device::new("w-x", &["HLT-XS-XS-01"]);
    x.enroll(&server);
    let x_uuid = uuid_of(&x);
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap();
    let mut new = new_incident(9, "HLT-XS-XS-01", &x_uuid);
    new.reporter = "w-x".into();
    new.photos = vec![sync_core::PhotoRef {
        original: original.parse().unwrap(),
        display: original.parse().unwrap(),
        thumb: display.parse().unwrap(),
        size: 1,
        mime: "image/jpeg".into(),
        width: 1,
        height: 1,
        taken_at: None,
        gps: None,
        added_at: at,
        added_by: "w-x".into(),
    }];
    let mut doc = IncidentDoc::create(&new, ActorId::from(x_uuid.as_bytes())).unwrap();
    let http = Http::new(&server.url).with_key(&x);
    let push = push_of(doc.automerge(), &new.id.to_string());
    let got = http.sync(Some(&token_of(&x)), protocol::encode(&request(vec![push])));
    assert_eq!(got.status, 200, "{}", got.text());

    let xt = token_of(&x);
    for h in [&original, &display] {
        check("the attacker fetches", &http.get_blob(&xt, h), 403, "out_of_scope");
        check(
            "the attacker's center fetches",
            &http.get_blob(&xs_center, h),
            403,
            "out_of_scope",
        );
        let status: BlobStatus = protocol::decode(&http.blob_status(&xt, h).body).unwrap();
        assert!(!status.complete, "the attacker is told to upload it itself");
    }
    let public = |h: &str| {
        reqwest::blocking::get(format!("{}/open311/v2/media/{h}.jpg", server.url))
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        public(&original),
        404,
        "an original is never public, whatever it is called"
    );
    // Uploading other bytes under the hash proves nothing.
    check(
        "the attacker uploads other bytes",
        &http.put_blob(&xt, &original, 0, 5, b"fake!"),
        422,
        "hash_mismatch",
    );
    let pulled = x.sync(&[]);
    assert_eq!(pulled["thumbs_fetched"], 0, "{pulled}");

    // Where they belong, the photos still show.
    assert_eq!(public(&display), 200);
    let got = http.get_blob(&hx_center, &original);
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, std::fs::read(fixture("manhole-exif.jpg")).unwrap());
    let today = chrono::Utc::now()
        .with_timezone(&sync_core::calendar::DEFAULT_ZONE)
        .date_naive();
    let report = reqwest::blocking::Client::new()
        .get(format!("{}/v1/reports/daily?date={today}", server.url))
        .bearer_auth(&hx_center)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    let line = report["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == victim.as_str())
        .expect("the victim's incident is in its community's report");
    assert_eq!(line["complete"], true, "{line}");
}

fn device_offset(server: &Server, id: &str) -> Option<i64> {
    let list: serde_json::Value = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .and_then(|d| d["clock_offset_ms"].as_i64())
}

/// The clock offset the server keeps is the device's own NTP-style reading
/// (the server's time against the middle of a round trip), so a push that
/// took ten minutes to arrive does not make a correct clock look wrong.
#[test]
fn the_clock_offset_is_the_devices_reading_not_the_uploads_duration() {
    let s = Setup::new();
    let id = s.uuid.to_string();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let sent = |reading: Option<i64>| {
        let mut req = request(vec![]);
        req.device_time_ms = Some(now_ms - 10 * 60_000);
        req.manifest.clock_offset_ms = reading;
        let got = s.http.sync(Some(&s.token), protocol::encode(&req));
        assert_eq!(got.status, 200, "{}", got.text());
    };
    sent(Some(1_500));
    assert_eq!(device_offset(&s.server, &id), Some(1_500));
    // A device that does not measure: its send time against the arrival.
    sent(None);
    assert!(device_offset(&s.server, &id).unwrap() <= -10 * 60_000 + 1_000);

    // `field sync` measures on every round trip and reports the best reading next time.
    s.dev.sync(&[]);
    let reading: i64 = s
        .dev
        .db()
        .query_row("SELECT value FROM meta WHERE key = 'clock_offset_ms'", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(reading.abs() < 5_000, "a correct clock reads {reading} ms off");
    s.dev.sync(&[]);
    assert_eq!(device_offset(&s.server, &id), Some(reading));
}

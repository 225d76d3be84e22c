//! The `server_sync` target: one `sync_server::sync::sync` call, on a fresh
//! copy of a small store, with a push whose changes the fuzzer picks from
//! valid ones and makes up. `sync-server`'s replay test includes this file
//! with `#[path]` (beside `docs.rs`), so it may use only what that test
//! binary links.
//!
//! Input: a flags byte, a pull-limit byte, then [`docs::pieces`], each an
//! op byte and its payload (see [`World::change`]).

use std::path::{Path, PathBuf};

use automerge::Change;
use sync_core::protocol::{self, Cursor, Manifest, PROTOCOL_VERSION, PushDoc, SyncRequest, SyncResponse};
use sync_core::{GridMap, IncidentDoc};
use sync_server::ServerTime;
use sync_server::storage::{
    Accounts, ChangeLog, Device, EnrolOutcome, Enrolment, IncidentFilter, NewCode, ReadModel, Role, Scope,
    SqliteStorage, Worker,
};
use sync_server::sync::{Caller, sync};

use super::docs::{self, IN_SCOPE, OUT_OF_SCOPE};

const WORKER: &str = "w-fuzz";
const TOKEN: &str = "token-hash";

/// An incident the fuzzer may push: its id and its valid changes.
pub struct Known {
    pub id: String,
    pub changes: Vec<Vec<u8>>,
}

/// A template store (one worker, one enrolled device, incident 0's first
/// change pushed), copied afresh for every input so runs do not depend on
/// each other.
pub struct World {
    dir: PathBuf,
    /// The template store's database file.
    template: Vec<u8>,
    device: Device,
    scope: Scope,
    epoch: String,
    /// The cursor after the template's push.
    cursor: Option<Cursor>,
    /// 0: in the store already; 1: new; 2: new, in a cell the device may not write.
    pub known: [Known; 3],
}

fn known(n: u8, grid: &str) -> Known {
    let mut doc = docs::valid_doc(n, grid);
    Known {
        id: doc.read().expect("a seed incident reads").id.to_string(),
        changes: docs::changes_of(&mut doc),
    }
}

fn server_time() -> ServerTime {
    ServerTime {
        ms: 1_763_610_000_000,
        text: "2026-11-20T03:40:00.000Z".into(),
    }
}

fn request(push: Vec<PushDoc>, epoch: Option<String>, cursor: Option<Cursor>, pull_limit: u32) -> SyncRequest {
    SyncRequest {
        version: PROTOCOL_VERSION,
        device_time_ms: Some(1_763_610_000_500),
        epoch,
        cursor,
        pull_limit,
        push,
        want: vec![],
        manifest: Manifest {
            pending_docs: 0,
            pending_photos: 0,
            refused_docs: 0,
            own: Default::default(),
            clock_offset_ms: None,
        },
        account: None,
    }
}

impl World {
    /// Builds the template store under `dir` (a scratch folder the caller owns).
    pub fn new(dir: &Path) -> World {
        let template = dir.join("template");
        let storage = sync_server::create_sqlite_storage(&template).expect("the template store is made");
        let device = enrolled_device(&storage);
        let scope = sync_server::accounts::scope_of(&device, &GridMap::builtin());
        let known = [known(0, IN_SCOPE), known(1, IN_SCOPE), known(2, OUT_OF_SCOPE)];
        let first = PushDoc {
            id: known[0].id.clone(),
            changes: vec![known[0].changes[0].clone().into()],
            sigs: vec![],
        };
        let now = server_time();
        let caller = Caller {
            device: &device,
            scope: &scope,
            now: &now,
        };
        let resp = sync(&storage, &caller, &request(vec![first], None, None, 100)).expect("the setup push is accepted");
        let epoch = storage.epoch().expect("the store has an epoch");
        drop(storage);
        let template = std::fs::read(template.join(sync_server::DB_FILE)).expect("the template reads");
        World {
            dir: dir.to_owned(),
            template,
            device,
            scope,
            epoch,
            cursor: resp.cursor,
            known,
        }
    }

    /// A copy of the template store, alone in `run/`.
    fn fresh_store(&self) -> SqliteStorage {
        let run = self.dir.join("run");
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).expect("the run folder can be made");
        // `write` retries the writes libFuzzer's timer signal interrupts
        // (`fs::copy` once failed with EINTR there).
        std::fs::write(run.join(sync_server::DB_FILE), &self.template).expect("the template copies");
        SqliteStorage::open(&run.join(sync_server::DB_FILE), "fuzz").expect("a copy of the template opens")
    }

    /// One change of the push, from a piece: op 0 is change `p[0] % 3` of
    /// the pushed incident, op 1 the payload itself, op 2 change `p[1] % 3`
    /// of incident `p[0] % 3` (perhaps another incident's).
    fn change(&self, target: &Known, piece: &[u8]) -> Option<Vec<u8>> {
        let (op, payload) = piece.split_first()?;
        let pick = |k: &Known, i: Option<&u8>| k.changes[usize::from(*i.unwrap_or(&0)) % k.changes.len()].clone();
        Some(match op % 3 {
            0 => pick(target, payload.first()),
            1 => payload.to_vec(),
            _ => pick(
                &self.known[usize::from(*payload.first().unwrap_or(&0)) % 3],
                payload.get(1),
            ),
        })
    }

    /// The request an input stands for. Flags: bits 0-1 the incident pushed
    /// (3: incident 0's changes under an id made of the first piece), bit 2
    /// ask for that incident's whole history (`want`), bit 3 send the
    /// template's cursor, bit 4 send the epoch, bit 5 push incident 1 in
    /// full as well, bit 6 a wrong protocol version.
    pub fn request(&self, data: &[u8]) -> SyncRequest {
        let (flags, pull_limit, rest) = match data {
            [f, p, rest @ ..] => (*f, u32::from(*p), rest),
            _ => (0, 0, &[][..]),
        };
        let mut pieces = docs::pieces(rest).into_iter();
        let target = &self.known[usize::from(flags & 3) % 3];
        let id = if flags & 3 == 3 {
            String::from_utf8_lossy(pieces.next().unwrap_or_default()).into_owned()
        } else {
            target.id.clone()
        };
        let changes = pieces.filter_map(|p| self.change(target, p)).map(Into::into).collect();
        let want = if flags & 4 != 0 { vec![id.clone()] } else { vec![] };
        // Unsigned: the fuzzed device is enrolled without a key, as devices
        // were before keys, so its own changes reach the rules unsigned.
        let mut push = vec![PushDoc {
            id,
            changes,
            sigs: vec![],
        }];
        if flags & 32 != 0 {
            let k = &self.known[1];
            push.push(PushDoc {
                id: k.id.clone(),
                changes: k.changes.iter().cloned().map(Into::into).collect(),
                sigs: vec![],
            });
        }
        let epoch = (flags & 16 != 0).then(|| self.epoch.clone());
        let cursor = if flags & 8 != 0 { self.cursor } else { None };
        let mut req = request(push, epoch, cursor, pull_limit);
        req.want = want;
        if flags & 64 != 0 {
            req.version = PROTOCOL_VERSION + 1;
        }
        req
    }
}

/// Adds the worker and enrols the device the way `POST /v1/enroll` does.
fn enrolled_device(storage: &SqliteStorage) -> Device {
    let now = server_time();
    let worker = Worker {
        id: WORKER.into(),
        name: WORKER.into(),
        role: Role::Worker,
        community: None,
        grids: vec![IN_SCOPE.into()],
        department: None,
        retired_at: None,
    };
    storage.add_worker(&worker, &now.text).expect("the worker is added");
    let code = NewCode {
        code_hash: "code-hash",
        worker: WORKER,
        device: None,
        expires_ms: i64::MAX,
    };
    storage.add_enrol_code(&code, &now.text).expect("the code is added");
    let uuid = docs::device_uuid();
    let enrolment = Enrolment {
        code_hash: "code-hash",
        worker: WORKER,
        device: &uuid.to_string(),
        actor: uuid.as_bytes(),
        token_hash: TOKEN,
        public_key: None,
        label: None,
    };
    let outcome = storage.enroll(&enrolment, now.ms, &now.text).expect("enrolment runs");
    assert!(matches!(outcome, EnrolOutcome::Enrolled(_)), "{outcome:?}");
    storage
        .device_by_token(TOKEN)
        .expect("the token is read")
        .expect("the token finds the device")
}

/// Runs one input: the call must not panic, an answer must be well formed,
/// and every incident the store holds afterwards must still read. True when
/// the server answered.
pub fn run(world: &World, data: &[u8]) -> bool {
    let req = world.request(data);
    // Through the wire encoding, as `POST /v1/sync` receives it.
    let req: SyncRequest = protocol::decode(&protocol::encode(&req)).expect("an encoded request decodes");
    let storage = world.fresh_store();
    let now = server_time();
    let caller = Caller {
        device: &world.device,
        scope: &world.scope,
        now: &now,
    };
    let answer = sync(&storage, &caller, &req);
    if let Ok(resp) = &answer {
        check_response(&storage, &req, resp, &now);
    }
    check_store_reads(&storage);
    answer.is_ok()
}

fn check_response(storage: &SqliteStorage, req: &SyncRequest, resp: &SyncResponse, now: &ServerTime) {
    let back: SyncResponse = protocol::decode(&protocol::encode(resp)).expect("an encoded response decodes");
    assert_eq!(&back, resp, "the response survives the wire");
    let epoch = storage.epoch().unwrap();
    match &resp.epoch {
        Some(e) => assert_eq!(e, &epoch, "the response names the store's epoch"),
        None => assert!(
            !resp.reset && (req.epoch.as_ref() == Some(&epoch) || req.cursor.is_some_and(|c| c.seq > 0)),
            "the response leaves the epoch out only when the request named it or has a cursor"
        ),
    }
    assert_eq!(resp.server_time_ms, now.ms);
    if resp.reset {
        assert!(resp.acks.is_empty(), "a reset answers no push");
    } else {
        check_push_answer(storage, req, resp);
    }
    for fc in &resp.changes {
        Change::from_bytes(fc.change.to_vec()).expect("the feed carries only changes that decode");
    }
    if let Some(c) = resp.cursor {
        let chain = storage.change_at(c.seq).unwrap().map(|h| protocol::Tag8::of(&h));
        assert_eq!(chain, Some(c.hash), "the cursor is on the feed's chain");
    }
}

/// The answer lists the pushed incidents not stored, in push order; every
/// other one has each of its changes on the server.
fn check_push_answer(storage: &SqliteStorage, req: &SyncRequest, resp: &SyncResponse) {
    let pushed: Vec<&str> = req.push.iter().map(|d| d.id.as_str()).collect();
    let listed: Vec<&str> = resp.acks.iter().map(|a| a.id.as_str()).collect();
    let in_order: Vec<&str> = pushed.iter().copied().filter(|id| listed.contains(id)).collect();
    assert_eq!(
        listed, in_order,
        "the answer lists only pushed incidents, in push order"
    );
    assert!(
        resp.acks.iter().all(|a| !a.stored()),
        "the answer lists only incidents not stored"
    );
    for doc in req.push.iter().filter(|d| !listed.contains(&d.id.as_str())) {
        for raw in &doc.changes {
            let hash = Change::from_bytes(raw.to_vec())
                .expect("a stored change decodes")
                .hash();
            assert!(
                storage.has_change(&hash.0).unwrap(),
                "an incident left out of the answer has every change on the server"
            );
        }
    }
}

fn check_store_reads(storage: &SqliteStorage) {
    let incidents = storage
        .incidents(&IncidentFilter::default())
        .expect("the incidents are listed");
    for stored in incidents {
        let read = IncidentDoc::read_saved(&stored.doc)
            .unwrap_or_else(|e| panic!("the stored incident {} no longer reads: {e}", stored.id));
        assert_eq!(
            read.id.to_string(),
            stored.id,
            "a stored incident is the one it is filed as"
        );
        assert_eq!(read.grid, stored.grid, "the projected grid matches the document");
    }
}

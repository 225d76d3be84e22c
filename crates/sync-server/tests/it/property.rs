//! Convergence as a property, in process and without HTTP: device stores
//! and the server's storage, driven through the same protocol steps `field
//! sync` and `POST /v1/sync` take, with random reports, status moves, notes
//! and syncs in between (some with an edit while the request is out, some
//! with the answer lost). Once everyone has synced twice, every replica and
//! the server hold the same incidents at the same heads, with every note and
//! status change anyone wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use sync_core::incident::rfc3339;
use sync_core::protocol::{self, MAX_PULL, SyncRequest, SyncResponse};
use sync_core::rules::{Author, check_move};
use sync_core::taxonomy::{DEFAULT_CATEGORIES_JSON, DEFAULT_GRIDS_JSON};
use sync_core::{GridMap, Incident, IncidentDoc, IncidentId, ListFilter, Location, NewIncident, Store};
use sync_server::ServerTime;
use sync_server::accounts::scope_of;
use sync_server::storage::{Accounts, ChangeLog, EnrolOutcome, Enrolment, NewCode, Role, Scope, SqliteStorage, Worker};
use sync_server::sync::{Caller, sync};
use tempfile::TempDir;

use crate::HX02;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/it/property.txt"
        )))),
        ..ProptestConfig::default()
    }
}

/// What happens on a device between building a sync request and applying
/// the answer.
#[derive(Debug, Clone, Copy)]
enum During {
    Nothing,
    /// The worker adds a note while the request is out.
    LocalEdit(Index),
    /// The server handles the request but the answer never arrives.
    LostAnswer,
}

#[derive(Debug, Clone)]
enum Op {
    Report {
        replica: Index,
    },
    Status {
        replica: Index,
        incident: Index,
        to: Index,
    },
    Note {
        replica: Index,
        incident: Index,
    },
    Sync {
        replica: Index,
        pull_limit: u32,
        max_docs: usize,
        during: During,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let during = prop_oneof![
        4 => Just(During::Nothing),
        1 => any::<Index>().prop_map(During::LocalEdit),
        1 => Just(During::LostAnswer),
    ];
    prop_oneof![
        3 => any::<Index>().prop_map(|replica| Op::Report { replica }),
        3 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(replica, incident, to)| Op::Status { replica, incident, to }),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(replica, incident)| Op::Note { replica, incident }),
        4 => (any::<Index>(), prop_oneof![Just(1_u32), 1_u32..5, Just(MAX_PULL)], 1_usize..4, during)
            .prop_map(|(replica, pull_limit, max_docs, during)| Op::Sync { replica, pull_limit, max_docs, during }),
    ]
}

struct Replica {
    store: Store,
    device: sync_server::storage::Device,
    worker: String,
    _dir: TempDir,
}

/// A status change or note as written: incident, then what identifies it.
type Written = BTreeSet<(String, String)>;

struct World {
    server: SqliteStorage,
    server_db: PathBuf,
    scope: Scope,
    replicas: Vec<Replica>,
    clock_ms: i64,
    made: u64,
    notes: Written,
    moves: Written,
    _dir: TempDir,
}

/// Fast throwaway folders: these tests fsync on every transaction.
fn scratch() -> TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap())
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn move_key(by: &str, to: &str, at: &DateTime<FixedOffset>) -> String {
    format!("{by} → {to} at {}", rfc3339(at))
}

impl World {
    fn new(replicas: usize) -> World {
        let dir = scratch();
        let server_db = dir.path().join("server.sqlite3");
        let server = SqliteStorage::open(&server_db, "epoch-1").unwrap();
        let mut world = World {
            server,
            server_db,
            scope: Scope::All,
            replicas: Vec::new(),
            clock_ms: 1_763_600_000_000,
            made: 0,
            notes: Written::new(),
            moves: Written::new(),
            _dir: dir,
        };
        let grids = GridMap::builtin();
        for i in 0..replicas {
            let (now_ms, now) = world.tick();
            // The first replica is the community center, which moves
            // statuses a worker may not; the others are grid workers.
            let (worker, role) = match i {
                0 => ("center".to_owned(), Role::Center),
                _ => (format!("w-{i}"), Role::Worker),
            };
            world
                .server
                .add_worker(
                    &Worker {
                        id: worker.clone(),
                        name: worker.clone(),
                        role,
                        community: (role == Role::Center).then(|| "HLT-CX-HX".to_owned()),
                        grids: if role == Role::Center {
                            vec![]
                        } else {
                            vec![HX02.into()]
                        },
                        department: None,
                        retired_at: None,
                    },
                    &rfc3339(&now),
                )
                .unwrap();
            let (code, token) = (format!("code-{i}"), format!("token-{i}"));
            world
                .server
                .add_enrol_code(
                    &NewCode {
                        code_hash: &code,
                        worker: &worker,
                        device: None,
                        expires_ms: i64::MAX,
                    },
                    &rfc3339(&now),
                )
                .unwrap();
            let uuid = uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + i as u128);
            let dir = scratch();
            let mut store = Store::open(dir.path()).unwrap();
            store
                .init(
                    &worker,
                    None,
                    &[HX02.into()],
                    uuid,
                    DEFAULT_CATEGORIES_JSON,
                    DEFAULT_GRIDS_JSON,
                )
                .unwrap();
            // Every replica signs its changes, as `field` does.
            let key = store.ensure_key([i as u8 + 1; 32]).unwrap();
            let outcome = world
                .server
                .enroll(
                    &Enrolment {
                        code_hash: &code,
                        worker: &worker,
                        device: &uuid.to_string(),
                        actor: uuid.as_bytes(),
                        token_hash: &token,
                        public_key: Some(&key.public()),
                        label: None,
                    },
                    now_ms,
                    &rfc3339(&now),
                )
                .unwrap();
            assert!(
                matches!(outcome, EnrolOutcome::Enrolled(_)),
                "the code enrols the device: {outcome:?}"
            );
            store
                .set_server("mem://server", &world.server.epoch().unwrap())
                .unwrap();
            let device = world
                .server
                .device_by_token(&token)
                .unwrap()
                .expect("the token finds the device");
            if role == Role::Worker {
                world.scope = scope_of(&device, &grids);
            }
            world.replicas.push(Replica {
                store,
                device,
                worker,
                _dir: dir,
            });
        }
        world
    }

    /// Every step happens a second later than the one before.
    fn tick(&mut self) -> (i64, DateTime<FixedOffset>) {
        self.clock_ms += 1000;
        let offset = FixedOffset::east_opt(8 * 3600).unwrap();
        let t = DateTime::from_timestamp_millis(self.clock_ms)
            .unwrap()
            .with_timezone(&offset);
        (self.clock_ms, t)
    }

    fn ids(&self, r: usize) -> Vec<IncidentId> {
        self.replicas[r]
            .store
            .list(&ListFilter::default())
            .unwrap()
            .into_iter()
            .map(|row| row.id)
            .collect()
    }

    fn report(&mut self, r: usize) {
        if self.replicas[r].device.worker.role == Role::Center {
            return; // a center does not report incidents
        }
        let (now_ms, now) = self.tick();
        self.made += 1;
        let rep = &mut self.replicas[r];
        let profile = rep.store.profile().unwrap();
        let mut random = [0_u8; 10];
        random[..8].copy_from_slice(&self.made.to_be_bytes());
        let new = NewIncident {
            id: IncidentId::new(now_ms as u64, random),
            category: "manhole-cover".into(),
            description: format!("incident {}", self.made),
            location: Location::default(),
            grid: HX02.into(),
            reporter: rep.worker.clone(),
            device: profile.device.to_string(),
            captured_at: now,
            photos: vec![],
            case: None,
        };
        let mut doc = IncidentDoc::create(&new, profile.actor()).unwrap();
        rep.store.save(&mut doc, &[], now).unwrap();
        self.moves
            .insert((new.id.to_string(), move_key(&rep.worker, "reported", &now)));
    }

    fn set_status(&mut self, r: usize, incident: Index, to: Index) {
        let ids = self.ids(r);
        if ids.is_empty() {
            return;
        }
        let id = *incident.get(&ids);
        let (_, now) = self.tick();
        let rep = &mut self.replicas[r];
        let mut doc = rep.store.load(&id, rep.store.profile().unwrap().actor()).unwrap();
        let incident = doc.read().unwrap();
        let device = rep.device.id.clone();
        let author = Author {
            account: &rep.worker,
            device: &device,
            role: rep.device.worker.role,
            number: None,
            department: None,
        };
        // Only the moves this replica's role may make, as `field` offers.
        let next: Vec<_> = incident
            .status
            .next()
            .iter()
            .copied()
            .filter(|to| check_move(&incident, *to, &author).is_ok())
            .collect();
        if next.is_empty() {
            return;
        }
        let to = *to.get(&next);
        doc.set_status(to, &rep.worker, now).unwrap();
        rep.store.save(&mut doc, &[], now).unwrap();
        self.moves
            .insert((id.to_string(), move_key(&rep.worker, to.as_str(), &now)));
    }

    fn add_note(&mut self, r: usize, incident: Index) {
        let ids = self.ids(r);
        if !ids.is_empty() {
            self.add_note_to(r, *incident.get(&ids));
        }
    }

    fn add_note_to(&mut self, r: usize, id: IncidentId) {
        let (_, now) = self.tick();
        self.made += 1;
        let text = format!("note {} by {}", self.made, self.replicas[r].worker);
        let rep = &mut self.replicas[r];
        let mut doc = rep.store.load(&id, rep.store.profile().unwrap().actor()).unwrap();
        doc.add_note(&rep.worker, &text, now).unwrap();
        rep.store.save(&mut doc, &[], now).unwrap();
        self.notes.insert((id.to_string(), text));
    }

    /// What `field sync` does for documents: request, answer, apply, until
    /// neither side has more.
    fn sync(&mut self, r: usize, pull_limit: u32, max_docs: usize, during: During) {
        for round in 0.. {
            assert!(round < 100, "replica {r}'s sync does not finish");
            let (now_ms, now) = self.tick();
            let out = self.replicas[r]
                .store
                .next_sync_request(now_ms, pull_limit, max_docs, 4 << 20)
                .unwrap();
            if let (0, During::LocalEdit(incident)) = (round, during) {
                self.add_note(r, incident);
            }
            // Through the wire encoding, both ways.
            let req: SyncRequest = protocol::decode(&protocol::encode(&out.request)).unwrap();
            let rep = &self.replicas[r];
            let at = ServerTime {
                ms: now_ms,
                text: rfc3339(&now),
            };
            let caller = Caller {
                device: &rep.device,
                scope: &self.scope,
                now: &at,
            };
            let resp = sync(&self.server, &caller, &req)
                .unwrap_or_else(|e| panic!("the server refused replica {r}'s sync: {e}"));
            let resp: SyncResponse = protocol::decode(&protocol::encode(&resp)).unwrap();
            if round == 0 && matches!(during, During::LostAnswer) {
                continue;
            }
            let applied = self.replicas[r].store.apply_sync_response(&out, &resp, now).unwrap();
            if !applied.more {
                return;
            }
        }
    }

    fn server_incidents(&self) -> BTreeMap<String, (Vec<u8>, Incident)> {
        let db = rusqlite::Connection::open(&self.server_db).unwrap();
        let mut stmt = db.prepare("SELECT id, heads, doc FROM incidents ORDER BY id").unwrap();
        stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?))
        })
        .unwrap()
        .map(|row| {
            let (id, heads, doc) = row.unwrap();
            let incident = IncidentDoc::load(&doc, automerge::ActorId::from([0_u8; 16]))
                .map_err(|e| e.to_string())
                .and_then(|d| d.read().map_err(|e| e.to_string()))
                .unwrap_or_else(|e| panic!("the server's copy of {id} does not read: {e}"));
            (id, (heads, incident))
        })
        .collect()
    }

    fn replica_incidents(&self, r: usize) -> BTreeMap<String, (Vec<u8>, Incident)> {
        let store = &self.replicas[r].store;
        let heads: BTreeMap<String, Vec<u8>> = store
            .connection()
            .prepare("SELECT id, heads FROM incidents")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let actor = store.profile().unwrap().actor();
        store
            .incidents(&ListFilter::default(), &actor)
            .unwrap()
            .into_iter()
            .map(|i| {
                let id = i.id.to_string();
                (id.clone(), (heads[&id].clone(), i))
            })
            .collect()
    }

    fn check_converged(&self) {
        let server = self.server_incidents();
        let made: BTreeSet<&String> = self.moves.iter().map(|(id, _)| id).collect();
        assert_eq!(server.keys().collect::<BTreeSet<_>>(), made, "incidents on the server");
        let notes = |all: &BTreeMap<String, (Vec<u8>, Incident)>| -> Written {
            all.iter()
                .flat_map(|(id, (_, i))| i.notes.iter().map(move |n| (id.clone(), n.text.clone())))
                .collect()
        };
        let moves = |all: &BTreeMap<String, (Vec<u8>, Incident)>| -> Written {
            all.iter()
                .flat_map(|(id, (_, i))| {
                    i.status_history
                        .iter()
                        .map(move |h| (id.clone(), move_key(&h.by, h.to.as_str(), &h.at)))
                })
                .collect()
        };
        assert_eq!(notes(&server), self.notes, "notes on the server");
        assert_eq!(moves(&server), self.moves, "status changes on the server");
        for (r, rep) in self.replicas.iter().enumerate() {
            let mine = self.replica_incidents(r);
            assert_eq!(
                mine.keys().collect::<Vec<_>>(),
                server.keys().collect::<Vec<_>>(),
                "replica {r}'s incidents"
            );
            for (id, (heads, incident)) in &mine {
                assert_eq!(heads, &server[id].0, "replica {r}'s heads of {id}");
                assert_eq!(incident, &server[id].1, "replica {r}'s copy of {id}");
            }
            assert_eq!(notes(&mine), self.notes, "notes on replica {r}");
            assert_eq!(moves(&mine), self.moves, "status changes on replica {r}");
            let waiting = sync_core::sync::outbox_ids(&rep.store).unwrap();
            assert!(waiting.is_empty(), "replica {r} still has {waiting:?} to push");
        }
        // The feed lists exactly the changes of the stored documents.
        let db = rusqlite::Connection::open(&self.server_db).unwrap();
        let (rows, distinct): (i64, i64) = db
            .query_row("SELECT count(*), count(DISTINCT hash) FROM changes", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(rows, distinct, "a change twice in the feed");
        let mut stmt = db.prepare("SELECT id, doc FROM incidents").unwrap();
        let in_docs: i64 = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(1))
            .unwrap()
            .map(|d| automerge::Automerge::load(&d.unwrap()).unwrap().get_changes(&[]).len() as i64)
            .sum();
        assert_eq!(rows, in_docs, "changes in the feed and in the stored documents");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn replicas_and_the_server_converge_whatever_the_order_of_edits_and_syncs(
        replicas in 3_usize..=4,
        ops in proptest::collection::vec(op(), 8..40),
    ) {
        let mut world = World::new(replicas);
        for op in ops {
            match op {
                Op::Report { replica } => world.report(replica.index(replicas)),
                Op::Status { replica, incident, to } => world.set_status(replica.index(replicas), incident, to),
                Op::Note { replica, incident } => world.add_note(replica.index(replicas), incident),
                Op::Sync { replica, pull_limit, max_docs, during } => {
                    world.sync(replica.index(replicas), pull_limit, max_docs, during)
                }
            }
        }
        for _ in 0..2 {
            for r in 0..replicas {
                world.sync(r, MAX_PULL, 200, During::Nothing);
            }
        }
        world.check_converged();
    }
}

/// `docs/protocol.md`: the device remembers the heads the server
/// acknowledged and pushes only the changes after them. An edit to an
/// incident the server has whole should cost one change, not the incident's
/// whole history again.
#[test]
fn an_edit_after_an_acknowledged_sync_pushes_only_the_new_change() {
    // Replica 0 is the center; replica 1 the worker who reports.
    let mut world = World::new(2);
    world.report(1);
    let id = world.ids(1)[0];
    world.sync(1, MAX_PULL, 200, During::Nothing);
    for edit in 1..=3 {
        world.add_note_to(1, id);
        let out = world.replicas[1]
            .store
            .next_sync_request(world.clock_ms, MAX_PULL, 200, 4 << 20)
            .unwrap();
        let sent: Vec<usize> = out.request.push.iter().map(|d| d.changes.len()).collect();
        assert_eq!(sent, [1], "changes pushed for edit {edit} after an acknowledged sync");
        world.sync(1, MAX_PULL, 200, During::Nothing);
    }
    world.sync(0, MAX_PULL, 200, During::Nothing);
    world.check_converged();
}

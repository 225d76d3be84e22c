//! The server guards the record against an enrolled device that lies: a
//! forged change, a change grafted from another incident, a colleague's
//! incident rewritten or erased, an incident made in someone else's name or
//! by a center. Each attack goes over real HTTP, is refused in its
//! incident's ack with the rule it broke, and leaves every reader (exports,
//! daily report, dashboard, Open311) and the victim's next edit working.

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change, ExpandedChange, ROOT, ReadDoc};
use serde_bytes::ByteBuf;
use sync_core::protocol::{self, Manifest, PROTOCOL_VERSION, PushDoc, Refusal, SyncRequest, SyncResponse};
use sync_core::{IncidentDoc, IncidentId, Location, NewIncident};

use crate::*;

/// `POST /v1/sync` with these incidents pushed, as the device `dev`, each
/// change signed with `dev`'s key (a device signs whatever it pushes).
fn push(server: &Server, dev: &Device, mut docs: Vec<PushDoc>) -> SyncResponse {
    let key = device_key(dev);
    docs.iter_mut().for_each(|d| sign_push(&key, d));
    push_as_is(server, dev, docs)
}

/// `POST /v1/sync` with these incidents pushed exactly as given.
fn push_as_is(server: &Server, dev: &Device, docs: Vec<PushDoc>) -> SyncResponse {
    let req = SyncRequest {
        version: PROTOCOL_VERSION,
        device_time_ms: Some(1_763_600_000_000),
        epoch: None,
        cursor: None,
        pull_limit: 10,
        push: docs,
        want: vec![],
        manifest: Manifest {
            pending_docs: 0,
            pending_photos: 0,
            refused_docs: 0,
            own: Default::default(),
            clock_offset_ms: None,
        },
        account: None,
    };
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(token_of(dev))
        .body(protocol::encode(&req))
        .send()
        .expect("the server answers");
    assert_eq!(resp.status().as_u16(), 200, "a push is answered per incident");
    protocol::decode(&resp.bytes().unwrap()).expect("a sync response")
}

/// The refusal of incident `id` in a push answer.
#[track_caller]
fn refusal(resp: &SyncResponse, id: &str) -> Refusal {
    let ack = resp.acks.iter().find(|a| a.id == id).expect("an ack for the incident");
    ack.refused
        .clone()
        .unwrap_or_else(|| panic!("incident {id} was not refused: {ack:?}"))
}

#[track_caller]
fn assert_rule(resp: &SyncResponse, id: &str, rule: &str, what: &str) {
    let r = refusal(resp, id);
    assert_eq!(
        (r.code.as_str(), r.rule.as_deref()),
        ("rule_broken", Some(rule)),
        "{what}: {r:?}"
    );
}

/// A new incident in HX-02 made on `dev` (its actor), as `reporter` says.
fn new_in_hx02(dev: &Device, id: IncidentId, reporter: &str, category: &str) -> (NewIncident, IncidentDoc) {
    let uuid: uuid::Uuid = device_id(dev).parse().unwrap();
    let new = NewIncident {
        id,
        category: category.into(),
        description: String::new(),
        location: Location::default(),
        grid: HX02.into(),
        reporter: reporter.into(),
        device: uuid.to_string(),
        captured_at: chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap(),
        photos: vec![],
        case: None,
    };
    let doc = IncidentDoc::create(&new, ActorId::from(uuid.as_bytes())).unwrap();
    (new, doc)
}

fn doc_push(doc: &mut AutoCommit, id: &str, since: &[automerge::ChangeHash]) -> PushDoc {
    PushDoc {
        id: id.to_owned(),
        changes: doc
            .get_changes(since)
            .into_iter()
            .map(|mut c| ByteBuf::from(c.bytes().into_owned()))
            .collect(),
        sigs: vec![],
    }
}

/// The server's copy of an incident, to be edited as `dev`.
fn server_copy(server: &Server, dev: &Device, id: &str) -> AutoCommit {
    let bytes: Vec<u8> = server
        .db()
        .query_row("SELECT doc FROM incidents WHERE id = ?1", [id], |r| r.get(0))
        .unwrap();
    let uuid: uuid::Uuid = device_id(dev).parse().unwrap();
    AutoCommit::load(&bytes)
        .unwrap()
        .with_actor(ActorId::from(uuid.as_bytes()))
}

fn stored_changes(server: &Server) -> i64 {
    server
        .db()
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap()
}

/// Every reader of the community answers, and shows the victim's incident
/// as its reporter wrote it.
#[track_caller]
fn readers_still_work(server: &Server, victim: &str, description: &str) {
    let op = server.token("op");
    let json = crate::exports::get(server, "/v1/exports/incidents.json?community=HLT-CX-HX", Some(&op));
    assert_eq!(json.status, 200, "{}", json.text());
    let all = json.json();
    let inc = all
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == victim)
        .expect("the victim's incident is exported");
    assert_eq!(inc["description"], description);
    assert_eq!(inc["reporter"], "w-li");
    for path in [
        "/v1/exports/incidents.csv?community=HLT-CX-HX".to_owned(),
        format!("/v1/reports/daily?community=HLT-CX-HX&date={}", today()),
        "/open311/v2/requests.json".to_owned(),
    ] {
        let got = crate::exports::get(server, &path, Some(&op));
        assert_eq!(got.status, 200, "{path}: {}", got.text());
    }
    let center = server.token("hx-center");
    let cookie = crate::dashboard::session_cookie(server, &center);
    let page = crate::dashboard::get(server, &format!("/center/incidents/{victim}"), Some(&cookie));
    assert_eq!(page.status().as_u16(), 200);
}

pub fn today() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d")
        .to_string()
}

struct Cell {
    server: Server,
    li: Device,
    wang: Device,
    victim: String,
}

/// Li and Wang share HX-02; Li's incident, with a note, is on the server
/// and on Wang's device.
fn cell() -> Cell {
    let mut server = Server::new();
    server.add_worker("w-li", &[HX02]);
    server.add_worker("w-wang", &[HX02]);
    server.add_center("hx-center", "HLT-CX-HX");
    server.admin(&["worker", "add", "--id", "op", "--name", "运维", "--role", "operator"]);
    server.start();
    let li = Device::new("w-li", &[HX02]);
    let wang = Device::new("w-wang", &[HX02]);
    li.enroll(&server);
    wang.enroll(&server);
    let victim = li.report(&["--category", "manhole-cover", "--desc", "井盖缺了一角"]);
    li.ok(&["update", &victim, "--note", "已拍照"]);
    assert_eq!(li.sync(&[])["acknowledged"], 1);
    assert_eq!(wang.sync(&[])["new_incidents"], 1);
    Cell {
        server,
        li,
        wang,
        victim,
    }
}

#[test]
fn a_forged_or_grafted_change_is_refused_and_poisons_nothing() {
    let c = cell();
    let own = c.wang.report(&["--category", "lawn"]);
    assert_eq!(c.wang.sync(&[])["acknowledged"], 1);
    let before = stored_changes(&c.server);

    // Wang's own change, numbered one further (Automerge recomputes the
    // checksum), pushed alone.
    let mut doc = server_copy(&c.server, &c.wang, &own);
    let real = doc.get_changes(&[]).remove(0);
    let forged = Change::from(ExpandedChange {
        seq: real.seq() + 1,
        hash: None,
        ..real.decode()
    });
    let resp = push(
        &c.server,
        &c.wang,
        vec![PushDoc {
            id: own.clone(),
            changes: vec![ByteBuf::from(forged.raw_bytes().to_vec())],
            sigs: vec![],
        }],
    );
    assert_rule(&resp, &own, "chain", "a renumbered change");

    // A root change of an incident the server has not seen, grafted under
    // Li's incident; and the same incident pushed under an unused id.
    let (_, mut x) = new_in_hx02(
        &c.wang,
        IncidentId::new(1_763_600_000_123, [5; 10]),
        "w-wang",
        "clutter",
    );
    let mut graft = |id: &str| PushDoc {
        id: id.to_owned(),
        sigs: vec![],
        changes: x
            .all_changes()
            .into_iter()
            .map(|mut ch| ByteBuf::from(ch.bytes().into_owned()))
            .collect(),
    };
    assert_rule(
        &push(&c.server, &c.wang, vec![graft(&c.victim)]),
        &c.victim,
        "chain",
        "a grafted root",
    );
    let unused = IncidentId::new(1_763_600_000_124, [6; 10]).to_string();
    assert_rule(
        &push(&c.server, &c.wang, vec![graft(&unused)]),
        &unused,
        "wrong_incident",
        "a misfiled root",
    );
    assert_eq!(stored_changes(&c.server), before, "nothing of the attacks is stored");

    readers_still_work(&c.server, &c.victim, "井盖缺了一角");
    // The owner's next real edit goes through, and reaches Wang.
    c.wang.ok(&["update", &own, "--note", "草坪已补"]);
    assert_eq!(c.wang.sync(&[])["acknowledged"], 1);
    c.li.ok(&["update", &c.victim, "--note", "市政已到"]);
    assert_eq!(c.li.sync(&[])["acknowledged"], 1);
    assert_eq!(c.wang.sync(&[])["pulled_changes"], 1);
    assert_eq!(c.wang.show(&c.victim)["notes"].as_array().unwrap().len(), 2);
}

#[test]
fn a_colleague_cannot_rewrite_erase_or_speak_for_anyone() {
    let c = cell();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap();
    type Attack = Box<dyn Fn(&mut AutoCommit)>;
    let list = |d: &AutoCommit, key: &str| d.get(ROOT, key).unwrap().unwrap().1;
    #[rustfmt::skip]
    let attacks: Vec<(&str, &str, Attack)> = vec![
        ("the reporter rewritten", "fixed_field", Box::new(|d| d.put(ROOT, "reporter", "w-wang").unwrap())),
        ("the device rewritten", "fixed_field", Box::new(|d| d.put(ROOT, "device", "x").unwrap())),
        ("the description rewritten", "correction", Box::new(|d| d.put(ROOT, "description", "没事").unwrap())),
        ("a category that does not exist", "correction", Box::new(|d| d.put(ROOT, "category", "nothing").unwrap())),
        ("reported → closed", "workflow", Box::new(|d| d.put(ROOT, "status", "closed").unwrap())),
        ("every note deleted", "append_only", Box::new(move |d| { let n = list(d, "notes"); d.delete(&n, 0).unwrap(); })),
        ("the notes list replaced", "fixed_field", Box::new(|d| { d.put_object(ROOT, "notes", automerge::ObjType::List).unwrap(); })),
        ("the photos map deleted", "fixed_field", Box::new(|d| d.delete(ROOT, "photos").unwrap())),
    ];
    let before = stored_changes(&c.server);
    for (what, rule, attack) in attacks {
        let mut doc = server_copy(&c.server, &c.wang, &c.victim);
        let heads = doc.get_heads();
        attack(&mut doc);
        doc.commit();
        let resp = push(&c.server, &c.wang, vec![doc_push(&mut doc, &c.victim, &heads)]);
        assert_rule(&resp, &c.victim, rule, what);
    }
    // A note signed in Li's name, and a history entry as the center.
    let mut doc = IncidentDoc::from_automerge(server_copy(&c.server, &c.wang, &c.victim));
    let heads = doc.heads();
    doc.add_note("w-li", "我是李", at).unwrap();
    let resp = push(&c.server, &c.wang, vec![doc_push(doc.automerge(), &c.victim, &heads)]);
    assert_rule(&resp, &c.victim, "author", "a note in Li's name");
    let mut doc = IncidentDoc::from_automerge(server_copy(&c.server, &c.wang, &c.victim));
    let heads = doc.heads();
    doc.set_status(sync_core::Status::Dispatched, "hx-center", at).unwrap();
    let resp = push(&c.server, &c.wang, vec![doc_push(doc.automerge(), &c.victim, &heads)]);
    assert_rule(&resp, &c.victim, "author", "a dispatch signed as the center");
    let mut doc = IncidentDoc::from_automerge(server_copy(&c.server, &c.wang, &c.victim));
    let heads = doc.heads();
    doc.set_status(sync_core::Status::Dispatched, "w-wang", at).unwrap();
    let resp = push(&c.server, &c.wang, vec![doc_push(doc.automerge(), &c.victim, &heads)]);
    assert_rule(&resp, &c.victim, "role", "a worker's dispatch");
    assert_eq!(stored_changes(&c.server), before, "nothing of the attacks is stored");

    readers_still_work(&c.server, &c.victim, "井盖缺了一角");
    let shown = c.li.show(&c.victim);
    c.li.ok(&["update", &c.victim, "--status", "resolved", "--note", "已自行处置"]);
    assert_eq!(c.li.sync(&[])["acknowledged"], 1);
    assert_eq!(shown["notes"].as_array().unwrap().len(), 1, "Li's copy is untouched");
    // Wang, who did not fix it, verifies Li's fix on site: allowed.
    c.wang.sync(&[]);
    c.wang.ok(&["update", &c.victim, "--status", "verified"]);
    assert_eq!(c.wang.sync(&[])["acknowledged"], 1);
    let shown = c.li.sync(&[]);
    assert_eq!(shown["pulled_changes"], 1, "{shown}");
    assert_eq!(c.li.show(&c.victim)["status"], "verified");
}

/// A category that is not in the taxonomy is refused (rule `category`),
/// whether a new incident names it or its reporter corrects to it with the
/// note the rules ask for; the reporter's correction to a real one lands.
#[test]
fn a_category_outside_the_taxonomy_is_refused_from_its_own_reporter() {
    let c = cell();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap();
    let id = IncidentId::new(1_763_600_002_000, [9; 10]);
    let (new, mut unknown) = new_in_hx02(&c.li, id, "w-li", "not-a-category");
    let made = doc_push(unknown.automerge(), &new.id.to_string(), &[]);
    let before = stored_changes(&c.server);
    assert_rule(
        &push(&c.server, &c.li, vec![made]),
        &new.id.to_string(),
        "category",
        "a new incident",
    );

    let correct_to = |category: &str| {
        let mut doc = IncidentDoc::from_automerge(server_copy(&c.server, &c.li, &c.victim));
        let heads = doc.heads();
        let fix = sync_core::incident::Correction {
            category: Some(category.into()),
            ..Default::default()
        };
        assert!(doc.correct(&fix, "w-li", at).unwrap());
        push(&c.server, &c.li, vec![doc_push(doc.automerge(), &c.victim, &heads)])
    };
    assert_rule(&correct_to("not-a-category"), &c.victim, "category", "a correction");
    assert_eq!(stored_changes(&c.server), before, "nothing of either is stored");
    readers_still_work(&c.server, &c.victim, "井盖缺了一角");

    let resp = correct_to("clutter");
    assert!(
        resp.acks.is_empty(),
        "a correction to a real category lands: {:?}",
        resp.acks
    );
    let shown = c.wang.sync(&[]);
    assert_eq!(shown["pulled_changes"], 1, "{shown}");
    assert_eq!(c.wang.show(&c.victim)["category"], "clutter");
}

#[test]
fn incidents_in_someone_elses_name_or_by_a_center_are_refused_and_the_rest_of_the_push_lands() {
    let c = cell();
    let center = Device::new("hx-center", &[HX01, HX02]);
    center.enroll(&c.server);
    let made = |dev: &Device, reporter: &str, n: u8| {
        let id = IncidentId::new(1_763_600_001_000 + u64::from(n), [n; 10]);
        let (new, mut doc) = new_in_hx02(dev, id, reporter, "clutter");
        doc_push(doc.automerge(), &new.id.to_string(), &[])
    };
    let in_lis_name = made(&c.wang, "w-li", 1);
    let honest = made(&c.wang, "w-wang", 2);
    let resp = push(&c.server, &c.wang, vec![in_lis_name.clone(), honest.clone()]);
    assert_rule(&resp, &in_lis_name.id, "author", "an incident in Li's name");
    assert!(
        resp.acks.iter().all(|a| a.id != honest.id),
        "the honest incident lands, so the answer leaves it out: {:?}",
        resp.acks
    );
    let by_center = made(&center, "hx-center", 3);
    assert_rule(
        &push(&c.server, &center, vec![by_center.clone()]),
        &by_center.id,
        "role",
        "a center's report",
    );
    let on_server: Vec<String> = server_heads(&c.server).into_iter().map(|(id, _)| id).collect();
    assert!(on_server.contains(&honest.id));
    assert!(!on_server.contains(&in_lis_name.id) && !on_server.contains(&by_center.id));
    readers_still_work(&c.server, &c.victim, "井盖缺了一角");
}

#[test]
fn a_refused_incident_is_held_with_its_reason_and_shown_in_the_daily_report() {
    let c = cell();
    // Offline, before the device learned its role: Wang dispatches, which
    // the server refuses; a new report in the same sync still lands.
    let db = rusqlite::Connection::open(c.wang.dir.path().join(sync_core::store::DB_FILE)).unwrap();
    let json: String = db
        .query_row("SELECT value FROM meta WHERE key = 'profile'", [], |r| r.get(0))
        .unwrap();
    let mut profile: serde_json::Value = serde_json::from_str(&json).unwrap();
    profile.as_object_mut().unwrap().remove("role");
    db.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'profile'",
        [profile.to_string()],
    )
    .unwrap();
    drop(db);
    c.wang.ok(&["update", &c.victim, "--status", "dispatched"]);
    let fine = c.wang.report(&["--category", "lawn"]);
    let synced = c.wang.sync(&[]);
    assert_eq!(synced["refused"], serde_json::json!([c.victim]), "{synced}");
    assert_eq!(synced["acknowledged"], 1, "{synced}");
    assert!(server_heads(&c.server).iter().any(|(id, _)| *id == fine));
    let status = c.wang.status();
    assert_eq!(status["refused"][0]["code"], "rule_broken", "{status}");
    let reason = status["refused"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("rule `role`") && reason.contains("`reported` to `dispatched`"),
        "{reason}"
    );

    let op = c.server.token("op");
    let path = format!("/v1/reports/daily?community=HLT-CX-HX&date={}", today());
    let report = crate::exports::get(&c.server, &path, Some(&op)).json();
    let wang = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "w-wang")
        .unwrap()
        .clone();
    assert_eq!(
        (wang["refused_docs"].as_u64(), wang["pending_docs"].as_u64()),
        (Some(1), Some(0)),
        "{wang}"
    );
    let table = c
        .server
        .admin(&["reconcile", "--date", &today(), "--community", "HLT-CX-HX"]);
    // The table wraps its cells to 120 columns: "refused: 1" may break.
    assert!(table.contains("refused:"), "{table}");
}

#[test]
fn an_incident_moved_into_a_devices_cells_arrives_whole() {
    let c = cell();
    c.server.add_worker("w-zhao", &[HX01]);
    let zhao = Device::new("w-zhao", &[HX01]);
    zhao.enroll(&c.server);
    // Zhao's cursor passes Li's incident while it is in HX-02.
    zhao.report(&["--category", "lawn", "--grid", HX01]);
    assert_eq!(zhao.sync(&[])["acknowledged"], 1);
    assert_eq!(zhao.list().len(), 1);

    // The center moves Li's incident to HX-01 (a correction with its note).
    let center = Device::new("hx-center", &[HX01, HX02]);
    center.enroll(&c.server);
    center.sync(&[]);
    {
        let mut store = sync_core::Store::open(center.dir.path()).unwrap();
        let id: IncidentId = c.victim.parse().unwrap();
        let mut doc = store.load(&id, store.profile().unwrap().actor()).unwrap();
        let fix = sync_core::incident::Correction {
            grid: Some(HX01.into()),
            ..Default::default()
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T09:00:00+08:00").unwrap();
        assert!(doc.correct(&fix, "hx-center", now).unwrap());
        store.save(&mut doc, &[], now).unwrap();
    }
    assert_eq!(center.sync(&[])["acknowledged"], 1);

    // Zhao's next sync gets the move, lacks the incident's start, parks the
    // change and asks for the whole history, in the same sync.
    let synced = zhao.sync(&[]);
    assert_eq!(synced["new_incidents"], 1, "{synced}");
    let shown = zhao.show(&c.victim);
    assert_eq!(shown["grid"], HX01);
    let notes = shown["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2, "{shown}");
    assert_eq!(notes[1]["kind"], "correction");
    assert_eq!(notes[1]["text"], format!("grid: {HX02} → {HX01}"));
    let parked: i64 = zhao
        .db()
        .query_row("SELECT count(*) FROM parked", [], |r| r.get(0))
        .unwrap();
    assert_eq!(parked, 0, "nothing stays parked");
    let heads_of = |all: Vec<(String, Vec<u8>)>| all.into_iter().find(|(id, _)| *id == c.victim).map(|(_, h)| h);
    assert_eq!(heads_of(zhao.heads()), heads_of(server_heads(&c.server)));
}

/// The grid map with cell `cell` moved from its community to `to`.
fn map_with_cell_in(cell: &str, to: &str) -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/grids.json");
    let mut map: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let communities: Vec<&mut serde_json::Value> = map["districts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|d| d["streets"].as_array_mut().unwrap().iter_mut())
        .flat_map(|s| s["communities"].as_array_mut().unwrap().iter_mut())
        .collect();
    let mut moved = None;
    let mut target = None;
    for c in communities {
        let cells = c["cells"].as_array_mut().unwrap();
        if let Some(i) = cells.iter().position(|x| x["id"] == cell) {
            moved = Some(cells.remove(i));
        }
        if c["id"] == to {
            target = Some(c);
        }
    }
    let target = target.expect("the community is on the map");
    target["cells"]
        .as_array_mut()
        .unwrap()
        .push(moved.expect("the cell is on the map"));
    map
}

/// A community gains a cell: its center's next sync brings the incidents
/// already logged there, though its cursor passed them while the cell lay
/// outside its scope.
#[test]
fn a_cell_added_to_a_community_brings_its_incidents_to_the_center() {
    const HX04: &str = "HLT-CX-HX-04";
    let mut server = Server::new();
    let before = server.data_dir().join("grids-before.json");
    std::fs::write(&before, map_with_cell_in(HX04, "HLT-XS-XS").to_string()).unwrap();
    let before = before.to_str().unwrap().to_owned();
    server.start_with(&["--grid-map", &before]);
    server.add_worker("w-zhou", &[HX04]);
    server.add_worker("w-li", &[HX01]);
    server.add_center("hx-center", "HLT-CX-HX");
    let zhou = Device::new("w-zhou", &[HX04]);
    zhou.enroll(&server);
    let li = Device::new("w-li", &[HX01]);
    li.enroll(&server);
    let center = Device::new("hx-center", &[HX01, HX02]);
    center.enroll(&server);

    let early = zhou.report(&["--category", "lawn", "--desc", "logged before the cell joined"]);
    zhou.sync(&[]);
    li.report(&["--category", "clutter"]);
    li.sync(&[]);
    center.sync(&[]);
    let ids = |d: &Device| {
        d.list()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&center).len(), 1, "only Li's incident is in the center's scope yet");
    assert!(!ids(&center).contains(&early));

    // The operator moves HX-04 into Hexiang and restarts the server.
    server.kill();
    server.start();
    let synced = center.sync(&[]);
    assert!(
        ids(&center).contains(&early),
        "the center gets the incident logged before the cell joined: {synced}"
    );
    assert_eq!(center.show(&early)["description"], "logged before the cell joined");
    // Nothing is pulled twice into a mess: every copy agrees with the server.
    let heads_of = |all: Vec<(String, Vec<u8>)>, id: &str| all.into_iter().find(|(i, _)| i == id).map(|(_, h)| h);
    assert_eq!(
        heads_of(center.heads(), &early),
        heads_of(server_heads(&server), &early)
    );
    // And later edits there reach it as any other.
    zhou.ok(&["update", &early, "--note", "still there"]);
    zhou.sync(&[]);
    center.sync(&[]);
    assert_eq!(center.show(&early)["notes"].as_array().unwrap().len(), 1);
}

/// Many devices edit one incident and push at once, from many threads: the
/// server's document and feed hold exactly the union of what it
/// acknowledged, every edit passes the rules, and every copy converges.
#[test]
fn many_devices_pushing_edits_to_one_incident_at_once_lose_nothing() {
    let c = cell();
    let workers: Vec<String> = (0..6).map(|i| format!("w-crowd-{i}")).collect();
    for w in &workers {
        c.server.add_worker(w, &[HX02]);
    }
    let devices: Vec<Device> = workers
        .iter()
        .map(|w| {
            let d = Device::new(w, &[HX02]);
            d.enroll(&c.server);
            d.sync(&[]);
            d
        })
        .collect();
    let rounds = 3;
    let barrier = std::sync::Barrier::new(devices.len());
    std::thread::scope(|scope| {
        for d in &devices {
            let (barrier, victim) = (&barrier, &c.victim);
            scope.spawn(move || {
                for round in 0..rounds {
                    d.ok(&["update", victim, "--note", &format!("{} round {round}", d.worker)]);
                    barrier.wait();
                    let synced = d.sync(&[]);
                    assert_eq!(synced["acknowledged"], 1, "{}: {synced}", d.worker);
                    assert_eq!(synced["refused"], serde_json::json!([]), "{}: {synced}", d.worker);
                }
            });
        }
    });
    let mut expected: std::collections::BTreeSet<String> = workers
        .iter()
        .flat_map(|w| (0..rounds).map(move |r| format!("{w} round {r}")))
        .collect();
    expected.insert("已拍照".to_owned());
    for d in &devices {
        d.sync(&[]);
    }
    let on_server = crate::exports::get(
        &c.server,
        "/v1/exports/incidents.json?community=HLT-CX-HX",
        Some(&c.server.token("op")),
    );
    let all = on_server.json();
    let inc = all
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == c.victim.as_str())
        .unwrap()
        .clone();
    let notes: std::collections::BTreeSet<String> = inc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        notes, expected,
        "the server's notes are the union of what it acknowledged"
    );
    assert_server_feed_consistent(&c.server);
    let refs: Vec<&Device> = devices.iter().collect();
    assert_same_heads(&c.server, &refs);
}

/// A document stored before the rules existed that no longer reads (here:
/// bytes that are not Automerge at all) is left out of every reader and
/// named, and the others are served.
#[test]
fn one_unreadable_document_never_breaks_a_list_export_or_report() {
    let c = cell();
    let fine = c.li.report(&["--category", "lawn"]);
    assert_eq!(c.li.sync(&[])["acknowledged"], 1);
    let id = &c.victim;
    let damaged = c.server.exec(
        &format!("UPDATE incidents SET doc = X'856f4a83deadbeef' WHERE id = '{id}'"),
        &format!("UPDATE incidents SET doc = decode('856f4a83deadbeef', 'hex') WHERE id = '{id}'"),
    );
    assert_eq!(damaged, Ok(1));
    let op = c.server.token("op");
    for format in ["csv", "json", "geojson"] {
        let got = crate::exports::get(
            &c.server,
            &format!("/v1/exports/incidents.{format}?community=HLT-CX-HX"),
            Some(&op),
        );
        assert_eq!(got.status, 200, "{format}: {}", got.text());
        assert_eq!(got.headers["x-unreadable-incidents"], c.victim.as_str(), "{format}");
        assert!(
            got.text().contains(&fine) && !got.text().contains(&c.victim),
            "{format}"
        );
    }
    let report = crate::exports::get(
        &c.server,
        &format!("/v1/reports/daily?community=HLT-CX-HX&date={}", today()),
        Some(&op),
    );
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.json()["unreadable"], serde_json::json!([c.victim]));
    let table = c
        .server
        .admin(&["reconcile", "--date", &today(), "--community", "HLT-CX-HX"]);
    assert!(table.contains(&format!("unreadable: incident {}", c.victim)), "{table}");
    let listed = crate::exports::get(&c.server, "/open311/v2/requests.json", Some(&op));
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(listed.text().contains(&fine));
    let exported = c.server.admin(&["export", "--format", "csv"]);
    assert!(exported.contains(&fine) && !exported.contains(&c.victim));
}

/// A change made in a colleague's actor, signed with the sender's own key
/// (or not at all), is refused: only the author's key vouches for a change.
#[test]
fn a_change_in_a_colleagues_name_without_their_signature_is_refused() {
    let c = cell();
    let li_uuid: uuid::Uuid = device_id(&c.li).parse().unwrap();
    let bytes: Vec<u8> = c
        .server
        .db()
        .query_row("SELECT doc FROM incidents WHERE id = ?1", [&c.victim], |r| r.get(0))
        .unwrap();
    let mut doc = IncidentDoc::from_automerge(
        AutoCommit::load(&bytes)
            .unwrap()
            .with_actor(ActorId::from(li_uuid.as_bytes())),
    );
    let heads = doc.heads();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00+08:00").unwrap();
    doc.add_note("w-li", "李没写过这个", at).unwrap();
    let forged = doc_push(doc.automerge(), &c.victim, &heads);
    let resp = push(&c.server, &c.wang, vec![forged.clone()]);
    let r = refusal(&resp, &c.victim);
    assert_eq!(r.rule.as_deref(), Some("author"), "{r:?}");
    assert!(r.message.contains("does not carry its author's signature"), "{r:?}");
    // Unsigned: refused the same way.
    let mut unsigned = forged;
    unsigned.sigs.clear();
    let resp = push_as_is(&c.server, &c.wang, vec![unsigned]);
    assert!(refusal(&resp, &c.victim).message.contains("is not signed"));
    readers_still_work(&c.server, &c.victim, "井盖缺了一角");
    assert_eq!(c.li.show(&c.victim)["notes"].as_array().unwrap().len(), 1);
}

/// The server's number of a device, from `device list --json`.
fn number_of(server: &Server, dev: &Device) -> u32 {
    let list: Value = serde_json::from_str(&server.admin(&["device", "list", "--json"])).unwrap();
    let id = device_id(dev);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap();
    row["number"].as_u64().expect("a field device has a number") as u32
}

#[test]
fn a_case_number_carries_its_own_devices_number_and_never_changes() {
    use sync_core::case::CaseNumber;
    let c = cell();
    let (li_no, wang_no) = (number_of(&c.server, &c.li), number_of(&c.server, &c.wang));
    assert_ne!(li_no, wang_no);
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
    let made = |case: u32, n: u8| {
        let id = IncidentId::new(1_763_600_002_000 + u64::from(n), [n; 10]);
        let (mut new, _) = new_in_hx02(&c.wang, id, "w-wang", "clutter");
        new.case = Some(CaseNumber::new("HLT-CX-HX", day, case, 1));
        let uuid: uuid::Uuid = device_id(&c.wang).parse().unwrap();
        let mut doc = IncidentDoc::create(&new, ActorId::from(uuid.as_bytes())).unwrap();
        (new.id.to_string(), doc_push(doc.automerge(), &new.id.to_string(), &[]))
    };
    // Wang's device names Li's device in a case number: refused.
    let (forged, push_forged) = made(li_no, 1);
    assert_rule(
        &push(&c.server, &c.wang, vec![push_forged]),
        &forged,
        "author",
        "a case number of Li's device",
    );
    // Its own number lands.
    let (own, push_own) = made(wang_no, 2);
    let resp = push(&c.server, &c.wang, vec![push_own]);
    assert!(resp.acks.iter().all(|a| a.id != own), "{:?}", resp.acks);
    // Changing it afterwards is refused, by its own device too.
    let mut copy = server_copy(&c.server, &c.wang, &own);
    let heads = copy.get_heads();
    let other = CaseNumber::new("HLT-CX-HX", day, wang_no, 2).to_string();
    copy.put(ROOT, "case", other.as_str()).unwrap();
    copy.commit();
    assert_rule(
        &push(&c.server, &c.wang, vec![doc_push(&mut copy, &own, &heads)]),
        &own,
        "fixed_field",
        "a changed case number",
    );
    let csv = c
        .server
        .admin(&["export", "--format", "csv", "--community", "HLT-CX-HX"]);
    assert!(csv.contains(&format!("HX-261121-{wang_no}-1")), "{csv}");
    assert!(!csv.contains(&other), "{csv}");
    readers_still_work(&c.server, &c.victim, "井盖缺了一角");
}

#[test]
fn a_dispatch_to_a_department_nobody_lists_or_already_overdue_is_refused() {
    use sync_core::incident::Dispatch;
    let c = cell();
    let center = Device::new("hx-center", &[HX02]);
    center.enroll(&c.server);
    let now = chrono::Utc::now().fixed_offset();
    for (department, hours) in [("nowhere", 24), ("shizheng", -2)] {
        let mut copy = server_copy(&c.server, &center, &c.victim);
        let heads = copy.get_heads();
        let uuid: uuid::Uuid = device_id(&center).parse().unwrap();
        let mut doc = IncidentDoc::load(&copy.save(), ActorId::from(uuid.as_bytes())).unwrap();
        let x = Dispatch {
            department: department.into(),
            deadline: now + chrono::TimeDelta::hours(hours),
        };
        doc.dispatch(&x, "hx-center", now).unwrap();
        let resp = push(&c.server, &center, vec![doc_push(doc.automerge(), &c.victim, &heads)]);
        assert_rule(&resp, &c.victim, "department", department);
    }
    let stored = IncidentDoc::read_saved(&server_copy(&c.server, &center, &c.victim).save()).unwrap();
    assert_eq!(
        stored.status,
        sync_core::Status::Reported,
        "nothing of either was stored"
    );
    readers_still_work(&c.server, &c.victim, "井盖缺了一角");
}

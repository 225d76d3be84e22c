//! The device store on a real SQLite file and blob folder in a temporary
//! directory, closed and opened again the way the CLI does between commands.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};
use sync_core::incident::NewIncident;
#[cfg(feature = "photo")]
use sync_core::photo;
use sync_core::store::{IncidentRow, PreparedPhoto};
use sync_core::taxonomy::{DEFAULT_CATEGORIES_JSON, DEFAULT_GRIDS_JSON, TaxonomyError};
use sync_core::{
    BlobHash, Incident, IncidentDoc, IncidentId, ListFilter, Location, Profile, Status, Store, StoreError,
};
use tempfile::TempDir;
use uuid::Uuid;

use crate::{photo_fixture, t};

const WORKER: &str = "w-li";
const CELL: &str = "HLT-CX-HX-02";
const DEVICE: Uuid = Uuid::from_u128(0x0199_a000_0000_7000_8000_0000_0000_0001);

#[track_caller]
fn open(dir: &Path) -> Store {
    Store::open(dir).unwrap_or_else(|e| panic!("opening the store in {}: {e}", dir.display()))
}

#[track_caller]
fn init(store: &mut Store) -> Profile {
    store
        .init(
            WORKER,
            Some("李工"),
            &[CELL.to_owned()],
            DEVICE,
            DEFAULT_CATEGORIES_JSON,
            DEFAULT_GRIDS_JSON,
        )
        .unwrap_or_else(|e| panic!("init: {e}"))
}

/// A temporary data directory with an initialised store in it.
fn device() -> (TempDir, Store, Profile) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut store = open(dir.path());
    let profile = init(&mut store);
    (dir, store, profile)
}

fn new_incident(id: IncidentId, category: &str, captured_at: DateTime<FixedOffset>) -> NewIncident {
    NewIncident {
        id,
        category: category.to_owned(),
        description: "井盖缺了一角，有行人绊倒的危险".to_owned(),
        location: Location {
            lat: Some(41.1205),
            lon: Some(122.0712),
            accuracy_m: Some(8.0),
            address: Some("鹤乡路12号".to_owned()),
        },
        grid: CELL.to_owned(),
        reporter: WORKER.to_owned(),
        device: DEVICE.to_string(),
        captured_at,
        photos: vec![],
        case: None,
    }
}

#[cfg(feature = "photo")]
#[track_caller]
fn prepare(store: &Store, fixture: &str, now: DateTime<FixedOffset>) -> PreparedPhoto {
    let bytes = photo_fixture(fixture);
    let processed = photo::process(&bytes).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    store
        .prepare_photo(&bytes, &processed, WORKER, now)
        .unwrap_or_else(|e| panic!("staging {fixture}: {e}"))
}

#[track_caller]
fn report(store: &mut Store, profile: &Profile, new: NewIncident, photos: &[PreparedPhoto]) -> Incident {
    let mut new = new;
    new.photos = photos.iter().map(|p| p.photo.clone()).collect();
    let now = new.captured_at;
    let mut doc = IncidentDoc::create(&new, profile.actor()).unwrap();
    store
        .save(&mut doc, photos, now)
        .unwrap_or_else(|e| panic!("saving {}: {e}", new.id))
}

/// Every file below `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("listing {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[track_caller]
fn count(store: &Store, sql: &str) -> i64 {
    store
        .connection()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn ids(rows: &[IncidentRow]) -> Vec<IncidentId> {
    rows.iter().map(|r| r.id).collect()
}

#[cfg(feature = "photo")]
#[test]
fn a_reported_incident_and_its_photo_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    assert!(matches!(store.profile(), Err(StoreError::NotInitialised)));
    let profile = init(&mut store);

    let now = t("2026-11-20T09:16:02+08:00");
    let prepared = prepare(&store, "manhole-exif.jpg", now);
    let hashes = [prepared.photo.original, prepared.photo.display, prepared.photo.thumb];
    for h in &hashes {
        assert!(
            !store.blobs().contains(h),
            "{h} is visible before its incident is saved"
        );
    }
    let id = IncidentId::new(1_763_601_330_000, [7; 10]);
    let saved = report(
        &mut store,
        &profile,
        new_incident(id, "manhole-cover", t("2026-11-20T09:15:30+08:00")),
        std::slice::from_ref(&prepared),
    );
    assert_eq!(saved.photos, vec![prepared.photo.clone()]);
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.profile().unwrap(), profile);
    let loaded = store.load(&id, profile.actor()).unwrap().read().unwrap();
    assert_eq!(loaded, saved);
    let photo = &loaded.photos[0];
    assert_eq!(
        (photo.width, photo.height, photo.mime.as_str()),
        (1200, 900, "image/jpeg")
    );
    assert_eq!(photo.taken_at.as_deref(), Some("2026-11-20T09:15:30+08:00"));

    let original = photo_fixture("manhole-exif.jpg");
    assert_eq!(
        store.blobs().read(&photo.original).unwrap(),
        original,
        "the original is kept byte for byte"
    );
    assert_eq!(photo.size, original.len() as u64);
    for (what, h) in ["original", "display", "thumb"].into_iter().zip(hashes) {
        let bytes = store.blobs().read(&h).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(BlobHash::of(&bytes), h, "{what} blob does not hash to its name");
    }
    let thumb = image::load_from_memory(&store.blobs().read(&photo.thumb).unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    assert_eq!(count(&store, "SELECT count(*) FROM outbox"), 1);
    let (queued, acked): (String, Vec<u8>) = store
        .connection()
        .query_row("SELECT incident_id, acked_heads FROM outbox", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((queued, acked), (id.to_string(), vec![]), "queued, never acknowledged");
    assert_eq!(count(&store, "SELECT count(*) FROM blobs"), 3);

    let summary = store.summary().unwrap();
    assert_eq!(summary.total, 1);
    assert_eq!(summary.by_status, vec![(Status::Reported, 1)]);
    assert_eq!(summary.unsynced_incidents, 1);
    assert_eq!(summary.photo_blobs, 1);
    assert_eq!(summary.unsynced_blobs, 3);
    assert_eq!(store.sync_state().unwrap().last_sync, None);

    let rows = store.list(&ListFilter::default()).unwrap();
    assert_eq!(ids(&rows), vec![id]);
    let row = &rows[0];
    assert_eq!((row.photos, row.notes, row.unsynced), (1, 0, true));
    assert_eq!((row.lat, row.lon), (Some(41.1205), Some(122.0712)));
    assert_eq!(row.description, saved.description);

    assert_eq!(files_under(&dir.path().join("blobs")).len(), 3);
    assert_eq!(files_under(&dir.path().join("staging")), Vec::<PathBuf>::new());
}

#[cfg(feature = "photo")]
#[test]
fn a_photo_on_two_incidents_is_stored_once() {
    let (dir, mut store, profile) = device();
    let first = IncidentId::new(1_763_601_330_000, [1; 10]);
    let second = IncidentId::new(1_763_601_390_000, [2; 10]);
    let a = prepare(&store, "curb.png", t("2026-11-20T09:16:00+08:00"));
    report(
        &mut store,
        &profile,
        new_incident(first, "curb-stone", t("2026-11-20T09:15:00+08:00")),
        std::slice::from_ref(&a),
    );
    let b = prepare(&store, "curb.png", t("2026-11-20T09:17:00+08:00"));
    assert_eq!(
        (b.photo.original, b.photo.display, b.photo.thumb),
        (a.photo.original, a.photo.display, a.photo.thumb)
    );
    report(
        &mut store,
        &profile,
        new_incident(second, "curb-stone", t("2026-11-20T09:16:30+08:00")),
        &[b],
    );
    drop(store);

    let store = open(dir.path());
    assert_eq!(count(&store, "SELECT count(*) FROM blobs"), 3);
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 3);
    assert_eq!(files_under(&dir.path().join("staging")), Vec::<PathBuf>::new());
    assert_eq!(store.summary().unwrap().photo_blobs, 1);
    for id in [first, second] {
        let incident = store.load(&id, profile.actor()).unwrap().read().unwrap();
        assert_eq!(incident.photos.len(), 1, "{id}");
        assert_eq!(incident.photos[0].original, a.photo.original, "{id}");
        assert_eq!(incident.photos[0].mime, "image/png");
    }
    assert_eq!(
        store.blobs().read(&a.photo.original).unwrap(),
        photo_fixture("curb.png")
    );
}

#[cfg(feature = "photo")]
#[test]
fn a_photo_staged_for_an_abandoned_report_is_gone_after_reopening() {
    let (dir, store, profile) = device();
    let prepared = prepare(&store, "rotated-exif6.jpg", t("2026-11-21T14:03:00+08:00"));
    // The setup did stage something, and published nothing.
    assert_eq!(files_under(&dir.path().join("staging")).len(), 3);
    assert_eq!(files_under(&dir.path().join("blobs")), Vec::<PathBuf>::new());
    let original = prepared.photo.original;
    drop(prepared);
    drop(store);

    let mut store = open(dir.path());
    assert_eq!(files_under(&dir.path().join("blobs")), Vec::<PathBuf>::new());
    assert_eq!(files_under(&dir.path().join("staging")), Vec::<PathBuf>::new());
    assert_eq!(count(&store, "SELECT count(*) FROM blobs"), 0);
    assert!(!store.blobs().contains(&original));

    // Reporting it again afterwards works from scratch.
    let again = prepare(&store, "rotated-exif6.jpg", t("2026-11-21T14:05:00+08:00"));
    let id = IncidentId::new(1_763_704_920_000, [3; 10]);
    report(
        &mut store,
        &profile,
        new_incident(id, "other", t("2026-11-21T14:02:00+08:00")),
        &[again],
    );
    assert_eq!(
        store.blobs().read(&original).unwrap(),
        photo_fixture("rotated-exif6.jpg")
    );
    assert_eq!(files_under(&dir.path().join("blobs")).len(), 3);
}

#[test]
fn a_blob_committed_but_not_yet_published_is_published_at_open() {
    // What a power cut between the database commit and the rename leaves.
    let (dir, store, _profile) = device();
    let bytes = photo_fixture("curb.png");
    let hash = store.blobs().stage(&bytes).unwrap();
    store
        .connection()
        .execute(
            "INSERT INTO blobs (hash, size, kind, mime, width, height, created_at)
             VALUES (?1, ?2, 'original', 'image/png', 640, 480, '2026-11-20T09:16:00+08:00')",
            rusqlite::params![hash.to_hex(), bytes.len() as i64],
        )
        .unwrap();
    fs::write(
        dir.path()
            .join("staging")
            .join(format!("{}.tmp", BlobHash::of(b"half").to_hex())),
        b"ha",
    )
    .unwrap();
    assert!(!store.blobs().contains(&hash));
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.blobs().read(&hash).unwrap(), bytes);
    assert_eq!(
        files_under(&dir.path().join("staging")),
        Vec::<PathBuf>::new(),
        "half-written file kept"
    );
}

#[derive(Debug)]
enum Want<'a> {
    Id(IncidentId),
    NotFound,
    Ambiguous(&'a [IncidentId]),
    BadPrefix,
}

#[track_caller]
fn check_resolve(store: &Store, given: &str, want: Want<'_>) {
    let got = store.resolve(given);
    match (&want, &got) {
        (Want::Id(w), Ok(g)) if w == g => {}
        (Want::NotFound, Err(StoreError::NotFound(_))) => {}
        (Want::BadPrefix, Err(e @ StoreError::BadPrefix(_))) => {
            assert!(e.to_string().contains("not an incident id"), "{e}");
        }
        (Want::Ambiguous(all), Err(e @ StoreError::Ambiguous { examples, .. })) => {
            for id in *all {
                assert!(examples.contains(&id.to_string()), "`{given}`: {e} does not name {id}");
            }
            assert!(e.to_string().contains("give more of the id"), "{e}");
        }
        _ => panic!("resolve({given:?}) = {got:?}, expected {want:?}"),
    }
}

#[test]
fn ids_resolve_from_whole_ids_and_unique_prefixes_only() {
    let (_dir, mut store, profile) = device();
    // Two ids made in the same millisecond share their first 13 characters.
    let twin_a = IncidentId::new(1_763_601_330_000, [0x11; 10]);
    let twin_b = IncidentId::new(1_763_601_330_000, [0x22; 10]);
    let later = IncidentId::new(1_800_000_000_000, [0x33; 10]);
    for id in [twin_a, twin_b, later] {
        report(
            &mut store,
            &profile,
            new_incident(id, "lawn", t("2026-11-20T09:15:30+08:00")),
            &[],
        );
    }
    let (a, b, l) = (twin_a.to_string(), twin_b.to_string(), later.to_string());
    assert_eq!(a[..13], b[..13]);
    assert_ne!(a[..4], l[..4]);
    assert_ne!(a[..30], b[..30]);
    let unknown = IncidentId::new(1_763_601_330_000, [0x44; 10]);

    check_resolve(&store, &a, Want::Id(twin_a));
    check_resolve(&store, &format!("  {}\n", b.to_uppercase()), Want::Id(twin_b));
    check_resolve(&store, &l[..8], Want::Id(later));
    check_resolve(&store, &a[..30], Want::Id(twin_a));
    check_resolve(&store, &a[..13], Want::Ambiguous(&[twin_a, twin_b]));
    check_resolve(&store, &a[..4], Want::Ambiguous(&[twin_a, twin_b]));
    check_resolve(&store, &unknown.to_string(), Want::NotFound);
    check_resolve(&store, "0000", Want::NotFound);
    check_resolve(&store, "ffff-", Want::NotFound);
    for junk in [
        "",
        "ab",
        "abc",
        "%",
        "%%%%",
        "____",
        "zzzz",
        "0199' OR 1=1 --",
        "../../etc",
        "０１９９",
    ] {
        check_resolve(&store, junk, Want::BadPrefix);
    }
    assert_eq!(
        store.resolve("%").unwrap_err().to_string(),
        "`%` is not an incident id or a start or end of one (hex digits and dashes, at least 4)"
    );
}

#[test]
fn list_filters_by_status_category_and_local_capture_date() {
    let (_dir, mut store, profile) = device();
    // 07:30 in Beijing is still the 19th in UTC.
    let early = IncidentId::new(1_763_595_000_000, [1; 10]);
    report(
        &mut store,
        &profile,
        new_incident(early, "manhole-cover", t("2026-11-20T07:30:00+08:00")),
        &[],
    );
    // 20:00 in New York on the 19th is already the 20th in UTC.
    let evening = IncidentId::new(1_763_600_400_000, [2; 10]);
    report(
        &mut store,
        &profile,
        new_incident(evening, "road-surface", t("2026-11-19T20:00:00-05:00")),
        &[],
    );
    let next_day = IncidentId::new(1_763_690_400_000, [3; 10]);
    report(
        &mut store,
        &profile,
        new_incident(next_day, "manhole-cover", t("2026-11-21T10:00:00+08:00")),
        &[],
    );

    let mut doc = store.load(&next_day, profile.actor()).unwrap();
    let now = t("2026-11-21T10:30:00+08:00");
    doc.set_status(Status::Dispatched, "center", now).unwrap();
    doc.add_note("center", "已派遣市政养护", now).unwrap();
    store.save(&mut doc, &[], now).unwrap();

    #[track_caller]
    fn check(store: &Store, status: Option<Status>, category: Option<&str>, date: Option<&str>, want: &[IncidentId]) {
        let filter = ListFilter {
            status,
            category: category.map(str::to_owned),
            date: date.map(|d| d.parse::<NaiveDate>().unwrap()),
        };
        let rows = store.list(&filter).unwrap();
        assert_eq!(ids(&rows), want, "{filter:?}");
    }
    use Status::*;
    check(&store, None, None, None, &[early, evening, next_day]);
    check(&store, Some(Reported), None, None, &[early, evening]);
    check(&store, Some(Dispatched), None, None, &[next_day]);
    check(&store, Some(Closed), None, None, &[]);
    check(&store, None, Some("manhole-cover"), None, &[early, next_day]);
    check(&store, None, Some("road-surface"), None, &[evening]);
    check(&store, None, Some("lawn"), None, &[]);
    check(&store, None, None, Some("2026-11-20"), &[early]);
    check(&store, None, None, Some("2026-11-19"), &[evening]);
    check(&store, None, None, Some("2026-11-21"), &[next_day]);
    check(&store, None, None, Some("2026-11-22"), &[]);
    check(
        &store,
        Some(Reported),
        Some("manhole-cover"),
        Some("2026-11-20"),
        &[early],
    );
    check(&store, Some(Dispatched), Some("manhole-cover"), Some("2026-11-20"), &[]);

    let rows = store.list(&ListFilter::default()).unwrap();
    let row = rows.iter().find(|r| r.id == next_day).unwrap();
    assert_eq!((row.status, row.notes, row.photos), (Dispatched, 1, 0));
    assert_eq!(row.captured_at, t("2026-11-21T10:00:00+08:00"));
    assert_eq!(row.captured_at.offset(), t("2026-11-21T10:00:00+08:00").offset());

    let full = store
        .incidents(
            &ListFilter {
                status: Some(Dispatched),
                ..ListFilter::default()
            },
            &profile.actor(),
        )
        .unwrap();
    assert_eq!(full.len(), 1);
    assert_eq!(full[0].status, Dispatched);
    assert_eq!(full[0].notes[0].text, "已派遣市政养护");
    assert_eq!(full[0].status_history.len(), 2);

    let summary = store.summary().unwrap();
    assert_eq!(summary.total, 3);
    assert_eq!(summary.by_status, vec![(Reported, 2), (Dispatched, 1)]);
    assert_eq!(summary.unsynced_incidents, 3);
}

#[test]
fn init_refuses_another_worker_and_unknown_cells() {
    let (dir, mut store, profile) = device();
    assert_eq!(profile.worker, WORKER);
    assert_eq!(profile.device, DEVICE);

    // Again for the same worker: new details, same device id.
    let again = store
        .init(
            WORKER,
            Some("李四"),
            &["HLT-CX-HX-01".to_owned(), CELL.to_owned()],
            Uuid::from_u128(42),
            DEFAULT_CATEGORIES_JSON,
            DEFAULT_GRIDS_JSON,
        )
        .unwrap();
    assert_eq!(again.device, DEVICE, "re-init changed the device id");
    assert_eq!(again.actor(), profile.actor());
    assert_eq!(again.name.as_deref(), Some("李四"));

    let err = store
        .init(
            "w-wang",
            None,
            &[CELL.to_owned()],
            Uuid::from_u128(43),
            DEFAULT_CATEGORIES_JSON,
            DEFAULT_GRIDS_JSON,
        )
        .unwrap_err();
    match &err {
        StoreError::OtherWorker { existing, requested } => assert_eq!((&**existing, &**requested), (WORKER, "w-wang")),
        other => panic!("expected OtherWorker, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("`w-li`") && msg.contains("`w-wang`"), "{msg}");
    drop(store);
    assert_eq!(
        open(dir.path()).profile().unwrap(),
        again,
        "a refused init changed the profile"
    );

    let fresh = tempfile::tempdir().unwrap();
    let mut store = open(fresh.path());
    let err = store
        .init(
            WORKER,
            None,
            &["HLT-CX-HX-99".to_owned()],
            DEVICE,
            DEFAULT_CATEGORIES_JSON,
            DEFAULT_GRIDS_JSON,
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Taxonomy(TaxonomyError::UnknownCell { id, .. }) if id == "HLT-CX-HX-99"),
        "{err:?}"
    );
    let msg = err.to_string();
    for part in [
        "HLT-CX-HX-99",
        "HLT-CX-HX-01",
        "HLT-CX-HX-02",
        "HLT-CX-HX-03",
        "HLT-CX-HX-04",
    ] {
        assert!(msg.contains(part), "`{msg}` does not name {part}");
    }
    assert!(
        matches!(store.profile(), Err(StoreError::NotInitialised)),
        "a refused init set the device up"
    );

    let err = store
        .init(
            WORKER,
            None,
            &[CELL.to_owned()],
            DEVICE,
            "{\"version\": 1",
            DEFAULT_GRIDS_JSON,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Taxonomy(TaxonomyError::Parse { what: "categories", .. })
        ),
        "{err:?}"
    );
}

#[test]
fn the_database_is_durable_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let conn = store.connection();
    let journal: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    let foreign_keys: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(journal, "wal");
    assert_eq!(synchronous, 2, "synchronous is not FULL");
    assert_eq!(foreign_keys, 1);

    // A second opener of the same folder waits until the first is done.
    let (tx, rx) = mpsc::channel();
    let path = dir.path().to_owned();
    let waiter = std::thread::spawn(move || {
        let second = Store::open(&path).map(|_| ());
        tx.send(second).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a second store opened the folder while the first held it"
    );
    drop(store);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the second store still waits after the first closed")
        .unwrap();
    waiter.join().unwrap();

    // A database from a newer build is refused rather than misread.
    let store = open(dir.path());
    store.connection().execute_batch("PRAGMA user_version = 99").unwrap();
    drop(store);
    match Store::open(dir.path()) {
        Err(e @ StoreError::TooNew { found: 99, .. }) => assert!(e.to_string().contains("newer version"), "{e}"),
        Err(e) => panic!("expected TooNew, got {e:?}"),
        Ok(_) => panic!("a database from a newer build was opened"),
    }
}

#[test]
fn a_store_from_before_the_device_column_learns_its_own_incidents_at_open() {
    let (dir, mut store, profile) = device();
    let mine = new_incident(
        IncidentId::new(1_763_601_330_000, [0x21; 10]),
        "clutter",
        t("2026-11-20T09:00:00+08:00"),
    );
    report(&mut store, &profile, mine, &[]);
    let mut other = new_incident(
        IncidentId::new(1_763_601_390_000, [0x22; 10]),
        "lawn",
        t("2026-11-20T10:00:00+08:00"),
    );
    other.device = "0199a000-0000-7000-8000-00000000beef".to_owned();
    report(&mut store, &profile, other, &[]);
    let before = store.manifest().unwrap().own;
    assert_eq!(before.unwrap().count, 1);
    drop(store);

    // Put the database back to schema 1, as an older build left it.
    let conn = rusqlite::Connection::open(dir.path().join(sync_core::store::DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP TABLE parked; DROP TABLE change_sigs; DROP INDEX incidents_device; ALTER TABLE incidents DROP COLUMN device; ALTER TABLE incidents DROP COLUMN reporter;
         DROP TABLE case_counters; DROP INDEX incidents_case_no; ALTER TABLE incidents DROP COLUMN case_no; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);

    let store = open(dir.path());
    assert_eq!(store.manifest().unwrap().own, before);
}

#[test]
fn a_batch_stores_every_incident_queued_or_none_when_one_fails() {
    let (dir, mut store, profile) = device();
    let now = t("2026-11-20T18:00:00+08:00");
    let made: Vec<IncidentId> = (0..5u8)
        .map(|i| IncidentId::new(1_763_601_330_000 + u64::from(i) * 60_000, [i + 1; 10]))
        .collect();
    let mut docs: Vec<IncidentDoc> = made
        .iter()
        .map(|&id| {
            IncidentDoc::create(
                &new_incident(id, "lawn", t("2026-11-20T09:15:30+08:00")),
                profile.actor(),
            )
            .unwrap()
        })
        .collect();
    let saved = store.save_many(&mut docs, now).unwrap();
    assert_eq!(saved.iter().map(|i| i.id).collect::<Vec<_>>(), made);
    drop(store);

    let mut store = open(dir.path());
    for incident in &saved {
        let loaded = store.load(&incident.id, profile.actor()).unwrap().read().unwrap();
        assert_eq!(&loaded, incident);
    }
    let rows = store.list(&ListFilter::default()).unwrap();
    assert_eq!(ids(&rows), made);
    assert!(rows.iter().all(|r| r.unsynced), "{rows:?}");
    let queued: Vec<String> = made.iter().map(IncidentId::to_string).collect();
    assert_eq!(sync_core::sync::outbox_ids(&store).unwrap(), queued);
    assert_eq!(
        count(&store, "SELECT count(*) FROM outbox WHERE acked_heads = X''"),
        5,
        "never acknowledged"
    );
    // The device column is projected too: the manifest counts them as this device's own.
    assert_eq!(store.manifest().unwrap().own.unwrap().count, 5);

    // A batch with one document that fails the schema check stores nothing,
    // not even the good one before it.
    let fine = IncidentId::new(1_763_700_000_000, [0x31; 10]);
    let broken = IncidentId::new(1_763_700_060_000, [0x32; 10]);
    let mut bad = IncidentDoc::create(&new_incident(broken, "lawn", now), profile.actor()).unwrap();
    automerge::transaction::Transactable::delete(bad.automerge(), automerge::ROOT, "category").unwrap();
    let mut batch = vec![
        IncidentDoc::create(&new_incident(fine, "lawn", now), profile.actor()).unwrap(),
        bad,
    ];
    let err = store.save_many(&mut batch, now).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("category"), "{err}");
    for id in [fine, broken] {
        assert!(
            matches!(store.load(&id, profile.actor()), Err(StoreError::NotFound(_))),
            "{id} was stored"
        );
    }
    assert_eq!(ids(&store.list(&ListFilter::default()).unwrap()), made);
    assert_eq!(sync_core::sync::outbox_ids(&store).unwrap(), queued);
}

/// Every projected column is rewritten from the document on every save, so
/// a column damaged or left stale by an older build heals at the next edit.
#[test]
fn every_projected_column_is_rewritten_on_each_save() {
    let (_dir, mut store, profile) = device();
    let new = new_incident(
        IncidentId::new(1_763_601_450_000, [0x31; 10]),
        "lawn",
        t("2026-11-20T11:00:00+08:00"),
    );
    let id = new.id;
    report(&mut store, &profile, new, &[]);
    let own = store.manifest().unwrap().own;
    store
        .connection()
        .execute(
            "UPDATE incidents SET device = 'stale', category = 'stale', captured_at = 'stale', grid = 'stale'",
            [],
        )
        .unwrap();
    let mut doc = store.load(&id, profile.actor()).unwrap();
    doc.add_note(WORKER, "re-check", t("2026-11-20T12:00:00+08:00"))
        .unwrap();
    store.save(&mut doc, &[], t("2026-11-20T12:00:00+08:00")).unwrap();
    let row: (String, String, String, String) = store
        .connection()
        .query_row("SELECT device, category, captured_at, grid FROM incidents", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!(row.0, profile.device.to_string());
    assert_eq!(row.1, "lawn");
    assert_eq!(row.2, "2026-11-20T11:00:00+08:00");
    assert_ne!(row.3, "stale");
    assert_eq!(store.manifest().unwrap().own, own);
}

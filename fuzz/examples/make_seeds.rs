//! Writes the seed corpora under `fuzz/seeds/<target>/`: a few valid inputs
//! per target, small enough to commit. Run again after a change to a
//! target's input format: `cargo run --example make_seeds` in `fuzz/`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use automerge::ActorId;
use image::{DynamicImage, ImageFormat};
use sync_core::protocol::{
    self, Ack, Cursor as FeedCursor, EnrollRequest, FeedChange, Manifest, ManifestReport, OwnDigest, PROTOCOL_VERSION,
    PushDoc, Refusal, SyncRequest, SyncResponse, Tag8,
};
use sync_core::{IncidentDoc, Status};
use sync_fuzz::docs::{self, IN_SCOPE, OUT_OF_SCOPE, join_pieces};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("the seed folder can be made");
    std::fs::write(dir.join(name), bytes).expect("the seed is written");
    println!("{target}/{name}: {} bytes", bytes.len());
}

fn with_kind(kind: u8, body: Vec<u8>) -> Vec<u8> {
    [vec![kind], body].concat()
}

/// A server epoch: a UUID, so it travels as its 16 bytes.
const EPOCH: &str = "019abf2c-0000-7000-8000-00000000e90c";

/// `own` is what a request leaves out when the server already has it.
fn manifest(own: Option<OwnDigest>) -> Manifest {
    Manifest {
        pending_docs: 1,
        pending_photos: 2,
        own,
        clock_offset_ms: Some(-1500),
        refused_docs: 1,
    }
}

fn decode_message() {
    let mut doc = docs::valid_doc(0, IN_SCOPE);
    let changes = docs::changes_of(&mut doc);
    let id = doc.read().unwrap().id.to_string();
    let mut other = docs::valid_doc(1, IN_SCOPE);
    let other_id = other.read().unwrap().id.to_string();
    let wanted = docs::valid_doc(2, IN_SCOPE).read().unwrap().id.to_string();
    let cursor = Some(FeedCursor {
        seq: 12,
        hash: Tag8([4; 8]),
    });
    // One signature per change; an empty one where the device holds none.
    let sigs = (0..changes.len())
        .map(|i| if i == 0 { vec![0x5a; 64] } else { vec![] }.into())
        .collect();
    let push = vec![
        PushDoc {
            id: id.clone(),
            changes: changes.iter().cloned().map(Into::into).collect(),
            sigs,
        },
        PushDoc {
            id: other_id.clone(),
            changes: docs::changes_of(&mut other).into_iter().map(Into::into).collect(),
            sigs: vec![],
        },
    ];
    let req = SyncRequest {
        version: PROTOCOL_VERSION,
        device_time_ms: None,
        epoch: Some(EPOCH.into()),
        cursor,
        pull_limit: 500,
        push,
        manifest: manifest(Some(OwnDigest::of(["a", "b"]))),
        want: vec![wanted],
        account: None,
    };
    write(
        "decode_message",
        "sync-request-push",
        &with_kind(0, protocol::encode(&req)),
    );
    let noop = SyncRequest {
        device_time_ms: Some(1_763_610_000_500),
        push: vec![],
        want: vec![],
        manifest: Manifest {
            clock_offset_ms: None,
            ..manifest(None)
        },
        ..req
    };
    write(
        "decode_message",
        "sync-request-noop",
        &with_kind(0, protocol::encode(&noop)),
    );
    // Acks list only what was not stored: one refused, one asking for the
    // whole history.
    let resp = SyncResponse {
        epoch: Some(EPOCH.into()),
        server_time_ms: 1_763_610_000_000,
        reset: false,
        acks: vec![
            Ack {
                id: id.clone(),
                need_full: false,
                refused: Some(Refusal {
                    code: "rule_broken".into(),
                    rule: Some("workflow".into()),
                    message: "a closed incident cannot be reopened".into(),
                }),
            },
            Ack {
                id: other_id,
                need_full: true,
                refused: None,
            },
        ],
        changes: vec![
            FeedChange {
                id: id.clone(),
                change: changes[0].clone().into(),
                sig: Some(vec![0x5a; 64].into()),
            },
            FeedChange {
                id,
                change: changes[1].clone().into(),
                sig: None,
            },
        ],
        cursor,
        more: true,
        ask_own: true,
        thumbs: vec!["ab".repeat(32)],
        account: None,
    };
    write(
        "decode_message",
        "sync-response",
        &with_kind(1, protocol::encode(&resp)),
    );
    let enroll = EnrollRequest {
        version: PROTOCOL_VERSION,
        code: "K7QM-2XWP".into(),
        worker: "w-fuzz".into(),
        device: docs::device_uuid().to_string(),
        public_key: Some(vec![0x3c; 32].into()),
        label: None,
    };
    write(
        "decode_message",
        "enroll-request",
        &with_kind(2, protocol::encode(&enroll)),
    );
    let report = ManifestReport {
        version: PROTOCOL_VERSION,
        device_time_ms: 1_763_610_000_500,
        manifest: manifest(Some(OwnDigest::of(["a", "b"]))),
    };
    write(
        "decode_message",
        "manifest-report",
        &with_kind(3, protocol::encode(&report)),
    );
}

fn read_document() {
    let mut doc = docs::valid_doc(0, IN_SCOPE);
    let changes = docs::changes_of(&mut doc);
    let saved = doc.save();
    write("read_document", "saved", &with_kind(0, saved.clone()));
    write(
        "read_document",
        "saved-other-cell",
        &with_kind(0, docs::valid_doc(2, OUT_OF_SCOPE).save()),
    );
    let all = join_pieces(changes.iter().map(Vec::as_slice));
    write("read_document", "changes-into-empty", &with_kind(1, all));
    let later = join_pieces(changes[1..].iter().map(Vec::as_slice));
    write("read_document", "changes-after-first", &with_kind(3, later));
    // Another device's concurrent edit, applied to the whole incident.
    let other = ActorId::from([0x42_u8; 16].as_slice());
    let mut fork = IncidentDoc::load(&saved, other.clone()).expect("the saved incident loads");
    let heads = fork.heads();
    fork.set_status(Status::InProgress, "w-other", docs::at(5)).unwrap();
    fork.add_note("w-other", "crew on site", docs::at(6)).unwrap();
    let edits = fork.changes_by_since(&other, &heads);
    write(
        "read_document",
        "concurrent-edit",
        &with_kind(2, join_pieces(edits.iter().map(Vec::as_slice))),
    );
}

fn encode_as(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("the image encodes");
    out.into_inner()
}

/// The APP1 "Exif" segment of a JPEG, marker included.
fn exif_segment(jpeg: &[u8]) -> Vec<u8> {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let segment = &jpeg[at..at + 2 + len];
        if jpeg[at + 1] == 0xE1 && segment[4..].starts_with(b"Exif\0\0") {
            return segment.to_vec();
        }
        at += 2 + len;
    }
    panic!("the fixture has no EXIF segment");
}

fn photo_pipeline() {
    let fixtures = root().join("../fixtures/photos");
    let read = |name: &str| std::fs::read(fixtures.join(name)).expect("the photo fixture is there");
    let manhole = read("manhole-exif.jpg");
    write("photo_pipeline", "rotated-exif6.jpg", &read("rotated-exif6.jpg"));
    // A small copy of the manhole photo that keeps its EXIF (time, offset, GPS).
    let small = image::load_from_memory(&manhole).unwrap().thumbnail(96, 72);
    let jpeg = encode_as(&small, ImageFormat::Jpeg);
    let with_exif = [&jpeg[..2], &exif_segment(&manhole), &jpeg[2..]].concat();
    write("photo_pipeline", "small-exif-gps.jpg", &with_exif);
    write(
        "photo_pipeline",
        "truncated.jpg",
        &with_exif[..with_exif.len() * 6 / 10],
    );
    // Wider than twice the display edge in few bytes: the DCT-scaled decode.
    let wide = image::load_from_memory(&read("wide-2400x1000.jpg"))
        .unwrap()
        .resize_exact(3300, 8, image::imageops::FilterType::Triangle);
    write(
        "photo_pipeline",
        "strip-3300x8.jpg",
        &encode_as(&wide, ImageFormat::Jpeg),
    );
    let grey = DynamicImage::ImageLuma8(small.to_luma8());
    write("photo_pipeline", "grey.jpg", &encode_as(&grey, ImageFormat::Jpeg));
    let mut cmyk = Vec::new();
    let pixels: Vec<u8> = small.to_rgb8().pixels().flat_map(|p| [p[0], p[1], p[2], 200]).collect();
    jpeg_encoder::Encoder::new(&mut cmyk, 80)
        .encode(&pixels, 96, 72, jpeg_encoder::ColorType::Cmyk)
        .expect("the CMYK JPEG encodes");
    write("photo_pipeline", "cmyk.jpg", &cmyk);
    let curb = image::load_from_memory(&read("curb.png")).unwrap().thumbnail(64, 48);
    write("photo_pipeline", "curb-rgb8.png", &encode_as(&curb, ImageFormat::Png));
    let la = DynamicImage::ImageLumaA8(curb.to_luma_alpha8());
    write("photo_pipeline", "curb-la8.png", &encode_as(&la, ImageFormat::Png));
    let rgba16 = DynamicImage::ImageRgba16(curb.thumbnail(16, 12).to_rgba16());
    write(
        "photo_pipeline",
        "curb-rgba16.png",
        &encode_as(&rgba16, ImageFormat::Png),
    );
}

/// A `server_sync` input: flags, pull limit, then pieces (see `server_input`).
fn server_input(flags: u8, pieces: &[&[u8]]) -> Vec<u8> {
    [vec![flags, 100], join_pieces(pieces.iter().copied())].concat()
}

fn server_sync() {
    // Flag bits of `World::request`; `want` asks for the pushed incident's history.
    let (want, cursor, epoch, new, two, other_cell) = (4, 8, 16, 1, 32, 2);
    let seeds: [(&str, u8, Vec<&[u8]>); 7] = [
        ("stored-incident-rest", want | cursor | epoch, vec![&[0, 1], &[0, 2]]),
        ("new-incident", new, vec![&[0, 0], &[0, 1], &[0, 2]]),
        ("other-cell", other_cell | want, vec![&[0, 0], &[0, 1], &[0, 2]]),
        ("waits-for-deps", new, vec![&[0, 2]]),
        ("change-of-another-incident", new, vec![&[2, 0, 0]]),
        ("id-from-input", 3, vec![b"not-an-incident-id", &[0, 1]]),
        ("two-incidents", two | cursor, vec![&[0, 1], &[0, 2]]),
    ];
    for (name, flags, pieces) in seeds {
        write("server_sync", name, &server_input(flags, &pieces));
    }
    // The new incident's changes as raw bytes, for the fuzzer to mutate.
    let changes = docs::changes_of(&mut docs::valid_doc(1, IN_SCOPE));
    let raw: Vec<Vec<u8>> = changes.iter().map(|c| [&[1][..], c].concat()).collect();
    let raw: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    write("server_sync", "new-incident-raw", &server_input(new, &raw));
}

fn main() {
    decode_message();
    read_document();
    photo_pipeline();
    server_sync();
}

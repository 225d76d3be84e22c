//! Photos through `field report`: what the incident records, what lands in
//! the blob folder, and that a bad photo stores nothing at all.

use std::time::SystemTime;

use image::GenericImageView;
use serde_json::Value;

use crate::{Device, IN_HX02, WORKER, assert_near, blake3_hex, fixture, s};

/// The one photo of an incident.
#[track_caller]
fn only_photo(incident: &Value) -> &Value {
    let photos = incident["photos"].as_array().expect("photos is a list");
    assert_eq!(photos.len(), 1, "{photos:?}");
    &photos[0]
}

/// Decodes a derived copy: a JPEG whose long edge is `long_edge` (or the
/// original's, if that is smaller), in the original's shape.
#[track_caller]
fn check_derived(dev: &Device, hash: &str, long_edge: u32, photo: &Value) -> image::DynamicImage {
    let bytes = dev.blob(hash);
    assert_eq!(blake3_hex(&bytes), hash);
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Jpeg,
        "derived copies are JPEGs"
    );
    let img = image::load_from_memory(&bytes).expect("a derived copy decodes");
    let (w, h) = img.dimensions();
    let (ow, oh) = (
        photo["width"].as_u64().unwrap() as u32,
        photo["height"].as_u64().unwrap() as u32,
    );
    assert_eq!(w.max(h), long_edge.min(ow.max(oh)), "{w}x{h} from {ow}x{oh}");
    let (aspect, want) = (f64::from(w) / f64::from(h), f64::from(ow) / f64::from(oh));
    assert!((aspect - want).abs() < 0.02, "{w}x{h} is not shaped like {ow}x{oh}");
    img
}

/// The original blob is the user's file, byte for byte, under its blake3.
#[track_caller]
fn check_original(dev: &Device, photo: &Value, file: &[u8]) {
    let hash = s(photo, "original");
    assert_eq!(hash, blake3_hex(file));
    assert_eq!(dev.blob(hash), file);
    assert_eq!(photo["size"].as_u64(), Some(file.len() as u64));
}

#[test]
fn an_exif_photo_is_kept_whole_with_display_and_thumbnail_copies() {
    // The worker's own copy, in a folder of its own, so nothing else touches it.
    let theirs = tempfile::tempdir().unwrap();
    let src = theirs.path().join("IMG_0001.jpg");
    std::fs::copy(fixture("manhole-exif.jpg"), &src).unwrap();
    let before = std::fs::read(&src).unwrap();
    let mtime = |p: &std::path::Path| -> SystemTime { p.metadata().unwrap().modified().unwrap() };
    let mtime_before = mtime(&src);

    let dev = Device::setup();
    let mut args = vec!["--category", "manhole-cover", "--photo", src.to_str().unwrap()];
    args.extend(IN_HX02);
    let id = dev.report(&args);

    assert_eq!(std::fs::read(&src).unwrap(), before, "the user's photo changed");
    assert_eq!(mtime(&src), mtime_before, "the user's photo was written to");
    assert_eq!(
        std::fs::read_dir(theirs.path()).unwrap().count(),
        1,
        "files appeared beside it"
    );

    let incident = dev.show(&id);
    let photo = only_photo(&incident);
    assert_eq!(photo["width"], 1200);
    assert_eq!(photo["height"], 900);
    assert_eq!(s(photo, "mime"), "image/jpeg");
    assert_near(&photo["gps"]["lat"], 41.1205);
    assert_near(&photo["gps"]["lon"], 122.0712);
    assert_eq!(s(photo, "taken_at"), "2026-11-20T09:15:30+08:00");
    assert_eq!(s(photo, "added_by"), WORKER);
    check_original(&dev, photo, &before);
    check_derived(&dev, s(photo, "display"), 1600, photo);
    check_derived(&dev, s(photo, "thumb"), 320, photo);

    // Three blobs, each under blobs/<first 2 hex>/<hash>, and a row for each.
    let files = dev.blob_files();
    assert_eq!(files.len(), 3, "{files:?}");
    for (name, rel) in &files {
        assert_eq!(rel, &std::path::Path::new("blobs").join(&name[..2]).join(name));
    }
    let db = dev.db();
    for (key, kind) in [("original", "original"), ("display", "display"), ("thumb", "thumb")] {
        let (k, mime): (String, String) = db
            .query_row("SELECT kind, mime FROM blobs WHERE hash = ?1", [s(photo, key)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((k.as_str(), mime.as_str()), (kind, "image/jpeg"));
    }
    assert!(dev.staging().is_empty(), "{:?}", dev.staging());

    let text = dev.ok(["show", &id]);
    for want in [
        "photos (1)",
        "image/jpeg 1200x900 306641 bytes",
        "taken 2026-11-20T09:15:30+08:00",
        "GPS 41.120500, 122.071200",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

#[test]
fn the_same_photo_in_two_reports_is_stored_once() {
    let dev = Device::setup();
    let photo = fixture("rotated-exif6.jpg");
    let a = dev.report(&["--category", "lawn", "--photo", &photo]);
    let files = dev.blob_files();
    assert_eq!(files.len(), 3);
    let b = dev.report(&["--category", "curb-stone", "--photo", &photo]);
    assert_eq!(dev.blob_files(), files);
    assert_eq!(
        only_photo(&dev.show(&a))["original"],
        only_photo(&dev.show(&b))["original"]
    );
    let summary = dev.json(["status", "--json"]);
    assert_eq!(summary["photo_blobs"], 1);
}

#[test]
fn a_wide_photo_is_shrunk_to_the_display_and_thumbnail_edges() {
    let dev = Device::setup();
    let path = fixture("wide-2400x1000.jpg");
    let id = dev.report(&["--category", "illegal-construction", "--photo", &path]);
    let incident = dev.show(&id);
    let photo = only_photo(&incident);
    assert_eq!(
        (photo["width"].as_u64(), photo["height"].as_u64()),
        (Some(2400), Some(1000))
    );
    assert_eq!(photo["taken_at"], Value::Null);
    assert_eq!(photo["gps"], Value::Null);
    check_original(&dev, photo, &std::fs::read(&path).unwrap());
    check_derived(&dev, s(photo, "display"), 1600, photo);
    check_derived(&dev, s(photo, "thumb"), 320, photo);
}

#[test]
fn exif_orientation_is_applied() {
    let dev = Device::setup();
    let path = fixture("rotated-exif6.jpg");
    let id = dev.report(&["--category", "lawn", "--photo", &path]);
    let incident = dev.show(&id);
    let photo = only_photo(&incident);
    assert_eq!(
        (photo["width"].as_u64(), photo["height"].as_u64()),
        (Some(600), Some(800))
    );
    assert_eq!(s(photo, "taken_at"), "2026-11-21T14:02:00");
    check_original(&dev, photo, &std::fs::read(&path).unwrap());
    // Turned upright: the red band stored on the left is now along the top.
    let display = check_derived(&dev, s(photo, "display"), 1600, photo).to_rgb8();
    let red = |x: u32, y: u32| {
        let [r, g, b] = display.get_pixel(x, y).0;
        r > 200 && g < 60 && b < 60
    };
    assert!(red(300, 50), "top is {:?}", display.get_pixel(300, 50));
    assert!(!red(300, 700), "bottom is {:?}", display.get_pixel(300, 700));
    assert!(!red(50, 400), "left is {:?}", display.get_pixel(50, 400));
    check_derived(&dev, s(photo, "thumb"), 320, photo);
}

#[test]
fn a_png_photo_works() {
    let dev = Device::setup();
    let path = fixture("curb.png");
    let id = dev.report(&["--category", "curb-stone", "--photo", &path]);
    let incident = dev.show(&id);
    let photo = only_photo(&incident);
    assert_eq!(s(photo, "mime"), "image/png");
    assert_eq!(
        (photo["width"].as_u64(), photo["height"].as_u64()),
        (Some(640), Some(480))
    );
    check_original(&dev, photo, &std::fs::read(&path).unwrap());
    check_derived(&dev, s(photo, "display"), 1600, photo);
    check_derived(&dev, s(photo, "thumb"), 320, photo);
}

/// A device with one incident and its photo's blobs, to show that a failed
/// report changes neither.
fn device_with_one_incident() -> Device {
    let dev = Device::setup();
    dev.report(&["--category", "lawn", "--photo", &fixture("rotated-exif6.jpg")]);
    dev
}

/// Runs a report that must fail because of `culprit`, then checks that
/// nothing was stored and nothing is left behind.
#[track_caller]
fn check_refused(dev: &Device, photos: &[&str], culprit: &str, why: &str) {
    let ids = dev.ids(&[]);
    let blobs = dev.blob_files();
    let mut args = vec!["report", "--category", "lawn"];
    for p in photos {
        args.extend(["--photo", p]);
    }
    let err = dev.fails(&args, 1, &[culprit, why]);
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    assert_eq!(dev.ids(&[]), ids, "an incident was stored");
    assert_eq!(dev.blob_files(), blobs, "blobs were stored");
    dev.ok(["status"]);
    assert_eq!(dev.staging(), Vec::<String>::new(), "left in staging/");
}

#[test]
fn a_bad_photo_is_refused_with_its_name_and_stores_nothing() {
    let dev = device_with_one_incident();
    let missing = dev.path().join("no-such-photo.jpg");
    let missing = missing.to_str().unwrap();
    let cases = [
        (fixture("truncated.jpg"), "corrupt or truncated"),
        (fixture("not-an-image.jpg"), "not a JPEG or PNG"),
        (fixture("zero-bytes.png"), "empty"),
        (missing.to_owned(), "cannot read photo"),
    ];
    for (path, why) in &cases {
        check_refused(&dev, &[path], path, why);
    }
}

#[test]
fn one_bad_photo_spoils_the_whole_report() {
    let dev = device_with_one_incident();
    let good = fixture("curb.png");
    let bad = fixture("truncated.jpg");
    check_refused(&dev, &[&good, &bad], &bad, "corrupt or truncated");
    check_refused(&dev, &[&bad, &good], &bad, "corrupt or truncated");
    let empty = fixture("zero-bytes.png");
    check_refused(&dev, &[&good, &good, &empty], &empty, "empty");
}

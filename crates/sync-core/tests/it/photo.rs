//! The photo pipeline on real camera files (see `fixtures/photos/README.md`).

use image::{GenericImageView, ImageFormat, Rgb};
use sync_core::incident::GeoPoint;
use sync_core::photo::{
    self, DISPLAY_EDGE, Derived, ExifInfo, Format, MAX_BYTES, PhotoError, ProcessedPhoto, THUMB_EDGE,
};

use crate::photo_fixture;

#[track_caller]
fn process(name: &str) -> ProcessedPhoto {
    photo::process(&photo_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks that a derived copy is a plain JPEG of the size it claims, with no
/// EXIF left to make a viewer turn it a second time, and returns its pixels.
#[track_caller]
fn check_derived(what: &str, copy: &Derived, expected: (u32, u32)) -> image::RgbImage {
    assert_eq!((copy.width, copy.height), expected, "{what}: reported size");
    assert_eq!(
        image::guess_format(&copy.bytes).ok(),
        Some(ImageFormat::Jpeg),
        "{what}: not a JPEG"
    );
    let decoded = image::load_from_memory(&copy.bytes).unwrap_or_else(|e| panic!("{what} does not decode: {e}"));
    assert_eq!(decoded.dimensions(), expected, "{what}: decoded size");
    assert_eq!(
        photo::read_exif(&copy.bytes).orientation,
        1,
        "{what}: carries an EXIF orientation"
    );
    decoded.to_rgb8()
}

#[track_caller]
fn check_long_edges(p: &ProcessedPhoto, display: u32, thumb: u32) {
    assert_eq!(p.display.width.max(p.display.height), display, "display long edge");
    assert_eq!(p.thumb.width.max(p.thumb.height), thumb, "thumbnail long edge");
}

fn is_red(Rgb([r, g, b]): Rgb<u8>) -> bool {
    r > 200 && g < 60 && b < 60
}

#[test]
fn a_phone_jpeg_gives_its_size_capture_time_and_place() {
    let p = process("manhole-exif.jpg");
    assert_eq!(p.format, Format::Jpeg);
    assert_eq!(p.format.mime(), "image/jpeg");
    assert_eq!((p.width, p.height), (1200, 900));
    assert_eq!(p.exif.orientation, 1);
    assert_eq!(p.exif.taken_at.as_deref(), Some("2026-11-20T09:15:30+08:00"));
    let GeoPoint { lat, lon } = p.exif.gps.expect("the fixture has GPS tags");
    assert!(
        (lat - 41.1205).abs() < 1e-6 && (lon - 122.0712).abs() < 1e-6,
        "gps = ({lat}, {lon})"
    );

    // 1200 is under the display edge: the display copy is not enlarged.
    const { assert!(1200 < DISPLAY_EDGE) };
    check_long_edges(&p, 1200, THUMB_EDGE);
    check_derived("display", &p.display, (1200, 900));
    check_derived("thumbnail", &p.thumb, (320, 240));
}

#[test]
fn exif_orientation_is_applied_to_size_and_pixels() {
    let p = process("rotated-exif6.jpg");
    assert_eq!(p.exif.orientation, 6);
    // No offset tag: the camera's local time, unqualified.
    assert_eq!(p.exif.taken_at.as_deref(), Some("2026-11-21T14:02:00"));
    assert_eq!(p.exif.gps, None);
    assert_eq!((p.width, p.height), (600, 800), "shown portrait");

    let display = check_derived("display", &p.display, (600, 800));
    check_derived("thumbnail", &p.thumb, (240, 320));

    // The stored left band (red) is the top after turning 90° clockwise.
    for (x, y) in [(300, 20), (20, 20), (580, 180)] {
        assert!(
            is_red(*display.get_pixel(x, y)),
            "display ({x},{y}) = {:?}, expected red",
            display.get_pixel(x, y)
        );
    }
    for (x, y) in [(300, 780), (20, 400), (580, 780)] {
        assert!(
            !is_red(*display.get_pixel(x, y)),
            "display ({x},{y}) = {:?} is red",
            display.get_pixel(x, y)
        );
    }
    // The thumbnail is turned the same way.
    let thumb = image::load_from_memory(&p.thumb.bytes).unwrap().to_rgb8();
    assert!(
        is_red(*thumb.get_pixel(120, 10)),
        "thumb top = {:?}",
        thumb.get_pixel(120, 10)
    );
    assert!(
        !is_red(*thumb.get_pixel(120, 310)),
        "thumb bottom = {:?}",
        thumb.get_pixel(120, 310)
    );
}

#[test]
fn a_wide_photo_shrinks_to_the_display_and_thumbnail_edges() {
    let p = process("wide-2400x1000.jpg");
    assert_eq!((p.width, p.height), (2400, 1000));
    assert_eq!(
        p.exif,
        ExifInfo {
            orientation: 1,
            ..ExifInfo::default()
        }
    );
    // 1000 × 1600 / 2400 = 666.7 rounds to 667; 1000 × 320 / 2400 = 133.3 to 133.
    check_long_edges(&p, DISPLAY_EDGE, THUMB_EDGE);
    check_derived("display", &p.display, (1600, 667));
    check_derived("thumbnail", &p.thumb, (320, 133));
}

#[test]
fn a_png_is_kept_as_png_with_jpeg_copies() {
    let p = process("curb.png");
    assert_eq!(p.format, Format::Png);
    assert_eq!(p.format.mime(), "image/png");
    assert_eq!((p.width, p.height), (640, 480));
    assert_eq!(
        p.exif,
        ExifInfo {
            orientation: 1,
            ..ExifInfo::default()
        }
    );
    let display = check_derived("display", &p.display, (640, 480));
    check_derived("thumbnail", &p.thumb, (320, 240));

    // Same picture: the display copy of a lossless source is close to it.
    let png = image::load_from_memory_with_format(&photo_fixture("curb.png"), ImageFormat::Png)
        .unwrap()
        .to_rgb8();
    let diff: u64 = png
        .pixels()
        .zip(display.pixels())
        .map(|(a, b)| a.0.iter().zip(b.0).map(|(&x, y)| u64::from(x.abs_diff(y))).sum::<u64>())
        .sum();
    let mean = diff as f64 / (640.0 * 480.0 * 3.0);
    assert!(
        mean < 6.0,
        "display copy differs from the PNG by {mean:.1} per channel on average"
    );
}

#[test]
fn files_that_are_not_photos_are_refused_with_a_readable_reason() {
    #[track_caller]
    fn check(name: &str, matches: fn(&PhotoError) -> bool, message_has: &[&str]) {
        let err = match photo::process(&photo_fixture(name)) {
            Ok(p) => panic!("{name} was accepted as a {}×{} photo", p.width, p.height),
            Err(e) => e,
        };
        assert!(matches(&err), "{name}: wrong error {err:?}");
        let msg = err.to_string();
        for part in message_has {
            assert!(msg.contains(part), "{name}: message `{msg}` lacks `{part}`");
        }
    }

    check(
        "truncated.jpg",
        |e| matches!(e, PhotoError::Corrupt { format: "JPEG", .. }),
        &["JPEG", "corrupt or truncated"],
    );
    check(
        "not-an-image.jpg",
        |e| matches!(e, PhotoError::UnknownFormat),
        &["not a JPEG or PNG image"],
    );
    check(
        "zero-bytes.png",
        |e| matches!(e, PhotoError::Empty),
        &["the file is empty"],
    );

    // A decompression bomb is refused from its header, before decoding: a
    // JPEG frame header claiming 20000×20000 pixels and no image data.
    let mut bomb = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08];
    bomb.extend_from_slice(&20_000_u16.to_be_bytes()); // height
    bomb.extend_from_slice(&20_000_u16.to_be_bytes()); // width
    bomb.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]); // one component
    let err = photo::process(&bomb).unwrap_err();
    assert!(
        matches!(
            err,
            PhotoError::TooManyPixels {
                width: 20_000,
                height: 20_000
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("20000×20000"), "{err}");

    let huge = vec![0_u8; MAX_BYTES + 1];
    let err = photo::process(&huge).unwrap_err();
    assert!(
        matches!(err, PhotoError::TooLarge { size } if size == MAX_BYTES + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("limited to"), "{err}");

    // A PNG signature with nothing behind it is corrupt, not unknown.
    let err = photo::process(b"\x89PNG\r\n\x1a\n").unwrap_err();
    assert!(matches!(err, PhotoError::Corrupt { format: "PNG", .. }), "{err:?}");
}

/// Found by the `photo_pipeline` fuzzer: jpeg-decoder 0.3 overflows a u16
/// on a JPEG of 65,535 rows (a panic with overflow checks, garbage without).
/// The pipeline refuses such a file with a sentence instead.
#[test]
fn a_jpeg_too_tall_for_the_decoder_is_refused() {
    let path = format!(
        "{}/../../fixtures/fuzz/photo_pipeline/jpeg-65535-rows-tall.jpg",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    match sync_core::photo::process(&bytes) {
        Err(e @ sync_core::photo::PhotoError::TooTall { height: 65_535 }) => {
            assert!(e.to_string().contains("65535 pixels tall"), "{e}");
        }
        other => panic!("expected TooTall, got {:?}", other.map(|_| "a photo")),
    }
}

/// Found by the `photo_pipeline` fuzzer (docs/fuzzing.md, open 4): a few KB
/// claiming millions of pixels, which jpeg-decoder would decode block by
/// block for seconds. The pipeline refuses them with a sentence, before
/// decoding; a real photo of the same size passes.
#[test]
fn a_jpeg_with_far_too_few_bytes_for_its_pixels_is_refused_before_decoding() {
    for (name, w, h) in [
        ("timeout-3300x12296.jpg", 3_300, 12_296),
        ("timeout-adobe-96x65279.jpg", 96, 65_279),
    ] {
        let path = format!(
            "{}/../../fixtures/fuzz/photo_pipeline/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap();
        match sync_core::photo::process(&bytes) {
            Err(e @ sync_core::photo::PhotoError::TooSparse { width, height, size }) => {
                assert_eq!((width, height, size), (w, h, bytes.len()), "{name}");
                assert!(e.to_string().contains("too few for a photo"), "{e}");
            }
            other => panic!("{name}: expected TooSparse, got {:?}", other.map(|_| "a photo")),
        }
    }
    let camera = std::fs::read(format!(
        "{}/../../fixtures/photos/manhole-exif.jpg",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(sync_core::photo::process(&camera).is_ok());
}

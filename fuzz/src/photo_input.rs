//! The `photo_pipeline` target: what one input does. `sync-core`'s replay
//! test includes this file with `#[path]` (under feature `photo`).

use sync_core::photo::{self, DISPLAY_EDGE, Format, THUMB_EDGE};

/// Larger inputs are skipped, so one run stays in milliseconds.
pub const MAX_INPUT: usize = 256 * 1024;

/// Reads EXIF and runs the whole pipeline; what comes out must be JPEG
/// copies within their edges, the thumbnail no larger than the display copy.
/// True when the pipeline made both copies.
pub fn photo_pipeline(data: &[u8]) -> bool {
    if data.len() > MAX_INPUT {
        return false;
    }
    let exif = photo::read_exif(data);
    assert!((1..=8).contains(&exif.orientation), "orientation {}", exif.orientation);
    let Ok(p) = photo::process(data) else {
        return false;
    };
    for (copy, edge) in [(&p.display, DISPLAY_EDGE), (&p.thumb, THUMB_EDGE)] {
        assert!(
            copy.width.max(copy.height) <= edge,
            "{}×{} over {edge}",
            copy.width,
            copy.height
        );
        assert!(copy.width > 0 && copy.height > 0, "an empty copy");
        assert_eq!(Format::sniff(&copy.bytes), Some(Format::Jpeg), "a copy is a JPEG");
    }
    assert!(p.thumb.width <= p.display.width && p.thumb.height <= p.display.height);
    assert_eq!(p.exif, exif, "process reads the EXIF read_exif reads");
    true
}

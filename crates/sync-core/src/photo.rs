//! Turning a camera file into what an incident stores: the untouched
//! original, a display copy, a thumbnail, and what EXIF says about it.
//!
//! Pure bytes in, bytes out: reading the user's file and writing blobs are
//! the caller's business. JPEGs are decoded with DCT scaling (at 1/2, 1/4 or
//! 1/8 size when that still covers the display copy), which skips most of
//! the decoding work for a phone photo; resizing uses SIMD convolution and
//! encoding a SIMD JPEG encoder; the thumbnail is made on a second thread
//! while the display copy is encoded.

use std::io::Cursor;

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use crate::incident::{GeoPoint, rfc3339};

/// Long edge of the display copy, in pixels.
pub const DISPLAY_EDGE: u32 = 1600;
/// Long edge of the thumbnail, in pixels.
pub const THUMB_EDGE: u32 = 320;
/// Largest photo accepted, in bytes: the protocol's limit, so a photo the
/// device takes is one the server takes.
pub const MAX_BYTES: usize = crate::protocol::MAX_PHOTO_BYTES;
/// Largest photo accepted, in pixels (a decompression-bomb guard).
pub const MAX_PIXELS: u64 = 120_000_000;
/// The most pixels a JPEG may claim per byte of file. Baseline JPEG spends
/// at least two bits on every 8×8 block of every component, so even a
/// flat, noiseless image at the lowest quality stays under about 200
/// pixels a byte (a camera's photo under 10): 1,000 refuses only files
/// that are truncated or made up.
pub const PIXELS_PER_JPEG_BYTE: u64 = 1_000;
/// Tallest JPEG accepted, in pixels: jpeg-decoder 0.3 counts rows of 8×8
/// blocks in a u16 and computes `(row + 1) * 8` in it (`decode_scan`), which
/// overflows past this height, a panic where overflow checks are on. No
/// camera takes such a photo; fuzzing found it (`fixtures/fuzz/photo_pipeline/`).
pub const MAX_JPEG_HEIGHT: u32 = 8 * 8191;
const JPEG_QUALITY: u8 = 82;

#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes; photos are limited to {MAX_BYTES} bytes")]
    TooLarge { size: usize },
    #[error("the file is not a JPEG or PNG image")]
    UnknownFormat,
    #[error("the image is {width}×{height} pixels; photos are limited to {MAX_PIXELS} pixels")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the JPEG is {height} pixels tall; JPEGs are limited to {MAX_JPEG_HEIGHT} pixels tall")]
    TooTall { height: u32 },
    #[error(
        "the JPEG claims {width}×{height} pixels in only {size} bytes, too few for a photo: it is truncated or not a photo"
    )]
    TooSparse { width: u32, height: u32, size: usize },
    #[error("the {format} image is corrupt or truncated: {reason}")]
    Corrupt { format: &'static str, reason: String },
    #[error("could not encode the {what} copy: {reason}")]
    Encode { what: &'static str, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Format::Png)
        } else {
            None
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
        }
    }
}

/// A derived JPEG copy.
#[derive(Debug, Clone)]
pub struct Derived {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// What EXIF says, when the camera wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExifInfo {
    /// 1..=8 as in the EXIF spec; 1 when absent.
    pub orientation: u16,
    /// RFC 3339 when an offset tag is present, else local `YYYY-MM-DDTHH:MM:SS`.
    pub taken_at: Option<String>,
    pub gps: Option<GeoPoint>,
}

#[derive(Debug, Clone)]
pub struct ProcessedPhoto {
    pub format: Format,
    /// Pixel size as shown, orientation applied.
    pub width: u32,
    pub height: u32,
    pub exif: ExifInfo,
    pub display: Derived,
    pub thumb: Derived,
}

/// Decodes, checks and derives; the original bytes are left to the caller.
pub fn process(bytes: &[u8]) -> Result<ProcessedPhoto, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(PhotoError::TooLarge { size: bytes.len() });
    }
    let format = Format::sniff(bytes).ok_or(PhotoError::UnknownFormat)?;
    let exif = read_exif(bytes);
    let (pixels, stored_w, stored_h) = match format {
        Format::Jpeg => decode_jpeg(bytes, DISPLAY_EDGE)?,
        Format::Png => decode_png(bytes)?,
    };
    let orientation = Orientation::from_exif(exif.orientation as u8).unwrap_or(Orientation::NoTransforms);
    let turned = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    let (width, height) = if turned {
        (stored_h, stored_w)
    } else {
        (stored_w, stored_h)
    };

    let display_img = resize_to_edge(pixels, DISPLAY_EDGE)?;
    let (display, thumb) = std::thread::scope(|s| {
        let thumb = s.spawn(|| {
            encode_jpeg(
                resize_to_edge(display_img.clone(), THUMB_EDGE)?,
                orientation,
                "thumbnail",
            )
        });
        let display = encode_jpeg(display_img.clone(), orientation, "display");
        (display, thumb.join().expect("thumbnail thread does not panic"))
    });
    let (display, thumb) = (display?, thumb?);
    Ok(ProcessedPhoto {
        format,
        width,
        height,
        exif,
        display,
        thumb,
    })
}

/// Returns RGB pixels, possibly DCT-scaled so the long edge is still at least
/// `want_edge`, and the full stored size.
fn decode_jpeg(bytes: &[u8], want_edge: u32) -> Result<(RgbImage, u32, u32), PhotoError> {
    let corrupt = |e: jpeg_decoder::Error| PhotoError::Corrupt {
        format: "JPEG",
        reason: e.to_string(),
    };
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| PhotoError::Corrupt {
        format: "JPEG",
        reason: "no frame header".into(),
    })?;
    let (full_w, full_h) = (u32::from(info.width), u32::from(info.height));
    check_pixels(full_w, full_h)?;
    if full_h > MAX_JPEG_HEIGHT {
        return Err(PhotoError::TooTall { height: full_h });
    }
    // jpeg-decoder decodes every block of the claimed size even when the
    // data has run out, which takes seconds for a few KB claiming tens of
    // megapixels (docs/fuzzing.md, open 4). A camera's JPEG holds far more.
    if (bytes.len() as u64) * PIXELS_PER_JPEG_BYTE < u64::from(full_w) * u64::from(full_h) {
        return Err(PhotoError::TooSparse {
            width: full_w,
            height: full_h,
            size: bytes.len(),
        });
    }
    let long = full_w.max(full_h);
    if long > want_edge {
        // Ask for the size whose long edge is `want_edge`; the decoder picks
        // the smallest DCT scale that still reaches it.
        let rw = (u64::from(full_w) * u64::from(want_edge) / u64::from(long)).max(1) as u16;
        let rh = (u64::from(full_h) * u64::from(want_edge) / u64::from(long)).max(1) as u16;
        decoder.scale(rw, rh).map_err(corrupt)?;
    }
    let data = decoder.decode().map_err(corrupt)?;
    let info = decoder.info().expect("decoded JPEG has info");
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let n = w as usize * h as usize;
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => data,
        jpeg_decoder::PixelFormat::L8 => data.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => data.chunks_exact(2).flat_map(|c| [c[0], c[0], c[0]]).collect(),
        jpeg_decoder::PixelFormat::CMYK32 => data
            .chunks_exact(4)
            .flat_map(|c| {
                let k = u16::from(c[3]);
                [c[0], c[1], c[2]].map(|v| (u16::from(v) * k / 255) as u8)
            })
            .collect(),
    };
    if rgb.len() < n * 3 {
        return Err(PhotoError::Corrupt {
            format: "JPEG",
            reason: "fewer pixels than the header promises".into(),
        });
    }
    let img = RgbImage::from_raw(w, h, rgb).ok_or_else(|| PhotoError::Corrupt {
        format: "JPEG",
        reason: "pixel buffer does not match its size".into(),
    })?;
    Ok((img, full_w, full_h))
}

fn decode_png(bytes: &[u8]) -> Result<(RgbImage, u32, u32), PhotoError> {
    let corrupt = |e: image::ImageError| PhotoError::Corrupt {
        format: Format::Png.name(),
        reason: e.to_string(),
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let (w, h) = reader.into_dimensions().map_err(corrupt)?;
    check_pixels(w, h)?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png);
    reader.no_limits();
    let img = reader.decode().map_err(corrupt)?;
    Ok((img.to_rgb8(), w, h))
}

fn check_pixels(w: u32, h: u32) -> Result<(), PhotoError> {
    if w == 0 || h == 0 {
        return Err(PhotoError::Corrupt {
            format: "image",
            reason: "it has no pixels".into(),
        });
    }
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(PhotoError::TooManyPixels { width: w, height: h });
    }
    Ok(())
}

/// Shrinks so the long edge is at most `edge`; never enlarges.
fn resize_to_edge(img: RgbImage, edge: u32) -> Result<RgbImage, PhotoError> {
    let (w, h) = img.dimensions();
    let long = w.max(h);
    if long <= edge {
        return Ok(img);
    }
    let nw = ((u64::from(w) * u64::from(edge) + u64::from(long) / 2) / u64::from(long)).max(1) as u32;
    let nh = ((u64::from(h) * u64::from(edge) + u64::from(long) / 2) / u64::from(long)).max(1) as u32;
    let encode_err = |reason: String| PhotoError::Encode {
        what: "resized",
        reason,
    };
    // After a DCT-scaled decode the display copy is at most a 2× step,
    // where Catmull-Rom looks the same as Lanczos3 at about half the cost;
    // larger steps (the thumbnail) keep Lanczos3.
    let filter = if long <= edge * 2 {
        FilterType::CatmullRom
    } else {
        FilterType::Lanczos3
    };
    let src = FirImage::from_vec_u8(w, h, img.into_raw(), PixelType::U8x3).map_err(|e| encode_err(e.to_string()))?;
    let mut dst = FirImage::new(nw, nh, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)),
        )
        .map_err(|e| encode_err(e.to_string()))?;
    RgbImage::from_raw(nw, nh, dst.into_vec()).ok_or_else(|| encode_err("buffer size".into()))
}

fn encode_jpeg(img: RgbImage, orientation: Orientation, what: &'static str) -> Result<Derived, PhotoError> {
    let mut dynimg = DynamicImage::ImageRgb8(img);
    dynimg.apply_orientation(orientation);
    let rgb = dynimg.into_rgb8();
    let (width, height) = rgb.dimensions();
    let encode_err = |reason: String| PhotoError::Encode { what, reason };
    let (w16, h16) = (
        u16::try_from(width).map_err(|_| encode_err("too wide".into()))?,
        u16::try_from(height).map_err(|_| encode_err("too tall".into()))?,
    );
    let mut bytes = Vec::with_capacity((width * height / 4) as usize);
    jpeg_encoder::Encoder::new(&mut bytes, JPEG_QUALITY)
        .encode(rgb.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| encode_err(e.to_string()))?;
    Ok(Derived { bytes, width, height })
}

/// Reads orientation, capture time and GPS. A photo without EXIF, or with
/// EXIF we cannot parse, is still a photo: this never fails.
pub fn read_exif(bytes: &[u8]) -> ExifInfo {
    use exif::{In, Tag, Value};
    let mut info = ExifInfo {
        orientation: 1,
        ..ExifInfo::default()
    };
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return info;
    };
    let ascii = |tag: Tag| -> Option<String> {
        match &exif.get_field(tag, In::PRIMARY)?.value {
            Value::Ascii(parts) => parts
                .first()
                .map(|p| String::from_utf8_lossy(p).trim_end_matches('\0').trim().to_owned())
                .filter(|s| !s.is_empty()),
            _ => None,
        }
    };
    if let Some(o) = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        && (1..=8).contains(&o)
    {
        info.orientation = o as u16;
    }
    let when = ascii(Tag::DateTimeOriginal).or_else(|| ascii(Tag::DateTime));
    if let Some(when) = when
        && let Ok(local) = chrono::NaiveDateTime::parse_from_str(&when, "%Y:%m:%d %H:%M:%S")
    {
        let offset = ascii(Tag::OffsetTimeOriginal)
            .or_else(|| ascii(Tag::OffsetTime))
            .and_then(|o| chrono::DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{o}")).ok())
            .map(|d| *d.offset());
        info.taken_at = Some(match offset.and_then(|off| local.and_local_timezone(off).single()) {
            Some(t) => rfc3339(&t),
            None => local.format("%Y-%m-%dT%H:%M:%S").to_string(),
        });
    }
    let coord = |tag: Tag, ref_tag: Tag, negative: &str| -> Option<f64> {
        let Value::Rational(parts) = &exif.get_field(tag, In::PRIMARY)?.value else {
            return None;
        };
        if parts.len() < 3 || parts.iter().any(|r| r.denom == 0) {
            return None;
        }
        let deg = parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0;
        let sign = if ascii(ref_tag).as_deref() == Some(negative) {
            -1.0
        } else {
            1.0
        };
        Some(sign * deg)
    };
    if let (Some(lat), Some(lon)) = (
        coord(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S"),
        coord(Tag::GPSLongitude, Tag::GPSLongitudeRef, "W"),
    ) && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
    {
        info.gps = Some(GeoPoint { lat, lon });
    }
    info
}

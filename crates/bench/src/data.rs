//! Deterministic test data: incidents as a worker would log them, device
//! stores filled with them, and a photo-like 12-megapixel JPEG.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use automerge::ActorId;
use chrono::{DateTime, FixedOffset, TimeDelta};
use sync_core::taxonomy::{DEFAULT_CATEGORIES_JSON, DEFAULT_GRIDS_JSON};
use sync_core::{IncidentDoc, IncidentId, Location, NewIncident, Profile, Store, Taxonomy};
use uuid::Uuid;

/// xorshift64*: a few lines, no dependency, the same data on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for chunk in b.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        b
    }
}

/// The morning the generated incidents were seen, on the workers' clock.
pub fn base_time() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-11-20T08:00:00+08:00").expect("valid time")
}

const WHAT: &[&str] = &[
    "井盖缺了一角",
    "路面塌陷，约半米见方",
    "人行道板松动",
    "路灯不亮",
    "占道经营",
    "绿地被踩踏",
    "楼道堆放杂物",
    "违章停车堵住消防通道",
    "屋顶漏水",
    "邻里噪音纠纷",
];
const WHERE: &[&str] = &["鹤乡路", "兴隆台街", "创新路", "惠宾街", "石油大街"];

/// Makes incidents for one device: what `field report` would store.
pub struct Reporter {
    rng: Rng,
    categories: Vec<String>,
    worker: String,
    device: Uuid,
    grids: Vec<String>,
    made: u64,
}

impl Reporter {
    pub fn new(profile: &Profile, seed: u64) -> Reporter {
        Reporter {
            rng: Rng::new(seed),
            categories: Taxonomy::builtin().codes().into_iter().map(str::to_owned).collect(),
            worker: profile.worker.clone(),
            device: profile.device,
            grids: profile.grids.clone(),
            made: 0,
        }
    }

    /// The next incident, seen a little after the previous one.
    pub fn incident(&mut self) -> NewIncident {
        let r = &mut self.rng;
        let captured_at = base_time() + TimeDelta::seconds(self.made as i64 * 37 + r.below(30) as i64);
        self.made += 1;
        let id = IncidentId::new(captured_at.timestamp_millis() as u64, r.bytes());
        let category = self.categories[r.below(self.categories.len() as u64) as usize].clone();
        let description = format!(
            "{}，{}附近，第{}处",
            WHAT[r.below(WHAT.len() as u64) as usize],
            WHERE[r.below(WHERE.len() as u64) as usize],
            r.below(100)
        );
        let address =
            (r.below(3) > 0).then(|| format!("{}{}号", WHERE[r.below(WHERE.len() as u64) as usize], 1 + r.below(200)));
        let grid = self.grids[r.below(self.grids.len() as u64) as usize].clone();
        NewIncident {
            id,
            category,
            description,
            location: Location {
                lat: Some(41.12 + r.unit() * 0.008),
                lon: Some(122.064 + r.unit() * 0.01),
                accuracy_m: Some((3 + r.below(20)) as f64),
                address,
            },
            grid,
            reporter: self.worker.clone(),
            device: self.device.to_string(),
            captured_at,
            photos: vec![],
            case: None,
        }
    }

    pub fn actor(&self) -> ActorId {
        ActorId::from(self.device.as_bytes())
    }
}

/// Sets a device up as `field init` would, with a fixed device id.
pub fn init_device(dir: &Path, worker: &str, grids: &[String], device: Uuid) -> Result<Profile> {
    let mut store = Store::open(dir)?;
    Ok(store.init(worker, None, grids, device, DEFAULT_CATEGORIES_JSON, DEFAULT_GRIDS_JSON)?)
}

/// Logs `n` incidents with [`Store::save_many`], at most `per_tx` to a
/// transaction: per incident the work of [`Store::save`] (build the
/// document, read it back through the schema check, save its bytes, write
/// the row with its projected columns and the outbox entry), but committed
/// together. A batch's documents are held in memory until its commit.
pub fn log_batched(store: &mut Store, reporter: &mut Reporter, n: usize, per_tx: usize) -> Result<Duration> {
    let actor = reporter.actor();
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(per_tx.max(1));
        let mut docs = Vec::with_capacity(batch);
        let mut seen = base_time();
        for _ in 0..batch {
            let new = reporter.incident();
            seen = new.captured_at;
            docs.push(IncidentDoc::create(&new, actor.clone())?);
        }
        // Saved as the last of them was seen.
        store.save_many(&mut docs, seen)?;
        left -= batch;
    }
    Ok(start.elapsed())
}

/// A device data dir set up for `worker` and holding `n` unsynced incidents.
pub fn filled_device(dir: &Path, worker: &str, grids: &[String], device: Uuid, n: usize, seed: u64) -> Result<Profile> {
    let profile = init_device(dir, worker, grids, device)?;
    let mut reporter = Reporter::new(&profile, seed);
    let mut store = Store::open(dir)?;
    log_batched(&mut store, &mut reporter, n, 1_000)?;
    let own = store.manifest()?.own.unwrap_or_default().count;
    ensure!(
        own == n as u64,
        "the device counts {own} of its {n} incidents as its own"
    );
    Ok(profile)
}

/// Copies a closed device data dir (SQLite file, blobs) to `to`.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// A JPEG that compresses like a phone photo: a sky gradient, a textured
/// ground, blocks of "buildings", fine detail and sensor noise, with EXIF
/// (orientation 6, capture time with offset, GPS) as a phone writes it.
pub fn photo_jpeg(width: u32, height: u32, quality: u8) -> Result<Vec<u8>> {
    use image::ImageEncoder as _;
    let mut rng = Rng::new(7);
    // Coarse value noise, bilinearly interpolated, for texture.
    let (gw, gh) = (width / 64 + 2, height / 64 + 2);
    let grid: Vec<f32> = (0..gw * gh).map(|_| rng.unit() as f32).collect();
    let blocks: Vec<(u32, u32, u32, u32, [u8; 3])> = (0..24)
        .map(|_| {
            let x = rng.below(u64::from(width)) as u32;
            let w = (width / 20) + rng.below(u64::from(width / 8)) as u32;
            let top = height / 4 + rng.below(u64::from(height / 4)) as u32;
            let shade = 90 + rng.below(120) as u8;
            (
                x,
                w,
                top,
                height * 7 / 10,
                [shade, shade.saturating_sub(10), shade.saturating_sub(25)],
            )
        })
        .collect();
    let horizon = height * 7 / 10;
    let mut px = vec![0u8; width as usize * height as usize * 3];
    for y in 0..height {
        let gy = y as f32 / 64.0;
        let (y0, fy) = (gy as u32, gy.fract());
        for x in 0..width {
            let gx = x as f32 / 64.0;
            let (x0, fx) = (gx as u32, gx.fract());
            let at = |i: u32, j: u32| grid[(j * gw + i) as usize];
            let tex = at(x0, y0) * (1.0 - fx) * (1.0 - fy)
                + at(x0 + 1, y0) * fx * (1.0 - fy)
                + at(x0, y0 + 1) * (1.0 - fx) * fy
                + at(x0 + 1, y0 + 1) * fx * fy;
            let mut rgb = if y < horizon {
                let t = y as f32 / horizon as f32;
                [110.0 + 90.0 * t, 150.0 + 70.0 * t, 220.0 + 20.0 * t]
            } else {
                let t = tex * 60.0;
                [80.0 + t, 75.0 + t, 65.0 + t * 0.8]
            };
            for &(bx, bw, top, bottom, c) in &blocks {
                if x >= bx && x < bx + bw && y >= top && y < bottom {
                    let window = (x / 23 + y / 31) % 3 == 0;
                    let k = if window { 0.55 } else { 1.0 };
                    rgb = [f32::from(c[0]) * k, f32::from(c[1]) * k, f32::from(c[2]) * k];
                }
            }
            let n = (rng.next_u64() >> 40) as u32;
            let detail = (tex - 0.5) * 24.0;
            let i = (y as usize * width as usize + x as usize) * 3;
            for (c, v) in rgb.iter().enumerate() {
                let noise = ((n >> (c * 6)) & 15) as f32 - 7.5;
                px[i + c] = (v + detail + noise).clamp(0.0, 255.0) as u8;
            }
        }
    }
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    enc.set_exif_metadata(exif_block())
        .map_err(|e| anyhow::anyhow!("cannot add EXIF: {e}"))?;
    enc.write_image(&px, width, height, image::ExtendedColorType::Rgb8)?;
    Ok(out)
}

/// A little-endian TIFF block: IFD0 (orientation, pointers), the Exif IFD
/// (capture time and offset) and the GPS IFD.
fn exif_block() -> Vec<u8> {
    let exif = vec![
        Entry::ascii(0x9003, "2026:11:20 09:15:00"),
        Entry::ascii(0x9011, "+08:00"),
    ];
    let gps = vec![
        Entry::ascii(0x0001, "N"),
        Entry::rationals(0x0002, &[(41, 1), (7, 1), (1380, 100)]),
        Entry::ascii(0x0003, "E"),
        Entry::rationals(0x0004, &[(122, 1), (4, 1), (1632, 100)]),
    ];
    // Orientation 6, and where the Exif and GPS directories start.
    let ifd0 = |exif_at, gps_at| {
        vec![
            Entry::short(0x0112, 6),
            Entry::long(0x8769, exif_at),
            Entry::long(0x8825, gps_at),
        ]
    };
    let exif_at = 8 + ifd_len(&ifd0(0, 0));
    let gps_at = exif_at + ifd_len(&exif);
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes());
    write_ifd(&mut out, &ifd0(exif_at, gps_at));
    write_ifd(&mut out, &exif);
    write_ifd(&mut out, &gps);
    out
}

/// One TIFF directory entry: its tag, value type (2 ASCII, 3 SHORT,
/// 4 LONG, 5 RATIONAL), value count and value bytes.
struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    data: Vec<u8>,
}

impl Entry {
    fn ascii(tag: u16, s: &str) -> Entry {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        Entry {
            tag,
            kind: 2,
            count: data.len() as u32,
            data,
        }
    }

    fn short(tag: u16, v: u16) -> Entry {
        Entry {
            tag,
            kind: 3,
            count: 1,
            data: v.to_le_bytes().to_vec(),
        }
    }

    fn long(tag: u16, v: u32) -> Entry {
        Entry {
            tag,
            kind: 4,
            count: 1,
            data: v.to_le_bytes().to_vec(),
        }
    }

    fn rationals(tag: u16, v: &[(u32, u32)]) -> Entry {
        Entry {
            tag,
            kind: 5,
            count: v.len() as u32,
            data: v
                .iter()
                .flat_map(|(n, d)| [n.to_le_bytes(), d.to_le_bytes()].concat())
                .collect(),
        }
    }
}

/// The bytes a directory takes: entry count, entries, next-directory
/// offset, then the values longer than four bytes, each padded to even.
fn ifd_len(entries: &[Entry]) -> u32 {
    let extra: usize = entries
        .iter()
        .filter(|e| e.data.len() > 4)
        .map(|e| e.data.len().div_ceil(2) * 2)
        .sum();
    (2 + 12 * entries.len() + 4 + extra) as u32
}

/// Appends a directory to `out`, its long values right after it.
fn write_ifd(out: &mut Vec<u8>, entries: &[Entry]) {
    let start = out.len() as u32;
    let mut data_at = start + 2 + 12 * entries.len() as u32 + 4;
    let mut data = Vec::new();
    out.extend((entries.len() as u16).to_le_bytes());
    for e in entries {
        out.extend(e.tag.to_le_bytes());
        out.extend(e.kind.to_le_bytes());
        out.extend(e.count.to_le_bytes());
        if e.data.len() <= 4 {
            let mut v = e.data.clone();
            v.resize(4, 0);
            out.extend(v);
        } else {
            out.extend(data_at.to_le_bytes());
            let mut v = e.data.clone();
            v.resize(v.len().div_ceil(2) * 2, 0);
            data_at += v.len() as u32;
            data.extend(v);
        }
    }
    out.extend(0u32.to_le_bytes());
    out.extend(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_photo_reads_like_a_phone_photo() {
        let jpeg = photo_jpeg(320, 240, 90).unwrap();
        let exif = sync_core::photo::read_exif(&jpeg);
        assert_eq!(exif.orientation, 6);
        assert_eq!(exif.taken_at.as_deref(), Some("2026-11-20T09:15:00+08:00"));
        let gps = exif.gps.expect("GPS read back");
        assert!(
            (gps.lat - 41.1205).abs() < 1e-3 && (gps.lon - 122.0712).abs() < 1e-3,
            "{gps:?}"
        );
        let p = sync_core::photo::process(&jpeg).unwrap();
        assert_eq!((p.width, p.height), (240, 320), "orientation 6 turns it upright");
    }

    #[test]
    fn the_reporter_makes_valid_distinct_incidents() {
        let profile = Profile {
            worker: "w".into(),
            name: None,
            device: Uuid::from_bytes([1; 16]),
            grids: vec!["HLT-CX-HX-01".into()],
            role: None,
            label: None,
            number: None,
        };
        let mut r = Reporter::new(&profile, 1);
        let (a, b) = (r.incident(), r.incident());
        assert_ne!(a.id, b.id);
        IncidentDoc::create(&a, r.actor()).unwrap().read().unwrap();
    }
}

//! A map of the community's cells with the day's cases as points coloured
//! by status, drawn on the server as SVG from the cells' GeoJSON polygons:
//! no tiles, no script, nothing from the internet. Every SVG element is
//! written with its end tag (`{}` in maud): inside HTML, an SVG element
//! left open swallows the ones after it.

use maud::{Markup, html};
use sync_core::Status;
use sync_core::taxonomy::Community;

use super::IncidentLine;

/// The drawing's width in SVG units; its height follows the area's shape.
const WIDTH: f64 = 800.0;
/// Room around the cells, in SVG units.
const MARGIN: f64 = 24.0;

/// A status's colour on the map, and in its legend.
fn colour(status: Status) -> &'static str {
    match status {
        Status::Reported => "#d7301f",
        Status::Dispatched => "#fc8d59",
        Status::InProgress => "#fdbb2d",
        Status::Resolved => "#41ab5d",
        Status::Verified => "#238b45",
        Status::Closed => "#737373",
        Status::Rejected | Status::Duplicate => "#bdbdbd",
    }
}

/// A cell's outer ring, longitude first, as the grid file holds it.
fn ring(polygon: &serde_json::Value) -> Vec<(f64, f64)> {
    let outer = polygon["coordinates"].get(0).and_then(|r| r.as_array());
    outer
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
        .collect()
}

/// The ring's westmost longitude and northmost latitude: where its label goes.
fn north_west(ring: &[(f64, f64)]) -> Option<(f64, f64)> {
    let west = ring.iter().map(|p| p.0).reduce(f64::min)?;
    let north = ring.iter().map(|p| p.1).reduce(f64::max)?;
    Some((west, north))
}

/// Longitude and latitude to SVG units: equirectangular, with longitude
/// shrunk by the cosine of the middle latitude so that shapes keep theirs.
struct Frame {
    west: f64,
    north: f64,
    scale: f64,
    shrink: f64,
    height: f64,
}

impl Frame {
    fn around(points: &[(f64, f64)]) -> Option<Frame> {
        let (mut w, mut e, mut s, mut n) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(lon, lat) in points {
            (w, e, s, n) = (w.min(lon), e.max(lon), s.min(lat), n.max(lat));
        }
        if points.is_empty() || !(e > w && n > s) {
            return None;
        }
        let shrink = ((s + n) / 2.0).to_radians().cos();
        let scale = (WIDTH - 2.0 * MARGIN) / ((e - w) * shrink);
        let height = (n - s) * scale + 2.0 * MARGIN;
        Some(Frame {
            west: w,
            north: n,
            scale,
            shrink,
            height,
        })
    }

    fn xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            MARGIN + (lon - self.west) * self.shrink * self.scale,
            MARGIN + (self.north - lat) * self.scale,
        )
    }

    fn path(&self, ring: &[(f64, f64)]) -> String {
        let pts: Vec<String> = ring
            .iter()
            .map(|&(lon, lat)| {
                let (x, y) = self.xy(lon, lat);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        format!("M{}Z", pts.join("L"))
    }
}

/// The map section: cells, points, and a legend of the statuses shown.
pub fn map_section(community: &Community, incidents: &[IncidentLine]) -> Markup {
    let rings: Vec<(&str, &str, Vec<(f64, f64)>)> = community
        .cells
        .iter()
        .map(|c| (c.id.as_str(), c.name_zh.as_str(), ring(&c.polygon)))
        .collect();
    let points: Vec<(&IncidentLine, f64, f64, Status)> = incidents
        .iter()
        .filter_map(|i| Some((i, i.lon?, i.lat?, i.status.parse().ok()?)))
        .collect();
    let all: Vec<(f64, f64)> = rings
        .iter()
        .flat_map(|r| r.2.iter().copied())
        .chain(points.iter().map(|p| (p.1, p.2)))
        .collect();
    let Some(frame) = Frame::around(&all) else {
        return html! {};
    };
    let shown: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| points.iter().any(|p| p.3 == *s))
        .collect();
    html! {
    section id="map" {
        h2 { "地图 Map — " (community.name_zh) " (" (points.len()) " cases 案件)" }
        svg class="map" width=(WIDTH) height=(format!("{:.0}", frame.height))
            viewBox=(format!("0 0 {WIDTH} {:.0}", frame.height)) role="img" aria-label="map of the cells and the day's cases" {
            @for (id, _, ring) in &rings {
                path class="cell" data-cell=(id) d=(frame.path(ring)) fill="#eef3f8" stroke="#4a6a8a" stroke-width="1.5" {}
            }
            // Labels after every cell, so no neighbour is drawn over one.
            @for (_, name, ring) in &rings {
                @if let Some((x, y)) = north_west(ring).map(|(lon, lat)| frame.xy(lon, lat)) {
                    text x=(format!("{:.1}", x + 6.0)) y=(format!("{:.1}", y + 16.0)) font-size="13" fill="#4a6a8a" { (name) }
                }
            }
            @for (i, lon, lat, status) in &points {
                @let (x, y) = frame.xy(*lon, *lat);
                circle class="case" data-incident=(i.id) data-status=(status.as_str()) cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="7"
                    fill=(colour(*status)) stroke="#222" stroke-width="1" {
                    title { (i.case.as_deref().unwrap_or(&i.id)) " " (i.category_zh) " " (status.name_zh()) }
                }
            }
        }
        p class="legend" {
            @for s in &shown {
                svg width="14" height="14" viewBox="0 0 14 14" { circle cx="7" cy="7" r="6" fill=(colour(*s)) stroke="#222" {} }
                " " (s.name_zh()) " " (s.as_str()) "  "
            }
        }
    }
    }
}

//! The anomalies of the day's incidents: a photo taken far away, a
//! position outside its cell, a capture time after receipt, likely duplicates.

use chrono::Duration;
use geo::{Distance, Haversine, Point};
use sync_core::GridMap;

use super::build::{Loaded, Near};
use super::*;

fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}

pub(super) fn find_anomalies(grids: &GridMap, day: &[&Loaded], all: &[Near<'_>]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for l in day {
        let id = &l.row.id;
        let reporter = &l.row.reporter;
        let point = l.incident.location.point();
        if let Some(p) = point {
            for photo in &l.incident.photos {
                if let Some(g) = photo.gps {
                    let d = distance_m(p, (g.lat, g.lon));
                    if d > PHOTO_DISTANCE_M {
                        out.push(Anomaly::PhotoFar {
                            incident: id.clone(),
                            reporter: reporter.clone(),
                            photo: photo.original.to_hex(),
                            distance_m: d.round(),
                            incident_lat: p.0,
                            incident_lon: p.1,
                            photo_lat: g.lat,
                            photo_lon: g.lon,
                        });
                    }
                }
            }
            let inside = grids.cell_contains(&l.row.grid, p.0, p.1);
            if inside == Some(false) {
                out.push(Anomaly::OutsideCell {
                    incident: id.clone(),
                    reporter: reporter.clone(),
                    grid: l.row.grid.clone(),
                    lat: p.0,
                    lon: p.1,
                });
            }
        }
        let ahead = (l.captured - l.received).num_seconds();
        if ahead > FUTURE_TOLERANCE_S {
            out.push(Anomaly::CapturedAfterReceipt {
                incident: id.clone(),
                reporter: reporter.clone(),
                captured_at: l.row.captured_at.clone(),
                received_at: l.row.first_received_at.clone(),
                ahead_s: ahead,
            });
        }
        let Some(p) = point else { continue };
        for other in all {
            if other.id == id || other.reporter == reporter || other.category != l.row.category {
                continue;
            }
            // A pair of two of the day's incidents is listed once.
            if other.id < id.as_str() && day.iter().any(|d| d.row.id == other.id) {
                continue;
            }
            let Some(q) = other.point else {
                continue;
            };
            let apart = (l.captured - other.captured).abs();
            let d = distance_m(p, q);
            if d <= DUPLICATE_DISTANCE_M && apart <= Duration::hours(DUPLICATE_HOURS) {
                out.push(Anomaly::LikelyDuplicate {
                    incident: id.clone(),
                    reporter: reporter.clone(),
                    other: other.id.to_owned(),
                    other_reporter: other.reporter.to_owned(),
                    category: l.row.category.clone(),
                    distance_m: (d * 10.0).round() / 10.0,
                    minutes_apart: apart.num_minutes(),
                });
            }
        }
    }
    out
}

//! What the watcher decides, apart from doing it: how long to wait before
//! the next probe of an unreachable server, and how far up the photo tiers
//! a link of a measured speed should go. No clock and no I/O here; the
//! caller brings the elapsed times and the random numbers.

use std::time::Duration;

use sync_core::sync::PhotoLevel;

/// Exponential backoff with jitter between probes of a server that does
/// not answer: the first wait is about `min`, each next one about twice
/// the last, never more than `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.min(max);
        Backoff { min, max, base: min }
    }

    /// The wait before the next probe, given `unit` in [0, 1): between
    /// half the current base and the base ("equal jitter", so devices that
    /// lost the same link do not all come back at once, and no wait
    /// exceeds `max`). The base then doubles, up to `max`.
    pub fn next(&mut self, unit: f64) -> Duration {
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
        let wait = self.base.mul_f64(0.5 + unit / 2.0);
        self.base = (self.base * 2).min(self.max);
        wait
    }

    /// The server answered: start again from `min`.
    pub fn reset(&mut self) {
        self.base = self.min;
    }
}

/// Below this, a link gets thumbnails only: a 400 KB display copy would
/// take over a minute (64 kbit/s).
pub const DISPLAY_FROM: f64 = 8.0 * 1024.0;
/// Below this, originals wait for a faster link: a 4 MB original would
/// take over a minute (512 kbit/s).
pub const ORIGINALS_FROM: f64 = 64.0 * 1024.0;
/// Uploads smaller than this say little about a link's speed.
const MEASURABLE: u64 = 8 * 1024;

/// What the watcher knows of the link's upload speed: a moving average
/// of the photo uploads it timed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Link {
    bytes_per_sec: Option<f64>,
}

impl Link {
    pub fn known(bytes_per_sec: Option<f64>) -> Link {
        Link {
            bytes_per_sec: bytes_per_sec.filter(|b| b.is_finite() && *b > 0.0),
        }
    }

    pub fn bytes_per_sec(&self) -> Option<f64> {
        self.bytes_per_sec
    }

    /// Counts one upload of `bytes` that took `took`.
    pub fn observe(&mut self, bytes: u64, took: Duration) {
        if bytes < MEASURABLE || took.is_zero() {
            return;
        }
        let rate = bytes as f64 / took.as_secs_f64();
        self.bytes_per_sec = Some(match self.bytes_per_sec {
            None => rate,
            Some(old) => 0.5 * old + 0.5 * rate,
        });
    }

    /// How far up the tiers to go now, never beyond `cap`. An unmeasured
    /// link goes up to `cap`: its first upload measures it.
    pub fn level(&self, cap: PhotoLevel) -> PhotoLevel {
        let by_speed = match self.bytes_per_sec {
            None => PhotoLevel::All,
            Some(b) if b >= ORIGINALS_FROM => PhotoLevel::All,
            Some(b) if b >= DISPLAY_FROM => PhotoLevel::Display,
            Some(_) => PhotoLevel::Thumbs,
        };
        by_speed.min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_bound_and_starts_again() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        assert_eq!(b.next(0.0), Duration::from_millis(2500));
        assert_eq!(b.next(1.0), Duration::from_secs(10));
        let waits: Vec<Duration> = (0..10).map(|_| b.next(0.999)).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(300)), "{waits:?}");
        assert!(*waits.last().unwrap() > Duration::from_secs(290));
        b.reset();
        assert_eq!(b.next(f64::NAN), Duration::from_millis(3750));
    }

    #[test]
    fn a_slow_link_keeps_originals_and_then_display_copies_for_later() {
        let cap = PhotoLevel::All;
        let mut link = Link::default();
        assert_eq!(link.level(cap), PhotoLevel::All, "unmeasured");
        link.observe(4096, Duration::from_secs(10));
        assert_eq!(link.bytes_per_sec(), None, "too small to say");
        link.observe(256 * 1024, Duration::from_secs(8));
        assert_eq!(link.level(cap), PhotoLevel::Display, "32 KiB/s");
        link.observe(256 * 1024, Duration::from_secs(256));
        assert_eq!(link.level(cap), PhotoLevel::Display, "one slow upload is averaged in");
        link.observe(256 * 1024, Duration::from_secs(256));
        link.observe(256 * 1024, Duration::from_secs(256));
        assert_eq!(link.level(cap), PhotoLevel::Thumbs, "three at 1 KiB/s: under 8 KiB/s");
        assert_eq!(link.level(PhotoLevel::None), PhotoLevel::None, "the cap holds");
        let fast = Link::known(Some(1e6));
        assert_eq!(fast.level(PhotoLevel::Display), PhotoLevel::Display);
        assert_eq!(fast.level(cap), PhotoLevel::All);
    }
}

//! Days as the community center counts them: a calendar date in the
//! community's IANA time zone, typed as `YYYY-MM-DD`.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;

/// The zone of a community whose grid file names none.
pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";
/// [`DEFAULT_TIMEZONE`] as a zone.
pub const DEFAULT_ZONE: Tz = chrono_tz::Asia::Shanghai;

/// A date a person typed that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date such as 2026-11-20 (YYYY-MM-DD)")]
pub struct BadDay(pub String);

/// Parses `YYYY-MM-DD` (surrounding spaces allowed).
pub fn parse_day(s: &str) -> Result<NaiveDate, BadDay> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| BadDay(s.chars().take(40).collect()))
}

/// A zone by its IANA name; an empty name is [`DEFAULT_ZONE`].
pub fn zone(name: &str) -> Option<Tz> {
    if name.is_empty() {
        return Some(DEFAULT_ZONE);
    }
    name.parse().ok()
}

/// The first instant of `date` in `tz`. Midnight may not exist (a DST
/// jump); the day then starts at the first instant after it. Gaps are whole
/// quarter hours and at most a few hours long.
pub fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Tz> {
    let local = date.and_time(NaiveTime::MIN);
    (0..=16)
        .find_map(|q| tz.from_local_datetime(&(local + Duration::minutes(15 * q))).earliest())
        .unwrap_or_else(|| tz.from_utc_datetime(&local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn days_follow_the_zone_and_dates_are_checked() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        assert_eq!(
            day_start(DEFAULT_ZONE, d).with_timezone(&Utc),
            at("2026-11-19T16:00:00Z")
        );
        // A zone whose midnight is skipped by a DST jump (Havana, March).
        let havana: Tz = "America/Havana".parse().unwrap();
        let jump = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        assert_eq!(day_start(havana, jump).with_timezone(&Utc), at("2026-03-08T05:00:00Z"));
        assert_eq!(parse_day(" 2026-11-20 "), Ok(d));
        assert!(parse_day("2026-02-30").unwrap_err().to_string().contains("2026-02-30"));
        assert_eq!(zone(""), Some(DEFAULT_ZONE));
        assert_eq!(zone("Mars/Olympus"), None);
        assert_eq!(DEFAULT_ZONE.name(), DEFAULT_TIMEZONE);
    }
}

//! Case numbers: short names of incidents that people say on the phone
//! and type, unique without coordination. `HX-261203-7-4` is the 4th case
//! that device 7 logged on 3 December 2026 (the community's day) in the
//! community whose id ends in `HX`. The server numbers each device once, at
//! enrolment; after that no case number needs the network.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// A case number, always well formed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaseNumber {
    community: String,
    day: NaiveDate,
    device: u32,
    n: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a case number such as HX-261203-7-4")]
pub struct BadCase(pub String);

/// The most cases one device numbers in one day (far beyond a day's walk).
pub const MAX_PER_DAY: u32 = 99_999;

impl CaseNumber {
    /// The `n`th case (from 1) of `device` on `day` in `community` (a
    /// community id such as `HLT-CX-HX`; its last part is kept).
    pub fn new(community: &str, day: NaiveDate, device: u32, n: u32) -> CaseNumber {
        CaseNumber {
            community: short_community(community),
            day,
            device,
            n,
        }
    }

    /// The server's number of the device that logged it.
    pub fn device(&self) -> u32 {
        self.device
    }

    pub fn day(&self) -> NaiveDate {
        self.day
    }

    /// Whether what a user typed names this case: the whole number, or it
    /// without the community (`261203-7-4`), in any case.
    pub fn matches(&self, typed: &str) -> bool {
        let typed = typed.trim().to_ascii_uppercase();
        let full = self.to_string();
        typed == full || full.strip_prefix(&self.community).and_then(|r| r.strip_prefix('-')) == Some(typed.as_str())
    }
}

/// `HLT-CX-HX` → `HX`: the part people in the community use.
fn short_community(id: &str) -> String {
    let tail = id.rsplit('-').next().unwrap_or(id);
    let short: String = tail
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase();
    if short.is_empty() { "C".to_owned() } else { short }
}

impl fmt::Display for CaseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:02}{:02}{:02}-{}-{}",
            self.community,
            self.day.year() % 100,
            self.day.month(),
            self.day.day(),
            self.device,
            self.n
        )
    }
}

impl FromStr for CaseNumber {
    type Err = BadCase;

    fn from_str(s: &str) -> Result<CaseNumber, BadCase> {
        let bad = || BadCase(s.chars().take(40).collect());
        let parts: Vec<&str> = s.split('-').collect();
        let [community, day, device, n] = parts.as_slice() else {
            return Err(bad());
        };
        let community_ok = (1..=8).contains(&community.len())
            && community.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        let digits = |t: &str, max: usize| !t.is_empty() && t.len() <= max && t.bytes().all(|b| b.is_ascii_digit());
        if !community_ok || day.len() != 6 || !digits(day, 6) || !digits(device, 9) || !digits(n, 5) {
            return Err(bad());
        }
        let (yy, mm, dd) = (&day[..2], &day[2..4], &day[4..]);
        let date = NaiveDate::from_ymd_opt(
            2000 + yy.parse::<i32>().map_err(|_| bad())?,
            mm.parse().map_err(|_| bad())?,
            dd.parse().map_err(|_| bad())?,
        )
        .ok_or_else(bad)?;
        let device: u32 = device.parse().map_err(|_| bad())?;
        let n: u32 = n.parse().map_err(|_| bad())?;
        // One spelling per case: `07` is not another name of `7`.
        if device == 0 || n == 0 || n > MAX_PER_DAY || device.to_string() != parts[2] || n.to_string() != parts[3] {
            return Err(bad());
        }
        Ok(CaseNumber {
            community: (*community).to_owned(),
            day: date,
            device,
            n,
        })
    }
}

impl Serialize for CaseNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CaseNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CaseNumber, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
    }

    #[test]
    fn a_case_number_reads_back_and_is_matched_with_or_without_the_community() {
        let c = CaseNumber::new("HLT-CX-HX", day(), 7, 4);
        assert_eq!(c.to_string(), "HX-261203-7-4");
        assert_eq!("HX-261203-7-4".parse::<CaseNumber>().unwrap(), c);
        assert!(c.matches("hx-261203-7-4") && c.matches("261203-7-4") && c.matches(" 261203-7-4 "));
        assert!(!c.matches("261203-7-40") && !c.matches("7-4") && !c.matches("HX-261203-7"));
        assert_eq!(c.device(), 7);
    }

    #[test]
    fn only_one_spelling_of_each_case_is_read() {
        for bad in [
            "",
            "HX-261203-7",
            "HX-261203-07-4",
            "HX-261203-7-04",
            "HX-261303-7-4",
            "HX-261203-0-4",
            "HX-261203-7-0",
            "hx-261203-7-4",
            "HX-2612-7-4",
            "TOOLONGXX-261203-7-4",
            "HX-261203-7-100000",
            "HX-261203-7-4-1",
            "H X-261203-7-4",
        ] {
            assert!(bad.parse::<CaseNumber>().is_err(), "{bad:?} was read");
        }
    }
}

//! One row per figure, and the Markdown the bench prints and writes.

use std::fmt::Write as _;

use crate::stats::Runs;

/// What a figure should reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    /// Reported for information; the issue sets no bound.
    None,
}

impl Target {
    fn met(self, value: f64) -> Option<bool> {
        match self {
            Target::AtMost(t) => Some(value <= t),
            Target::AtLeast(t) => Some(value >= t),
            Target::None => None,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// One of [`crate::FIGURES`]; the test looks rows up by it.
    pub figure: &'static str,
    /// What was measured, e.g. "10,000 incidents".
    pub workload: String,
    pub unit: &'static str,
    pub ours: Runs,
    pub target: Target,
    /// How the target reads in the table, e.g. "≥ 2,000 (stretch 5,000)".
    pub target_text: String,
    /// Stock Automerge per-document sync on the same data, same run.
    pub baseline: Option<Runs>,
}

impl Row {
    pub fn new(
        figure: &'static str,
        workload: impl Into<String>,
        unit: &'static str,
        ours: Runs,
        target: Target,
    ) -> Row {
        let target_text = match target {
            Target::AtMost(t) => format!("≤ {}", number(t)),
            Target::AtLeast(t) => format!("≥ {}", number(t)),
            Target::None => "reported".into(),
        };
        Row {
            figure,
            workload: workload.into(),
            unit,
            ours,
            target,
            target_text,
            baseline: None,
        }
    }

    pub fn baseline(mut self, baseline: Runs) -> Row {
        self.baseline = Some(baseline);
        self
    }

    pub fn target_text(mut self, text: impl Into<String>) -> Row {
        self.target_text = text.into();
        self
    }

    /// Whether the median meets the target; `None` when there is none.
    pub fn met(&self) -> Option<bool> {
        self.target.met(self.ours.median())
    }
}

/// Renders rows as a Markdown table. In quick mode the sizes are not the
/// targets' sizes, so nothing is judged.
pub fn markdown(rows: &[Row], quick: bool) -> String {
    let mut out = String::new();
    out.push_str(
        "| figure | workload | median | min | max | unit | target | met? | stock Automerge sync (median, min–max) | ours ÷ stock |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---|---|---|---:|---:|\n");
    for r in rows {
        let met = match (quick, r.met()) {
            (true, _) => "n/a (quick)",
            (false, Some(true)) => "met",
            (false, Some(false)) => "**missed**",
            (false, None) => "—",
        };
        let (base, ratio) = match &r.baseline {
            Some(b) => (
                format!("{} ({}–{})", number(b.median()), number(b.min()), number(b.max())),
                if b.median() > 0.0 {
                    ratio(r.ours.median() / b.median())
                } else {
                    "—".into()
                },
            ),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.figure,
            r.workload,
            number(r.ours.median()),
            number(r.ours.min()),
            number(r.ours.max()),
            r.unit,
            r.target_text,
            met,
            base,
            ratio
        );
    }
    out
}

/// A figure with sensible precision and thousands separators.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 { format!("-{grouped}") } else { grouped }
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn ratio(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}×")
    } else if r >= 0.001 {
        format!("{r:.4}×")
    } else {
        format!("{r:.1e}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        for (v, s) in [
            (1234567.0, "1,234,567"),
            (1000.0, "1,000"),
            (999.4, "999"),
            (12.345, "12.3"),
            (1.5, "1.50"),
            (3.0, "3"),
            (0.0123, "0.012"),
        ] {
            assert_eq!(number(v), s, "{v}");
        }
    }

    #[test]
    fn a_missed_target_is_marked() {
        let row = Row::new("x", "w", "ms", Runs::new(vec![12.0; 5]), Target::AtMost(10.0));
        assert_eq!(row.met(), Some(false));
        let table = markdown(&[row.baseline(Runs::new(vec![24.0; 5]))], false);
        assert!(
            table.contains("| x | w | 12 | 12 | 12 | ms | ≤ 10 | **missed** | 24 (24–24) | 0.50× |"),
            "{table}"
        );
    }
}

//! Medians, ranges and percentiles of a handful of runs.

/// The runs of one figure: each run gives one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Runs {
    values: Vec<f64>,
}

impl Runs {
    pub fn new(values: Vec<f64>) -> Runs {
        assert!(!values.is_empty(), "a figure needs at least one run");
        assert!(
            values.iter().all(|v| v.is_finite()),
            "run values must be finite: {values:?}"
        );
        let mut values = values;
        values.sort_by(f64::total_cmp);
        Runs { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn median(&self) -> f64 {
        let n = self.values.len();
        if n % 2 == 1 {
            self.values[n / 2]
        } else {
            (self.values[n / 2 - 1] + self.values[n / 2]) / 2.0
        }
    }

    pub fn min(&self) -> f64 {
        self.values[0]
    }

    pub fn max(&self) -> f64 {
        self.values[self.values.len() - 1]
    }
}

/// The nearest-rank percentile (`p` in 0..=100) of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    assert!(!samples.is_empty(), "percentile of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_range_and_percentiles() {
        let r = Runs::new(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((r.median(), r.min(), r.max()), (3.0, 1.0, 5.0));
        assert_eq!(Runs::new(vec![1.0, 4.0]).median(), 2.5);
        let s: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 100.0);
        assert_eq!(percentile(&s, 99.0), 198.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}

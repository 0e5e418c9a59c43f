//! A log-linear latency histogram in the style of HdrHistogram: values in microseconds, 64
//! sub-buckets per power of two (32 distinct per octave above 64 µs); percentiles report a
//! bucket's upper edge, so they over-report by at most ~3 %, never under-report.

const SUB_BUCKETS: usize = 64;
const SUB_BITS: u32 = 6;
/// Powers of two covered: up to 2^40 µs (~12 days), far beyond any request.
const MAGNITUDES: usize = 40;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; SUB_BUCKETS * (MAGNITUDES + 1)],
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn index_of(value: u64) -> usize {
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let magnitude = 63 - value.leading_zeros() - (SUB_BITS - 1);
    let sub = (value >> magnitude) as usize; // in SUB_BUCKETS/2..SUB_BUCKETS
    let index = magnitude as usize * (SUB_BUCKETS / 2) + sub;
    index.min(SUB_BUCKETS * (MAGNITUDES + 1) - 1)
}

/// The largest value that lands in bucket `index` (so percentiles never under-report).
fn upper_value(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let magnitude = ((index - SUB_BUCKETS / 2) / (SUB_BUCKETS / 2)) as u32;
    let sub = (index - magnitude as usize * (SUB_BUCKETS / 2)) as u64;
    ((sub + 1) << magnitude) - 1
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        self.counts[index_of(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
        self.sum += u128::from(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// `p50 X ms, p99 Y ms, max Z ms` with `decimals` digits, for one-line reports.
    pub fn summary_ms(&self, decimals: usize) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "p50 {:.decimals$} ms, p99 {:.decimals$} ms, max {:.decimals$} ms",
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            ms(self.max())
        )
    }

    /// The value at percentile `p` (0-100), in microseconds.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_value(index).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_range_are_within_precision() {
        let mut histogram = Histogram::default();
        for value in 1..=10_000u64 {
            histogram.record(value);
        }
        for (p, exact) in [(50.0, 5_000.0), (90.0, 9_000.0), (99.0, 9_900.0)] {
            let got = histogram.percentile(p) as f64;
            assert!(
                (got - exact).abs() / exact < 0.035,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(histogram.percentile(100.0), 10_000);
        assert_eq!(histogram.max(), 10_000);
        assert_eq!(histogram.count(), 10_000);
    }

    #[test]
    fn small_values_are_exact_and_merge_adds() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(3);
        b.record(7);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.percentile(50.0), 3);
        assert_eq!(a.percentile(100.0), 7);
    }

    #[test]
    fn bucket_bounds_cover_every_value() {
        for value in [0u64, 63, 64, 65, 127, 128, 1000, 123_456, 1 << 30] {
            let index = index_of(value);
            assert!(upper_value(index) >= value, "{value}");
            if index > 0 {
                assert!(upper_value(index - 1) < value, "{value}");
            }
        }
    }
}

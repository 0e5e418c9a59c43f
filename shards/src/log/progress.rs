//! Start-up progress: how far recovery has got, reported at a steady pace so that a long
//! start is never silent.

use std::time::{Duration, Instant};

/// Recovery reports its progress at least this often (and not more often), so a long start
/// is never silent.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Records replayed between two looks at the clock.
const RECORDS_PER_CLOCK_CHECK: u64 = 4096;

/// How far recovery has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    /// Bytes of snapshots and segments read, of `bytes_total`.
    pub bytes_read: u64,
    pub bytes_total: u64,
    /// Records replayed, of `records_total` (known once every file is read).
    pub records: u64,
    pub records_total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Reading,
    Replaying,
}

impl Progress {
    /// Percent done of the current phase.
    pub fn percent(&self) -> u64 {
        let (done, total) = match self.phase {
            Phase::Reading => (self.bytes_read, self.bytes_total),
            Phase::Replaying => (self.records, self.records_total),
        };
        (done.saturating_mul(100))
            .checked_div(total)
            .unwrap_or(100)
            .min(100)
    }
}

/// Calls its reporter with the progress at most once per [`PROGRESS_INTERVAL`].
pub struct Ticker<'a> {
    pub(crate) progress: Progress,
    last: Instant,
    report: &'a mut dyn FnMut(&Progress),
}

impl<'a> Ticker<'a> {
    pub fn new(report: &'a mut dyn FnMut(&Progress)) -> Self {
        Ticker {
            progress: Progress {
                phase: Phase::Reading,
                bytes_read: 0,
                bytes_total: 0,
                records: 0,
                records_total: 0,
            },
            last: Instant::now(),
            report,
        }
    }

    pub(crate) fn tick(&mut self) {
        if self.last.elapsed() >= PROGRESS_INTERVAL {
            self.last = Instant::now();
            (self.report)(&self.progress);
        }
    }

    pub(crate) fn read(&mut self, bytes: u64) {
        self.progress.bytes_read += bytes;
        self.tick();
    }

    pub(crate) fn replayed(&mut self) {
        self.progress.records += 1;
        if self
            .progress
            .records
            .is_multiple_of(RECORDS_PER_CLOCK_CHECK)
        {
            self.tick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_reported_once_an_interval_has_passed() {
        let mut seen: Vec<Progress> = Vec::new();
        let mut report = |p: &Progress| seen.push(*p);
        let ticker = &mut Ticker::new(&mut report);
        ticker.progress.bytes_total = 1000;
        ticker.read(250);
        for _ in 0..RECORDS_PER_CLOCK_CHECK {
            ticker.replayed();
        }
        // Less than an interval since the start: nothing yet.
        let long_ago = Instant::now().checked_sub(PROGRESS_INTERVAL * 2);
        ticker.last = long_ago.expect("a clock past two seconds");
        ticker.read(250);
        ticker.progress.phase = Phase::Replaying;
        ticker.progress.records_total = 4 * RECORDS_PER_CLOCK_CHECK;
        ticker.last = long_ago.expect("a clock past two seconds");
        for _ in 0..RECORDS_PER_CLOCK_CHECK {
            ticker.replayed();
        }
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            (seen[0].phase, seen[0].bytes_read, seen[0].percent()),
            (Phase::Reading, 500, 50)
        );
        assert_eq!((seen[1].phase, seen[1].percent()), (Phase::Replaying, 50));
        let empty = Progress {
            phase: Phase::Reading,
            bytes_read: 0,
            bytes_total: 0,
            records: 0,
            records_total: 0,
        };
        assert_eq!(empty.percent(), 100, "nothing to read is done");
    }
}

//! Watermarks: how far the helper threads (search index, git trail) got in each shard's log:
//! as saved beside the helpers' own state ([`Watermarks`], and its text), and as they go
//! ([`HelperWatermarks`], which a shard's compaction reads before deleting log).

use std::sync::Mutex;
use uuid::Uuid;

/// Which log a position belongs to: the generation's number, and the identity its directory
/// was made with. The number alone is not enough: a wiped `log/` starts at generation 1
/// again, and the positions of the old log would then pass for the new one's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogIdentity {
    /// 0: no log (a helper that has recorded nothing).
    pub generation: u64,
    /// Nil for generations made before logs had identities.
    pub id: Uuid,
}

/// How far the helper threads got, per shard, in one log: records below these positions need
/// not be handed to them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// The log the positions belong to.
    pub log: LogIdentity,
    pub positions: Vec<u64>,
}

impl Watermarks {
    pub fn new(log: LogIdentity, shard_count: usize) -> Self {
        Watermarks {
            log,
            positions: vec![0; shard_count],
        }
    }

    /// Whether a helper with these watermarks has recorded nothing of any log (a new index or
    /// trail).
    pub fn is_new(&self) -> bool {
        self.log.generation == 0
    }

    /// Where a helper resumes on `log`, whose shards end at `ends`: these positions if they
    /// are that log's, each clamped to its shard's end; zeros otherwise. A log cut short (a
    /// torn tail, the corrupt-log recipe's truncation, a power cut in `batch` mode) numbers
    /// its next records from its end, and a watermark past it would pass them for recorded.
    pub fn resumed(&self, log: LogIdentity, ends: &[u64]) -> Watermarks {
        if self.log != log || self.positions.len() != ends.len() {
            return Watermarks::new(log, ends.len());
        }
        let positions = (self.positions.iter().zip(ends))
            .map(|(position, end)| (*position).min(*end))
            .collect();
        Watermarks { log, positions }
    }

    /// A record at `origin` (shard, position) has been handled: everything below the next
    /// position is, as each shard hands records over in log order.
    pub fn note(&mut self, origin: Option<(usize, u64)>) {
        if let Some((shard, seq)) = origin {
            if let Some(position) = self.positions.get_mut(shard) {
                *position = (*position).max(seq + 1);
            }
        }
    }

    /// The text form kept with a search commit or in a git commit message.
    pub fn to_text(&self) -> String {
        let positions: Vec<String> = self.positions.iter().map(u64::to_string).collect();
        format!(
            "allman-log gen={} log={} positions={}",
            self.log.generation,
            self.log.id.hyphenated(),
            positions.join(",")
        )
    }

    /// Reads [`Watermarks::to_text`]'s form back, wherever it starts in `text`. Text written
    /// before logs had identities (no `log=`) reads as the nil identity.
    pub fn from_text(text: &str) -> Option<Self> {
        let start = text.find("allman-log gen=")?;
        let rest = &text[start + "allman-log gen=".len()..];
        let line = rest.lines().next()?;
        let (head, positions) = line.split_once(" positions=")?;
        let (generation, id) = match head.split_once(" log=") {
            Some((generation, id)) => (generation, Uuid::parse_str(id).ok()?),
            None => (head, Uuid::nil()),
        };
        let positions = if positions.trim().is_empty() {
            Vec::new()
        } else {
            positions
                .trim()
                .split(',')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u64>>>()?
        };
        Some(Watermarks {
            log: LogIdentity {
                generation: generation.parse().ok()?,
                id,
            },
            positions,
        })
    }

    /// The position below which shard `shard` of `log` is done; 0 for another log
    /// (everything is handed over again).
    pub fn of(&self, log: LogIdentity, shard: usize) -> u64 {
        if self.log == log {
            self.positions.get(shard).copied().unwrap_or(0)
        } else {
            0
        }
    }
}

/// One helper's positions as it goes, per shard: published by the helper thread after each
/// durable step, read by the shards.
#[derive(Debug, Default)]
pub struct LiveWatermarks {
    positions: Mutex<Vec<u64>>,
}

impl LiveWatermarks {
    pub fn publish(&self, positions: &[u64]) {
        let mut held = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        held.clear();
        held.extend_from_slice(positions);
    }

    /// Shard `shard`'s position; 0 before anything was published.
    pub fn of(&self, shard: usize) -> u64 {
        let held = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        held.get(shard).copied().unwrap_or(0)
    }
}

/// Both helpers' live positions: the search index on disk, and the git trail committed. A
/// shard deletes log only below both, so neither helper ever needs a record that is gone.
#[derive(Debug, Default)]
pub struct HelperWatermarks {
    pub index: LiveWatermarks,
    pub git: LiveWatermarks,
}

impl HelperWatermarks {
    /// (index, git) positions in shard `shard`'s log.
    pub fn of(&self, shard: usize) -> (u64, u64) {
        (self.index.of(shard), self.git.of(shard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_round_trip_through_their_text_form() {
        let marks = Watermarks {
            log: log(3, 9),
            positions: vec![10, 0, 7],
        };
        let text = format!("agents: 2 registered\n\n{}\n", marks.to_text());
        assert_eq!(Watermarks::from_text(&text), Some(marks));
        assert_eq!(Watermarks::from_text("no progress here"), None);
        let before_identities = Watermarks::from_text("allman-log gen=3 positions=10,0,7");
        assert_eq!(
            before_identities,
            Some(Watermarks {
                log: log(3, 0),
                positions: vec![10, 0, 7]
            })
        );
    }

    fn log(generation: u64, id: u128) -> LogIdentity {
        LogIdentity {
            generation,
            id: Uuid::from_u128(id),
        }
    }

    #[test]
    fn a_helper_resumes_only_on_its_own_log_and_never_past_its_end() {
        let marks = Watermarks {
            log: log(1, 5),
            positions: vec![10, 4],
        };
        assert_eq!(
            marks.resumed(log(1, 5), &[3, 9]).positions,
            vec![3, 4],
            "a log cut short at 3 numbers its next records from 3"
        );
        let wiped = log(1, 6);
        assert_eq!(
            marks.resumed(wiped, &[2, 0]),
            Watermarks::new(wiped, 2),
            "a wiped log's generation 1 is another log"
        );
        assert_eq!(marks.of(wiped, 0), 0);
        assert_eq!(marks.of(log(1, 5), 0), 10);
        assert_eq!(
            marks.resumed(log(1, 5), &[3]),
            Watermarks::new(log(1, 5), 1)
        );
    }

    #[test]
    fn live_watermarks_read_zero_until_published() {
        let helpers = HelperWatermarks::default();
        assert_eq!(helpers.of(1), (0, 0));
        helpers.index.publish(&[5, 9]);
        helpers.git.publish(&[4, 7]);
        assert_eq!(helpers.of(1), (9, 7));
        assert_eq!(helpers.of(2), (0, 0), "a shard past the published ones");
    }
}

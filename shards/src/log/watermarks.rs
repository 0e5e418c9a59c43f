//! Watermarks: how far the helper threads (search index, git trail) got in each shard's log:
//! as saved beside the helpers' own state ([`Watermarks`], and its text), and as they go
//! ([`HelperWatermarks`], which a shard's compaction reads before deleting log).

use std::sync::Mutex;

/// How far the helper threads got, per shard, in one generation: records below these
/// positions need not be handed to them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// The log generation the positions belong to (0: none).
    pub generation: u64,
    pub positions: Vec<u64>,
}

impl Watermarks {
    pub fn new(generation: u64, shard_count: usize) -> Self {
        Watermarks {
            generation,
            positions: vec![0; shard_count],
        }
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
            "allman-log gen={} positions={}",
            self.generation,
            positions.join(",")
        )
    }

    /// Reads [`Watermarks::to_text`]'s form back, wherever it starts in `text`.
    pub fn from_text(text: &str) -> Option<Self> {
        let start = text.find("allman-log gen=")?;
        let rest = &text[start + "allman-log gen=".len()..];
        let line = rest.lines().next()?;
        let (generation, positions) = line.split_once(" positions=")?;
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
            generation: generation.parse().ok()?,
            positions,
        })
    }

    /// The position below which shard `shard` of `generation` is done; 0 for another
    /// generation (everything is handed over again).
    pub fn of(&self, generation: u64, shard: usize) -> u64 {
        if self.generation == generation {
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
            generation: 3,
            positions: vec![10, 0, 7],
        };
        let text = format!("agents: 2 registered\n\n{}\n", marks.to_text());
        assert_eq!(Watermarks::from_text(&text), Some(marks));
        assert_eq!(Watermarks::from_text("no progress here"), None);
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

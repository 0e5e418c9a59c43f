//! Watermarks: how far the helper threads (search index, git trail) got in each shard's log,
//! and the text they are kept in beside the helpers' own state.

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
}

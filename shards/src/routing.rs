//! Which shard owns an agent.
//!
//! The owner is `stable_hash(name) % shard_count` ([`crate::hash`]): fixed arithmetic, so an
//! agent's owner is the same across restarts, builds and Rust versions (std's
//! `DefaultHasher` promises none of that).

use crate::hash::stable_hash;

/// The shard that owns the agent called `name`, among `shard_count` shards.
pub fn owner_of(name: &str, shard_count: usize) -> usize {
    assert!(shard_count > 0, "a server has at least one shard");
    // u64 -> usize is lossless on the 64-bit targets glommio supports.
    (stable_hash(name) % shard_count as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_pinned_to_known_values() {
        // Values computed independently (Python, same constants). They are part of the on-disk/operational contract: if they change, agents
        // move between shards across an upgrade. Change them only on purpose.
        assert_eq!(stable_hash("BlueLake"), 0xcf4c_3116_d5eb_fc32);
        assert_eq!(owner_of("BlueLake", 2), 0);
        assert_eq!(owner_of("GreenCastle", 4), 3);
    }

    #[test]
    fn owner_is_in_range_for_every_shard_count() {
        for count in 1..=64 {
            for i in 0..200 {
                let name = format!("agent-{i}");
                assert!(owner_of(&name, count) < count);
            }
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        assert_eq!(owner_of("anything", 1), 0);
    }

    #[test]
    fn names_spread_over_shards() {
        let shard_count = 4;
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[owner_of(&format!("agent-{i}"), shard_count)] += 1;
        }
        // A fair split is 1000 each; a broken hash puts almost everything on one shard.
        for count in counts {
            assert!((800..1200).contains(&count), "uneven split: {counts:?}");
        }
    }
}

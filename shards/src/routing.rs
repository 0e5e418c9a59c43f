//! Which shard owns an agent.
//!
//! The owner is `stable_hash(name) % shard_count`. The hash is FNV-1a over the name's
//! UTF-8 bytes followed by a 64-bit finaliser. Both are fixed arithmetic, so an agent's owner
//! is the same across restarts, builds and Rust versions (std's `DefaultHasher` promises none
//! of that). The finaliser spreads FNV's weak low bits before the modulo.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A hash of `name` that never changes between processes or builds.
pub fn stable_hash(name: &str) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    finalise(hash)
}

/// MurmurHash3's fmix64: every input bit affects every output bit.
fn finalise(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

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
        assert_eq!(stable_hash(""), finalise(FNV_OFFSET_BASIS));
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

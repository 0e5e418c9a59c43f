//! Identifiers: UUID v7 for agents and messages, and readable invented agent names.
//!
//! Each shard has its own generator (no shared state, no syscall per id). It is seeded from the
//! OS (through std's randomly keyed hasher) mixed with the shard id, so ids from different
//! shards and different runs do not collide. A v7 id is 48 bits of Unix milliseconds followed
//! by 74 random bits: unique across restarts and roughly time-ordered.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use uuid::Uuid;

pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub fn new(shard_id: usize) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(shard_id);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        IdGenerator {
            state: hasher.finish(),
        }
    }

    /// A generator with a fixed seed, for tests.
    #[cfg(test)]
    pub fn seeded(seed: u64) -> Self {
        IdGenerator { state: seed }
    }

    /// splitmix64: fast, and every seed gives a full-period sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }

    pub fn uuid_v7(&mut self, unix_ms: i64) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        random[8..].copy_from_slice(&self.next_u64().to_le_bytes()[..2]);
        let millis = u64::try_from(unix_ms).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }

    /// A readable name such as `BlueLake`; after `attempt` 3 a number is appended so that the
    /// space of names never runs out (`BlueLake4821`).
    pub fn agent_name(&mut self, attempt: u32) -> String {
        let adjective = ADJECTIVES[self.below(ADJECTIVES.len())];
        let noun = NOUNS[self.below(NOUNS.len())];
        let mut name = String::with_capacity(adjective.len() + noun.len() + 6);
        name.push_str(adjective);
        name.push_str(noun);
        if attempt >= 3 {
            name.push_str(&(self.below(1_000_000)).to_string());
        }
        name
    }
}

const ADJECTIVES: [&str; 32] = [
    "Amber", "Blue", "Brave", "Bright", "Calm", "Clever", "Coral", "Crimson", "Eager", "Fuchsia",
    "Gentle", "Golden", "Green", "Indigo", "Jade", "Keen", "Lilac", "Lucky", "Misty", "Noble",
    "Olive", "Quiet", "Rapid", "Red", "Rose", "Silver", "Steady", "Swift", "Teal", "Violet",
    "Wise", "Witty",
];

const NOUNS: [&str; 32] = [
    "Bay", "Brook", "Canyon", "Castle", "Cliff", "Cloud", "Creek", "Dune", "Falcon", "Fern",
    "Fjord", "Forest", "Glade", "Harbor", "Hill", "Island", "Lake", "Meadow", "Mesa", "Mountain",
    "Oak", "Otter", "Peak", "Pine", "River", "Ridge", "Snow", "Stone", "Summit", "Valley",
    "Willow", "Wolf",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_carry_the_timestamp_and_version() {
        let mut ids = IdGenerator::seeded(1);
        let id = ids.uuid_v7(1_795_608_371_123);
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_795_608_371, 123));
    }

    #[test]
    fn ids_do_not_repeat() {
        let mut ids = IdGenerator::new(0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            assert!(
                seen.insert(ids.uuid_v7(5)),
                "duplicate id within one millisecond"
            );
        }
    }

    #[test]
    fn generators_of_different_shards_differ() {
        let mut a = IdGenerator::new(0);
        let mut b = IdGenerator::new(1);
        assert_ne!(a.uuid_v7(5), b.uuid_v7(5));
    }

    #[test]
    fn invented_names_are_valid_agent_names_and_grow_a_suffix() {
        let mut ids = IdGenerator::seeded(7);
        let plain = ids.agent_name(0);
        assert!(plain.chars().all(|c| c.is_ascii_alphabetic()), "{plain}");
        let numbered = ids.agent_name(3);
        assert!(numbered.chars().any(|c| c.is_ascii_digit()), "{numbered}");
        // That they pass `tools::valid_agent_name` is tested there (tools sit above ids).
    }
}

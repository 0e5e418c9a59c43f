//! Hashes that never change between processes, builds or Rust versions (std's `DefaultHasher`
//! promises none of that): FNV-1a over the bytes, then a 64-bit finaliser that spreads FNV's
//! weak low bits. Agents' owners ([`crate::routing`]) and idempotency keys' request hashes,
//! which are logged, depend on them staying the same.

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

/// A hash of a sequence of byte strings that never changes between processes or builds; each
/// part is preceded by its length, so `["ab", "c"]` and `["a", "bc"]` differ.
pub fn stable_hash_of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut add = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    };
    for part in parts {
        add(&(part.len() as u64).to_le_bytes());
        add(part);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_pinned_to_known_values() {
        // Computed independently (Python, same constants). Logged request hashes and agents'
        // owners depend on them: change them only on purpose.
        assert_eq!(stable_hash(""), finalise(FNV_OFFSET_BASIS));
        assert_eq!(
            stable_hash_of_parts([&b"BlueLake"[..], b"hello"]),
            0x57a6_86cf_a0f9_8868
        );
        assert_ne!(
            stable_hash_of_parts([&b"ab"[..], b"c"]),
            stable_hash_of_parts([&b"a"[..], b"bc"]),
            "parts are told apart by their lengths"
        );
    }
}

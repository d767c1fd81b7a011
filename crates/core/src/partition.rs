//! Which partition of a stream an event goes to, and a stable 64-bit hash for state.
//!
//! Partitioning uses Kafka's default partitioner (murmur2 of the key), so the embedded log
//! and Kafka place a key in the same partition, and so do Java producers writing the same
//! topic with the same key.

/// Kafka's murmur2 hash of `data`, as the Java client computes it.
#[must_use]
#[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    #[allow(clippy::cast_possible_truncation)]
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition, out of `partitions` (at least 1), for a record with this key.
#[must_use]
#[allow(clippy::cast_sign_loss)]
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    let positive = (murmur2(key.as_bytes()) & 0x7fff_ffff) as u32;
    positive % partitions.max(1)
}

/// FNV-1a, 64 bits: a hash that never changes between builds, for state that is persisted
/// in checkpoints (the standard library's hasher may change between Rust releases).
#[must_use]
pub fn stable_hash64(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator keeps ("ab","c") and ("a","bc") apart.
            hash = (hash ^ 0xff).wrapping_mul(PRIME);
        }
        for &byte in *part {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Java client's own test of `Utils.murmur2`.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for n in 1..8 {
            for key in ["a", "b", "user-42", ""] {
                let p = partition_for(key, n);
                assert!(p < n);
                assert_eq!(p, partition_for(key, n));
            }
        }
        assert_eq!(
            partition_for("x", 0),
            0,
            "zero partitions is treated as one"
        );
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash64(&[b"ab", b"c"]), stable_hash64(&[b"a", b"bc"]));
        assert_eq!(stable_hash64(&[b"x"]), stable_hash64(&[b"x"]));
    }
}

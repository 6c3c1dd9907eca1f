//! Stable hashing. The SKU -> shard map decides which shard's log a command
//! lands in, so it must never change between builds or runs: it uses XXH3,
//! a specified algorithm, never `std`'s randomised hasher.

use smallvec::SmallVec;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// The 64-bit XXH3 hash of a key; table lookups use all of it.
pub fn key_hash(key: &str) -> u64 {
    xxh3_64(key.as_bytes())
}

/// A `Hasher` for keys that are already XXH3 hashes, or hash as one (a
/// `ReservationId` writes its cached key hash): the table uses the hash
/// as it is.
#[derive(Default)]
pub(crate) struct KeyHashHasher(u64);

impl std::hash::Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("keys hash as one u64")
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// The shard that owns `sku` among `shard_count`. Uses the high half of the
/// hash so that, inside one shard, the low bits that pick a table bucket stay
/// uniformly spread.
pub fn shard_of(key_hash: u64, shard_count: usize) -> usize {
    assert!(shard_count > 0, "at least one shard");
    ((key_hash >> 32) % shard_count as u64) as usize
}

/// The fingerprint of a reservation body: 128-bit XXH3 over its lines in
/// SKU order and its TTL as sent (an absent TTL is not the default written
/// out: the default may change between a request and its retry). Two
/// bodies under one reservation id are "the same" when their fingerprints
/// are equal. Carts of a few lines hash from the stack. A body without a
/// TTL hashes as before TTLs counted, so reservations remembered from
/// then still replay.
pub fn cart_fingerprint<'a>(sorted_lines: impl Iterator<Item = (&'a str, u32)>, ttl_ms: Option<u64>) -> u128 {
    let mut bytes: SmallVec<[u8; 256]> = SmallVec::new();
    for (sku, qty) in sorted_lines {
        // Length-prefixed so that ("ab", 1) and ("a", ...) can never collide by concatenation.
        bytes.push(sku.len() as u8);
        bytes.extend_from_slice(sku.as_bytes());
        bytes.extend_from_slice(&qty.to_le_bytes());
    }
    if let Some(ttl_ms) = ttl_ms {
        // A SKU is never empty: a zero length byte ends the lines.
        bytes.push(0);
        bytes.extend_from_slice(&ttl_ms.to_le_bytes());
    }
    xxh3_128(&bytes)
}

/// A hasher for small integer keys in this process's own tables (timer
/// buckets, slot numbers): one multiply, no SipHash. Consecutive integers
/// spread well enough; nothing outside decides the keys.
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("integer keys hash as one u64 or usize")
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, key: usize) {
        self.write_u64(key as u64);
    }
}

/// A `HashMap` keyed by integers, hashed by `IntHasher`.
pub(crate) type IntMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IntHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_SPREAD: [usize; 12] = [0, 2, 0, 0, 3, 3, 2, 3, 3, 3, 3, 1];
    const PINNED_HASH: u64 = 0xde7c_83fa_11a4_bfb7;

    #[test]
    fn shard_of_is_stable_across_builds() {
        // Pinned: if these change, every existing WAL would route commands
        // to the wrong shard on replay.
        let spread: Vec<usize> = (0..12).map(|i| shard_of(key_hash(&format!("sku-{i}")), 4)).collect();
        assert_eq!(spread, PINNED_SPREAD);
        assert_eq!(key_hash("sku-1"), PINNED_HASH);
    }

    #[test]
    fn shard_of_spreads_keys_evenly() {
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[shard_of(key_hash(&format!("sku-{i}")), 4)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn fingerprint_depends_on_every_line_and_the_ttl() {
        let fingerprint = |lines: &[(&'static str, u32)], ttl_ms| cart_fingerprint(lines.iter().copied(), ttl_ms);
        let a = fingerprint(&[("a", 1), ("b", 2)], None);
        assert_eq!(a, fingerprint(&[("a", 1), ("b", 2)], None));
        assert_ne!(a, fingerprint(&[("a", 1), ("b", 3)], None));
        assert_ne!(a, fingerprint(&[("a", 1)], None));
        assert_ne!(fingerprint(&[("ab", 1)], None), fingerprint(&[("a", 1)], None));
        assert_ne!(a, fingerprint(&[("a", 1), ("b", 2)], Some(60_000)), "an absent TTL is not a given one");
        assert_ne!(fingerprint(&[("a", 1)], Some(60_000)), fingerprint(&[("a", 1)], Some(5_000)));
        // Without a TTL, the encoding from before TTLs counted (length,
        // SKU, qty per line): fingerprints already in logs and snapshots.
        assert_eq!(fingerprint(&[("a", 1)], None), xxh3_128(&[1, b'a', 1, 0, 0, 0]));
    }
}

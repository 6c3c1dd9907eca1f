//! The reservation id index of one shard: id hash -> reservation slot, as an
//! open-addressing table with linear probing over packed `u64` entries
//! (32-bit hash tag << 32 | 32-bit slot).
//!
//! Why not hashbrown: with millions of retained reservations the table does
//! not fit in cache, and hashbrown keeps control bytes and buckets apart,
//! so every insert and lookup costs two cache misses. Here an entry and its
//! probe neighbours share a cache line (one miss), and growth re-hashes from
//! the tag alone, never touching the records. Measured in
//! `benches/engine.rs` (see README.md).
//!
//! The tag is the hash's *low* 32 bits: the high bits pick the shard, so
//! inside one shard they are not uniform. Equal tags are resolved by the
//! caller, which compares the full id of the candidate slot.

/// No entry. Slot `u32::MAX` is never issued (a shard holds fewer).
const EMPTY: u64 = u64::MAX;
const CAPACITY_MIN: usize = 1 << 10;

pub(crate) struct IdIndex {
    entries: Vec<u64>,
    len: usize,
}

impl Default for IdIndex {
    fn default() -> IdIndex {
        IdIndex { entries: vec![EMPTY; CAPACITY_MIN], len: 0 }
    }
}

fn tag_of(hash: u64) -> u32 {
    hash as u32
}

fn entry(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(slot)
}

impl IdIndex {
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// The slot whose record `is_id` accepts among those filed under `hash`.
    pub fn find(&self, hash: u64, mut is_id: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mask = self.mask();
        let mut at = tag as usize & mask;
        loop {
            let found = self.entries[at];
            if found == EMPTY {
                return None;
            }
            if (found >> 32) as u32 == tag && is_id(found as u32) {
                return Some(found as u32);
            }
            at = (at + 1) & mask;
        }
    }

    /// Loads the cache line where a lookup of `hash` starts, and drops it.
    /// Called for every id of a batch before the batch is applied: the
    /// loads do not depend on each other, so the CPU overlaps their cache
    /// misses instead of taking them one by one during the apply.
    pub fn warm(&self, hash: u64) {
        std::hint::black_box(self.entries[tag_of(hash) as usize & self.mask()]);
    }

    /// Files `slot` under `hash` (the id must not be present).
    pub fn insert(&mut self, hash: u64, slot: u32) {
        assert_ne!(slot, u32::MAX, "slot u32::MAX is the empty marker");
        // Load at most 1/2: probe runs stay short and mostly in one line.
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.put(entry(tag_of(hash), slot));
        self.len += 1;
    }

    fn put(&mut self, value: u64) {
        let mask = self.mask();
        let mut at = (value >> 32) as usize & mask;
        while self.entries[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.entries[at] = value;
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, doubled);
        for value in old.into_iter().filter(|&value| value != EMPTY) {
            self.put(value);
        }
    }

    /// Removes the entry for `slot` filed under `hash`.
    pub fn remove(&mut self, hash: u64, slot: u32) {
        let wanted = entry(tag_of(hash), slot);
        let mask = self.mask();
        let mut hole = tag_of(hash) as usize & mask;
        while self.entries[hole] != wanted {
            assert_ne!(self.entries[hole], EMPTY, "removing slot {slot}, which is not indexed");
            hole = (hole + 1) & mask;
        }
        // Backward-shift deletion: pull later entries of the run into the
        // hole when their home position allows, so no tombstones are needed.
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let moved = self.entries[at];
            if moved == EMPTY {
                break;
            }
            let home = (moved >> 32) as usize & mask;
            // `moved` may fill the hole if its home is not in (hole, at].
            if (at.wrapping_sub(home) & mask) >= (at.wrapping_sub(hole) & mask) {
                self.entries[hole] = moved;
                hole = at;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Random inserts and removes, with hashes that collide on purpose
        /// (few distinct tags, long probe runs), agree with a HashMap.
        #[test]
        fn index_agrees_with_a_map(ops in prop::collection::vec((0u8..3, 0u64..64, any::<u64>()), 1..3_000)) {
            let mut index = IdIndex::default();
            let mut model: HashMap<u32, u64> = HashMap::new(); // slot -> hash
            let mut next_slot = 0u32;
            for (op, key, noise) in ops {
                // Tags collide a lot: only 64 distinct low halves.
                let hash = (noise << 32) | key;
                match op {
                    0 | 1 => {
                        index.insert(hash, next_slot);
                        model.insert(next_slot, hash);
                        next_slot += 1;
                    }
                    _ => {
                        if let Some((&slot, &hash)) = model.iter().next() {
                            index.remove(hash, slot);
                            model.remove(&slot);
                        }
                    }
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for (&slot, &hash) in &model {
                prop_assert_eq!(index.find(hash, |candidate| candidate == slot), Some(slot));
            }
            // A tag no entry has (tags are 0..64) finds nothing.
            prop_assert_eq!(index.find(1_000, |_| true), None);
        }
    }

    #[test]
    fn growth_keeps_every_entry() {
        let mut index = IdIndex::default();
        for slot in 0..100_000u32 {
            index.insert(u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15), slot);
        }
        for slot in 0..100_000u32 {
            let hash = u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_eq!(index.find(hash, |candidate| candidate == slot), Some(slot));
        }
    }
}

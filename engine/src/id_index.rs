//! The reservation id index of one shard: id hash -> reservation slot, as an
//! open-addressing table with linear probing over packed `u64` entries
//! (32-bit hash tag << 32 | 32-bit slot).
//!
//! Why not hashbrown: with millions of retained reservations the table does
//! not fit in cache, and hashbrown keeps control bytes and buckets apart,
//! so every insert and lookup costs two cache misses. Here an entry and its
//! probe neighbours share a cache line (one miss), and growth re-hashes from
//! the tag alone, never touching the records, a few entries per insert.
//! Measured in `benches/engine.rs` (see README.md).
//!
//! Growth never pauses the shard: inserts write the doubled table ahead of
//! it and move the old table's entries after it, a few positions each. The
//! price is memory: between a load of 3/8 and the growth at 1/2, the next
//! table is held beside the current one.
//!
//! The tag is the hash's *low* 32 bits: the high bits pick the shard, so
//! inside one shard they are not uniform. Equal tags are resolved by the
//! caller, which compares the full id of the candidate slot.

/// No entry.
const EMPTY: u64 = 0;
/// An entry of the table being left (see `IdIndex::old`) that moved or was
/// removed: probes go past it.
const MOVED: u64 = u64::MAX;
const CAPACITY_MIN: usize = 1 << 10;
/// Positions of the table being left moved to the new one per insert: the
/// move is done long before the new table is half full (after a quarter of
/// its capacity in inserts at 2 per insert; 8 leaves room).
const MOVE_STEP: usize = 8;
/// Positions of the next table written per insert once it is being
/// prepared: from a load of 3/8 to the growth at 1/2 there are at least
/// `capacity / 8` inserts, and the next table has `2 * capacity` positions.
const PREPARE_STEP: usize = 16;

pub(crate) struct IdIndex {
    entries: Vec<u64>,
    /// The table before the last growth, while its entries move to
    /// `entries` a few per insert instead of all at once (growing from 4M
    /// to 8M entries at once paused the shard ~45 ms). Lookups and removals
    /// look in both; positions below `moved_up_to` are done.
    old: Vec<u64>,
    moved_up_to: usize,
    /// The table the next growth will move to, written a few entries per
    /// insert once the current one is three quarters of the way to its
    /// growth (see `grow`).
    next: Vec<u64>,
    /// Entries in both tables.
    len: usize,
}

impl Default for IdIndex {
    fn default() -> IdIndex {
        IdIndex { entries: vec![EMPTY; CAPACITY_MIN], old: Vec::new(), moved_up_to: 0, next: Vec::new(), len: 0 }
    }
}

fn tag_of(hash: u64) -> u32 {
    hash as u32
}

/// The slot is stored plus one, so that no entry is `EMPTY`.
fn entry(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | (u64::from(slot) + 1)
}

fn slot_of(entry: u64) -> u32 {
    (entry as u32) - 1
}

fn home(table: &[u64], tag: u32) -> usize {
    tag as usize & (table.len() - 1)
}

/// Probes `table` for the entry under `tag` that `is_id` accepts; its position.
fn probe(table: &[u64], tag: u32, is_id: &mut impl FnMut(u64) -> bool) -> Option<usize> {
    let mask = table.len().checked_sub(1)?;
    let mut at = tag as usize & mask;
    loop {
        let found = table[at];
        if found == EMPTY {
            return None;
        }
        if found != MOVED && (found >> 32) as u32 == tag && is_id(found) {
            return Some(at);
        }
        at = (at + 1) & mask;
    }
}

impl IdIndex {
    /// The slot whose record `is_id` accepts among those filed under `hash`.
    pub fn find(&self, hash: u64, mut is_id: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut accepts = |found: u64| is_id(slot_of(found));
        let at = probe(&self.entries, tag, &mut accepts).map(|at| self.entries[at]);
        at.or_else(|| probe(&self.old, tag, &mut accepts).map(|at| self.old[at])).map(slot_of)
    }

    /// Loads the cache lines where a lookup of `hash` starts, and drops them.
    /// Called for every id of a batch before the batch is applied: the
    /// loads do not depend on each other, so the CPU overlaps their cache
    /// misses instead of taking them one by one during the apply.
    pub fn warm(&self, hash: u64) {
        let tag = tag_of(hash);
        std::hint::black_box(self.entries[home(&self.entries, tag)]);
        if !self.old.is_empty() {
            std::hint::black_box(self.old[home(&self.old, tag)]);
        }
    }

    /// Files `slot` under `hash` (the id must not be present).
    pub fn insert(&mut self, hash: u64, slot: u32) {
        assert!(slot < u32::MAX - 1, "slots fit an entry with room for the markers");
        self.move_some(MOVE_STEP);
        if self.len * 8 >= self.entries.len() * 3 || !self.next.is_empty() {
            self.prepare_some(PREPARE_STEP);
        }
        // Load at most 1/2: probe runs stay short and mostly in one line.
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.put(entry(tag_of(hash), slot));
        self.len += 1;
    }

    fn put(&mut self, value: u64) {
        let mask = self.entries.len() - 1;
        let mut at = (value >> 32) as usize & mask;
        while self.entries[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.entries[at] = value;
    }

    /// Doubles the table; the entries move over later (`move_some`). The
    /// new table was written ahead, a few positions per insert
    /// (`prepare_some`), so its pages are in place. (Written in full at the
    /// growth, 64 MiB for 8M positions paused the shard 21 ms; left to the
    /// kernel to zero a page at a first touch, its page faults fell on the
    /// following batches and the p99 of paced batch load went from 4.5 to
    /// 11 ms.)
    fn grow(&mut self) {
        self.move_some(usize::MAX);
        self.prepare_some(usize::MAX);
        self.old = std::mem::replace(&mut self.entries, std::mem::take(&mut self.next));
        self.moved_up_to = 0;
    }

    /// Writes up to `positions` more positions of the next table (written,
    /// not `vec![0; n]`, which would get lazily zeroed pages).
    fn prepare_some(&mut self, positions: usize) {
        let size = self.entries.len() * 2;
        if self.next.capacity() < size {
            self.next = Vec::with_capacity(size);
        }
        let end = self.next.len().saturating_add(positions).min(size);
        self.next.resize(end, std::hint::black_box(EMPTY));
    }

    /// Moves up to `positions` more positions of the old table.
    fn move_some(&mut self, positions: usize) {
        if self.old.is_empty() {
            return;
        }
        let end = self.moved_up_to.saturating_add(positions).min(self.old.len());
        for at in self.moved_up_to..end {
            // Empty positions stay empty: they end probes, and the old
            // table (at most half full) keeps at least half of them.
            let value = self.old[at];
            if value != EMPTY && value != MOVED {
                self.old[at] = MOVED;
                self.put(value);
            }
        }
        self.moved_up_to = end;
        if end == self.old.len() {
            self.old = Vec::new();
        }
    }

    /// Removes the entry for `slot` filed under `hash`.
    pub fn remove(&mut self, hash: u64, slot: u32) {
        let (tag, wanted) = (tag_of(hash), entry(tag_of(hash), slot));
        self.len -= 1;
        if let Some(hole) = probe(&self.entries, tag, &mut |found| found == wanted) {
            self.remove_at(hole);
        } else {
            // Probes of the old table go past what is gone from it.
            let at = probe(&self.old, tag, &mut |found| found == wanted);
            self.old[at.unwrap_or_else(|| panic!("removing slot {slot}, which is not indexed"))] = MOVED;
        }
    }

    /// Backward-shift deletion: pull later entries of the run into the
    /// hole when their home position allows, so no tombstones are needed.
    fn remove_at(&mut self, mut hole: usize) {
        let mask = self.entries.len() - 1;
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
            for (step, (op, key, noise)) in ops.into_iter().enumerate() {
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
                            prop_assert_eq!(index.find(hash, |candidate| candidate == slot), None);
                        }
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                // Also while the table grows: entries then sit in two tables.
                if step % 64 == 0 {
                    for (&slot, &hash) in &model {
                        prop_assert_eq!(index.find(hash, |candidate| candidate == slot), Some(slot));
                    }
                }
            }
            for (&slot, &hash) in &model {
                prop_assert_eq!(index.find(hash, |candidate| candidate == slot), Some(slot));
            }
            // A tag no entry has (tags are 0..64) finds nothing.
            prop_assert_eq!(index.find(1_000, |_| true), None);
        }
    }

    /// While a growth moves entries over, the old table keeps empty
    /// positions (a probe for an absent id ends at one; without them it
    /// would go round forever), even when the last positions to move are
    /// all occupied: entries filed at the end of the first table.
    #[test]
    fn the_old_table_keeps_empty_positions_while_the_table_grows() {
        let mut index = IdIndex::default();
        let end_tag = |i: u32| u64::from(CAPACITY_MIN as u32 - 8 + i % 8);
        let uniform = |slot: u32| u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for slot in 0..2_000u32 {
            index.insert(if slot < 16 { end_tag(slot) } else { uniform(slot) }, slot);
            assert!(index.old.is_empty() || index.old.contains(&EMPTY), "after inserting slot {slot}");
            assert_eq!(index.find(uniform(1_000_000), |_| true), None);
        }
    }

    /// Inserts write the table a growth moves to before the growth comes,
    /// so the growth itself writes (and pauses the shard for) nothing.
    #[test]
    fn the_next_table_is_written_before_the_growth_needs_it() {
        let mut index = IdIndex::default();
        let mut growths = 0;
        for slot in 0..100_000u32 {
            let capacity = index.entries.len();
            if (index.len + 1) * 2 > capacity {
                // This insert's own step completes it.
                assert!(index.next.len() + PREPARE_STEP >= 2 * capacity, "at slot {slot}");
                growths += 1;
            }
            index.insert(u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15), slot);
        }
        assert!(growths >= 6);
        // Far below three quarters of the way to a growth, nothing is held.
        let mut small = IdIndex::default();
        small.insert(1, 0);
        assert!(small.next.is_empty());
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

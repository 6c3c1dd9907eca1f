//! The published read view: per shard, the SKU index (hash table + key
//! arena) and one seqlock slot of counts per SKU. The shard thread is the
//! only writer; any number of readers look SKUs up without entering a shard
//! queue. Counts are stored here only after the batch that changed them is
//! durable, so a reader never sees state that a crash could take back.
//!
//! Layout per SKU: 8 bytes of hash table (a `u32` slot at load factor <= 7/8,
//! plus control byte), the key bytes, a 4-byte key end, and a 32-byte slot.
//! The shard keeps its own 24-byte counts beside this (`ShardState`'s
//! `counts`).

use crate::hash::key_hash;
use hashbrown::HashTable;
use parking_lot::RwLock;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// Counts of one SKU as the engine reports them. (Archived in snapshots.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize)]
pub struct SkuCounts {
    pub on_hand: u64,
    pub reserved: u64,
    /// Bumped by every stock change (`SetStock`, `AdjustStock`); reservations
    /// do not change it, so an admin's compare-and-set is not defeated by a
    /// flash sale running on the same SKU.
    pub version: u64,
}

impl SkuCounts {
    pub fn available(&self) -> u64 {
        self.on_hand - self.reserved
    }
}

/// Slots are allocated in chunks that never move, so growing the index never
/// copies published counts.
const SLOTS_PER_CHUNK: usize = 1 << 14;
/// A reader gives up (panics) on a slot mid-write for this long.
const STUCK_WRITER: std::time::Duration = std::time::Duration::from_secs(10);

/// One SKU's published counts behind a sequence lock: the shard thread
/// writes, readers retry until they see an even, unchanged sequence.
#[derive(Default)]
struct PublishedSlot {
    seq: AtomicU64,
    on_hand: AtomicU64,
    reserved: AtomicU64,
    version: AtomicU64,
}

impl PublishedSlot {
    fn store(&self, counts: SkuCounts) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.on_hand.store(counts.on_hand, Ordering::Relaxed);
        self.reserved.store(counts.reserved, Ordering::Relaxed);
        self.version.store(counts.version, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }

    /// `None` until the SKU's creation has been published (version 0).
    fn load(&self) -> Option<SkuCounts> {
        // A writer (the shard, or its syncer) holds the sequence odd for a
        // few stores; it can only be preempted there, so yield after a
        // short spin. Bounded in time, not in tries (a busy machine may
        // keep a preempted writer off the CPU for a while): a writer that
        // stays mid-store for `STUCK_WRITER` is a dead one.
        let mut since: Option<std::time::Instant> = None;
        let mut attempt = 0u64;
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 0 {
                let counts = SkuCounts {
                    on_hand: self.on_hand.load(Ordering::Relaxed),
                    reserved: self.reserved.load(Ordering::Relaxed),
                    version: self.version.load(Ordering::Relaxed),
                };
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return (counts.version != 0).then_some(counts);
                }
            }
            attempt += 1;
            if attempt < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
                if attempt % 1024 == 0 {
                    let since = *since.get_or_insert_with(std::time::Instant::now);
                    assert!(since.elapsed() < STUCK_WRITER, "a published slot stayed mid-write for {STUCK_WRITER:?}");
                }
            }
        }
    }
}

/// One shard's SKU index. Inserted into only by its shard, under the write
/// lock; SKUs are never removed, so a slot number is stable forever.
#[derive(Default)]
pub(crate) struct SkuIndex {
    table: HashTable<u32>,
    key_bytes: Vec<u8>,
    key_ends: Vec<u32>,
    slots: Vec<Box<[PublishedSlot]>>,
}

impl SkuIndex {
    pub(crate) fn len(&self) -> usize {
        self.key_ends.len()
    }

    pub(crate) fn key(&self, slot: u32) -> &str {
        std::str::from_utf8(self.key_bytes(slot)).expect("keys are validated ASCII")
    }

    fn key_bytes(&self, slot: u32) -> &[u8] {
        key_bytes_at(&self.key_bytes, &self.key_ends, slot)
    }

    pub(crate) fn find(&self, key: &str, hash: u64) -> Option<u32> {
        self.table.find(hash, |&slot| self.key_bytes(slot) == key.as_bytes()).copied()
    }

    /// Adds `key` (which must be absent) and returns its new slot. Its
    /// published counts stay invisible until the first `publish`.
    pub(crate) fn insert(&mut self, key: &str, hash: u64) -> u32 {
        debug_assert!(self.find(key, hash).is_none(), "insert of a present key {key}");
        let slot = u32::try_from(self.key_ends.len()).expect("fewer than 2^32 SKUs per shard");
        self.key_bytes.extend_from_slice(key.as_bytes());
        let end = u32::try_from(self.key_bytes.len()).expect("a shard's SKU keys fit in 4 GiB");
        self.key_ends.push(end);
        self.index_slot(slot, hash);
        slot
    }

    fn index_slot(&mut self, slot: u32, hash: u64) {
        if slot as usize % SLOTS_PER_CHUNK == 0 {
            self.slots.push((0..SLOTS_PER_CHUNK).map(|_| PublishedSlot::default()).collect());
        }
        let (key_bytes, key_ends) = (&self.key_bytes, &self.key_ends);
        self.table.insert_unique(hash, slot, |&other| xxh3_64(key_bytes_at(key_bytes, key_ends, other)));
    }

    /// The key arena: every key's bytes, and where key `i` ends.
    pub(crate) fn keys(&self) -> (&[u8], &[u32]) {
        (&self.key_bytes, &self.key_ends)
    }

    /// An index over a key arena (from a snapshot), slots in arena order.
    /// Refuses, with the reason, an arena that does not add up, an invalid
    /// SKU, or a SKU twice: a snapshot is checksummed, but restore never
    /// trusts it to the point of panicking. (The duplicate check is the
    /// index's own lookup; a separate set of 5M keys took 1.2 s of a 10M
    /// SKU restart.)
    pub(crate) fn from_keys(key_bytes: Vec<u8>, key_ends: Vec<u32>) -> Result<SkuIndex, String> {
        let mut start = 0usize;
        for &end in &key_ends {
            let key = key_bytes.get(start..end as usize).ok_or("the SKU key arena is inconsistent")?;
            if !crate::ids::Sku::is_valid(key) {
                return Err(format!("invalid SKU key {:?}", String::from_utf8_lossy(key)));
            }
            start = end as usize;
        }
        if start != key_bytes.len() {
            return Err("the SKU key arena is inconsistent".into());
        }
        let count = key_ends.len();
        let mut index = SkuIndex { table: HashTable::with_capacity(count), key_bytes, key_ends, slots: Vec::new() };
        for slot in 0..count as u32 {
            let key = index.key_bytes(slot);
            let hash = xxh3_64(key);
            if index.table.find(hash, |&other| index.key_bytes(other) == key).is_some() {
                return Err(format!("SKU {:?} appears twice", index.key(slot)));
            }
            index.index_slot(slot, hash);
        }
        Ok(index)
    }

    fn slot(&self, slot: u32) -> &PublishedSlot {
        let slot = slot as usize;
        &self.slots[slot / SLOTS_PER_CHUNK][slot % SLOTS_PER_CHUNK]
    }

    pub(crate) fn publish(&self, slot: u32, counts: SkuCounts) {
        self.slot(slot).store(counts);
    }

    pub(crate) fn published(&self, slot: u32) -> Option<SkuCounts> {
        self.slot(slot).load()
    }
}

/// Key `slot` of an arena where key i ends at `key_ends[i]`.
fn key_bytes_at<'a>(key_bytes: &'a [u8], key_ends: &[u32], slot: u32) -> &'a [u8] {
    let slot = slot as usize;
    let start = if slot == 0 { 0 } else { key_ends[slot - 1] as usize };
    &key_bytes[start..key_ends[slot] as usize]
}

pub(crate) type SharedSkuIndex = Arc<RwLock<SkuIndex>>;

/// The readers' handle on every shard's published counts.
#[derive(Clone)]
pub struct ReadView {
    shards: Arc<[SharedSkuIndex]>,
}

impl ReadView {
    pub(crate) fn new(shards: Vec<SharedSkuIndex>) -> ReadView {
        ReadView { shards: shards.into() }
    }

    /// The last durable counts of `sku`, or `None` if it does not exist (yet).
    pub fn get(&self, sku: &str) -> Option<SkuCounts> {
        let hash = key_hash(sku);
        let index = self.shards[crate::hash::shard_of(hash, self.shards.len())].read();
        index.find(sku, hash).and_then(|slot| index.published(slot))
    }

    /// Number of SKUs known to all shards (published or not).
    pub fn sku_count(&self) -> usize {
        self.shards.iter().map(|index| index.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_found_and_unpublished_until_published() {
        let mut index = SkuIndex::default();
        let keys: Vec<String> = (0..40_000).map(|i| format!("sku-{i}")).collect();
        for key in &keys {
            index.insert(key, key_hash(key));
        }
        for (slot, key) in keys.iter().enumerate() {
            assert_eq!(index.find(key, key_hash(key)), Some(slot as u32));
            assert_eq!(index.key(slot as u32), key);
            assert_eq!(index.published(slot as u32), None);
        }
        assert_eq!(index.find("absent", key_hash("absent")), None);
        let counts = SkuCounts { on_hand: 9, reserved: 4, version: 2 };
        index.publish(7, counts);
        assert_eq!(index.published(7), Some(counts));
    }

    #[test]
    fn seqlock_readers_never_see_a_torn_write() {
        use std::sync::atomic::AtomicBool;
        let slot = Arc::new(PublishedSlot::default());
        slot.store(SkuCounts { on_hand: 1, reserved: 1, version: 1 });
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (slot, stop) = (Arc::clone(&slot), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 1;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    slot.store(SkuCounts { on_hand: i, reserved: i, version: i });
                }
            })
        };
        // The writer runs until the reader has seen it change the slot
        // between reads many times: the reads overlapped the writes.
        let (mut changes, mut last) = (0u32, 1u64);
        for _ in 0..200_000_000u64 {
            let counts = slot.load().expect("published");
            assert!(counts.on_hand == counts.reserved && counts.reserved == counts.version, "{counts:?}");
            changes += u32::from(counts.version != last);
            last = counts.version;
            if changes >= 1_000 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer thread panicked");
        assert!(changes >= 1_000, "reads overlapped writes only {changes} times");
    }
}

//! Counters the shards keep for operators: relaxed atomics written by the
//! shard (and its log) threads, read by whoever exports metrics. Nothing
//! here is on a lock or allocates after start.

use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with power-of-two buckets: bucket `b` counts values whose bit
/// length is `b` (0 in bucket 0; 1 in 1; 2..=3 in 2; ...), so its upper
/// bound is `2^b - 1`.
pub struct Histogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
    sum: AtomicU64,
    count: AtomicU64,
}

pub const HISTOGRAM_BUCKETS: usize = 40;

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, value: u64) {
        let bucket = (u64::BITS - value.leading_zeros()) as usize;
        self.buckets[bucket.min(HISTOGRAM_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (upper bound, count in that bucket) for every bucket, then sum and count.
    pub fn read(&self) -> HistogramReading {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(bucket, count)| (upper_bound(bucket), count.load(Ordering::Relaxed)))
            .collect();
        HistogramReading { buckets, sum: self.sum.load(Ordering::Relaxed), count: self.count.load(Ordering::Relaxed) }
    }
}

fn upper_bound(bucket: usize) -> u64 {
    if bucket >= 64 {
        u64::MAX
    } else {
        (1u64 << bucket) - 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramReading {
    /// (inclusive upper bound, count of values in this bucket alone).
    pub buckets: Vec<(u64, u64)>,
    pub sum: u64,
    pub count: u64,
}

/// One shard's counters.
#[derive(Default)]
pub struct ShardStats {
    /// Loop turns (batches) run.
    pub turns: AtomicU64,
    /// Client ops taken from the queue.
    pub ops: AtomicU64,
    /// Client ops per turn.
    pub batch_len: Histogram,
    pub holds_active: AtomicU64,
    /// Holds expired since start (ticks, and holds found due at a decision).
    pub holds_expired: AtomicU64,
    /// Reservations remembered (held, or finished within retention).
    pub reservations: AtomicU64,
    pub timers_pending: AtomicU64,
    pub carts_pending: AtomicU64,
    /// Set by the log: records appended, bytes written, segments created
    /// by this process (and how many were recycled ones), fsync latency,
    /// snapshots written and the last one's LSN.
    pub wal_records: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_segments_created: AtomicU64,
    pub wal_segments_recycled: AtomicU64,
    pub fsync_us: Histogram,
    /// How long each slice of a snapshot's capture paused the shard (the
    /// copy is spread over turns, a slice per turn; the writing happens on
    /// another thread).
    pub snapshot_capture_us: Histogram,
    pub snapshots: AtomicU64,
    pub snapshot_lsn: AtomicU64,
}

impl ShardStats {
    pub(crate) fn record_turn(&self, ops: usize, state: &crate::state::ShardState, carts_pending: usize) {
        self.turns.fetch_add(1, Ordering::Relaxed);
        if ops > 0 {
            self.ops.fetch_add(ops as u64, Ordering::Relaxed);
            self.batch_len.record(ops as u64);
        }
        let (reservations, timers) = state.reservation_sizes();
        self.holds_active.store(state.held_count() as u64, Ordering::Relaxed);
        self.holds_expired.store(state.expirations(), Ordering::Relaxed);
        self.reservations.store(reservations as u64, Ordering::Relaxed);
        self.timers_pending.store(timers as u64, Ordering::Relaxed);
        self.carts_pending.store(carts_pending as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_their_bit_length_bucket() {
        let histogram = Histogram::default();
        for value in [0, 1, 2, 3, 4, 1000] {
            histogram.record(value);
        }
        let reading = histogram.read();
        assert_eq!(reading.count, 6);
        assert_eq!(reading.sum, 1010);
        assert_eq!(&reading.buckets[..4], &[(0, 1), (1, 1), (3, 2), (7, 1)]);
        assert_eq!(reading.buckets[10], (1023, 1));
    }
}

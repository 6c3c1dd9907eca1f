//! A shard's pending timers, popped in exact `TimerKey` order: a calendar
//! queue. Timers are filed into 256 ms buckets; a bucket is an unsorted
//! `Vec` until the due time reaches it, then it is sorted once and popped
//! from the front. Deadlines are mostly "now + a TTL", so pushes are
//! appends to one of a few hot buckets: sequential memory, no per-push
//! search (a binary heap read a far parent node on every push, a cache miss
//! with millions of timers). Pops walk a sorted array.
//!
//! A push into a bucket already reached (due within the bucket being
//! popped, or overdue: a forget time shorter than a bucket, an expiry that
//! fired late) goes to a small heap that pops merge with the sorted bucket;
//! inserting it into the sorted bucket would move the bucket's tail per
//! push, a stall with a million timers due at once. Exact order matters: a
//! logged `Tick { up_to }` must fire the same timers on replay.

use crate::command::TimerKey;
use crate::hash::IntMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const BUCKET_SHIFT: u32 = 8;

fn bucket_of(due_ms: u64) -> u64 {
    due_ms >> BUCKET_SHIFT
}

#[derive(Default)]
pub(crate) struct Timers {
    /// Buckets not yet reached, unsorted.
    buckets: IntMap<u64, Vec<(TimerKey, u32)>>,
    /// The numbers of the buckets in `buckets`, earliest first.
    order: BinaryHeap<Reverse<u64>>,
    /// The bucket being popped, sorted; `head[head_at..]` remain.
    head: Vec<(TimerKey, u32)>,
    head_at: usize,
    /// Timers pushed into buckets up to this one go to `late`.
    head_bucket: Option<u64>,
    /// Timers pushed after their bucket was reached, earliest on top; all
    /// are due before any bucket not yet reached.
    late: BinaryHeap<Reverse<(TimerKey, u32)>>,
    len: usize,
}

impl Timers {
    pub fn push(&mut self, key: TimerKey, slot: u32) {
        self.len += 1;
        let bucket = bucket_of(key.due_ms);
        if self.head_bucket.is_some_and(|head| bucket <= head) {
            self.late.push(Reverse((key, slot)));
            return;
        }
        self.buckets
            .entry(bucket)
            .or_insert_with(|| {
                self.order.push(Reverse(bucket));
                Vec::new()
            })
            .push((key, slot));
    }

    /// Pops the earliest timer if its key is at or before `up_to`.
    pub fn pop_until(&mut self, up_to: TimerKey) -> Option<(TimerKey, u32)> {
        loop {
            let head = self.head.get(self.head_at).copied();
            let late = self.late.peek().map(|&Reverse(late)| late);
            let earliest = match (head, late) {
                (Some(head), Some(late)) => Some(head.min(late)),
                (head, late) => head.or(late),
            };
            if let Some((key, slot)) = earliest {
                if key > up_to {
                    return None;
                }
                if head == Some((key, slot)) {
                    self.head_at += 1;
                } else {
                    self.late.pop();
                }
                self.len -= 1;
                return Some((key, slot));
            }
            let &Reverse(next) = self.order.peek()?;
            if next > bucket_of(up_to.due_ms) {
                return None;
            }
            self.order.pop();
            let mut bucket = self.buckets.remove(&next).expect("ordered buckets exist");
            // Mostly appended in order already: the stable sort finds the runs.
            bucket.sort_by_key(|&(key, _)| key);
            self.head = bucket;
            self.head_at = 0;
            self.head_bucket = Some(next);
        }
    }

    /// Up to `count` of the next timers of the sorted bucket, earliest
    /// first (fewer when it ends sooner; late pushes are left out): what
    /// the next pops will mostly touch.
    pub fn upcoming(&self, count: usize) -> &[(TimerKey, u32)] {
        let rest = &self.head[self.head_at..];
        &rest[..count.min(rest.len())]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every pending entry, in no particular order (for the audit).
    pub fn iter(&self) -> impl Iterator<Item = &(TimerKey, u32)> {
        let late = self.late.iter().map(|Reverse(late)| late);
        self.head[self.head_at..].iter().chain(late).chain(self.buckets.values().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Interleaved pushes and bounded pops give exactly what a sorted
        /// list gives, including pushes into the bucket being popped and
        /// overdue pushes (due before the last pop's bound).
        #[test]
        fn pops_in_exact_key_order(ops in prop::collection::vec((any::<bool>(), 0u64..6_000, 0u64..2_000), 1..2_000)) {
            let mut timers = Timers::default();
            let mut model: Vec<(TimerKey, u32)> = Vec::new();
            let mut now = 0u64;
            for (seq, (push, delay, step)) in ops.into_iter().enumerate() {
                if push {
                    let key = TimerKey { due_ms: (now + delay).saturating_sub(1_000), seq: seq as u64 };
                    timers.push(key, seq as u32);
                    model.push((key, seq as u32));
                } else {
                    now += step;
                    let up_to = TimerKey { due_ms: now, seq: u64::MAX };
                    model.sort();
                    let due = model.partition_point(|&(key, _)| key <= up_to);
                    let expected: Vec<_> = model.drain(..due).collect();
                    let popped: Vec<_> = std::iter::from_fn(|| timers.pop_until(up_to)).collect();
                    prop_assert_eq!(popped, expected);
                }
                prop_assert_eq!(timers.len(), model.len());
            }
        }
    }
}

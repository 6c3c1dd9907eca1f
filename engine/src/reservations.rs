//! One shard's reservations: a slab of records, an id index (`id_index`),
//! and deadline-ordered timers (`timers`), so that due timers are found
//! without scanning every reservation.
//!
//! Each record has at most one pending timer, named by its `TimerKey`: a
//! held home part's deadline; a finished record's forget time. A held part
//! away from home has none: only its home expires it. Re-arming leaves the
//! old heap entry behind; it is recognised as stale on pop (the record's
//! current key differs), so nothing is ever removed from the middle of the
//! timers, and which timers are *real* depends only on the records, never
//! on the timers' history. That is what makes a logged `Tick { up_to }` replay
//! exactly.

use crate::command::{ReservationState, TimerKey};
use crate::id_index::IdIndex;
use crate::ids::ReservationId;
use crate::snapshot::{LineImage, RecordCapture, ReservationImage};
use crate::timers::Timers;
use smallvec::SmallVec;

/// One cart line held on this shard: the SKU's slot and the quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    pub slot: u32,
    pub qty: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub id: ReservationId,
    pub fingerprint: u128,
    /// Most carts are one line; it lives inline.
    pub lines: SmallVec<[Line; 1]>,
    /// The cart's deadline (the same on every part).
    pub expires_at_ms: u64,
    /// When the finished record is dropped: the deadline plus retention.
    pub forget_at_ms: u64,
    /// Assigned in apply order; breaks ties between equal due times.
    pub seq: u64,
    /// The due time of this record's one pending timer, if it has one.
    pub timer_due_ms: Option<u64>,
    pub state: ReservationState,
    pub home: u16,
    pub participants: u64,
}

impl Reservation {
    pub fn timer(&self) -> Option<TimerKey> {
        self.timer_due_ms.map(|due_ms| TimerKey { due_ms, seq: self.seq })
    }
}

#[derive(Default)]
pub(crate) struct Reservations {
    slab: Vec<Option<Reservation>>,
    free: Vec<u32>,
    by_id: IdIndex,
    /// (timer key, slab slot), earliest first; may hold stale entries.
    timers: Timers,
    next_seq: u64,
    held: usize,
    /// A snapshot's capture in progress (see `RecordCapture`).
    capture: Option<RecordCapture>,
}

impl Reservations {
    pub fn find(&self, id: &ReservationId) -> Option<u32> {
        self.by_id.find(id.key_hash(), |slot| self.get(slot).id == *id)
    }

    /// See [`IdIndex::warm`].
    pub fn warm(&self, id: &ReservationId) {
        self.by_id.warm(id.key_hash());
    }

    /// Loads what popping the next timers due by `up_to` will touch, in two
    /// steps a window apart (see [`IdIndex::warm`]): the records of the
    /// window after the next, and the id index positions of the next
    /// window's records (loaded by the previous call, so reading their ids
    /// costs no miss).
    pub fn warm_due(&self, up_to: TimerKey, window: usize) {
        let upcoming = self.timers.upcoming(2 * window);
        let upcoming = &upcoming[..upcoming.partition_point(|&(key, _)| key <= up_to)];
        for &(_, slot) in upcoming.iter().skip(window) {
            std::hint::black_box(self.slab.get(slot as usize).map(|record| record.as_ref().map(|record| record.seq)));
        }
        for &(_, slot) in upcoming.iter().take(window) {
            if let Some(Some(record)) = self.slab.get(slot as usize) {
                self.by_id.warm(record.id.key_hash());
            }
        }
    }

    pub fn get(&self, slot: u32) -> &Reservation {
        self.slab[slot as usize].as_ref().expect("indexed slots are occupied")
    }

    /// Stores a new (absent) reservation, gives it the next sequence number,
    /// and arms its timer.
    pub fn insert(&mut self, mut reservation: Reservation) -> u32 {
        reservation.seq = self.next_seq;
        self.next_seq += 1;
        self.insert_with_seq(reservation)
    }

    /// Stores a reservation that already has its sequence number (snapshot load).
    pub fn insert_with_seq(&mut self, reservation: Reservation) -> u32 {
        assert!(reservation.seq < self.next_seq, "sequence {} not yet issued", reservation.seq);
        let hash = reservation.id.key_hash();
        let timer = reservation.timer();
        if reservation.state == ReservationState::Held {
            self.held += 1;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.before_change(slot);
                self.slab[slot as usize] = Some(reservation);
                slot
            }
            None => {
                self.slab.push(Some(reservation));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 reservations per shard")
            }
        };
        self.by_id.insert(hash, slot);
        if let Some(key) = timer {
            self.timers.push(key, slot);
        }
        slot
    }

    pub fn remove(&mut self, slot: u32) -> Reservation {
        let hash = self.get(slot).id.key_hash();
        self.by_id.remove(hash, slot);
        // Grow the free list once to the slab's size instead of doubling it
        // inside a mass expiry: measured, each doubling paused the loop for
        // 5-49 ms with 1M holds.
        if self.free.len() == self.free.capacity() {
            self.free.reserve_exact(self.slab.len() - self.free.len());
        }
        self.free.push(slot);
        self.before_change(slot);
        let removed = self.slab[slot as usize].take().expect("indexed slots are occupied");
        if removed.state == ReservationState::Held {
            self.held -= 1;
        }
        removed
    }

    /// Moves a held record to a final state and arms its forget timer.
    pub fn finish(&mut self, slot: u32, to: ReservationState) {
        assert_ne!(to, ReservationState::Held, "finish never moves to Held");
        self.before_change(slot);
        let record = self.slab[slot as usize].as_mut().expect("indexed slots are occupied");
        assert_eq!(record.state, ReservationState::Held, "only a hold can finish: {record:?}");
        record.state = to;
        record.timer_due_ms = Some(record.forget_at_ms);
        let key = TimerKey { due_ms: record.forget_at_ms, seq: record.seq };
        self.held -= 1;
        self.timers.push(key, slot);
    }

    /// Pops the earliest heap entry at or before `up_to`: `Some((key, Some(slot)))`
    /// for a real timer, `Some((key, None))` for a stale entry.
    pub fn pop_due(&mut self, up_to: TimerKey) -> Option<(TimerKey, Option<u32>)> {
        let (key, slot) = self.timers.pop_until(up_to)?;
        let real =
            self.slab.get(slot as usize).and_then(Option::as_ref).is_some_and(|record| record.timer() == Some(key));
        Some((key, real.then_some(slot)))
    }

    /// Starts imaging the records that exist now into `images` and
    /// `lines` (see `RecordCapture`).
    pub fn begin_capture(&mut self, images: Vec<ReservationImage>, lines: Vec<LineImage>) {
        assert!(self.capture.is_none(), "one capture at a time");
        self.capture = Some(RecordCapture::new(self.slab.len(), images, lines));
    }

    /// Images up to `budget` more slots; once every slot is done, ends the
    /// capture and hands back the images and their lines. `None` while
    /// slots remain, and when no capture is in progress.
    pub fn capture_some(&mut self, budget: usize) -> Option<(Vec<ReservationImage>, Vec<LineImage>)> {
        let capture = self.capture.as_mut()?;
        if !capture.copy_some(budget, &self.slab) {
            return None;
        }
        self.capture.take().map(RecordCapture::into_images)
    }

    pub fn is_capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Copy-on-write: images the record of `slot` as it is before it
    /// changes, if a capture has yet to copy it.
    fn before_change(&mut self, slot: u32) {
        if let Some(capture) = &mut self.capture {
            capture.before_change(slot as usize, self.slab[slot as usize].as_ref());
        }
    }

    pub fn held_count(&self) -> usize {
        self.held
    }

    /// Records stored.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Records, and timers pending (real and stale), for metrics and tests.
    pub fn sizes(&self) -> (usize, usize) {
        (self.by_id.len(), self.timers.len())
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// For a snapshot load: sequence numbers continue after the snapshot's.
    pub fn set_next_seq(&mut self, next_seq: u64) {
        assert!(self.slab.is_empty(), "the sequence is set before records are loaded");
        self.next_seq = next_seq;
    }

    pub fn iter(&self) -> impl Iterator<Item = &Reservation> {
        self.slab.iter().flatten()
    }

    /// Every real pending timer, as the heap would fire them (for the audit).
    pub fn real_timers(&self) -> Vec<TimerKey> {
        let mut keys: Vec<TimerKey> = self
            .timers
            .iter()
            .filter(|(key, slot)| self.get_opt(*slot).is_some_and(|record| record.timer() == Some(*key)))
            .map(|(key, _)| *key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    fn get_opt(&self, slot: u32) -> Option<&Reservation> {
        self.slab.get(slot as usize).and_then(Option::as_ref)
    }
}

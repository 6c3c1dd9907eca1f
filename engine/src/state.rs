//! One shard's state and the deterministic state machine:
//! `apply(state, command, now) -> outcome`. The same function serves live
//! traffic, WAL replay and the tests' simulations. It reads no clock and
//! does no I/O; what it allocates is what a command stores, plus, for a
//! reservation of more than one line, a copy of its lines when it finishes.
//!
//! State changes happen inside a `Batch`, which holds the shard's SKU index
//! under an upgradable read lock for the whole batch: one lock operation per
//! batch, never contended by another writer because the shard is the only
//! one. Counts changed by a batch reach readers only through the list
//! `ShardState::take_published` hands out, which the shard publishes after
//! the batch is durable.
//!
//! Besides its outcome, a command may leave *notices*: a cross-shard cart's
//! home decided (or expired) it, so its other parts must follow. The shard
//! turns them into messages once the batch is durable; replay ignores them
//! (recovery reconciles parts instead, see `recovery`).

use crate::command::{
    CartLine, Command, PartOutcome, PartReply, PartView, Query, ReservationState, ReservePart, TimerKey,
};
use crate::ids::{ReservationId, Sku};
use crate::limits::{LINES_MAX, ON_HAND_MAX, QTY_MAX};
use crate::read_view::{SharedSkuIndex, SkuCounts, SkuIndex};
use crate::rejection::Rejection;
use crate::reservations::{Line, Reservation, Reservations};
use crate::snapshot::Capturing;
use parking_lot::{RwLock, RwLockUpgradableReadGuard, RwLockWriteGuard};
use smallvec::SmallVec;
use std::sync::Arc;

/// What a shard's state machine needs to know about its place in the engine.
#[derive(Debug, Clone, Copy)]
pub struct ShardConfig {
    /// This shard's index.
    pub shard: u16,
}

/// A decision home took for a cross-shard cart, which its other parts must
/// carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: ReservationId,
    pub participants: u64,
    pub to: ReservationState,
}

pub struct ShardState {
    config: ShardConfig,
    index: SharedSkuIndex,
    /// The shard's own counts, ahead of the published ones. Indexed by slot.
    counts: Vec<SkuCounts>,
    /// Slots changed since the last `take_published`, each once (the bit set
    /// remembers which are listed).
    dirty: Vec<u32>,
    dirty_bits: Vec<u64>,
    reservations: Reservations,
    notices: Vec<Notice>,
    /// Bumped by every change of state; the shard logs a command exactly
    /// when applying it moved this.
    mutations: u64,
    /// Holds expired (by a tick or found due at a decision), for metrics.
    expirations: u64,
    /// A snapshot's capture in progress (see `snapshot`).
    capturing: Option<Capturing>,
}

impl ShardState {
    pub fn new(config: ShardConfig) -> ShardState {
        ShardState {
            config,
            index: SharedSkuIndex::default(),
            counts: Vec::new(),
            dirty: Vec::new(),
            dirty_bits: Vec::new(),
            reservations: Reservations::default(),
            notices: Vec::new(),
            mutations: 0,
            expirations: 0,
            capturing: None,
        }
    }

    pub(crate) fn shared_index(&self) -> SharedSkuIndex {
        SharedSkuIndex::clone(&self.index)
    }

    pub fn shard(&self) -> u16 {
        self.config.shard
    }

    /// Starts applying commands.
    pub fn batch(&mut self) -> Batch<'_> {
        let state = StateParts {
            shard: self.config.shard,
            counts: &mut self.counts,
            dirty: &mut self.dirty,
            dirty_bits: &mut self.dirty_bits,
            reservations: &mut self.reservations,
            notices: &mut self.notices,
            mutations: &mut self.mutations,
            expirations: &mut self.expirations,
            capturing: &mut self.capturing,
        };
        Batch { index: Some(self.index.upgradable_read()), state }
    }

    /// Counts changed since the last call, with their values now: the shard
    /// publishes them once the batch that changed them is durable.
    pub fn take_published(&mut self, into: &mut Vec<(u32, SkuCounts)>) {
        for slot in self.dirty.drain(..) {
            self.dirty_bits[slot as usize / 64] &= !(1 << (slot % 64));
            into.push((slot, self.counts[slot as usize]));
        }
    }

    /// Publishes every change now (for callers without a log).
    pub fn publish_now(&mut self) {
        let mut published = Vec::new();
        self.take_published(&mut published);
        publish(&self.index, &published);
    }

    pub fn mutations(&self) -> u64 {
        self.mutations
    }

    pub fn held_count(&self) -> usize {
        self.reservations.held_count()
    }

    /// (reservations remembered, held or finished; timers pending).
    pub fn reservation_sizes(&self) -> (usize, usize) {
        self.reservations.sizes()
    }

    pub fn sku_count(&self) -> usize {
        self.counts.len()
    }

    /// Read access for snapshots.
    pub(crate) fn parts(&self) -> (&SharedSkuIndex, &[SkuCounts], &Reservations) {
        (&self.index, &self.counts, &self.reservations)
    }

    /// For a capture spread over turns (see `snapshot`).
    pub(crate) fn capture_parts(
        &mut self,
    ) -> (&SharedSkuIndex, &[SkuCounts], &mut Reservations, &mut Option<Capturing>) {
        (&self.index, &self.counts, &mut self.reservations, &mut self.capturing)
    }

    pub(crate) fn is_capturing(&self) -> bool {
        self.capturing.is_some()
    }

    /// A state rebuilt from a snapshot's parts; every SKU is marked changed,
    /// so the first publish shows them all.
    pub(crate) fn from_parts(
        config: ShardConfig,
        index: SkuIndex,
        counts: Vec<SkuCounts>,
        reservations: Reservations,
    ) -> ShardState {
        assert_eq!(index.len(), counts.len(), "a count per SKU");
        let slots = counts.len();
        let mut dirty_bits = vec![u64::MAX; slots.div_ceil(64)];
        if slots % 64 != 0 {
            *dirty_bits.last_mut().expect("at least one word") = (1u64 << (slots % 64)) - 1;
        }
        ShardState {
            config,
            index: Arc::new(RwLock::new(index)),
            counts,
            dirty: (0..slots as u32).collect(),
            dirty_bits,
            reservations,
            notices: Vec::new(),
            mutations: 0,
            expirations: 0,
            capturing: None,
        }
    }

    /// Holds expired since this state was created or loaded.
    pub fn expirations(&self) -> u64 {
        self.expirations
    }

    /// Drops notices left by replayed commands (recovery reconciles parts).
    pub(crate) fn discard_notices(&mut self) {
        self.notices.clear();
    }

    /// Held parts of carts whose home is another shard.
    pub(crate) fn held_away_parts(&self) -> Vec<AwayPart> {
        let me = self.config.shard;
        self.reservations
            .iter()
            .filter(|record| record.home != me && record.state == ReservationState::Held)
            .map(|record| AwayPart {
                id: record.id.clone(),
                fingerprint: record.fingerprint,
                home: record.home,
                forget_at_ms: record.forget_at_ms,
            })
            .collect()
    }

    /// (state, fingerprint) of this shard's part of `id`, if any.
    pub(crate) fn part_state(&self, id: &ReservationId) -> Option<(ReservationState, u128)> {
        let record = self.reservations.get(self.reservations.find(id)?);
        Some((record.state, record.fingerprint))
    }
}

/// A held part of a cart whose home is another shard (for recovery).
pub(crate) struct AwayPart {
    pub id: ReservationId,
    pub fingerprint: u128,
    pub home: u16,
    /// When the cart's records are forgotten (the same on every part).
    pub forget_at_ms: u64,
}

/// Writes published counts into the read view.
pub(crate) fn publish(index: &SharedSkuIndex, published: &[(u32, SkuCounts)]) {
    if published.is_empty() {
        return;
    }
    let index = index.read();
    for &(slot, counts) in published {
        index.publish(slot, counts);
    }
}

/// The mutable fields of a `ShardState` a batch works on.
struct StateParts<'a> {
    shard: u16,
    counts: &'a mut Vec<SkuCounts>,
    dirty: &'a mut Vec<u32>,
    dirty_bits: &'a mut Vec<u64>,
    reservations: &'a mut Reservations,
    notices: &'a mut Vec<Notice>,
    mutations: &'a mut u64,
    expirations: &'a mut u64,
    capturing: &'a mut Option<Capturing>,
}

/// Applies commands to a shard's state; see the module comment.
pub struct Batch<'a> {
    /// Always `Some` between calls; taken only while upgrading to insert.
    index: Option<RwLockUpgradableReadGuard<'a, SkuIndex>>,
    state: StateParts<'a>,
}

/// Commands whose lookups are warmed together (`Batch::warm`) before they
/// are applied. Small on purpose: warming a whole turn of 8,192 commands at
/// once left most lines evicted from L2 by the time their command ran
/// (measured: the bare state machine did 2.75 M reserve+commit/s warming
/// all 8,192, 3.3-3.4 M warming 16-256 at a time).
pub const WARM_WINDOW: usize = 64;

impl Batch<'_> {
    /// Looks up, and forgets, the reservations and SKUs the next commands
    /// will use: a hint that changes nothing. With millions of reservations
    /// or SKUs each lookup is a chain of cache misses; looked up together,
    /// just before the commands (`WARM_WINDOW` of them), independent lookups
    /// overlap their misses, and the commands then find their lines in cache.
    pub fn warm<'c>(&self, reservations: impl Iterator<Item = &'c ReservationId>, skus: impl Iterator<Item = &'c Sku>) {
        for id in reservations {
            self.state.reservations.warm(id);
        }
        for sku in skus {
            if let Some(slot) = self.find_sku(sku) {
                std::hint::black_box(self.state.counts[slot as usize]);
            }
        }
    }

    /// The state machine. Deterministic: the outcome and the new state depend
    /// only on the state, the command and `now_ms`.
    pub fn apply(&mut self, command: &Command, now_ms: u64) -> PartOutcome {
        match command {
            Command::SetStock { sku, on_hand, expected_version } => self.set_stock(sku, *on_hand, *expected_version),
            Command::AdjustStock { sku, delta } => self.adjust_stock(sku, *delta),
            Command::Reserve(part) => self.reserve(part),
            Command::Commit { id } => self.decide(id, ReservationState::Committed, now_ms),
            Command::Release { id } => self.decide(id, ReservationState::Released, now_ms),
            Command::CommitPart { id } => self.follow_home(id, ReservationState::Committed),
            Command::ReleasePart { id } => self.follow_home(id, ReservationState::Released),
            Command::ExpirePart { id } => self.follow_home(id, ReservationState::Expired),
            Command::Abort { id, fingerprint } => self.abort(id, *fingerprint),
            Command::Tick { up_to } => {
                self.fire_timers(*up_to, usize::MAX);
                Ok(PartReply::Done)
            }
        }
    }

    /// The live shard's tick: fires at most `events_max` due timers and
    /// returns the `Tick` to log when it fired any.
    pub fn tick(&mut self, now_ms: u64, events_max: usize) -> Option<Command> {
        let up_to = self.fire_timers(TimerKey { due_ms: now_ms, seq: u64::MAX }, events_max)?;
        Some(Command::Tick { up_to })
    }

    pub fn query(&self, query: &Query) -> PartOutcome {
        match query {
            Query::GetSku { sku } => match self.find_sku(sku) {
                Some(slot) => Ok(PartReply::Sku(self.state.counts[slot as usize])),
                None => Err(Rejection::UnknownSku { sku: sku.clone() }),
            },
            Query::GetReservation { id } => self.get_reservation(id),
            Query::Audit => {
                self.audit();
                Ok(PartReply::Done)
            }
        }
    }

    /// (state, fingerprint, deadline) of a reservation this shard holds a part of.
    pub fn reservation_state(&self, id: &ReservationId) -> Option<(ReservationState, u128, u64)> {
        let slot = self.state.reservations.find(id)?;
        let record = self.state.reservations.get(slot);
        Some((record.state, record.fingerprint, record.expires_at_ms))
    }

    pub fn mutations(&self) -> u64 {
        *self.state.mutations
    }

    /// Notices left by the commands applied since the last call (rare: only
    /// decisions on carts that span shards leave one).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(self.state.notices)
    }

    /// Whether every line could be held right now (a cheap early refusal
    /// for a cart's home; the hold itself checks again).
    pub fn check_available(&self, lines: &[CartLine]) -> Result<(), Rejection> {
        for line in lines {
            self.line_slot(line)?;
        }
        Ok(())
    }

    fn index(&self) -> &SkuIndex {
        self.index.as_deref().expect("a batch holds the index between calls")
    }

    fn find_sku(&self, sku: &Sku) -> Option<u32> {
        self.index().find(sku.as_str(), sku.key_hash())
    }

    fn insert_sku(&mut self, sku: &Sku) -> u32 {
        let guard = self.index.take().expect("a batch holds the index between calls");
        let mut index = RwLockUpgradableReadGuard::upgrade(guard);
        let slot = index.insert(sku.as_str(), sku.key_hash());
        self.index = Some(RwLockWriteGuard::downgrade_to_upgradable(index));
        assert_eq!(slot as usize, self.state.counts.len(), "index and counts grow together");
        self.state.counts.push(SkuCounts::default());
        if self.state.dirty_bits.len() * 64 < self.state.counts.len() {
            self.state.dirty_bits.push(0);
        }
        slot
    }

    fn store_counts(&mut self, slot: u32, counts: SkuCounts) {
        assert!(
            counts.reserved <= counts.on_hand && counts.on_hand <= ON_HAND_MAX,
            "invariant 0 <= reserved <= on_hand <= 2^40 broken for {}: {counts:?}",
            self.index().key(slot)
        );
        let state = &mut self.state;
        if let Some(capturing) = state.capturing {
            capturing.before_counts_change(slot, state.counts[slot as usize]);
        }
        state.counts[slot as usize] = counts;
        *state.mutations += 1;
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if state.dirty_bits[word] & bit == 0 {
            state.dirty_bits[word] |= bit;
            state.dirty.push(slot);
        }
    }

    fn set_stock(&mut self, sku: &Sku, on_hand: u64, expected_version: Option<u64>) -> PartOutcome {
        assert!(on_hand <= ON_HAND_MAX, "on_hand is checked at the edge");
        let slot = self.find_sku(sku);
        let current = slot.map(|slot| self.state.counts[slot as usize]).unwrap_or_default();
        if let Some(expected) = expected_version {
            if expected != current.version {
                return Err(Rejection::VersionMismatch { expected, current: current.version });
            }
        }
        if on_hand < current.reserved {
            return Err(Rejection::BelowReserved { sku: sku.clone(), reserved: current.reserved });
        }
        let slot = slot.unwrap_or_else(|| self.insert_sku(sku));
        let counts = SkuCounts { on_hand, reserved: current.reserved, version: current.version + 1 };
        self.store_counts(slot, counts);
        Ok(PartReply::Sku(counts))
    }

    fn adjust_stock(&mut self, sku: &Sku, delta: i64) -> PartOutcome {
        let Some(slot) = self.find_sku(sku) else {
            return Err(Rejection::UnknownSku { sku: sku.clone() });
        };
        let current = self.state.counts[slot as usize];
        let on_hand = i128::from(current.on_hand) + i128::from(delta);
        if on_hand < i128::from(current.reserved) {
            return Err(Rejection::BelowReserved { sku: sku.clone(), reserved: current.reserved });
        }
        if on_hand > i128::from(ON_HAND_MAX) {
            return Err(Rejection::OnHandTooLarge);
        }
        let on_hand = u64::try_from(on_hand).expect("0 <= on_hand <= 2^40 checked above");
        let counts = SkuCounts { on_hand, version: current.version + 1, ..current };
        self.store_counts(slot, counts);
        Ok(PartReply::Sku(counts))
    }

    /// The slot of a line's SKU if the line could be held now.
    fn line_slot(&self, line: &CartLine) -> Result<u32, Rejection> {
        let Some(slot) = self.find_sku(&line.sku) else {
            return Err(Rejection::UnknownSku { sku: line.sku.clone() });
        };
        let available = self.state.counts[slot as usize].available();
        if available < u64::from(line.qty) {
            return Err(Rejection::InsufficientStock { sku: line.sku.clone(), requested: line.qty, available });
        }
        Ok(slot)
    }

    fn reserve(&mut self, part: &ReservePart) -> PartOutcome {
        let me = self.state.shard;
        let at_home = part.home == me;
        // Only the home part may be empty: it records the cart for a home
        // shard that owns none of its SKUs.
        assert!(part.lines.len() <= LINES_MAX && (at_home || !part.lines.is_empty()), "lines are checked at the edge");
        assert!(part.participants & (1 << me) != 0 && part.participants & (1 << part.home) != 0, "{part:?}");
        assert!(part.expires_at_ms < part.forget_at_ms, "retention is at least 1 ms: {part:?}");
        if let Some(slot) = self.state.reservations.find(&part.id) {
            let existing = self.state.reservations.get(slot);
            if existing.fingerprint != part.fingerprint {
                return Err(Rejection::IdempotencyKeyReused);
            }
            let (expires_at_ms, state) = (existing.expires_at_ms, existing.state);
            return Ok(PartReply::Held { expires_at_ms, replayed: true, state });
        }
        // All or nothing: check every line before holding any.
        let mut held: SmallVec<[Line; 1]> = SmallVec::with_capacity(part.lines.len());
        for line in &part.lines {
            assert!((1..=QTY_MAX).contains(&line.qty), "qty is checked at the edge");
            held.push(Line { slot: self.line_slot(line)?, qty: line.qty });
        }
        for line in &held {
            let mut counts = self.state.counts[line.slot as usize];
            counts.reserved += u64::from(line.qty);
            self.store_counts(line.slot, counts);
        }
        self.state.reservations.insert(Reservation {
            id: part.id.clone(),
            fingerprint: part.fingerprint,
            lines: held,
            expires_at_ms: part.expires_at_ms,
            forget_at_ms: part.forget_at_ms,
            seq: 0, // assigned by `insert`
            // A part away from home never expires on its own clock: home
            // decides, so a cart is never partly sold and partly expired.
            timer_due_ms: at_home.then_some(part.expires_at_ms),
            state: ReservationState::Held,
            home: part.home,
            participants: part.participants,
        });
        *self.state.mutations += 1;
        Ok(PartReply::Held { expires_at_ms: part.expires_at_ms, replayed: false, state: ReservationState::Held })
    }

    /// At the home shard: moves the cart to `to` (Committed or Released), or
    /// refuses. A hold found due is expired first (lazy expiry), so a late
    /// commit can never sell units a tick would have returned.
    fn decide(&mut self, id: &ReservationId, to: ReservationState, now_ms: u64) -> PartOutcome {
        let Some(slot) = self.state.reservations.find(id) else {
            return Err(Rejection::UnknownReservation);
        };
        let record = self.state.reservations.get(slot);
        assert_eq!(record.home, self.state.shard, "a decision for {id} reached a part away from home");
        match record.state {
            ReservationState::Held if record.expires_at_ms <= now_ms => {
                self.finish(slot, ReservationState::Expired);
                Err(Rejection::ReservationExpired)
            }
            ReservationState::Held => {
                self.finish(slot, to);
                Ok(decision_reply(to))
            }
            // Idempotent by state: the same decision again answers the same.
            state if state == to => Ok(decision_reply(to)),
            ReservationState::Committed => Err(Rejection::ReservationCommitted),
            ReservationState::Released => Err(Rejection::ReservationReleased),
            ReservationState::Expired => Err(Rejection::ReservationExpired),
        }
    }

    /// At a part away from home: carries out what home decided. Home decides
    /// once, so a part that already finished differently means the cart was
    /// split: an invariant breach, never an expected refusal.
    fn follow_home(&mut self, id: &ReservationId, to: ReservationState) -> PartOutcome {
        let slot = self.state.reservations.find(id);
        let record = slot.map(|slot| self.state.reservations.get(slot));
        match record {
            Some(record) if record.state == ReservationState::Held => {
                assert_ne!(record.home, self.state.shard, "home's own part of {id} follows nobody");
                self.finish(slot.expect("found"), to);
            }
            Some(record) if record.state == to => {}
            other => panic!("home decided {} for {id} but this part is {other:?}", to.as_str()),
        }
        Ok(PartReply::Done)
    }

    fn abort(&mut self, id: &ReservationId, fingerprint: u128) -> PartOutcome {
        if let Some(slot) = self.state.reservations.find(id) {
            let part = self.state.reservations.get(slot);
            if part.home != self.state.shard && part.fingerprint == fingerprint && part.state == ReservationState::Held
            {
                self.return_units(slot);
                self.state.reservations.remove(slot);
                *self.state.mutations += 1;
            }
        }
        Ok(PartReply::Done)
    }

    /// Moves a held reservation to `to`, selling or returning its units, and
    /// leaves a notice when the cart has parts on other shards.
    fn finish(&mut self, slot: u32, to: ReservationState) {
        match to {
            ReservationState::Committed => {
                let lines = self.state.reservations.get(slot).lines.clone();
                for line in lines {
                    let mut counts = self.state.counts[line.slot as usize];
                    counts.on_hand -= u64::from(line.qty);
                    counts.reserved -= u64::from(line.qty);
                    // on_hand changed: a compare-and-set of stock read
                    // before this sale must fail.
                    counts.version += 1;
                    self.store_counts(line.slot, counts);
                }
            }
            ReservationState::Released => self.return_units(slot),
            ReservationState::Expired => self.return_units(slot),
            ReservationState::Held => unreachable!("finish never moves to Held"),
        }
        self.state.reservations.finish(slot, to);
        *self.state.mutations += 1;
        let record = self.state.reservations.get(slot);
        let me = self.state.shard;
        // A cart expires once, at home (its parts follow).
        if to == ReservationState::Expired && record.home == me {
            *self.state.expirations += 1;
        }
        if record.home == me && record.participants != 1 << me {
            self.state.notices.push(Notice { id: record.id.clone(), participants: record.participants, to });
        }
    }

    fn return_units(&mut self, slot: u32) {
        let lines = self.state.reservations.get(slot).lines.clone();
        for line in lines {
            let mut counts = self.state.counts[line.slot as usize];
            counts.reserved -= u64::from(line.qty);
            self.store_counts(line.slot, counts);
        }
    }

    /// Fires real timers in key order while their key is at or before
    /// `up_to`, at most `events_max` of them (stale heap entries are skipped
    /// but bounded too). Returns the key of the last timer fired, if any:
    /// every real timer at or before it has fired, so it is the exact bound
    /// replay needs.
    fn fire_timers(&mut self, up_to: TimerKey, events_max: usize) -> Option<TimerKey> {
        let mut last_fired = None;
        let mut fired = 0;
        let mut popped = 0usize;
        while fired < events_max && popped < events_max.saturating_mul(4) {
            let Some((key, slot)) = self.state.reservations.pop_due(up_to) else { break };
            // Only once something is due: an idle turn warms nothing.
            if popped % WARM_WINDOW == 0 {
                self.state.reservations.warm_due(up_to, WARM_WINDOW);
            }
            popped += 1;
            let Some(slot) = slot else { continue };
            let record = self.state.reservations.get(slot);
            if record.state == ReservationState::Held {
                debug_assert_eq!(key.due_ms, record.expires_at_ms);
                self.finish(slot, ReservationState::Expired);
            } else {
                debug_assert_eq!(key.due_ms, record.forget_at_ms);
                self.state.reservations.remove(slot);
                *self.state.mutations += 1;
            }
            fired += 1;
            last_fired = Some(key);
        }
        last_fired
    }

    fn get_reservation(&self, id: &ReservationId) -> PartOutcome {
        let Some(slot) = self.state.reservations.find(id) else {
            return Err(Rejection::UnknownReservation);
        };
        let record = self.state.reservations.get(slot);
        let index = self.index();
        let lines = record
            .lines
            .iter()
            .map(|line| CartLine {
                sku: Sku::new(index.key(line.slot)).expect("stored keys were validated"),
                qty: line.qty,
            })
            .collect();
        Ok(PartReply::Part(PartView {
            fingerprint: record.fingerprint,
            home: record.home,
            participants: record.participants,
            state: record.state,
            expires_at_ms: record.expires_at_ms,
            lines,
        }))
    }

    /// Full-scan check of every invariant; panics with the state on a breach.
    fn audit(&self) {
        let me = self.state.shard;
        let counts = &self.state.counts;
        let mut held = vec![0u64; counts.len()];
        let mut expected_timers = Vec::new();
        let mut held_records = 0;
        for record in self.state.reservations.iter() {
            if record.state == ReservationState::Held {
                held_records += 1;
                for line in &record.lines {
                    held[line.slot as usize] += u64::from(line.qty);
                }
                let expected = (record.home == me).then_some(record.expires_at_ms);
                assert_eq!(
                    record.timer_due_ms, expected,
                    "a hold's timer is its deadline at home, none away: {record:?}"
                );
            } else {
                assert_eq!(record.timer_due_ms, Some(record.forget_at_ms), "finished records wait to be forgotten");
            }
            expected_timers.extend(record.timer());
        }
        for (slot, counts) in counts.iter().enumerate() {
            let sku = self.index().key(slot as u32);
            assert!(counts.reserved <= counts.on_hand, "reserved > on_hand for {sku}: {counts:?}");
            assert_eq!(held[slot], counts.reserved, "held lines of {sku} do not sum to reserved: {counts:?}");
        }
        assert_eq!(held_records, self.state.reservations.held_count(), "held count drifted");
        expected_timers.sort_unstable();
        assert_eq!(expected_timers, self.state.reservations.real_timers(), "a record's timer is missing from the heap");
    }
}

fn decision_reply(to: ReservationState) -> PartReply {
    match to {
        ReservationState::Committed => PartReply::Committed,
        ReservationState::Released => PartReply::Released,
        other => unreachable!("not a decision: {other:?}"),
    }
}

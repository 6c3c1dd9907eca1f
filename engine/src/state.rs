//! One shard's state and the deterministic state machine:
//! `apply(state, command, now) -> outcome`. The same function serves live
//! traffic, (with the WAL) replay, and the tests' simulations. It reads no
//! clock, does no I/O, and allocates only what a command stores.
//!
//! State changes happen inside a `Batch`, which holds the shard's SKU index
//! under an upgradable read lock for the whole batch: one lock operation per
//! batch, never contended by another writer because the shard is the only
//! one. Counts changed by the batch become visible to readers only through
//! `ShardState::publish`, which the shard calls after the batch is durable.

use crate::command::{Command, PartOutcome, PartReply, PartView, ReservationState};
use crate::hash::key_hash;
use crate::ids::{ReservationId, Sku};
use crate::limits::{LINES_MAX, ON_HAND_MAX, QTY_MAX, TICK_EVENTS_MAX, TTL_MS_MAX, TTL_MS_MIN};
use crate::read_view::{SharedSkuIndex, SkuCounts, SkuIndex};
use crate::rejection::Rejection;
use crate::reservations::{Line, Reservation, Reservations};
use parking_lot::{RwLockUpgradableReadGuard, RwLockWriteGuard};
use smallvec::SmallVec;

/// What a shard's state machine needs to know about its place in the engine.
#[derive(Debug, Clone, Copy)]
pub struct ShardConfig {
    /// This shard's index.
    pub shard: u16,
    pub retention_ms: u64,
    pub cart_grace_ms: u64,
}

pub struct ShardState {
    config: ShardConfig,
    index: SharedSkuIndex,
    /// The shard's own counts, ahead of the published ones by at most one
    /// batch. Indexed by SKU slot.
    counts: Vec<SkuCounts>,
    /// Slots changed since the last publish (consecutive repeats collapsed).
    dirty: Vec<u32>,
    reservations: Reservations,
    /// Cross-shard carts whose home part expired since the last drain: the
    /// shard loop tells their other parts (`Command::ExpirePart`).
    expired_carts: Vec<(ReservationId, u64)>,
}

impl ShardState {
    pub fn new(config: ShardConfig) -> ShardState {
        ShardState {
            config,
            index: SharedSkuIndex::default(),
            counts: Vec::new(),
            dirty: Vec::new(),
            reservations: Reservations::default(),
            expired_carts: Vec::new(),
        }
    }

    pub(crate) fn shared_index(&self) -> SharedSkuIndex {
        SharedSkuIndex::clone(&self.index)
    }

    /// Starts applying commands. Drop the batch before `publish`.
    pub fn batch(&mut self) -> Batch<'_> {
        Batch {
            config: self.config,
            index: Some(self.index.upgradable_read()),
            counts: &mut self.counts,
            dirty: &mut self.dirty,
            reservations: &mut self.reservations,
            expired_carts: &mut self.expired_carts,
        }
    }

    /// Takes the (id, participants) of cross-shard carts expired at home.
    pub fn drain_expired_carts(&mut self) -> std::vec::Drain<'_, (ReservationId, u64)> {
        self.expired_carts.drain(..)
    }

    /// Makes every count changed since the last publish visible to readers.
    pub fn publish(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let index = self.index.read();
        for slot in self.dirty.drain(..) {
            index.publish(slot, self.counts[slot as usize]);
        }
    }

    pub fn shard(&self) -> u16 {
        self.config.shard
    }
}

/// Applies commands to a shard's state; see the module comment.
pub struct Batch<'a> {
    config: ShardConfig,
    /// Always `Some` between calls; taken only while upgrading to insert.
    index: Option<RwLockUpgradableReadGuard<'a, SkuIndex>>,
    counts: &'a mut Vec<SkuCounts>,
    dirty: &'a mut Vec<u32>,
    reservations: &'a mut Reservations,
    expired_carts: &'a mut Vec<(ReservationId, u64)>,
}

impl Batch<'_> {
    /// The state machine. Deterministic: the outcome and the new state depend
    /// only on the state, the command and `now_ms`.
    pub fn apply(&mut self, command: Command, now_ms: u64) -> PartOutcome {
        match command {
            Command::SetStock { sku, on_hand, expected_version } => self.set_stock(sku, on_hand, expected_version),
            Command::AdjustStock { sku, delta } => self.adjust_stock(sku, delta),
            Command::Reserve { id, fingerprint, lines, ttl_ms, home, participants } => {
                let cart = Cart { fingerprint, ttl_ms, home, participants };
                self.reserve(id, lines, cart, now_ms)
            }
            Command::Commit { id } => self.decide(&id, ReservationState::Committed, now_ms),
            Command::CommitPart { id } => self.commit_part(&id),
            Command::Release { id } => self.decide(&id, ReservationState::Released, now_ms),
            Command::ReleasePart { id } => self.release_part(&id),
            Command::ExpirePart { id } => self.expire_part(&id),
            Command::Abort { id, fingerprint } => self.abort(&id, fingerprint),
            Command::Tick => Ok(PartReply::Ticked { changed: self.tick(now_ms) }),
            Command::GetSku { sku } => self.get_sku(sku),
            Command::GetReservation { id } => self.get_reservation(&id),
            Command::Audit => {
                self.audit();
                Ok(PartReply::Done)
            }
        }
    }

    fn index(&self) -> &SkuIndex {
        self.index.as_deref().expect("a batch holds the index between calls")
    }

    fn find_sku(&self, sku: &Sku) -> Option<u32> {
        self.index().find(sku.as_str(), key_hash(sku.as_str()))
    }

    fn insert_sku(&mut self, sku: &Sku) -> u32 {
        let guard = self.index.take().expect("a batch holds the index between calls");
        let mut index = RwLockUpgradableReadGuard::upgrade(guard);
        let slot = index.insert(sku.as_str(), key_hash(sku.as_str()));
        self.index = Some(RwLockWriteGuard::downgrade_to_upgradable(index));
        assert_eq!(slot as usize, self.counts.len(), "index and counts grow together");
        self.counts.push(SkuCounts::default());
        slot
    }

    fn store_counts(&mut self, slot: u32, counts: SkuCounts) {
        assert!(
            counts.reserved <= counts.on_hand && counts.on_hand <= ON_HAND_MAX,
            "invariant 0 <= reserved <= on_hand <= 2^40 broken for {}: {counts:?}",
            self.index().key(slot)
        );
        self.counts[slot as usize] = counts;
        if self.dirty.last() != Some(&slot) {
            self.dirty.push(slot);
        }
    }

    fn set_stock(&mut self, sku: Sku, on_hand: u64, expected_version: Option<u64>) -> PartOutcome {
        assert!(on_hand <= ON_HAND_MAX, "on_hand is checked at the edge");
        let slot = self.find_sku(&sku);
        let current = slot.map(|slot| self.counts[slot as usize]).unwrap_or_default();
        if let Some(expected) = expected_version {
            if expected != current.version {
                return Err(Rejection::VersionMismatch { expected, current: current.version });
            }
        }
        if on_hand < current.reserved {
            return Err(Rejection::BelowReserved { sku, reserved: current.reserved });
        }
        let slot = slot.unwrap_or_else(|| self.insert_sku(&sku));
        let counts = SkuCounts { on_hand, reserved: current.reserved, version: current.version + 1 };
        self.store_counts(slot, counts);
        Ok(PartReply::Sku(counts))
    }

    fn adjust_stock(&mut self, sku: Sku, delta: i64) -> PartOutcome {
        let Some(slot) = self.find_sku(&sku) else {
            return Err(Rejection::UnknownSku { sku });
        };
        let current = self.counts[slot as usize];
        let on_hand = i128::from(current.on_hand) + i128::from(delta);
        if on_hand < i128::from(current.reserved) {
            return Err(Rejection::BelowReserved { sku, reserved: current.reserved });
        }
        if on_hand > i128::from(ON_HAND_MAX) {
            return Err(Rejection::OnHandTooLarge);
        }
        let on_hand = u64::try_from(on_hand).expect("0 <= on_hand <= 2^40 checked above");
        let counts = SkuCounts { on_hand, version: current.version + 1, ..current };
        self.store_counts(slot, counts);
        Ok(PartReply::Sku(counts))
    }

    fn reserve(&mut self, id: ReservationId, lines: Vec<(Sku, u32)>, cart: Cart, now_ms: u64) -> PartOutcome {
        let me = self.config.shard;
        // Only the home part may be empty: it records the cart for a home
        // shard that owns none of its SKUs.
        assert!(lines.len() <= LINES_MAX && (!lines.is_empty() || cart.home == me), "lines are checked at the edge");
        assert!((TTL_MS_MIN..=TTL_MS_MAX).contains(&cart.ttl_ms), "ttl is checked at the edge");
        assert!(cart.participants & (1 << me) != 0 && cart.participants & (1 << cart.home) != 0);
        let id_hash = key_hash(id.as_str());
        if let Some(slot) = self.reservations.find(id.as_str(), id_hash) {
            let existing = self.reservations.get(slot);
            if existing.fingerprint != cart.fingerprint {
                return Err(Rejection::IdempotencyKeyReused);
            }
            let (expires_at_ms, state) = (existing.expires_at_ms, existing.state);
            return Ok(PartReply::Held { expires_at_ms, replayed: true, state });
        }
        // All or nothing: check every line before holding any.
        let mut held: SmallVec<[Line; 1]> = SmallVec::with_capacity(lines.len());
        for (sku, qty) in lines {
            assert!((1..=QTY_MAX).contains(&qty), "qty is checked at the edge");
            let Some(slot) = self.find_sku(&sku) else {
                return Err(Rejection::UnknownSku { sku });
            };
            let available = self.counts[slot as usize].available();
            if available < u64::from(qty) {
                return Err(Rejection::InsufficientStock { sku, requested: qty, available });
            }
            held.push(Line { slot, qty });
        }
        for line in &held {
            let mut counts = self.counts[line.slot as usize];
            counts.reserved += u64::from(line.qty);
            self.store_counts(line.slot, counts);
        }
        // A part away from home outlives the home's deadline by the grace, so
        // that a commit decided at home before its deadline finds it held.
        // Normally home's expiry releases it at once (`ExpirePart`); its own
        // deadline only matters if that message is lost to a crash.
        let grace_ms = if cart.home == me { 0 } else { self.config.cart_grace_ms };
        let cart_expires_at_ms = now_ms.saturating_add(cart.ttl_ms);
        let expires_at_ms = cart_expires_at_ms.saturating_add(grace_ms);
        self.reservations.insert(
            Reservation {
                id,
                fingerprint: cart.fingerprint,
                lines: held,
                expires_at_ms,
                // Every part of a cart is forgotten at the same time as its home.
                forget_at_ms: cart_expires_at_ms.saturating_add(self.config.retention_ms),
                state: ReservationState::Held,
                home: cart.home,
                participants: cart.participants,
            },
            id_hash,
        );
        Ok(PartReply::Held { expires_at_ms, replayed: false, state: ReservationState::Held })
    }

    /// At the home shard: moves the cart to `to` (Committed or Released),
    /// or refuses. A hold found due is expired first (lazy expiry), so a
    /// late commit can never sell units a tick would have returned.
    fn decide(&mut self, id: &ReservationId, to: ReservationState, now_ms: u64) -> PartOutcome {
        let Some(slot) = self.reservations.find(id.as_str(), key_hash(id.as_str())) else {
            return Err(Rejection::UnknownReservation);
        };
        let reservation = self.reservations.get(slot);
        assert_eq!(reservation.home, self.config.shard, "a decision reached a non-home part of {id}");
        let participants = reservation.participants;
        match reservation.state {
            ReservationState::Held if reservation.expires_at_ms <= now_ms => {
                self.finish(slot, ReservationState::Expired);
                Err(Rejection::ReservationExpired)
            }
            ReservationState::Held => {
                self.finish(slot, to);
                Ok(PartReply::Decided { participants })
            }
            // Idempotent by state: the same decision again answers the same.
            state if state == to => Ok(PartReply::Decided { participants }),
            ReservationState::Committed => Err(Rejection::ReservationCommitted),
            ReservationState::Released => Err(Rejection::ReservationReleased),
            ReservationState::Expired => Err(Rejection::ReservationExpired),
        }
    }

    fn commit_part(&mut self, id: &ReservationId) -> PartOutcome {
        let Some(slot) = self.reservations.find(id.as_str(), key_hash(id.as_str())) else {
            return Err(Rejection::UnknownReservation);
        };
        match self.reservations.get(slot).state {
            // The home decided before its deadline; the part's own deadline
            // (home's plus grace) does not matter any more.
            ReservationState::Held => {
                self.finish(slot, ReservationState::Committed);
                Ok(PartReply::Done)
            }
            ReservationState::Committed => Ok(PartReply::Done),
            ReservationState::Expired => Err(Rejection::CartPartExpired),
            ReservationState::Released => Err(Rejection::ReservationReleased),
        }
    }

    fn release_part(&mut self, id: &ReservationId) -> PartOutcome {
        let Some(slot) = self.reservations.find(id.as_str(), key_hash(id.as_str())) else {
            return Err(Rejection::UnknownReservation);
        };
        match self.reservations.get(slot).state {
            ReservationState::Held => {
                self.finish(slot, ReservationState::Released);
                Ok(PartReply::Done)
            }
            ReservationState::Released | ReservationState::Expired => Ok(PartReply::Done),
            ReservationState::Committed => Err(Rejection::ReservationCommitted),
        }
    }

    fn expire_part(&mut self, id: &ReservationId) -> PartOutcome {
        match self.reservations.find(id.as_str(), key_hash(id.as_str())) {
            Some(slot) if self.reservations.get(slot).state == ReservationState::Held => {
                self.finish(slot, ReservationState::Expired);
            }
            // Already finished on its own deadline, or forgotten.
            _ => {}
        }
        Ok(PartReply::Done)
    }

    fn abort(&mut self, id: &ReservationId, fingerprint: u128) -> PartOutcome {
        if let Some(slot) = self.reservations.find(id.as_str(), key_hash(id.as_str())) {
            let part = self.reservations.get(slot);
            if part.home != self.config.shard && part.fingerprint == fingerprint {
                if part.state == ReservationState::Held {
                    self.return_units(slot);
                }
                self.reservations.remove(slot);
            }
        }
        Ok(PartReply::Done)
    }

    /// Moves a held reservation to `to`, selling or returning its units.
    fn finish(&mut self, slot: u32, to: ReservationState) {
        let reservation = self.reservations.get(slot);
        assert_eq!(reservation.state, ReservationState::Held, "only a hold can finish: {reservation:?}");
        match to {
            ReservationState::Committed => {
                let lines = reservation.lines.clone();
                for line in lines {
                    let mut counts = self.counts[line.slot as usize];
                    counts.on_hand -= u64::from(line.qty);
                    counts.reserved -= u64::from(line.qty);
                    self.store_counts(line.slot, counts);
                }
            }
            ReservationState::Released => self.return_units(slot),
            ReservationState::Expired => {
                let me = self.config.shard;
                if reservation.home == me && reservation.participants != 1 << me {
                    self.expired_carts.push((reservation.id.clone(), reservation.participants));
                }
                self.return_units(slot);
            }
            ReservationState::Held => unreachable!("finish never moves to Held"),
        }
        self.reservations.get_mut(slot).state = to;
    }

    fn return_units(&mut self, slot: u32) {
        let lines = self.reservations.get(slot).lines.clone();
        for line in lines {
            let mut counts = self.counts[line.slot as usize];
            counts.reserved -= u64::from(line.qty);
            self.store_counts(line.slot, counts);
        }
    }

    /// Handles at most `TICK_EVENTS_MAX` due timers; returns whether anything
    /// changed.
    fn tick(&mut self, now_ms: u64) -> bool {
        let mut changed = false;
        for _ in 0..TICK_EVENTS_MAX {
            let Some((due_ms, slot)) = self.reservations.pop_due(now_ms) else {
                break;
            };
            if !self.reservations.is_occupied(slot) {
                continue; // Forgotten or aborted since the timer was armed.
            }
            let reservation = self.reservations.get(slot);
            let forget_at_ms = reservation.forget_at_ms;
            match reservation.state {
                ReservationState::Held if reservation.expires_at_ms <= now_ms => {
                    self.finish(slot, ReservationState::Expired);
                    self.reservations.arm_timer(forget_at_ms, slot);
                    changed = true;
                }
                // A stale timer of an earlier record in this slot; the current
                // record's own deadline timer is still armed.
                ReservationState::Held => {}
                _ if forget_at_ms <= now_ms => {
                    self.reservations.remove(slot);
                    changed = true;
                }
                _ if due_ms == reservation.expires_at_ms => {
                    self.reservations.arm_timer(forget_at_ms, slot);
                }
                _ => {}
            }
        }
        changed
    }

    fn get_sku(&self, sku: Sku) -> PartOutcome {
        match self.find_sku(&sku) {
            Some(slot) => Ok(PartReply::Sku(self.counts[slot as usize])),
            None => Err(Rejection::UnknownSku { sku }),
        }
    }

    fn get_reservation(&self, id: &ReservationId) -> PartOutcome {
        let Some(slot) = self.reservations.find(id.as_str(), key_hash(id.as_str())) else {
            return Err(Rejection::UnknownReservation);
        };
        let reservation = self.reservations.get(slot);
        let index = self.index();
        let lines = reservation
            .lines
            .iter()
            .map(|line| {
                let sku = Sku::new(index.key(line.slot)).expect("stored keys were validated");
                (sku, line.qty)
            })
            .collect();
        Ok(PartReply::Part(PartView {
            fingerprint: reservation.fingerprint,
            home: reservation.home,
            participants: reservation.participants,
            state: reservation.state,
            expires_at_ms: reservation.expires_at_ms,
            lines,
        }))
    }

    /// Full-scan check of every invariant; panics with the state on a breach.
    fn audit(&self) {
        let mut held = vec![0u64; self.counts.len()];
        for reservation in self.reservations.iter() {
            if reservation.state == ReservationState::Held {
                for line in &reservation.lines {
                    held[line.slot as usize] += u64::from(line.qty);
                }
            }
        }
        for (slot, counts) in self.counts.iter().enumerate() {
            let sku = self.index().key(slot as u32);
            assert!(counts.reserved <= counts.on_hand, "reserved > on_hand for {sku}: {counts:?}");
            assert_eq!(held[slot], counts.reserved, "held lines of {sku} do not sum to reserved: {counts:?}");
        }
    }
}

/// The cart-wide fields of a `Reserve`.
struct Cart {
    fingerprint: u128,
    ttl_ms: u64,
    home: u16,
    participants: u64,
}

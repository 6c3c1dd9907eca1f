//! The cross-shard cart protocol, driven by the cart's home shard (the
//! shard of its reservation id) through shard-to-shard messages, so that no
//! step depends on a caller staying around:
//!
//! 1. The caller sends the whole cart to home. Home answers a known id at
//!    once (same body: the original outcome; another body:
//!    `idempotency_key_reused`), refuses early if its own lines cannot be
//!    held, and otherwise fixes the cart's deadline and asks every other
//!    participant to hold its part (`ReservePart`).
//! 2. Each part is held (logged, durable) or refused, and answers home.
//! 3. When all have answered, home holds its own part *last*, so "home's
//!    part exists" means "the cart is complete". If anything refused, home
//!    aborts the parts that were held and answers the refusal; so it does,
//!    answering `busy`, when the deadline has passed meanwhile.
//! 4. Later, home decides commit or release (or expires the cart) once, and
//!    sends the decision to the parts. Parts never expire on their own
//!    clock: a cart is never partly sold and partly expired.
//!
//! Every message home sends a part after step 3 (a decision, an abort) is
//! acknowledged once the part applied it durably, and home answers the
//! caller only when every part has settled: whoever hears an answer can
//! read it on every shard.
//!
//! Home remembers a cart's decision at least `CART_RETENTION_MS_MIN` past
//! its deadline, however short the retention, so that a part still waiting
//! for the decision when a crash comes finds it at recovery.
//!
//! One attempt per id is in flight at a time; later cart attempts queue
//! behind it and are evaluated afresh when it ends, and a reserve of the same
//! id with every line on home is refused as `busy` meanwhile (a retry then
//! gets the first attempt's answer, or `idempotency_key_reused`). A crash
//! mid-protocol leaves held parts without a home part: recovery aborts them,
//! and finishes decisions home made but the parts had not heard (see
//! `recovery`).
//!
//! The partial-hold window: between a part's hold (step 2) and home's answer
//! (step 3), a concurrent buyer can see that part's units as reserved for a
//! cart that may still be refused. It lasts one round trip between two
//! shards, each waiting for its own batch's fsync (about two fsyncs,
//! ~0.3 ms on our disk; longer when queues are deep).

use crate::command::{CartLine, Command, PartOutcome, PartReply, ReservationState, ReservePart};
use crate::hash::KeyHashHasher;
use crate::ids::ReservationId;
use crate::limits::{CART_QUEUE_LEN_MAX, CART_RETENTION_MS_MIN};
use crate::rejection::Rejection;
use crate::shard::{PeerMessage, Turn, Waiter};
use crate::state::Notice;
use smallvec::SmallVec;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

/// A cart with lines away from its home, as the caller sends it to home.
pub(crate) struct CartRequest {
    pub id: ReservationId,
    pub fingerprint: u128,
    pub home_lines: Vec<CartLine>,
    /// The other parts' lines, by shard.
    pub away: Vec<(u16, Vec<CartLine>)>,
    pub ttl_ms: u64,
    pub participants: u64,
}

/// A cart whose parts are being held.
struct Pending {
    /// Home's part, held last.
    home_part: ReservePart,
    /// Shards that have not answered yet.
    awaiting: u64,
    /// Shards holding a part for this attempt (to abort on failure).
    held: u64,
    refusal: Option<Rejection>,
    /// The first waiter gets the original answer; the others (same body,
    /// arriving meanwhile) get it as a replay.
    waiters: SmallVec<[Waiter; 1]>,
    /// Later attempts with another body, evaluated once this one ends.
    queued: VecDeque<(CartRequest, Waiter)>,
}

/// Messages home sent to parts that have not acknowledged them yet, and the
/// callers whose answers wait for them.
#[derive(Default)]
struct Settling {
    unacknowledged: usize,
    waiters: SmallVec<[(Waiter, PartOutcome); 1]>,
}

type ById<T> = HashMap<ReservationId, T, BuildHasherDefault<KeyHashHasher>>;

pub(crate) struct Carts {
    pending: ById<Pending>,
    settling: ById<Settling>,
    pending_max: usize,
}

impl Carts {
    pub fn new(pending_max: usize) -> Carts {
        Carts { pending: ById::default(), settling: ById::default(), pending_max }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Sends the parts what home decided (a notice of the state machine).
    pub fn follow_notice(&mut self, turn: &mut Turn<'_, '_>, notice: Notice) {
        let home = turn.me;
        for shard in participant_shards(notice.participants).filter(|&shard| shard != home) {
            let id = notice.id.clone();
            let command = match notice.to {
                ReservationState::Committed => Command::CommitPart { id },
                ReservationState::Released => Command::ReleasePart { id },
                ReservationState::Expired => Command::ExpirePart { id },
                ReservationState::Held => unreachable!("a notice is a decision"),
            };
            self.send_follow(turn, shard, command, &notice.id);
        }
    }

    /// Answers `waiter` once every message sent about `id` is acknowledged
    /// (at once when none is outstanding).
    pub fn answer_when_settled(
        &mut self,
        turn: &mut Turn<'_, '_>,
        id: &ReservationId,
        waiter: Waiter,
        outcome: PartOutcome,
    ) {
        match self.settling.get_mut(id) {
            Some(settling) => settling.waiters.push((waiter, outcome)),
            None => turn.answer(waiter, outcome),
        }
    }

    /// A part acknowledged one message about `id`.
    pub fn settled(&mut self, turn: &mut Turn<'_, '_>, id: &ReservationId) {
        // A stopping shard may already have answered and dropped the entry.
        let Some(settling) = self.settling.get_mut(id) else { return };
        settling.unacknowledged -= 1;
        if settling.unacknowledged == 0 {
            let settling = self.settling.remove(id).expect("checked above");
            for (waiter, outcome) in settling.waiters {
                turn.answer(waiter, outcome);
            }
        }
    }

    /// Whether a cart attempt with this id is being held (a reserve of the
    /// same id on home alone must wait for it: `busy`).
    pub fn is_pending(&self, id: &ReservationId) -> bool {
        self.pending.contains_key(id)
    }

    fn send_follow(&mut self, turn: &mut Turn<'_, '_>, shard: u16, command: Command, id: &ReservationId) {
        self.settling.entry(id.clone()).or_default().unacknowledged += 1;
        turn.send(shard, PeerMessage::Follow { command, home: turn.me });
    }

    /// Step 1: a cart arrives at home.
    pub fn start(&mut self, turn: &mut Turn<'_, '_>, request: CartRequest, waiter: Waiter) {
        if let Some(pending) = self.pending.get_mut(&request.id) {
            if pending.home_part.fingerprint == request.fingerprint {
                pending.waiters.push(waiter);
            } else if pending.queued.len() < CART_QUEUE_LEN_MAX {
                pending.queued.push_back((request, waiter));
            } else {
                self.answer_when_settled(turn, &request.id, waiter, Err(Rejection::Busy));
            }
            return;
        }
        if let Some(answer) = answer_known_id(turn, &request) {
            self.answer_when_settled(turn, &request.id, waiter, answer);
            return;
        }
        if let Err(refusal) = turn.batch.check_available(&request.home_lines) {
            self.answer_when_settled(turn, &request.id, waiter, Err(refusal));
            return;
        }
        if self.pending.len() >= self.pending_max {
            self.answer_when_settled(turn, &request.id, waiter, Err(Rejection::Busy));
            return;
        }
        let CartRequest { id, fingerprint, home_lines, away, ttl_ms, participants } = request;
        let mut home_part = turn.resolve_part(id.clone(), fingerprint, home_lines, ttl_ms);
        home_part.participants = participants;
        home_part.forget_at_ms =
            home_part.forget_at_ms.max(home_part.expires_at_ms.saturating_add(CART_RETENTION_MS_MIN));
        let mut awaiting = 0u64;
        for (shard, lines) in away {
            awaiting |= 1 << shard;
            turn.send(shard, PeerMessage::ReservePart(ReservePart { lines, ..home_part.clone_without_lines() }));
        }
        let mut waiters = SmallVec::new();
        waiters.push(waiter);
        let pending = Pending { home_part, awaiting, held: 0, refusal: None, waiters, queued: VecDeque::new() };
        self.pending.insert(id, pending);
    }

    /// Step 2's answer arrives at home; step 3 once it was the last.
    pub fn part_answered(&mut self, turn: &mut Turn<'_, '_>, id: ReservationId, shard: u16, outcome: PartOutcome) {
        // A cart abandoned by a stopping shard may still hear from its parts.
        let Some(pending) = self.pending.get_mut(&id) else { return };
        assert!(pending.awaiting & (1 << shard) != 0, "shard {shard} answered twice for {id}");
        pending.awaiting &= !(1 << shard);
        match outcome {
            Ok(PartReply::Held { replayed: false, .. }) => pending.held |= 1 << shard,
            // A part left by an attempt that never completed (home had no
            // part when this one began): adopt it, abort it on failure.
            Ok(PartReply::Held { replayed: true, state: ReservationState::Held, .. }) => pending.held |= 1 << shard,
            // A finished part whose home record was already forgotten: the
            // part is forgotten in a moment too. Retry then.
            Ok(PartReply::Held { .. }) | Err(Rejection::IdempotencyKeyReused) => {
                pending.refusal.get_or_insert(Rejection::Busy);
            }
            Ok(other) => panic!("a part's reserve answered {other:?}"),
            Err(refusal) => {
                pending.refusal.get_or_insert(refusal);
            }
        }
        if pending.awaiting != 0 {
            return;
        }
        let pending = self.pending.remove(&id).expect("checked above");
        let queued = self.finish(turn, pending);
        for (request, waiter) in queued {
            self.start(turn, request, waiter);
        }
    }

    /// Step 3: every part answered. Returns the attempts queued behind this one.
    fn finish(&mut self, turn: &mut Turn<'_, '_>, pending: Pending) -> VecDeque<(CartRequest, Waiter)> {
        let Pending { home_part, held, refusal, waiters, queued, .. } = pending;
        let outcome = match refusal {
            Some(refusal) => Err(refusal),
            // The parts answered only after the cart's deadline (a shard
            // far behind): a hold already due is no hold. Refused, its
            // parts let go; a retry starts afresh.
            None if home_part.expires_at_ms <= turn.now_ms => Err(Rejection::Busy),
            None => turn.apply(&Command::Reserve(home_part.clone())),
        };
        let completed = matches!(outcome, Ok(PartReply::Held { replayed: false, .. }));
        if !completed {
            for shard in participant_shards(held) {
                let abort = Command::Abort { id: home_part.id.clone(), fingerprint: home_part.fingerprint };
                self.send_follow(turn, shard, abort, &home_part.id);
            }
        }
        let mut waiters = waiters.into_iter();
        if let Some(first) = waiters.next() {
            self.answer_when_settled(turn, &home_part.id, first, outcome.clone());
        }
        for waiter in waiters {
            let replay = match &outcome {
                Ok(PartReply::Held { expires_at_ms, state, .. }) => {
                    Ok(PartReply::Held { expires_at_ms: *expires_at_ms, replayed: true, state: *state })
                }
                other => other.clone(),
            };
            self.answer_when_settled(turn, &home_part.id, waiter, replay);
        }
        queued
    }

    /// The shard stops: everyone waiting on a cart hears `shutting_down`.
    /// Parts already held stay behind; recovery aborts them.
    pub fn abandon(&mut self, turn: &mut Turn<'_, '_>) {
        for (_, pending) in self.pending.drain() {
            for waiter in pending.waiters {
                turn.answer(waiter, Err(Rejection::ShuttingDown));
            }
            for (_, waiter) in pending.queued {
                turn.answer(waiter, Err(Rejection::ShuttingDown));
            }
        }
        // These outcomes are durable at home; recovery finishes the parts.
        for (_, settling) in self.settling.drain() {
            for (waiter, outcome) in settling.waiters {
                turn.answer(waiter, outcome);
            }
        }
    }
}

/// Home's answer to a cart whose id it already knows.
fn answer_known_id(turn: &Turn<'_, '_>, request: &CartRequest) -> Option<PartOutcome> {
    let (state, fingerprint, expires_at_ms) = turn.batch.reservation_state(&request.id)?;
    Some(if fingerprint == request.fingerprint {
        Ok(PartReply::Held { expires_at_ms, replayed: true, state })
    } else {
        Err(Rejection::IdempotencyKeyReused)
    })
}

pub(crate) fn participant_shards(participants: u64) -> impl Iterator<Item = u16> {
    (0..64u16).filter(move |shard| participants & (1 << shard) != 0)
}

impl ReservePart {
    /// The cart-wide fields, with no lines (each part gets its own).
    fn clone_without_lines(&self) -> ReservePart {
        ReservePart {
            id: self.id.clone(),
            fingerprint: self.fingerprint,
            lines: Vec::new(),
            expires_at_ms: self.expires_at_ms,
            forget_at_ms: self.forget_at_ms,
            home: self.home,
            participants: self.participants,
        }
    }
}

//! What a shard applies and what it answers. `Command` is the unit of the
//! state machine and of the WAL: each command that changed the state is
//! stamped with its shard's time, logged, and on recovery replayed through
//! the same `apply`. Commands are fully resolved before they are applied
//! (a `Reserve` carries its deadline, not a TTL), so replay depends on
//! nothing but the log: not the clock, not the configuration.
//!
//! `Query` reads a shard without changing it and is never logged. Callers
//! outside the engine speak `Request` (see `request`); the engine turns each
//! into one message for one shard.

use crate::ids::{ReservationId, Sku};
use crate::read_view::SkuCounts;
use crate::rejection::Rejection;

/// One line of a cart: a SKU and how many units of it. (Archived as part of
/// the WAL payload, see `codec`.)
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize)]
pub struct CartLine {
    pub sku: Sku,
    pub qty: u32,
}

/// A state change for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Set `on_hand` absolutely; with `expected_version`, only if the SKU's
    /// version is that (0 = "the SKU must not exist yet").
    SetStock { sku: Sku, on_hand: u64, expected_version: Option<u64> },
    /// Change `on_hand` by `delta`; refused below `reserved`.
    AdjustStock { sku: Sku, delta: i64 },
    /// Hold this shard's part of cart `id`, all lines or none.
    Reserve(ReservePart),
    /// At the home shard: decide to commit the cart (sell its units).
    Commit { id: ReservationId },
    /// At the home shard: decide to release the cart.
    Release { id: ReservationId },
    /// At a part away from home: carry out the commit home decided.
    CommitPart { id: ReservationId },
    /// At a part away from home: carry out the release home decided.
    ReleasePart { id: ReservationId },
    /// At a part away from home: home expired the cart.
    ExpirePart { id: ReservationId },
    /// At a part away from home: forget a part whose cart was never
    /// completed (refused, or orphaned by a crash). Only a held part with
    /// this fingerprint is removed.
    Abort { id: ReservationId, fingerprint: u128 },
    /// Fire every due timer (expire holds, forget finished reservations)
    /// whose key is at or before `up_to`. The live shard picks `up_to` so
    /// that one tick does a bounded amount of work; replay fires exactly the
    /// same timers because the bound is in the log.
    Tick { up_to: TimerKey },
}

impl Command {
    /// The reservation this command looks up, if any.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        match self {
            Command::Reserve(part) => Some(&part.id),
            Command::Commit { id }
            | Command::Release { id }
            | Command::CommitPart { id }
            | Command::ReleasePart { id }
            | Command::ExpirePart { id }
            | Command::Abort { id, .. } => Some(id),
            Command::SetStock { .. } | Command::AdjustStock { .. } | Command::Tick { .. } => None,
        }
    }

    /// The SKUs this command looks up.
    pub fn skus(&self) -> impl Iterator<Item = &Sku> {
        let (lines, single): (&[CartLine], Option<&Sku>) = match self {
            Command::Reserve(part) => (&part.lines, None),
            Command::SetStock { sku, .. } | Command::AdjustStock { sku, .. } => (&[], Some(sku)),
            _ => (&[], None),
        };
        lines.iter().map(|line| &line.sku).chain(single)
    }
}

/// One shard's part of a cart, as held and as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservePart {
    pub id: ReservationId,
    /// Identifies the whole cart body (see `hash::cart_fingerprint`).
    pub fingerprint: u128,
    /// This shard's lines, in SKU order. Only the home part may have none.
    pub lines: Vec<CartLine>,
    /// The cart's deadline, the same on every part.
    pub expires_at_ms: u64,
    /// When the finished reservation is forgotten: deadline plus retention.
    pub forget_at_ms: u64,
    /// The id's shard: it dedupes the id and decides the cart's fate.
    pub home: u16,
    /// Bit set of every shard holding a part, home included.
    pub participants: u64,
}

/// The order in which timers fire: by due time, then by the reservation's
/// sequence number, which the shard assigns in apply order. Unique per
/// timer, identical on replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub due_ms: u64,
    pub seq: u64,
}

/// A read of one shard; changes nothing and is never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A SKU's counts, consistent with every command applied before it.
    GetSku { sku: Sku },
    /// This shard's part of a reservation.
    GetReservation { id: ReservationId },
    /// Check every invariant of the shard's state by a full scan.
    Audit,
}

/// Where a reservation is in its life. It only ever moves Held -> one of the
/// other three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    Held,
    Committed,
    Released,
    Expired,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Committed => "committed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
        }
    }
}

/// One shard's part of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartView {
    pub fingerprint: u128,
    pub home: u16,
    pub participants: u64,
    pub state: ReservationState,
    pub expires_at_ms: u64,
    pub lines: Vec<CartLine>,
}

/// A shard's answer to one command or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartReply {
    /// The SKU's counts after the command.
    Sku(SkuCounts),
    /// The part is held (or, when `replayed`, was held by an earlier command
    /// with the same id and body, and is now in `state`).
    Held {
        expires_at_ms: u64,
        replayed: bool,
        state: ReservationState,
    },
    Committed,
    Released,
    Part(PartView),
    /// A copy of the shard's whole state (`Engine::capture_states`).
    Image(Box<crate::snapshot::StateImage>),
    Done,
}

pub type PartOutcome = Result<PartReply, Rejection>;

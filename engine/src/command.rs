//! What a shard applies and what it answers. `Command` is the unit of the
//! state machine and (with the WAL) of the log: each accepted command is
//! stamped with its shard's time and replayed through the same `apply`.
//! Callers outside the engine speak `Request` (see `request`); the engine's
//! coordinator turns each into one or more commands.

use crate::ids::{ReservationId, Sku};
use crate::read_view::SkuCounts;
use crate::rejection::Rejection;

/// One command for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Set `on_hand` absolutely; with `expected_version`, only if the SKU's
    /// version is that (0 = "the SKU must not exist yet").
    SetStock { sku: Sku, on_hand: u64, expected_version: Option<u64> },
    /// Change `on_hand` by `delta`; refused below `reserved`.
    AdjustStock { sku: Sku, delta: i64 },
    /// Hold this shard's lines of cart `id`. `home` is the id's shard, which
    /// dedupes the id and decides the cart's fate (its part may have no
    /// lines); `participants` is the bit set of every shard holding a part
    /// (home included); `fingerprint` identifies the whole cart body.
    Reserve { id: ReservationId, fingerprint: u128, lines: Vec<(Sku, u32)>, ttl_ms: u64, home: u16, participants: u64 },
    /// At the home shard: decide to commit the cart.
    Commit { id: ReservationId },
    /// At a participant: carry out a commit the home shard already decided.
    CommitPart { id: ReservationId },
    /// At the home shard: decide to release the cart.
    Release { id: ReservationId },
    /// At a participant: carry out a release the home shard already decided.
    ReleasePart { id: ReservationId },
    /// At a participant: the home shard expired the cart; return the units
    /// now rather than at the part's own (later) deadline.
    ExpirePart { id: ReservationId },
    /// At a participant: forget a part whose cart was never acknowledged (a
    /// refused cart, or an orphan left by a crash). Never touches a home part.
    Abort { id: ReservationId, fingerprint: u128 },
    /// Expire due holds and forget finished reservations past retention.
    Tick,
    /// Read a SKU through the shard (consistent with every applied command).
    GetSku { sku: Sku },
    /// Read this shard's part of a reservation.
    GetReservation { id: ReservationId },
    /// Check every invariant of the shard's state by a full scan.
    Audit,
}

impl Command {
    /// Queries change nothing and are never logged.
    pub fn is_query(&self) -> bool {
        matches!(self, Command::GetSku { .. } | Command::GetReservation { .. } | Command::Audit)
    }
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
    pub lines: Vec<(Sku, u32)>,
}

/// A shard's answer to one command.
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
    /// The home shard decided; the coordinator finishes the other parts.
    Decided {
        participants: u64,
    },
    Part(PartView),
    /// A tick ran; `changed` says whether it expired or forgot anything (only
    /// then does it need to be logged).
    Ticked {
        changed: bool,
    },
    Done,
}

pub type PartOutcome = Result<PartReply, Rejection>;

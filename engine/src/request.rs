//! The engine's public vocabulary: what callers ask (`Request`) and what
//! they hear back (`Reply` or a `Rejection`). Validation of everything a
//! request carries happens here, before any shard sees it.

use crate::command::{CartLine, ReservationState};
use crate::ids::{ReservationId, Sku};
use crate::limits::{LINES_MAX, ON_HAND_MAX, QTY_MAX, TTL_MS_DEFAULT, TTL_MS_MAX, TTL_MS_MIN};
use crate::read_view::SkuCounts;
use crate::rejection::Rejection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    pub id: ReservationId,
    pub lines: Vec<CartLine>,
    /// `None`: the engine's default TTL.
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    SetStock {
        sku: Sku,
        on_hand: u64,
        expected_version: Option<u64>,
    },
    AdjustStock {
        sku: Sku,
        delta: i64,
    },
    Reserve(ReserveRequest),
    Commit {
        id: ReservationId,
    },
    Release {
        id: ReservationId,
    },
    /// A consistent read through the SKU's shard (the read view answers
    /// without queueing; see `Engine::read_view`).
    GetSku {
        sku: Sku,
    },
    GetReservation {
        id: ReservationId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The cart's deadline (its home shard's; see ARCHITECTURE.md).
    pub expires_at_ms: u64,
    /// True when this answers a retry: the original outcome, applied once.
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationView {
    pub id: ReservationId,
    pub state: ReservationState,
    pub expires_at_ms: u64,
    /// In SKU order.
    pub lines: Vec<CartLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Sku(SkuCounts),
    Held(Hold),
    Committed,
    Released,
    Reservation(ReservationView),
}

pub type Outcome = Result<Reply, Rejection>;

impl ReserveRequest {
    /// Checks every limit, puts the lines in SKU order (the canonical form
    /// the fingerprint is taken over) and returns the TTL to use.
    pub fn validate(&mut self, ttl_ms_default: u64) -> Result<u64, Rejection> {
        if self.lines.is_empty() || self.lines.len() > LINES_MAX {
            return Err(Rejection::LinesOutOfRange);
        }
        if self.lines.iter().any(|line| !(1..=QTY_MAX).contains(&line.qty)) {
            return Err(Rejection::QtyOutOfRange);
        }
        self.lines.sort_unstable_by(|a, b| a.sku.cmp(&b.sku));
        if let Some(pair) = self.lines.windows(2).find(|pair| pair[0].sku == pair[1].sku) {
            return Err(Rejection::DuplicateSku { sku: pair[0].sku.clone() });
        }
        let ttl_ms = self.ttl_ms.unwrap_or(ttl_ms_default);
        if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl_ms) {
            return Err(Rejection::TtlOutOfRange);
        }
        Ok(ttl_ms)
    }
}

impl Request {
    /// The limits a request must meet whatever the engine holds: what
    /// `Engine::submit` refuses before any shard sees it. (An absent TTL is
    /// the engine's default, which its configuration checked.) The server
    /// asks this while recovery runs, so that bad input gets its 4xx then too.
    pub fn check_limits(&self) -> Result<(), Rejection> {
        match self {
            Request::SetStock { on_hand, .. } => validate_stock(*on_hand),
            Request::AdjustStock { delta, .. } => validate_stock(delta.unsigned_abs()),
            Request::Reserve(request) => request.clone().validate(TTL_MS_DEFAULT).map(drop),
            Request::Commit { .. }
            | Request::Release { .. }
            | Request::GetSku { .. }
            | Request::GetReservation { .. } => Ok(()),
        }
    }
}

pub fn validate_stock(on_hand_or_delta: u64) -> Result<(), Rejection> {
    if on_hand_or_delta > ON_HAND_MAX {
        return Err(Rejection::OnHandTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart(lines: &[(&str, u32)], ttl_ms: Option<u64>) -> ReserveRequest {
        ReserveRequest {
            id: ReservationId::new("r").unwrap(),
            lines: lines.iter().map(|&(sku, qty)| CartLine { sku: Sku::new(sku).unwrap(), qty }).collect(),
            ttl_ms,
        }
    }

    #[test]
    fn validate_sorts_lines_and_applies_the_default_ttl() {
        let mut request = cart(&[("b", 1), ("a", 2)], None);
        assert_eq!(request.validate(5_000), Ok(5_000));
        assert_eq!(request.lines[0].sku.as_str(), "a");
    }

    #[test]
    fn validate_refuses_every_out_of_range_input() {
        assert_eq!(cart(&[], None).validate(5_000), Err(Rejection::LinesOutOfRange));
        let too_many: Vec<(String, u32)> = (0..=LINES_MAX).map(|i| (format!("s{i}"), 1)).collect();
        let too_many: Vec<(&str, u32)> = too_many.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        assert_eq!(cart(&too_many, None).validate(5_000), Err(Rejection::LinesOutOfRange));
        assert_eq!(cart(&[("a", 0)], None).validate(5_000), Err(Rejection::QtyOutOfRange));
        assert_eq!(cart(&[("a", QTY_MAX + 1)], None).validate(5_000), Err(Rejection::QtyOutOfRange));
        assert_eq!(
            cart(&[("a", 1), ("a", 2)], None).validate(5_000),
            Err(Rejection::DuplicateSku { sku: Sku::new("a").unwrap() })
        );
        assert_eq!(cart(&[("a", 1)], Some(999)).validate(5_000), Err(Rejection::TtlOutOfRange));
        assert_eq!(cart(&[("a", 1)], Some(TTL_MS_MAX + 1)).validate(5_000), Err(Rejection::TtlOutOfRange));
        assert_eq!(validate_stock(ON_HAND_MAX + 1), Err(Rejection::OnHandTooLarge));
    }
}

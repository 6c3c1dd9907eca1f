//! Between JSON bodies and engine requests, in both directions, shared by
//! the single endpoints and `/v1/batch` so a batch op answers exactly what
//! its endpoint would. Every value is checked here (ids, SKUs, quantities)
//! before anything reaches the engine.

use crate::http::error::ApiError;
use crate::http::types::{DecisionBody, LineBody, ReservationBody, SkuBody};
use axum::http::StatusCode;
use stockd_engine::limits::QTY_MAX;
use stockd_engine::{CartLine, Outcome, Rejection, Reply, Request, ReservationId, ReserveRequest, Sku, SkuCounts};

pub fn sku(text: &str) -> Result<Sku, ApiError> {
    Sku::new(text).map_err(ApiError::from)
}

pub fn reservation_id(text: &str) -> Result<ReservationId, ApiError> {
    ReservationId::new(text).map_err(ApiError::from)
}

/// A reserve request, and the lines to answer with: the client's, checked,
/// in SKU order (the order the engine keeps).
pub fn reserve(id: &str, mut lines: Vec<LineBody>, ttl_ms: Option<u64>) -> Result<(Request, Vec<LineBody>), ApiError> {
    let id = reservation_id(id)?;
    // Limits (line count, duplicates, TTL) are the engine's to check; its
    // answer is the same rejection either way. Sorting here is harmless.
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    let mut cart = Vec::with_capacity(lines.len());
    for line in &lines {
        let sku = sku(&line.sku)?;
        let qty = u32::try_from(line.qty).ok().filter(|qty| (1..=QTY_MAX).contains(qty));
        let qty = qty.ok_or_else(|| ApiError::from(Rejection::QtyOutOfRange))?;
        cart.push(CartLine { sku, qty });
    }
    Ok((Request::Reserve(ReserveRequest { id, lines: cart, ttl_ms }), lines))
}

pub fn sku_body(sku: &Sku, counts: SkuCounts) -> SkuBody {
    SkuBody {
        sku: sku.to_string(),
        on_hand: counts.on_hand,
        reserved: counts.reserved,
        available: counts.available(),
        version: counts.version,
    }
}

/// The answer to a SKU request.
pub fn answer_sku(sku: &Sku, outcome: Outcome) -> Result<SkuBody, ApiError> {
    match outcome? {
        Reply::Sku(counts) => Ok(sku_body(sku, counts)),
        other => unreachable!("a SKU request answered {other:?}"),
    }
}

/// The answer to a reserve: 201 and the hold (also for a replay, which
/// answers as the original did), and whether it was a replay.
pub fn answer_reserve(
    id: String,
    lines: Vec<LineBody>,
    outcome: Outcome,
) -> Result<(StatusCode, ReservationBody, bool), ApiError> {
    match outcome? {
        Reply::Held(hold) => {
            let body = ReservationBody { id, state: "held", expires_at_ms: hold.expires_at_ms, lines };
            Ok((StatusCode::CREATED, body, hold.replayed))
        }
        other => unreachable!("a reserve answered {other:?}"),
    }
}

pub fn answer_decision(outcome: Outcome) -> Result<DecisionBody, ApiError> {
    match outcome? {
        Reply::Committed => Ok(DecisionBody { state: "committed" }),
        Reply::Released => Ok(DecisionBody { state: "released" }),
        other => unreachable!("a decision answered {other:?}"),
    }
}

pub fn answer_reservation(outcome: Outcome) -> Result<ReservationBody, ApiError> {
    match outcome? {
        Reply::Reservation(view) => Ok(ReservationBody {
            id: view.id.to_string(),
            state: view.state.as_str(),
            expires_at_ms: view.expires_at_ms,
            lines: view
                .lines
                .iter()
                .map(|line| LineBody { sku: line.sku.to_string(), qty: i64::from(line.qty) })
                .collect(),
        }),
        other => unreachable!("a reservation read answered {other:?}"),
    }
}

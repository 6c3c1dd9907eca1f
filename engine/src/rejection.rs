//! The engine's one error enum: every expected refusal is a value with a
//! stable code. A broken invariant is never a `Rejection`; it is a panic
//! that carries the state in its message.

use crate::ids::Sku;

/// Why the engine said no. Codes are stable: the HTTP layer and the WAL
/// tooling print them, and clients match on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error("not enough stock of {sku}: requested {requested}, available {available}")]
    InsufficientStock { sku: Sku, requested: u32, available: u64 },
    #[error("this reservation id was already used with a different body (lines or ttl_ms)")]
    IdempotencyKeyReused,
    #[error("no such reservation")]
    UnknownReservation,
    #[error("no such sku: {sku}")]
    UnknownSku { sku: Sku },
    #[error("the reservation is already committed")]
    ReservationCommitted,
    #[error("the reservation was released")]
    ReservationReleased,
    #[error("the reservation expired")]
    ReservationExpired,
    #[error("version mismatch: expected {expected}, current {current}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("on_hand of {sku} would fall below the {reserved} units reserved")]
    BelowReserved { sku: Sku, reserved: u64 },
    #[error("on_hand would exceed the limit of 2^40 units")]
    OnHandTooLarge,
    #[error("the shard queue is full; retry shortly")]
    Busy,
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("storage failed, nothing more is acknowledged: {reason}")]
    StorageFailed { reason: String },
    #[error("sku must be 1..=64 bytes of [A-Za-z0-9._:/-]")]
    SkuInvalid,
    #[error("reservation id must be 1..=128 bytes of printable ASCII")]
    ReservationIdInvalid,
    #[error("qty must be 1..=1000000")]
    QtyOutOfRange,
    #[error("a reservation needs 1..=100 lines")]
    LinesOutOfRange,
    #[error("sku {sku} appears twice in one cart")]
    DuplicateSku { sku: Sku },
    #[error("ttl_ms must be 1000..=86400000")]
    TtlOutOfRange,
    #[error("a batch holds at most 100000 requests")]
    BatchTooLarge,
}

impl Rejection {
    /// The stable, snake_case code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InsufficientStock { .. } => "insufficient_stock",
            Rejection::IdempotencyKeyReused => "idempotency_key_reused",
            Rejection::UnknownReservation => "unknown_reservation",
            Rejection::UnknownSku { .. } => "unknown_sku",
            Rejection::ReservationCommitted => "reservation_committed",
            Rejection::ReservationReleased => "reservation_released",
            Rejection::ReservationExpired => "reservation_expired",
            Rejection::VersionMismatch { .. } => "version_mismatch",
            Rejection::BelowReserved { .. } => "below_reserved",
            Rejection::OnHandTooLarge => "on_hand_too_large",
            Rejection::Busy => "busy",
            Rejection::ShuttingDown => "shutting_down",
            Rejection::StorageFailed { .. } => "storage_failed",
            Rejection::SkuInvalid => "sku_invalid",
            Rejection::ReservationIdInvalid => "reservation_id_invalid",
            Rejection::QtyOutOfRange => "qty_out_of_range",
            Rejection::LinesOutOfRange => "lines_out_of_range",
            Rejection::DuplicateSku { .. } => "duplicate_sku",
            Rejection::TtlOutOfRange => "ttl_out_of_range",
            Rejection::BatchTooLarge => "batch_too_large",
        }
    }

    /// True when the same request may succeed if retried unchanged.
    pub fn is_transient(&self) -> bool {
        matches!(self, Rejection::Busy | Rejection::ShuttingDown)
    }
}

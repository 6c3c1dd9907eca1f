//! The one place errors become HTTP: every engine `Rejection` maps to a
//! status and its stable code here, and every bad input the edge catches
//! becomes an `ApiError` with a code of its own. Bodies are always
//! `{"error": code, "message": text}`, plus the details a client needs to
//! act (which SKU, how many are available, the current version).

use crate::http::types::ErrorBody;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use stockd_engine::Rejection;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in `Result`s on every request path.
    pub body: Box<ErrorBody>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, body: Box::new(ErrorBody::new(code, message)) }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub fn not_ready() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "recovering the log; not ready yet")
    }

    /// What an engine refusal answers over HTTP.
    pub fn from_rejection(rejection: &Rejection) -> ApiError {
        let status = status_of(rejection);
        let mut body = ErrorBody::new(rejection.code(), rejection.to_string());
        match rejection {
            Rejection::InsufficientStock { sku, requested, available } => {
                body.sku = Some(sku.to_string());
                body.requested = Some(u64::from(*requested));
                body.available = Some(*available);
            }
            Rejection::VersionMismatch { expected, current } => {
                body.expected_version = Some(*expected);
                body.current_version = Some(*current);
            }
            Rejection::BelowReserved { sku, reserved } => {
                body.sku = Some(sku.to_string());
                body.reserved = Some(*reserved);
            }
            Rejection::UnknownSku { sku } | Rejection::DuplicateSku { sku } => body.sku = Some(sku.to_string()),
            _ => {}
        }
        ApiError { status, body: Box::new(body) }
    }
}

/// The status a rejection answers with.
pub fn status_of(rejection: &Rejection) -> StatusCode {
    match rejection {
        Rejection::UnknownReservation | Rejection::UnknownSku { .. } => StatusCode::NOT_FOUND,
        Rejection::InsufficientStock { .. }
        | Rejection::ReservationCommitted
        | Rejection::ReservationReleased
        | Rejection::ReservationExpired
        | Rejection::VersionMismatch { .. }
        | Rejection::BelowReserved { .. } => StatusCode::CONFLICT,
        Rejection::IdempotencyKeyReused
        | Rejection::OnHandTooLarge
        | Rejection::SkuInvalid
        | Rejection::ReservationIdInvalid
        | Rejection::QtyOutOfRange
        | Rejection::LinesOutOfRange
        | Rejection::DuplicateSku { .. }
        | Rejection::TtlOutOfRange
        | Rejection::BatchTooLarge => StatusCode::UNPROCESSABLE_ENTITY,
        // `storage_failed`: the outcome is unknown and the process is stopping.
        Rejection::Busy | Rejection::ShuttingDown | Rejection::StorageFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        // The enum is non-exhaustive; a new rejection is a server bug until mapped.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(*self.body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy queues drain in milliseconds; a second is a polite floor.
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme it wants.
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        ApiError::from_rejection(&rejection)
    }
}

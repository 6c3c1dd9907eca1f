//! `/v1/reservations`: hold a cart, commit or release it, read it.

use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::json::{AppJson, OptionalJson, PathSegment};
use crate::http::types::{CommitBody, DecisionBody, ErrorBody, ReleaseBody, ReservationBody, ReserveBody};
use crate::http::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use stockd_engine::Request;

/// Holds a cart, all lines or none, under the client's idempotency id. A
/// retry with the same id and body (lines in any order, the same `ttl_ms`)
/// answers as the first time did, with `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/v1/reservations", tag = "reservations", security(("bearer" = [])),
    request_body = ReserveBody,
    responses(
        (status = 201, body = ReservationBody, headers(("Idempotent-Replayed" = String, description = "true on a replay"))),
        (status = 404, body = ErrorBody, description = "unknown_sku"),
        (status = 409, body = ErrorBody, description = "insufficient_stock: names the SKU, requested and available"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused, reservation_id_invalid, sku_invalid, qty_out_of_range, lines_out_of_range, duplicate_sku, ttl_out_of_range, invalid_body"),
        (status = 503, body = ErrorBody, description = "busy (Retry-After), shutting_down, storage_failed")))]
pub async fn reserve(State(state): State<AppState>, AppJson(body): AppJson<ReserveBody>) -> Result<Response, ApiError> {
    let ReserveBody { id, lines, ttl_ms } = body;
    let (request, lines) = convert::reserve(&id, lines, ttl_ms)?;
    let outcome = state.submit(request).await?;
    let (status, body, replayed) = convert::answer_reserve(id, lines, outcome)?;
    Ok(held_response(status, body, replayed))
}

pub fn held_response(status: StatusCode, body: ReservationBody, replayed: bool) -> Response {
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Commits a held cart: its units are sold. Idempotent.
#[utoipa::path(post, path = "/v1/reservations/{id}/commit", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path, description = "the reservation id (percent-encoded)")),
    request_body(content = CommitBody, description = "optional; the order for the order sink"),
    responses(
        (status = 200, body = DecisionBody),
        (status = 404, body = ErrorBody, description = "unknown_reservation"),
        (status = 409, body = ErrorBody, description = "reservation_expired, reservation_released")))]
pub async fn commit(
    State(state): State<AppState>,
    path: Result<PathSegment, ApiError>,
    body: OptionalJson<CommitBody>,
) -> Result<Json<DecisionBody>, ApiError> {
    let id = convert::reservation_id(&path?.0)?;
    // The order is accepted for the coming order sink; it is not stored yet.
    drop(body.0);
    let outcome = state.submit(Request::Commit { id }).await?;
    Ok(Json(convert::answer_decision(outcome)?))
}

/// Releases a held cart: its units are available again. Idempotent.
#[utoipa::path(post, path = "/v1/reservations/{id}/release", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body(content = ReleaseBody, description = "optional: empty or {}"),
    responses(
        (status = 200, body = DecisionBody),
        (status = 404, body = ErrorBody, description = "unknown_reservation"),
        (status = 409, body = ErrorBody, description = "reservation_committed, reservation_expired")))]
pub async fn release(
    State(state): State<AppState>,
    path: Result<PathSegment, ApiError>,
    // Read only to refuse a body that is not empty or `{}`.
    _empty: OptionalJson<ReleaseBody>,
) -> Result<Json<DecisionBody>, ApiError> {
    let id = convert::reservation_id(&path?.0)?;
    let outcome = state.submit(Request::Release { id }).await?;
    Ok(Json(convert::answer_decision(outcome)?))
}

/// A reservation, whole (every line, on every shard).
#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ReservationBody), (status = 404, body = ErrorBody, description = "unknown_reservation")))]
pub async fn get_reservation(
    State(state): State<AppState>,
    path: Result<PathSegment, ApiError>,
) -> Result<Json<ReservationBody>, ApiError> {
    let id = convert::reservation_id(&path?.0)?;
    let outcome = state.submit(Request::GetReservation { id }).await?;
    Ok(Json(convert::answer_reservation(outcome)?))
}

//! `/v1/skus/{sku}`: set, adjust and read a SKU's stock.

use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::json::{AppJson, PathSegment};
use crate::http::types::{AdjustBody, ErrorBody, SetStockBody, SkuBody};
use crate::http::AppState;
use axum::extract::State;
use axum::Json;
use stockd_engine::{Rejection, Request};

/// Sets a SKU's on_hand (creating the SKU), optionally only at a version.
#[utoipa::path(put, path = "/v1/skus/{sku}", tag = "skus", security(("bearer" = [])),
    params(("sku" = String, Path, description = "1..=64 bytes of [A-Za-z0-9._:/-]")),
    request_body = SetStockBody,
    responses(
        (status = 200, body = SkuBody),
        (status = 409, body = ErrorBody, description = "version_mismatch, below_reserved"),
        (status = 422, body = ErrorBody, description = "sku_invalid, on_hand_too_large, invalid_body"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn set_stock(
    State(state): State<AppState>,
    path: Result<PathSegment, ApiError>,
    AppJson(body): AppJson<SetStockBody>,
) -> Result<Json<SkuBody>, ApiError> {
    let sku = convert::sku(&path?.0)?;
    let request =
        Request::SetStock { sku: sku.clone(), on_hand: body.on_hand, expected_version: body.expected_version };
    let outcome = state.submit(request).await?;
    Ok(Json(convert::answer_sku(&sku, outcome)?))
}

/// Changes a SKU's on_hand by a signed delta.
#[utoipa::path(post, path = "/v1/skus/{sku}/adjust", tag = "skus", security(("bearer" = [])),
    params(("sku" = String, Path)),
    request_body = AdjustBody,
    responses(
        (status = 200, body = SkuBody),
        (status = 404, body = ErrorBody, description = "unknown_sku"),
        (status = 409, body = ErrorBody, description = "below_reserved"),
        (status = 422, body = ErrorBody, description = "on_hand_too_large, invalid_body")))]
pub async fn adjust(
    State(state): State<AppState>,
    path: Result<PathSegment, ApiError>,
    AppJson(body): AppJson<AdjustBody>,
) -> Result<Json<SkuBody>, ApiError> {
    let sku = convert::sku(&path?.0)?;
    let outcome = state.submit(Request::AdjustStock { sku: sku.clone(), delta: body.delta }).await?;
    Ok(Json(convert::answer_sku(&sku, outcome)?))
}

/// A SKU's counts, from the published read view (no shard queue).
#[utoipa::path(get, path = "/v1/skus/{sku}", tag = "skus", security(("bearer" = [])),
    params(("sku" = String, Path)),
    responses((status = 200, body = SkuBody), (status = 404, body = ErrorBody, description = "unknown_sku")))]
pub async fn get_sku(
    State(state): State<AppState>,
    path: Result<PathSegment, ApiError>,
) -> Result<Json<SkuBody>, ApiError> {
    let sku = convert::sku(&path?.0)?;
    match state.engine()?.read_view().get(sku.as_str()) {
        Some(counts) => Ok(Json(convert::sku_body(&sku, counts))),
        None => Err(Rejection::UnknownSku { sku }.into()),
    }
}

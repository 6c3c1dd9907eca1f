//! `POST /v1/batch`: up to `batch_ops_max` ops in one request, applied
//! through the engine's batched API (`Engine::submit_batch`), one
//! result per op, in order. Each op is parsed and authorised on its own (a
//! forbidden op is 403 however malformed): a bad op gets the 4xx its
//! endpoint would give and the others still run. Until recovery finished
//! the whole batch is 503 `not_ready`.

use crate::http::auth::{forbidden, Caller, Role};
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::json::{json_body, Object};
use crate::http::types::{
    BatchBody, BatchOp, BatchOpKind, BatchOpTag, BatchResult, BatchResults, ErrorBody, LineBody, RawBatch, ResultBody,
};
use crate::http::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use stockd_engine::{Outcome, Request, Sku};

/// How to answer an op once the engine has.
pub enum Answer {
    Sku(Sku),
    Reserve { id: String, lines: Vec<LineBody> },
    Decision,
    Reservation,
}

/// Applies many ops at once; each result is what its endpoint would answer.
#[utoipa::path(post, path = "/v1/batch", tag = "batch", security(("bearer" = [])),
    request_body = BatchBody,
    responses(
        (status = 200, body = BatchResults, description = "one result per op, in order"),
        (status = 400, body = ErrorBody, description = "malformed_json"),
        (status = 415, body = ErrorBody, description = "unsupported_media_type"),
        (status = 413, body = ErrorBody, description = "payload_too_large (1 MiB)"),
        (status = 422, body = ErrorBody, description = "batch_too_large, invalid_body")))]
pub async fn batch(
    State(state): State<AppState>,
    Extension(Caller(role)): Extension<Caller>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResults>, ApiError> {
    let bytes = bytes?;
    let body: RawBatch<'_> = json_body(&headers, &bytes)?;
    let ops_max = state.limits().batch_ops_max;
    if body.ops.len() > ops_max {
        let message = format!("{} ops; a batch holds at most {ops_max}", body.ops.len());
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "batch_too_large", message));
    }
    let engine = state.engine()?;
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(body.ops.len());
    let mut requests = Vec::with_capacity(body.ops.len());
    let mut answers = Vec::with_capacity(body.ops.len());
    for raw in body.ops {
        match plan(raw.get(), role) {
            Ok((request, answer)) => {
                requests.push(request);
                answers.push((results.len(), answer));
                results.push(None);
            }
            Err(error) => results.push(Some(error_result(error))),
        }
    }
    let outcomes = engine.submit_batch(requests).await;
    for ((position, answer), outcome) in answers.into_iter().zip(outcomes) {
        results[position] = Some(answer_op(answer, outcome));
    }
    Ok(Json(BatchResults { results: results.into_iter().map(|result| result.expect("every op answered")).collect() }))
}

/// Parses, authorises and validates one op (public for the `api_bodies`
/// fuzz target).
pub fn plan(text: &str, role: Role) -> Result<(Request, Answer), ApiError> {
    let op: BatchOp = match serde_json::from_str(text) {
        Ok(Object(op)) => op,
        Err(error) => {
            // An op the caller may not run is forbidden, however malformed.
            if let Ok(tag) = serde_json::from_str::<BatchOpTag>(text) {
                authorise(tag.op, role)?;
            }
            return Err(invalid(error.to_string()));
        }
    };
    authorise(op.op, role)?;
    if let Some(foreign) = op.present().find(|field| !op.op.fields().contains(field)) {
        return Err(invalid(format!("unknown field `{foreign}` for op `{}`", op.op.name())));
    }
    let missing = |field: &str| invalid(format!("missing field `{field}` for op `{}`", op.op.name()));
    let id = |id: Option<String>| id.ok_or_else(|| missing("id"));
    let sku = |sku: Option<String>| sku.ok_or_else(|| missing("sku")).and_then(|sku| convert::sku(&sku));
    Ok(match op.op {
        BatchOpKind::Reserve => {
            let (id, lines) = (id(op.id.value)?, op.lines.value.ok_or_else(|| missing("lines"))?);
            let (request, lines) = convert::reserve(&id, lines, op.ttl_ms.value)?;
            (request, Answer::Reserve { id, lines })
        }
        BatchOpKind::Commit => (Request::Commit { id: convert::reservation_id(&id(op.id.value)?)? }, Answer::Decision),
        BatchOpKind::Release => {
            (Request::Release { id: convert::reservation_id(&id(op.id.value)?)? }, Answer::Decision)
        }
        BatchOpKind::SetStock => {
            let (sku, on_hand) = (sku(op.sku.value)?, op.on_hand.value.ok_or_else(|| missing("on_hand"))?);
            let request = Request::SetStock { sku: sku.clone(), on_hand, expected_version: op.expected_version.value };
            (request, Answer::Sku(sku))
        }
        BatchOpKind::Adjust => {
            let (sku, delta) = (sku(op.sku.value)?, op.delta.value.ok_or_else(|| missing("delta"))?);
            (Request::AdjustStock { sku: sku.clone(), delta }, Answer::Sku(sku))
        }
        BatchOpKind::GetSku => {
            let sku = sku(op.sku.value)?;
            (Request::GetSku { sku: sku.clone() }, Answer::Sku(sku))
        }
        BatchOpKind::GetReservation => {
            (Request::GetReservation { id: convert::reservation_id(&id(op.id.value)?)? }, Answer::Reservation)
        }
    })
}

fn authorise(kind: BatchOpKind, role: Role) -> Result<(), ApiError> {
    let needed = match kind {
        BatchOpKind::SetStock | BatchOpKind::Adjust => Role::Admin,
        BatchOpKind::Reserve | BatchOpKind::Commit | BatchOpKind::Release => Role::Checkout,
        BatchOpKind::GetSku | BatchOpKind::GetReservation => Role::Read,
    };
    if role.allows(needed) {
        Ok(())
    } else {
        Err(forbidden(needed))
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
}

fn answer_op(answer: Answer, outcome: Outcome) -> BatchResult {
    let ok = |body, replayed| BatchResult { status: StatusCode::OK.as_u16(), body, replayed };
    let answered = match answer {
        Answer::Sku(sku) => convert::answer_sku(&sku, outcome).map(|body| ok(ResultBody::Sku(body), false)),
        Answer::Reserve { id, lines } => convert::answer_reserve(id, lines, outcome).map(|(status, body, replayed)| {
            BatchResult { status: status.as_u16(), body: ResultBody::Reservation(body), replayed }
        }),
        Answer::Decision => convert::answer_decision(outcome).map(|body| ok(ResultBody::Decision(body), false)),
        Answer::Reservation => {
            convert::answer_reservation(outcome).map(|body| ok(ResultBody::Reservation(body), false))
        }
    };
    answered.unwrap_or_else(error_result)
}

fn error_result(error: ApiError) -> BatchResult {
    BatchResult { status: error.status.as_u16(), body: ResultBody::Error(error.body), replayed: false }
}

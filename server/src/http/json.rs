//! The JSON body extractors, with every way a body can be wrong answered in
//! our error format with its own code (malformed JSON, wrong or missing
//! fields, unknown fields, an array where an object belongs, wrong content
//! type, too large), one rule for every route.

use crate::http::error::ApiError;
use crate::http::types::{LineBody, Sent};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;

pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<AppJson<T>, ApiError> {
        check_content_type(request.headers())?;
        let bytes = read_body(request, state).await?;
        Ok(AppJson(parse(&bytes)?))
    }
}

/// A JSON body that may be absent (empty): `None` then. A body that is
/// there must be JSON, with the same checks as `AppJson`.
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<OptionalJson<T>, ApiError> {
        let headers = request.headers().clone();
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        Ok(OptionalJson(Some(json_body(&headers, &bytes)?)))
    }
}

/// The whole body; the Bytes extractor enforces the route's body limit.
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(ApiError::from)
}

/// Parses a JSON body the edge has read whole, with the same codes as
/// `AppJson` (for bodies parsed by borrowing from their bytes).
pub fn json_body<'a, T: Deserialize<'a>>(headers: &HeaderMap, bytes: &'a [u8]) -> Result<T, ApiError> {
    check_content_type(headers)?;
    parse(bytes)
}

/// Only `application/json` (with or without parameters) is JSON here.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ));
    }
    Ok(())
}

/// Parses a body that must be a JSON object: malformed JSON is 400
/// `malformed_json`, JSON of the wrong shape 422 `invalid_body`.
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map(|Object(value)| value).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", error.to_string())
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", error.to_string()),
    })
}

/// A struct read from a JSON object only. serde would also read a struct
/// from an array, taking its fields in declaration order (`[7]` as
/// `{"on_hand": 7}`), past `deny_unknown_fields`; the API's bodies are
/// objects, so an array is a wrong type (422 `invalid_body`).
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Object<T>, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// `deserialize_with` for a cart's lines: each an object (see `Object`).
pub fn object_lines<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<LineBody>, D::Error> {
    let lines = Vec::<Object<LineBody>>::deserialize(deserializer)?;
    Ok(lines.into_iter().map(|Object(line)| line).collect())
}

/// `deserialize_with` for a batch op's lines (named, when this is called).
pub fn sent_object_lines<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Sent<Vec<LineBody>>, D::Error> {
    let lines = Option::<Vec<Object<LineBody>>>::deserialize(deserializer)?;
    Ok(Sent { named: true, value: lines.map(|lines| lines.into_iter().map(|Object(line)| line).collect()) })
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        let (status, code) = match &rejection {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "unreadable_body"),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

/// The one segment a route captures (a SKU or a reservation id),
/// percent-decoded. A `%` not followed by two hex digits anywhere in the
/// path is 400 `invalid_path` (axum would pass it through as text), as is
/// an escape that decodes to bytes that are not UTF-8.
pub struct PathSegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathSegment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathSegment, ApiError> {
        if !escapes_are_well_formed(parts.uri.path().as_bytes()) {
            let message = "a `%` in the path is not followed by two hex digits";
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message));
        }
        let Path(segment) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", rejection.body_text()))?;
        Ok(PathSegment(segment))
    }
}

fn escapes_are_well_formed(path: &[u8]) -> bool {
    path.iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'%')
        .all(|(at, _)| path.get(at + 1..at + 3).is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit)))
}

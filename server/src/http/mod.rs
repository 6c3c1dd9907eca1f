//! The HTTP API v1 (the contract in DESIGN.md). Handlers see typed,
//! validated values; bytes are handled only at the edge (`json`), errors
//! become HTTP in one place (`error`), engine answers become bodies in one
//! place (`convert`, shared with `/v1/batch`).
//!
//! Routes are registered through utoipa-axum, so the router and the
//! OpenAPI document come from the same list and cannot drift.

pub mod auth;
pub mod batch;
pub mod body_arrival;
pub mod convert;
pub mod error;
pub mod json;
pub mod metrics;
pub mod reservations;
pub mod skus;
pub mod types;

use crate::http::auth::{Role, Tokens};
use crate::http::body_arrival::BodyArrival;
use crate::http::error::ApiError;
use crate::http::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use stockd_engine::{Engine, Outcome};
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Limits of the HTTP edge.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub body_bytes_max: usize,
    pub batch_body_bytes_max: usize,
    pub batch_ops_max: usize,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            body_bytes_max: 64 << 10,
            batch_body_bytes_max: 1 << 20,
            batch_ops_max: 1_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    engine: OnceLock<Arc<Engine>>,
    tokens: Tokens,
    limits: HttpLimits,
    metrics: Metrics,
    recovery_ms: AtomicU64,
    request_ids: AtomicU64,
    boot_id: u64,
}

impl AppState {
    pub fn new(tokens: Tokens, limits: HttpLimits) -> AppState {
        let boot_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        AppState(Arc::new(Inner {
            engine: OnceLock::new(),
            tokens,
            limits,
            metrics: Metrics::new(),
            recovery_ms: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
            boot_id,
        }))
    }

    /// Marks the server ready: recovery finished and the engine serves.
    pub fn set_engine(&self, engine: Arc<Engine>, recovery: Duration) {
        self.0.recovery_ms.store(recovery.as_millis() as u64, Ordering::Relaxed);
        assert!(self.0.engine.set(engine).is_ok(), "the engine is set once");
    }

    pub fn engine(&self) -> Result<&Arc<Engine>, ApiError> {
        self.0.engine.get().ok_or_else(ApiError::not_ready)
    }

    /// Submits to the engine. While recovery runs, a request that breaks a
    /// limit is answered with its rejection (a 4xx: it could never apply);
    /// any other gets 503 `not_ready`.
    pub async fn submit(&self, request: stockd_engine::Request) -> Result<Outcome, ApiError> {
        match self.0.engine.get() {
            Some(engine) => Ok(engine.submit(request).await),
            None => match request.check_limits() {
                Err(rejection) => Ok(Err(rejection)),
                Ok(()) => Err(ApiError::not_ready()),
            },
        }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }

    pub fn limits(&self) -> HttpLimits {
        self.0.limits
    }

    pub fn recovery_ms(&self) -> u64 {
        self.0.recovery_ms.load(Ordering::Relaxed)
    }

    fn next_request_id(&self) -> String {
        format!("{:x}-{}", self.0.boot_id & 0xffff_ffff, self.0.request_ids.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "stockd", description = "Inventory reservation engine: hold, commit, release; no oversell.", version = "1"),
    components(schemas(types::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole API and its OpenAPI document.
pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let limits = state.limits();
    let guard = |role: Role| middleware::from_fn_with_state((state.clone(), role), auth::require);
    let admin = OpenApiRouter::new()
        .routes(routes!(skus::set_stock))
        .routes(routes!(skus::adjust))
        .route_layer(guard(Role::Admin));
    let checkout = OpenApiRouter::new()
        .routes(routes!(reservations::reserve))
        .routes(routes!(reservations::commit))
        .routes(routes!(reservations::release))
        .route_layer(guard(Role::Checkout));
    let read = OpenApiRouter::new()
        .routes(routes!(skus::get_sku))
        .routes(routes!(reservations::get_reservation))
        .routes(routes!(metrics_text))
        .route_layer(guard(Role::Read));
    let batch = OpenApiRouter::new()
        .routes(routes!(batch::batch))
        .route_layer(guard(Role::Read))
        .layer(DefaultBodyLimit::max(limits.batch_body_bytes_max));
    let open = OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin)
        .merge(checkout)
        .merge(read)
        .merge(batch)
        .merge(open)
        .split_for_parts();
    let document = openapi.to_json().expect("the OpenAPI document serializes");
    let router = router
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.body_bytes_max))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    (router, openapi)
}

/// Every request: an id (echoed in `X-Request-Id`), a tracing span, the
/// request timeout, and the HTTP metrics.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let method = method_label(request.method());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map_or_else(|| state.next_request_id(), str::to_owned);
    // A debug span: free unless STOCKD_LOG asks for debug.
    let span = tracing::debug_span!("request", request_id = %request_id, method = %method, route = %route);
    let timeout = state.limits().request_timeout;
    let (request, body) = BodyArrival::watch(request);
    let mut response = match tokio::time::timeout(timeout, next.run(request)).instrument(span.clone()).await {
        Ok(response) => response,
        Err(_) if !body.complete() => {
            let message =
                format!("the request body did not arrive within {} ms; nothing was applied", timeout.as_millis());
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message).into_response()
        }
        Err(_) => {
            let message = format!(
                "no answer within {} ms; the outcome is unknown (a reservation can be retried with the same id)",
                timeout.as_millis()
            );
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "request_timeout", message).into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state.0.metrics.record(route, method, status, seconds);
    if status >= 500 {
        // The span is debug-level, so a warning names the request itself.
        tracing::warn!(request_id = %request_id, method, route, status, seconds, "request failed");
    } else {
        span.in_scope(|| tracing::debug!(status, seconds, "request"));
    }
    response
}

/// The metric label of a matched route: one of the routed paths (a closed
/// set), so labels are static strings.
fn route_label(matched: Option<&str>) -> &'static str {
    const ROUTES: [&str; 10] = [
        "/v1/skus/{sku}",
        "/v1/skus/{sku}/adjust",
        "/v1/reservations",
        "/v1/reservations/{id}",
        "/v1/reservations/{id}/commit",
        "/v1/reservations/{id}/release",
        "/v1/batch",
        "/metrics",
        "/healthz",
        "/readyz",
    ];
    match matched {
        Some("/openapi.json") => "/openapi.json",
        Some(path) => ROUTES.iter().find(|route| **route == path).copied().unwrap_or("other"),
        None => "unmatched",
    }
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: recovery finished and the log is healthy.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, body = types::ErrorBody, description = "recovering, or storage failed")))]
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let engine = state.engine()?;
    match engine.failure() {
        Some(reason) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_failed", reason)),
        None => Ok("ready\n"),
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.0.metrics.render(&state);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// What the router answers before recovery finished (no engine yet).
    async fn answer(method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let (router, _) = router(AppState::new(Tokens::new(&[]), HttpLimits::default()));
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("a valid request");
        let response = router.oneshot(request).await.expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body arrives");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// While recovery runs the server is alive but not ready, and every
    /// request that needs the engine is 503 `not_ready`, except bad input,
    /// which gets the same 4xx it gets once ready: retrying it cannot help.
    #[tokio::test]
    async fn while_recovering_bad_input_is_a_4xx_and_the_rest_not_ready() {
        assert_eq!(answer("GET", "/healthz", "").await.0, StatusCode::OK);
        let not_ready = (StatusCode::SERVICE_UNAVAILABLE, "not_ready");
        let error =
            |(status, body): (StatusCode, serde_json::Value)| (status, body["error"].as_str().unwrap().to_owned());
        let cases = [
            ("GET", "/readyz", "", not_ready),
            ("POST", "/v1/reservations", r#"{"id":"r","lines":[{"sku":"a","qty":1}]}"#, not_ready),
            ("POST", "/v1/reservations/r/commit", "", not_ready),
            ("POST", "/v1/reservations/r/release", "", not_ready),
            ("GET", "/v1/reservations/r", "", not_ready),
            ("PUT", "/v1/skus/a", r#"{"on_hand":5}"#, not_ready),
            ("POST", "/v1/skus/a/adjust", r#"{"delta":-5}"#, not_ready),
            ("POST", "/v1/batch", r#"{"ops":[{"op":"get_sku","sku":"a"}]}"#, not_ready),
            (
                "POST",
                "/v1/reservations",
                r#"{"id":"r","lines":[{"sku":"a","qty":1},{"sku":"a","qty":2}]}"#,
                (StatusCode::UNPROCESSABLE_ENTITY, "duplicate_sku"),
            ),
            (
                "POST",
                "/v1/reservations",
                r#"{"id":"r","lines":[{"sku":"a","qty":1}],"ttl_ms":5}"#,
                (StatusCode::UNPROCESSABLE_ENTITY, "ttl_out_of_range"),
            ),
            (
                "POST",
                "/v1/reservations",
                r#"{"id":"r","lines":[]}"#,
                (StatusCode::UNPROCESSABLE_ENTITY, "lines_out_of_range"),
            ),
            (
                "PUT",
                "/v1/skus/a",
                r#"{"on_hand":2199023255553}"#,
                (StatusCode::UNPROCESSABLE_ENTITY, "on_hand_too_large"),
            ),
            (
                "POST",
                "/v1/skus/a/adjust",
                r#"{"delta":-2199023255553}"#,
                (StatusCode::UNPROCESSABLE_ENTITY, "on_hand_too_large"),
            ),
        ];
        for (method, uri, body, (status, code)) in cases {
            assert_eq!(error(answer(method, uri, body).await), (status, code.to_owned()), "{method} {uri} {body}");
        }
    }
}

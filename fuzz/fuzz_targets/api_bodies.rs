//! Arbitrary request bodies through the API's parsing and validation (the
//! part of a request before the engine), as `POST /v1/reservations` and
//! `POST /v1/batch` see them: never a panic, every refusal a 4xx, and
//! what is accepted goes through the engine's own checks without a panic.
//! Run: `cargo +nightly fuzz run api_bodies` in fuzz/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockd_engine::limits::TTL_MS_DEFAULT;
use stockd_engine::Request;
use stockd_server::http::auth::Role;
use stockd_server::http::error::ApiError;
use stockd_server::http::types::{RawBatch, ReserveBody, SetStockBody};
use stockd_server::http::{batch, convert, json};

fn accepted(planned: Result<Request, ApiError>) {
    match planned {
        Ok(Request::Reserve(mut request)) => {
            // The edge checked ids, SKUs and quantities; the engine checks
            // the rest (lines, duplicates, TTL) itself.
            let _ = request.validate(TTL_MS_DEFAULT);
        }
        Ok(_) => {}
        Err(error) => assert!(error.status.is_client_error(), "bad input answered {}", error.status),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = json::parse::<ReserveBody>(data) {
        accepted(convert::reserve(&body.id, body.lines, body.ttl_ms).map(|(request, _)| request));
    }
    if let Ok(body) = json::parse::<RawBatch<'_>>(data) {
        for op in body.ops {
            for role in [Role::Read, Role::Checkout, Role::Admin] {
                accepted(batch::plan(op.get(), role).map(|(request, _)| request));
            }
        }
    }
    if let Err(error) = json::parse::<SetStockBody>(data) {
        assert!(error.status.is_client_error(), "bad body answered {}", error.status);
    }
});

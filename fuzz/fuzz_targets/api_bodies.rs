//! Arbitrary request bodies through the API's parsing and validation (the
//! part of a request before the engine): never a panic, and whatever is
//! accepted is a request the engine can take.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockd_server::http::convert;
use stockd_server::http::types::{BatchOp, ReserveBody, SetStockBody};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<ReserveBody>(data) {
        let _ = convert::reserve(&body.id, &body.lines, body.ttl_ms);
    }
    if let Ok(op) = serde_json::from_slice::<BatchOp>(data) {
        if let BatchOp::Reserve { id, lines, ttl_ms } = op {
            let _ = convert::reserve(&id, &lines, ttl_ms);
        }
    }
    let _ = serde_json::from_slice::<SetStockBody>(data);
});

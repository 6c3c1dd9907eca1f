//! Arbitrary bytes as a snapshot payload: restoring never panics, and what
//! restores keeps every invariant (checked inside `check_snapshot_payload`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut aligned = stockd_wal::AlignedBytes::new();
    aligned.extend_from_slice(data);
    let _ = stockd_engine::tools::check_snapshot_payload(&aligned);
});

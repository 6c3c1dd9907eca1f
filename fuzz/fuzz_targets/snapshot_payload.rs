//! Damaged real snapshot images: the input's first part builds a shard
//! state from random steps (`stockd_fuzz::step`, as `command_sequence`),
//! the state is captured into a real snapshot payload, and the rest of the
//! input overwrites bytes of it. Restoring never panics, and what restores passes
//! the full invariant audit (inside `check_snapshot_payload`). Random bytes
//! alone would rarely get past the image's validation, so the images start
//! real.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockd_engine::{tools, ShardConfig, ShardState};
use stockd_fuzz::step;

fuzz_target!(|data: &[u8]| {
    let Some((&steps, rest)) = data.split_first() else { return };
    let (steps, damage) = rest.split_at(rest.len().min(usize::from(steps % 64) * 3));
    let mut state = ShardState::new(ShardConfig { shard: 0 });
    let mut now_ms = 0;
    for chunk in steps.chunks_exact(3) {
        step(&mut state, [chunk[0], chunk[1], chunk[2]], &mut now_ms);
    }
    let payload = tools::snapshot_payload(&state, 1, now_ms).expect("a small state serializes");
    let mut aligned = stockd_wal::AlignedBytes::new();
    aligned.extend_from_slice(&payload);
    assert!(tools::check_snapshot_payload(&aligned).is_ok(), "an undamaged image restores");
    // Each 3 bytes overwrite one byte: position (big-endian u16, wrapped) and value.
    for chunk in damage.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([chunk[0], chunk[1]])) % aligned.len();
        aligned[at] = chunk[2];
    }
    let _ = tools::check_snapshot_payload(&aligned);
});

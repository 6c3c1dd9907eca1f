//! Damaged real snapshot images: the input's first part builds a shard
//! state from random commands (as `command_sequence` does), the state is
//! captured into a real snapshot payload, and the rest of the input
//! overwrites bytes of it. Restoring never panics, and what restores passes
//! the full invariant audit (inside `check_snapshot_payload`). Random bytes
//! alone would rarely get past the image's validation, so the images start
//! real.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockd_engine::{
    limits::TICK_EVENTS_MAX, tools, CartLine, Command, ReservationId, ReservePart, ShardConfig, ShardState, Sku,
};

fn sku(byte: u8) -> Sku {
    Sku::new(&format!("s{}", byte % 4)).expect("valid sku")
}

fn id(byte: u8) -> ReservationId {
    ReservationId::new(&format!("r{}", byte % 8)).expect("valid id")
}

/// Applies one 3-byte step: a stock change, a hold, a commit, a release, or
/// time passing (with a tick, so holds expire and records are forgotten).
fn step(state: &mut ShardState, [op, a, b]: [u8; 3], now_ms: &mut u64) {
    let mut batch = state.batch();
    let command = match op % 6 {
        0 => Command::SetStock { sku: sku(a), on_hand: u64::from(b), expected_version: None },
        1 => Command::AdjustStock { sku: sku(a), delta: i64::from(b as i8) },
        2 => {
            let lines = if b % 2 == 0 {
                vec![CartLine { sku: sku(a), qty: 1 + u32::from(b % 5) }]
            } else {
                vec![CartLine { sku: sku(0), qty: 1 }, CartLine { sku: sku(1), qty: 2 }]
            };
            let expires_at_ms = *now_ms + 1_000 + u64::from(b) * 10;
            Command::Reserve(ReservePart {
                id: id(a),
                fingerprint: u128::from(b),
                lines,
                expires_at_ms,
                forget_at_ms: expires_at_ms + 5_000,
                home: 0,
                participants: 1,
            })
        }
        3 => Command::Commit { id: id(a) },
        4 => Command::Release { id: id(a) },
        _ => {
            *now_ms += u64::from(b) * 50;
            batch.tick(*now_ms, TICK_EVENTS_MAX);
            return;
        }
    };
    // Refusals (no stock, unknown id, ...) are part of the game.
    let _ = batch.apply(&command, *now_ms);
}

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

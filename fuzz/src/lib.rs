//! What the fuzz targets share: a shard state driven by random 3-byte
//! steps over a few SKUs and reservation ids.

use stockd_engine::{limits::TICK_EVENTS_MAX, CartLine, Command, ReservationId, ReservePart, ShardState, Sku};

fn sku(byte: u8) -> Sku {
    Sku::new(&format!("s{}", byte % 4)).expect("valid sku")
}

pub fn id(byte: u8) -> ReservationId {
    ReservationId::new(&format!("r{}", byte % 8)).expect("valid id")
}

/// Applies one 3-byte step: a stock change, a hold, a commit, a release, or
/// time passing (with a tick, so holds expire and records are forgotten).
pub fn step(state: &mut ShardState, [op, a, b]: [u8; 3], now_ms: &mut u64) {
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

//! Arbitrary command sequences against one shard's state machine, with a
//! full invariant audit after every command: any panic (a broken invariant)
//! is a finding. Run: `cargo +nightly fuzz run command_sequence` in fuzz/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockd_engine::{
    limits::TICK_EVENTS_MAX, CartLine, Command, Query, ReservationId, ReservePart, ShardConfig, ShardState, Sku,
};

fn sku(byte: u8) -> Sku {
    Sku::new(&format!("s{}", byte % 4)).expect("valid sku")
}

fn id(byte: u8) -> ReservationId {
    ReservationId::new(&format!("r{}", byte % 8)).expect("valid id")
}

fuzz_target!(|data: &[u8]| {
    let mut state = ShardState::new(ShardConfig { shard: 0 });
    let mut now_ms = 0u64;
    for chunk in data.chunks_exact(4) {
        let [op, a, b, c] = [chunk[0], chunk[1], chunk[2], chunk[3]];
        now_ms += u64::from(c) * 10;
        let mut batch = state.batch();
        let command = match op % 7 {
            0 => Command::SetStock { sku: sku(a), on_hand: u64::from(b), expected_version: None },
            1 => Command::AdjustStock { sku: sku(a), delta: i64::from(b as i8) },
            2 => {
                let lines = if b % 2 == 0 {
                    vec![CartLine { sku: sku(a), qty: 1 + u32::from(b % 5) }]
                } else {
                    vec![CartLine { sku: sku(0), qty: 1 }, CartLine { sku: sku(1), qty: 2 }]
                };
                let expires_at_ms = now_ms + 1_000 + u64::from(c) * 10;
                Command::Reserve(ReservePart {
                    id: id(a),
                    fingerprint: u128::from(b % 2) << 8 | u128::from(b % 5),
                    lines,
                    expires_at_ms,
                    forget_at_ms: expires_at_ms + 5_000,
                    home: 0,
                    participants: 1,
                })
            }
            3 => Command::Commit { id: id(a) },
            4 => Command::Release { id: id(a) },
            5 => {
                batch.tick(now_ms, TICK_EVENTS_MAX);
                continue;
            }
            _ => {
                let _ = batch.query(&Query::GetReservation { id: id(a) });
                continue;
            }
        };
        let _ = batch.apply(&command, now_ms);
        batch.query(&Query::Audit).expect("audit answers or panics");
        drop(batch);
        state.publish_now();
    }
});

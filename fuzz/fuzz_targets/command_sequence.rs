//! Arbitrary command sequences against one shard's state machine, with a
//! full invariant audit after every command: any panic (a broken invariant)
//! is a finding. Run: `cargo +nightly fuzz run command_sequence` in fuzz/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockd_engine::{Command, ReservationId, ShardConfig, ShardState, Sku};

fn sku(byte: u8) -> Sku {
    Sku::new(&format!("s{}", byte % 4)).expect("valid sku")
}

fn id(byte: u8) -> ReservationId {
    ReservationId::new(&format!("r{}", byte % 8)).expect("valid id")
}

fuzz_target!(|data: &[u8]| {
    let mut state = ShardState::new(ShardConfig { shard: 0, retention_ms: 5_000, cart_grace_ms: 1_000 });
    let mut now_ms = 0u64;
    for chunk in data.chunks_exact(4) {
        let [op, a, b, c] = [chunk[0], chunk[1], chunk[2], chunk[3]];
        now_ms += u64::from(c) * 10;
        let command = match op % 8 {
            0 => Command::SetStock { sku: sku(a), on_hand: u64::from(b), expected_version: None },
            1 => Command::AdjustStock { sku: sku(a), delta: i64::from(b as i8) },
            2 => {
                let lines = if b % 2 == 0 { vec![(sku(a), 1 + u32::from(b % 5))] } else { vec![(sku(0), 1), (sku(1), 2)] };
                let fingerprint = u128::from(b % 2) << 8 | u128::from(b % 5);
                Command::Reserve { id: id(a), fingerprint, lines, ttl_ms: 1_000 + u64::from(c) * 10, home: 0, participants: 1 }
            }
            3 => Command::Commit { id: id(a) },
            4 => Command::Release { id: id(a) },
            5 => Command::Tick,
            6 => Command::GetReservation { id: id(a) },
            _ => Command::GetSku { sku: sku(a) },
        };
        let mut batch = state.batch();
        let _ = batch.apply(command, now_ms);
        batch.apply(Command::Audit, now_ms).expect("audit answers or panics");
        drop(batch);
        state.publish();
    }
});

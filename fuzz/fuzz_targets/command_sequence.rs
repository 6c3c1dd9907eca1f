//! Arbitrary command sequences against one shard's state machine, with a
//! full invariant audit after every command: any panic (a broken invariant)
//! is a finding. Run: `cargo +nightly fuzz run command_sequence` in fuzz/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockd_engine::{Query, ShardConfig, ShardState};
use stockd_fuzz::{id, step};

fuzz_target!(|data: &[u8]| {
    let mut state = ShardState::new(ShardConfig { shard: 0 });
    let mut now_ms = 0u64;
    for chunk in data.chunks_exact(3) {
        let [op, a, b] = [chunk[0] % 7, chunk[1], chunk[2]];
        if op == 6 {
            let _ = state.batch().query(&Query::GetReservation { id: id(a) });
            continue;
        }
        step(&mut state, [op, a, b], &mut now_ms);
        state.batch().query(&Query::Audit).expect("audit answers or panics");
        state.publish_now();
    }
});

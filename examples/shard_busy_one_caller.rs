//! How much of the time one shard is busy when one caller submits long
//! batches, as `reserve_commit_batched/hot_sku_1_shards` does: batches of
//! 4,096 reserves of the hot SKU, then their commits, each answered before
//! the next (1 s TTL, 1 s retention, no WAL). It prints reservations per
//! second and the CPU time of the shard thread and of the caller (from
//! /proc/self/task, in 10 ms ticks) as shares of the wall time, counting
//! only the submissions: requests are built, and answers dropped, outside
//! the measured intervals.
//!
//! cargo run --release --example shard_busy_one_caller [-- ROUNDS]

use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_engine::{CartLine, Engine, EngineConfig, Request, ReservationId, ReserveRequest, Sku, SystemClock};

const BATCH: usize = 4_096;
/// Batches built ahead of one measured interval (about half a second).
const BATCHES_PER_ROUND: usize = 100;

/// CPU ticks (user + system) of this process's threads whose name starts
/// with `prefix`.
fn cpu_ticks(prefix: &str) -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("Linux /proc");
    tasks
        .map(|task| task.expect("a readable task entry").path())
        .filter(|dir| std::fs::read_to_string(dir.join("comm")).is_ok_and(|name| name.starts_with(prefix)))
        .map(|dir| {
            let stat = std::fs::read_to_string(dir.join("stat")).expect("a task has a stat file");
            // Fields after the parenthesised name; utime and stime are the
            // 14th and 15th of the whole line.
            let fields: Vec<&str> = stat.rsplit(')').next().expect("stat has a name").split_whitespace().collect();
            let ticks = |i: usize| fields[i].parse::<u64>().expect("ticks are numbers");
            ticks(11) + ticks(12)
        })
        .sum()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(15);
    let config = EngineConfig { shards: 1, retention_ms: 1_000, ..EngineConfig::default() };
    let engine = Engine::start(config, Arc::new(SystemClock));
    let sku = Sku::new("sku-0").expect("valid sku");
    let stock = Request::SetStock { sku: sku.clone(), on_hand: 1 << 40, expected_version: None };
    engine.submit_blocking(stock).expect("stock set");
    let caller = std::fs::read_to_string("/proc/thread-self/comm").expect("Linux /proc");
    let mut next_id = 0u64;
    let (mut wall, mut shard_ticks, mut caller_ticks) = (Duration::ZERO, 0, 0);
    for _ in 0..rounds {
        let work: Vec<(Vec<Request>, Vec<Request>)> = (0..BATCHES_PER_ROUND)
            .map(|_| {
                let ids: Vec<ReservationId> = (0..BATCH)
                    .map(|_| {
                        next_id += 1;
                        ReservationId::new(&format!("order-{next_id:012}")).expect("valid id")
                    })
                    .collect();
                let lines = || vec![CartLine { sku: sku.clone(), qty: 1 }];
                let reserves = ids
                    .iter()
                    .map(|id| Request::Reserve(ReserveRequest { id: id.clone(), lines: lines(), ttl_ms: Some(1_000) }))
                    .collect();
                (reserves, ids.into_iter().map(|id| Request::Commit { id }).collect())
            })
            .collect();
        let mut answers = Vec::with_capacity(2 * BATCHES_PER_ROUND);
        let (shard_before, caller_before) = (cpu_ticks("stockd-shard"), cpu_ticks(caller.trim()));
        let start = Instant::now();
        for (reserves, commits) in work {
            answers.push(engine.submit_batch_blocking(reserves));
            answers.push(engine.submit_batch_blocking(commits));
        }
        wall += start.elapsed();
        shard_ticks += cpu_ticks("stockd-shard") - shard_before;
        caller_ticks += cpu_ticks(caller.trim()) - caller_before;
        assert!(answers.iter().flatten().all(Result::is_ok), "every reserve and commit succeeds");
    }
    let ticks_per_second = 100.0;
    let share = |ticks: u64| 100.0 * ticks as f64 / ticks_per_second / wall.as_secs_f64();
    let pairs = (rounds * BATCHES_PER_ROUND * BATCH) as f64;
    println!(
        "{:.2} M reserve+commit/s; busy: shard {:.0} %, caller {:.0} % of the wall time",
        pairs / wall.as_secs_f64() / 1e6,
        share(shard_ticks),
        share(caller_ticks)
    );
}

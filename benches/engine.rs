//! Engine benchmarks, no WAL. Names follow `<operation>_<scenario>`.
//! - `reserve_commit_hot_sku_batched`: 1,000 reserves then 1,000 commits per
//!   iteration through `submit_batch`, all on one SKU; 1 and 2 shards.
//! - `reserve_commit_uniform_1m_batched`: the same over 1M SKUs.
//! - `reserve_one_at_a_time_threads`: 4 threads each `submit_blocking` 2,500
//!   single-unit reserves.
//! - `apply_reserve_commit_state_machine`: the bare state machine on one
//!   thread (no queues), the ceiling for a shard.
//! - `expiry_tick_1m_holds`: one loop turn's tick against a heap of 1M holds.
//!
//! After the timed groups it prints the distribution of loop-turn pauses
//! while 1M holds with random TTLs expire, and the longest turn when all are
//! due at once (the longest pause expiry can cause).

use criterion::{BenchmarkId, Criterion, Throughput};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_engine::{
    limits::TICK_EVENTS_MAX, CartLine, Command, Engine, EngineConfig, Request, ReservationId, ReservePart,
    ReserveRequest, ShardConfig, ShardState, Sku, SystemClock,
};

const BATCH: usize = 1_000;
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn fresh_id() -> ReservationId {
    ReservationId::new(&format!("bench-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))).expect("valid id")
}

fn sku(i: u64) -> Sku {
    Sku::new(&format!("sku-{i}")).expect("valid sku")
}

fn reserve(id: ReservationId, sku: Sku) -> Request {
    Request::Reserve(ReserveRequest { id, lines: vec![CartLine { sku, qty: 1 }], ttl_ms: None })
}

fn engine_with_skus(shards: usize, skus: u64) -> Engine {
    let engine = Engine::start(EngineConfig { shards, ..EngineConfig::default() }, Arc::new(SystemClock));
    for chunk in (0..skus).collect::<Vec<_>>().chunks(10_000) {
        let requests = chunk
            .iter()
            .map(|&i| Request::SetStock { sku: sku(i), on_hand: 1 << 40, expected_version: None })
            .collect();
        assert!(engine.submit_batch_blocking(requests).iter().all(Result::is_ok));
    }
    engine
}

/// One iteration: BATCH reserves, then their commits, each as one batch.
fn reserve_commit_batched(engine: &Engine, pick_sku: &mut impl FnMut() -> Sku) {
    let ids: Vec<ReservationId> = (0..BATCH).map(|_| fresh_id()).collect();
    let reserves = ids.iter().map(|id| reserve(id.clone(), pick_sku())).collect();
    assert!(engine.submit_batch_blocking(reserves).iter().all(Result::is_ok));
    let commits = ids.into_iter().map(|id| Request::Commit { id }).collect();
    assert!(engine.submit_batch_blocking(commits).iter().all(Result::is_ok));
}

fn lcg(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

fn batched(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_commit_hot_sku_batched");
    group.throughput(Throughput::Elements(BATCH as u64));
    for shards in [1, 2] {
        let engine = engine_with_skus(shards, 1);
        group.bench_function(BenchmarkId::from_parameter(format!("{shards}_shards")), |b| {
            b.iter(|| reserve_commit_batched(&engine, &mut || sku(0)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("reserve_commit_uniform_1m_batched");
    group.throughput(Throughput::Elements(BATCH as u64));
    for shards in [1, 2] {
        let engine = engine_with_skus(shards, 1_000_000);
        let mut seed = 7u64;
        group.bench_function(BenchmarkId::from_parameter(format!("{shards}_shards")), |b| {
            b.iter(|| reserve_commit_batched(&engine, &mut || sku(lcg(&mut seed) % 1_000_000)))
        });
    }
    group.finish();
}

fn one_at_a_time(c: &mut Criterion) {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2_500;
    let mut group = c.benchmark_group("reserve_one_at_a_time_threads");
    group.throughput(Throughput::Elements((THREADS * PER_THREAD) as u64));
    for shards in [1, 2] {
        let engine = Arc::new(engine_with_skus(shards, 1));
        group.bench_function(BenchmarkId::from_parameter(format!("{shards}_shards")), |b| {
            b.iter_custom(|iterations| {
                let began = Instant::now();
                for _ in 0..iterations {
                    let threads: Vec<_> = (0..THREADS)
                        .map(|_| {
                            let engine = Arc::clone(&engine);
                            std::thread::spawn(move || {
                                for _ in 0..PER_THREAD {
                                    engine.submit_blocking(reserve(fresh_id(), sku(0))).expect("held");
                                }
                            })
                        })
                        .collect();
                    threads.into_iter().for_each(|thread| thread.join().expect("bench thread"));
                }
                began.elapsed()
            })
        });
    }
    group.finish();
}

fn state_machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_reserve_commit_state_machine");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut state = ShardState::new(ShardConfig { shard: 0 });
    state.batch().apply(&Command::SetStock { sku: sku(0), on_hand: 1 << 40, expected_version: None }, 0).unwrap();
    let mut now_ms = 0;
    group.bench_function("hot_sku", |b| {
        b.iter(|| {
            now_ms += 1;
            let ids: Vec<ReservationId> = (0..BATCH).map(|_| fresh_id()).collect();
            let mut batch = state.batch();
            for id in &ids {
                batch.apply(&hold(id.clone(), now_ms, 60_000), now_ms).unwrap();
            }
            for id in ids {
                batch.apply(&Command::Commit { id }, now_ms).unwrap();
            }
            batch.tick(now_ms, TICK_EVENTS_MAX);
            drop(batch);
            state.publish_now();
        })
    });
    group.finish();
}

/// A single-line hold of one unit of `sku-0` at home (shard 0).
fn hold(id: ReservationId, now_ms: u64, ttl_ms: u64) -> Command {
    Command::Reserve(ReservePart {
        id,
        fingerprint: 1,
        lines: vec![CartLine { sku: sku(0), qty: 1 }],
        expires_at_ms: now_ms + ttl_ms,
        forget_at_ms: now_ms + ttl_ms + 60_000,
        home: 0,
        participants: 1,
    })
}

/// A shard holding 1M reservations with TTLs spread over 1..=600 s.
fn state_with_million_holds() -> ShardState {
    let mut state = ShardState::new(ShardConfig { shard: 0 });
    let mut batch = state.batch();
    batch.apply(&Command::SetStock { sku: sku(0), on_hand: 1 << 40, expected_version: None }, 0).unwrap();
    let mut seed = 11u64;
    for i in 0..1_000_000u64 {
        let id = ReservationId::new(&format!("hold-{i}")).expect("valid id");
        batch.apply(&hold(id, 0, 1_000 + lcg(&mut seed) % 599_000), 0).unwrap();
    }
    drop(batch);
    state
}

fn expiry(c: &mut Criterion) {
    let mut group = c.benchmark_group("expiry_tick_1m_holds");
    group.sample_size(10);
    group.bench_function("one_tick_all_due", |b| {
        b.iter_batched_ref(
            state_with_million_holds,
            |state| state.batch().tick(10_000_000, TICK_EVENTS_MAX),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Expires 1M holds with random TTLs one loop turn at a time, as a shard
/// would, and prints the longest single turn.
fn report_longest_expiry_pause() {
    let mut state = state_with_million_holds();
    let mut pauses_us = hdrhistogram::Histogram::<u64>::new(3).expect("valid histogram");
    for now_ms in (0..=700_000u64).step_by(10) {
        loop {
            let began = Instant::now();
            let changed = state.batch().tick(now_ms, TICK_EVENTS_MAX).is_some();
            state.publish_now();
            pauses_us.record(began.elapsed().as_micros() as u64).expect("in range");
            if !changed {
                break;
            }
        }
    }
    println!(
        "expiry of 1M holds with random TTLs over 700 s in 10 ms loop turns: {} turns, pause us p50 {} p99 {} p99.9 {} max {}",
        pauses_us.len(),
        pauses_us.value_at_quantile(0.5),
        pauses_us.value_at_quantile(0.99),
        pauses_us.value_at_quantile(0.999),
        pauses_us.max()
    );
    // The worst case: every hold due in the same turn.
    let mut state = state_with_million_holds();
    let mut longest = Duration::ZERO;
    loop {
        let began = Instant::now();
        let changed = state.batch().tick(10_000_000, TICK_EVENTS_MAX).is_some();
        state.publish_now();
        longest = longest.max(began.elapsed());
        if !changed {
            break;
        }
    }
    println!("all 1M holds due at once: longest single turn {:.3} ms", longest.as_secs_f64() * 1e3);
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    state_machine(&mut criterion);
    batched(&mut criterion);
    one_at_a_time(&mut criterion);
    expiry(&mut criterion);
    criterion.final_summary();
    report_longest_expiry_pause();
}

//! Engine benchmarks without a WAL (the CPU path). Names follow
//! `<operation>_<scenario>`. One "reservation" is one reserve of one unit
//! and, later, its commit: the figures count reservations (pairs) per
//! second. Requests (ids, SKUs) are built before the timed part, as a
//! network front end hands them over already parsed.
//!
//! Every reservation lives its whole life: held with a 1 s TTL, committed,
//! remembered for a 1 s retention, forgotten. The engine therefore runs in
//! a steady state (about two seconds' worth of reservations remembered, a
//! few million) and the figures include forgetting; with the default 24 h
//! retention the tables would grow for the whole run and the figure would
//! depend on how long criterion ran.
//!
//! - `apply_reserve_commit/state_machine_hot_sku`: the bare state machine
//!   on one thread (no queues), warming lookups and ticking as a shard's
//!   turn does, on a virtual clock (4,096 reservations per 4 ms: about 2M
//!   remembered): the ceiling for one shard.
//! - `reserve_commit_batched/{hot_sku,uniform_1m}_{1,2}_shards`:
//!   `submit_batch` of 4,096 reserves, then their 4,096 commits: one caller,
//!   waiting for each answer before the next batch (the shard idles while
//!   the caller prepares and reads).
//! - `..._4_callers`: four such callers at once, as a server serving four
//!   batch requests has; the figure is their total.
//! - `reserve_commit_one_at_a_time/{tasks,threads}_{1,2}_shards`: every
//!   request on its own (`submit`): 256 concurrent async tasks on a tokio
//!   runtime, or 4 blocking threads.
//! - `expiry_tick/one_tick_1m_holds_all_due`: one bounded tick over 1M holds.
//!
//! After the timed groups it prints the loop-turn pauses while 1M holds with
//! random TTLs expire, and the longest turn when all are due at once.

mod common;

use common::bench_batches_by_callers;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_engine::{
    limits::TICK_EVENTS_MAX, CartLine, Command, Engine, EngineConfig, Request, ReservationId, ReservePart,
    ReserveRequest, ShardConfig, ShardState, Sku, SystemClock, WARM_WINDOW,
};

const BATCH: usize = 4_096;
/// The hold length and retention of every benchmark reservation.
const TTL_MS: u64 = 1_000;
const RETENTION_MS: u64 = 1_000;
/// Virtual time per iteration of the bare state machine.
const STATE_MACHINE_MS_PER_ITERATION: u64 = 4;
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn fresh_id() -> ReservationId {
    ReservationId::new(&format!("order-{:012}", NEXT_ID.fetch_add(1, Ordering::Relaxed))).expect("valid id")
}

fn sku(i: u64) -> Sku {
    Sku::new(&format!("sku-{i:07}")).expect("valid sku")
}

fn reserve(id: ReservationId, sku: Sku) -> Request {
    Request::Reserve(ReserveRequest { id, lines: vec![CartLine { sku, qty: 1 }], ttl_ms: Some(TTL_MS) })
}

fn engine_with_skus(shards: usize, skus: u64) -> Engine {
    let config = EngineConfig { shards, retention_ms: RETENTION_MS, ..EngineConfig::default() };
    let engine = Engine::start(config, Arc::new(SystemClock));
    for chunk in (0..skus).collect::<Vec<_>>().chunks(10_000) {
        let requests = chunk
            .iter()
            .map(|&i| Request::SetStock { sku: sku(i), on_hand: 1 << 40, expected_version: None })
            .collect();
        assert!(engine.submit_batch_blocking(requests).iter().all(Result::is_ok));
    }
    engine
}

fn lcg(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

/// BATCH reserves and their commits, built ahead of the timed part.
fn reserve_commit_requests(skus: &[Sku], seed: &mut u64) -> (Vec<Request>, Vec<Request>) {
    let ids: Vec<ReservationId> = (0..BATCH).map(|_| fresh_id()).collect();
    let reserves = ids.iter().map(|id| reserve(id.clone(), skus[lcg(seed) as usize % skus.len()].clone())).collect();
    let commits = ids.into_iter().map(|id| Request::Commit { id }).collect();
    (reserves, commits)
}

fn batched(c: &mut Criterion) {
    let mut group = c.benchmark_group("reserve_commit_batched");
    for (scenario, sku_count) in [("hot_sku", 1u64), ("uniform_1m", 1_000_000)] {
        for shards in [1, 2] {
            let engine = engine_with_skus(shards, sku_count);
            let skus: Vec<Sku> = (0..sku_count).map(sku).collect();
            let mut seed = 7u64;
            let name = format!("{scenario}_{shards}_shards");
            bench_batches_by_callers(&mut group, &name, &engine, BATCH, || reserve_commit_requests(&skus, &mut seed));
        }
    }
    group.finish();
}

fn one_at_a_time(c: &mut Criterion) {
    const TASKS: usize = 256;
    const THREADS: usize = 4;
    let mut group = c.benchmark_group("reserve_commit_one_at_a_time");
    group.throughput(Throughput::Elements(BATCH as u64));
    for shards in [1, 2] {
        let engine = Arc::new(engine_with_skus(shards, 1));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("a runtime");
        let mut seed = 11u64;
        group.bench_function(BenchmarkId::from_parameter(format!("tasks_{shards}_shards")), |b| {
            b.iter_batched(
                || reserve_commit_requests(&[sku(0)], &mut seed),
                |(reserves, commits)| runtime.block_on(run_tasks(&engine, reserves, commits, TASKS)),
                BatchSize::LargeInput,
            )
        });
        group.bench_function(BenchmarkId::from_parameter(format!("threads_{shards}_shards")), |b| {
            b.iter_batched(
                || reserve_commit_requests(&[sku(0)], &mut seed),
                |(reserves, commits)| run_threads(&engine, reserves, commits, THREADS),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// Each of `tasks` tasks reserves then commits its share, one request at a time.
async fn run_tasks(engine: &Arc<Engine>, reserves: Vec<Request>, commits: Vec<Request>, tasks: usize) {
    let per_task = reserves.len().div_ceil(tasks);
    let mut reserves = reserves.into_iter();
    let mut commits = commits.into_iter();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let work: Vec<(Request, Request)> = reserves.by_ref().take(per_task).zip(commits.by_ref()).collect();
            let engine = Arc::clone(engine);
            tokio::spawn(async move {
                for (reserve, commit) in work {
                    engine.submit(reserve).await.expect("held");
                    engine.submit(commit).await.expect("committed");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("bench task");
    }
}

fn run_threads(engine: &Arc<Engine>, reserves: Vec<Request>, commits: Vec<Request>, threads: usize) {
    let per_thread = reserves.len().div_ceil(threads);
    let mut reserves = reserves.into_iter();
    let mut commits = commits.into_iter();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let work: Vec<(Request, Request)> = reserves.by_ref().take(per_thread).zip(commits.by_ref()).collect();
            scope.spawn(move || {
                for (reserve, commit) in work {
                    engine.submit_blocking(reserve).expect("held");
                    engine.submit_blocking(commit).expect("committed");
                }
            });
        }
    });
}

/// A single-line hold of one unit of `sku` at home (shard 0).
fn hold(id: ReservationId, sku: Sku, now_ms: u64, ttl_ms: u64, retention_ms: u64) -> Command {
    Command::Reserve(ReservePart {
        id,
        fingerprint: 1,
        lines: vec![CartLine { sku, qty: 1 }],
        expires_at_ms: now_ms + ttl_ms,
        forget_at_ms: now_ms + ttl_ms + retention_ms,
        home: 0,
        participants: 1,
    })
}

/// 4,096 reservations and their commits at `now_ms`, as shard commands.
fn state_machine_turn(now_ms: u64) -> (Vec<Command>, Vec<Command>) {
    let holds: Vec<Command> = (0..BATCH).map(|_| hold(fresh_id(), sku(0), now_ms, TTL_MS, RETENTION_MS)).collect();
    let commits = holds
        .iter()
        .map(|hold| match hold {
            Command::Reserve(part) => Command::Commit { id: part.id.clone() },
            _ => unreachable!(),
        })
        .collect();
    (holds, commits)
}

/// What a shard's turn does with the commands: tick (forgetting what is
/// due), apply them a window at a time, each window's lookups warmed first,
/// publish.
fn apply_turn(state: &mut ShardState, holds: &[Command], commits: &[Command], now_ms: u64) {
    let mut batch = state.batch();
    batch.tick(now_ms, TICK_EVENTS_MAX + 2 * (holds.len() + commits.len()));
    for window in [holds, commits].into_iter().flat_map(|commands| commands.chunks(WARM_WINDOW)) {
        batch.warm(window.iter().filter_map(Command::reservation_id), window.iter().flat_map(Command::skus));
        for command in window {
            batch.apply(command, now_ms).unwrap();
        }
    }
    drop(batch);
    state.publish_now();
}

fn state_machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_reserve_commit");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut state = ShardState::new(ShardConfig { shard: 0 });
    state.batch().apply(&Command::SetStock { sku: sku(0), on_hand: 1 << 40, expected_version: None }, 0).unwrap();
    // Fill to the steady state first: as many reservations remembered as
    // are forgotten per turn.
    let mut now_ms = 0;
    while now_ms < 2 * (TTL_MS + RETENTION_MS) {
        now_ms += STATE_MACHINE_MS_PER_ITERATION;
        let (holds, commits) = state_machine_turn(now_ms);
        apply_turn(&mut state, &holds, &commits, now_ms);
    }
    group.bench_function("state_machine_hot_sku", |b| {
        b.iter_batched(
            || {
                now_ms += STATE_MACHINE_MS_PER_ITERATION;
                let (holds, commits) = state_machine_turn(now_ms);
                (holds, commits, now_ms)
            },
            |(holds, commits, now_ms)| apply_turn(&mut state, &holds, &commits, now_ms),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// A shard holding 1M reservations with TTLs spread over 1..=600 s.
fn state_with_million_holds() -> ShardState {
    let mut state = ShardState::new(ShardConfig { shard: 0 });
    let mut batch = state.batch();
    batch.apply(&Command::SetStock { sku: sku(0), on_hand: 1 << 40, expected_version: None }, 0).unwrap();
    let mut seed = 11u64;
    for i in 0..1_000_000u64 {
        let id = ReservationId::new(&format!("hold-{i}")).expect("valid id");
        batch.apply(&hold(id, sku(0), 0, 1_000 + lcg(&mut seed) % 599_000, 60_000), 0).unwrap();
    }
    drop(batch);
    state
}

fn expiry(c: &mut Criterion) {
    let mut group = c.benchmark_group("expiry_tick");
    group.sample_size(10);
    group.bench_function("one_tick_1m_holds_all_due", |b| {
        b.iter_batched_ref(
            state_with_million_holds,
            |state| state.batch().tick(10_000_000, TICK_EVENTS_MAX),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Expires 1M holds with random TTLs one loop turn at a time, as a shard
/// would, and prints the pause distribution and the longest single turn.
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
        // Long enough for the engines to reach their steady state (see above).
        .warm_up_time(Duration::from_secs(3))
        .configure_from_args();
    state_machine(&mut criterion);
    batched(&mut criterion);
    one_at_a_time(&mut criterion);
    expiry(&mut criterion);
    criterion.final_summary();
    // The pause report is slow: run it only when expiry is selected.
    let filters: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    if filters.is_empty()
        || filters.iter().any(|filter| "expiry".contains(filter.as_str()) || filter.contains("expiry"))
    {
        report_longest_expiry_pause();
    }
}

//! WAL and durable-engine benchmarks, on this machine's disk (a temp dir
//! under target/). Names follow `<operation>_<scenario>`.
//!
//! - `wal_append_sync/{1,16,256,4096}_records`: frame that many ~100-byte
//!   records, one write, one fdatasync (group commit).
//! - `durable_reserve_commit_batched/{1,2}_shards`: the engine on a data
//!   directory with fsync always; 4,096 reserves then their commits per
//!   iteration through `submit_batch`, one caller waiting for each answer.
//!   Counts reservations (pairs). `..._4_callers`: four such callers at
//!   once (their batches share fsyncs: group commit); the figure is their
//!   total.
//! - `durable_reserve_commit_one_at_a_time/{1,2}_shards`: 512 async tasks,
//!   each reserve and commit its own request.
//!
//! In both throughput groups every reservation is held for 1 s and
//! remembered for 1 s after it (as in `benches/engine.rs`), so the engine
//! and its snapshots keep a steady size: with the 24 h default the state,
//! and every automatic snapshot, grows for the whole run, and the figure
//! depends on how long criterion ran (measured: 0.43-0.74 M pairs/s from one
//! run's samples).
//!
//! Reports printed after the groups (selected by filter, or all without one):
//! - `fsync`: p50/p99 of one fdatasync after 1 and after 256 records;
//! - `latency`: acknowledgement p50/p99 of durable one-at-a-time reserves;
//! - `replay`: records replayed per second by a restart;
//! - `restart`: restart time with 10M SKUs behind a snapshot;
//! - `capture`: how long taking a snapshot pauses a shard with 1M and 5M holds.

mod common;

use common::bench_batches_by_callers;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_engine::{
    CartLine, Engine, EngineConfig, FsyncPolicy, Request, ReservationId, ReserveRequest, Sku, StoreConfig, SystemClock,
};
use stockd_wal::{FsStorage, LogOptions, LogTail, LogWriter};

const BATCH: usize = 4_096;
/// The throughput benchmarks' hold length and retention.
const STEADY_MS: u64 = 1_000;
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn bench_dir() -> tempfile::TempDir {
    // Under target/: the disk the project runs on, not a tmpfs.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&root).expect("target/ is writable");
    tempfile::tempdir_in(root).expect("a temp dir")
}

fn fresh_id() -> ReservationId {
    ReservationId::new(&format!("order-{:012}", NEXT_ID.fetch_add(1, Ordering::Relaxed))).expect("valid id")
}

fn sku(i: u64) -> Sku {
    Sku::new(&format!("sku-{i:08}")).expect("valid sku")
}

fn writer(dir: &Path) -> LogWriter {
    let options = LogOptions { shard: 0, segment_bytes_max: 64 << 20, spare_segments: true };
    LogWriter::open(Arc::new(FsStorage), dir, options, LogTail::empty()).expect("a log")
}

const PAYLOAD: [u8; 100] = [7u8; 100];

fn wal_append_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_sync");
    for records in [1usize, 16, 256, 4_096] {
        let dir = bench_dir();
        let mut log = writer(dir.path());
        group.throughput(Throughput::Elements(records as u64));
        group.bench_function(BenchmarkId::from_parameter(format!("{records}_records")), |b| {
            b.iter(|| {
                for _ in 0..records {
                    log.append(|buffer| buffer.extend_from_slice(&PAYLOAD));
                }
                log.write().expect("written").sync().expect("synced");
            })
        });
    }
    group.finish();
}

fn durable_engine(shards: usize, dir: &Path) -> Engine {
    durable_engine_with(shards, StoreConfig::new(dir))
}

fn durable_engine_with(shards: usize, store: StoreConfig) -> Engine {
    durable_engine_retaining(shards, store, EngineConfig::default().retention_ms)
}

/// The engine of the throughput benchmarks: reservations are remembered
/// for `STEADY_MS` after their `STEADY_MS` hold (see the module comment).
fn steady_engine(shards: usize, dir: &Path) -> Engine {
    durable_engine_retaining(shards, StoreConfig::new(dir), STEADY_MS)
}

fn durable_engine_retaining(shards: usize, store: StoreConfig, retention_ms: u64) -> Engine {
    let store = StoreConfig { fsync: FsyncPolicy::Always, ..store };
    let config = EngineConfig { shards, retention_ms, ..EngineConfig::default() };
    let (engine, _) = Engine::open(config, store, Arc::new(SystemClock), &Default::default()).expect("opens");
    let set = Request::SetStock { sku: sku(0), on_hand: 1 << 40, expected_version: None };
    engine.submit_blocking(set).expect("stock set");
    engine
}

/// BATCH reserves of one unit of the hot SKU (default TTL) and their commits.
fn requests() -> (Vec<Request>, Vec<Request>) {
    requests_held_for(None)
}

/// The throughput benchmarks' reserves: held for `STEADY_MS`.
fn steady_requests() -> (Vec<Request>, Vec<Request>) {
    requests_held_for(Some(STEADY_MS))
}

fn requests_held_for(ttl_ms: Option<u64>) -> (Vec<Request>, Vec<Request>) {
    let ids: Vec<ReservationId> = (0..BATCH).map(|_| fresh_id()).collect();
    let reserves = ids
        .iter()
        .map(|id| {
            Request::Reserve(ReserveRequest { id: id.clone(), lines: vec![CartLine { sku: sku(0), qty: 1 }], ttl_ms })
        })
        .collect();
    (reserves, ids.into_iter().map(|id| Request::Commit { id }).collect())
}

fn durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_reserve_commit_batched");
    for shards in [1, 2] {
        let dir = bench_dir();
        let engine = steady_engine(shards, dir.path());
        bench_batches_by_callers(&mut group, &format!("{shards}_shards"), &engine, BATCH, steady_requests);
    }
    group.finish();

    let mut group = c.benchmark_group("durable_reserve_commit_one_at_a_time");
    group.throughput(Throughput::Elements(BATCH as u64));
    for shards in [1, 2] {
        let dir = bench_dir();
        let engine = Arc::new(steady_engine(shards, dir.path()));
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        group.bench_function(BenchmarkId::from_parameter(format!("{shards}_shards")), |b| {
            b.iter_batched(
                steady_requests,
                |(reserves, commits)| runtime.block_on(one_at_a_time(&engine, reserves, commits, 512, None)),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// `tasks` tasks each reserve then commit their share, one request at a
/// time; records each acknowledgement's latency when given a histogram.
async fn one_at_a_time(
    engine: &Arc<Engine>,
    reserves: Vec<Request>,
    commits: Vec<Request>,
    tasks: usize,
    latencies: Option<&std::sync::Mutex<hdrhistogram::Histogram<u64>>>,
) {
    let per_task = reserves.len().div_ceil(tasks);
    let (mut reserves, mut commits) = (reserves.into_iter(), commits.into_iter());
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let work: Vec<(Request, Request)> = reserves.by_ref().take(per_task).zip(commits.by_ref()).collect();
            let engine = Arc::clone(engine);
            tokio::spawn(async move {
                let mut local = hdrhistogram::Histogram::<u64>::new(3).expect("valid");
                for (reserve, commit) in work {
                    let began = Instant::now();
                    engine.submit(reserve).await.expect("held");
                    local.saturating_record(began.elapsed().as_micros() as u64);
                    engine.submit(commit).await.expect("committed");
                }
                local
            })
        })
        .collect();
    for handle in handles {
        let local = handle.await.expect("a task");
        if let Some(latencies) = latencies {
            latencies.lock().expect("no panic").add(local).expect("same bounds");
        }
    }
}

fn report_fsync() {
    for records in [1usize, 256] {
        let dir = bench_dir();
        let mut log = writer(dir.path());
        let mut latency = hdrhistogram::Histogram::<u64>::new(3).expect("valid");
        for _ in 0..2_000 {
            for _ in 0..records {
                log.append(|buffer| buffer.extend_from_slice(&PAYLOAD));
            }
            let point = log.write().expect("written");
            let began = Instant::now();
            point.sync().expect("synced");
            latency.record(began.elapsed().as_micros() as u64).expect("in range");
        }
        println!(
            "fdatasync after {records} records ({} bytes): p50 {} us, p99 {} us, max {} us",
            records * 144,
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            latency.max()
        );
    }
}

fn report_latency() {
    for shards in [1, 2] {
        let dir = bench_dir();
        let engine = Arc::new(durable_engine(shards, dir.path()));
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let latencies = std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(3).expect("valid"));
        let began = Instant::now();
        let rounds = 40;
        for _ in 0..rounds {
            let (reserves, commits) = requests();
            runtime.block_on(one_at_a_time(&engine, reserves, commits, 512, Some(&latencies)));
        }
        let rate = (rounds * BATCH) as f64 / began.elapsed().as_secs_f64();
        let latencies = latencies.lock().expect("no panic");
        println!(
            "durable one-at-a-time, {shards} shard(s), 512 tasks: {rate:.0} reservations/s; reserve ack p50 {} us, p99 {} us",
            latencies.value_at_quantile(0.5),
            latencies.value_at_quantile(0.99)
        );
    }
}

/// Writes `reservations` reserve+commit pairs to a 2-shard directory and
/// times a restart that replays all of them (no snapshot).
fn report_replay() {
    let dir = bench_dir();
    let reservations = 2_000_000;
    {
        let no_snapshots = StoreConfig { snapshot_every_bytes: u64::MAX, ..StoreConfig::new(dir.path()) };
        let engine = durable_engine_with(2, no_snapshots);
        for _ in 0..reservations / BATCH {
            let (reserves, commits) = requests();
            engine.submit_batch_blocking(reserves);
            engine.submit_batch_blocking(commits);
        }
    }
    let config = EngineConfig { shards: 2, ..EngineConfig::default() };
    let began = Instant::now();
    let (_, report) = Engine::open(config, StoreConfig::new(dir.path()), Arc::new(SystemClock), &Default::default())
        .expect("recovers");
    let elapsed = began.elapsed();
    let records: u64 = report.shards.iter().map(|shard| shard.records_replayed).sum();
    println!(
        "replay: {records} records in {:.2} s = {:.2} M records/s (2 shards replaying in parallel)",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64() / 1e6
    );
}

/// 10M SKUs on 2 shards, a snapshot, then a timed restart.
fn report_restart() {
    let dir = bench_dir();
    let skus = 10_000_000u64;
    {
        let engine = durable_engine(2, dir.path());
        for start in (0..skus).step_by(50_000) {
            let requests = (start..start + 50_000)
                .map(|i| Request::SetStock { sku: sku(i), on_hand: 100, expected_version: None })
                .collect();
            engine.submit_batch_blocking(requests);
        }
        let began = Instant::now();
        futures::executor::block_on(engine.snapshot()).expect("snapshot");
        println!("snapshot of 10M SKUs written in {:.2} s", began.elapsed().as_secs_f64());
    }
    let config = EngineConfig { shards: 2, ..EngineConfig::default() };
    let began = Instant::now();
    let (engine, _) = Engine::open(config, StoreConfig::new(dir.path()), Arc::new(SystemClock), &Default::default())
        .expect("recovers");
    let elapsed = began.elapsed();
    assert_eq!(engine.read_view().sku_count() as u64, skus);
    println!("restart with 10M SKUs from a snapshot: {:.2} s (until ready to serve)", elapsed.as_secs_f64());
}

/// How long capturing a snapshot pauses a shard holding many reservations.
fn report_capture() {
    for reservations in [1_000_000usize, 5_000_000] {
        let dir = bench_dir();
        let no_snapshots =
            StoreConfig { snapshot_every_bytes: u64::MAX, fsync: FsyncPolicy::Never, ..StoreConfig::new(dir.path()) };
        let engine = durable_engine_with(1, no_snapshots);
        for _ in 0..reservations / BATCH {
            engine.submit_batch_blocking(requests().0);
        }
        futures::executor::block_on(engine.snapshot()).expect("snapshot");
        let capture = engine.stats()[0].snapshot_capture_us.read();
        let longest = capture.buckets.iter().rev().find(|(_, count)| *count > 0).map_or(0, |(bound, _)| *bound);
        println!(
            "snapshot capture with {reservations} held reservations: {} slices, {:.0} ms in all, \
             longest slice under {:.1} ms",
            capture.count,
            capture.sum as f64 / 1e3,
            longest as f64 / 1e3
        );
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    wal_append_sync(&mut criterion);
    durable(&mut criterion);
    criterion.final_summary();
    let filters: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|filter| filter == name);
    if selected("fsync") {
        report_fsync();
    }
    if selected("latency") {
        report_latency();
    }
    if selected("replay") {
        report_replay();
    }
    if selected("restart") {
        report_restart();
    }
    if selected("capture") {
        report_capture();
    }
}

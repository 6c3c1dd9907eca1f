//! What both benchmark binaries submit the same way.

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Throughput};
use stockd_engine::{Engine, Request};

/// Batch submitters in flight at once in the `_callers` variants (an HTTP
/// front end has one per `/v1/batch` request being served).
const CALLERS: usize = 4;

/// Benchmarks `name` with one caller, then `name_{CALLERS}_callers` with
/// CALLERS at once; each caller's batch of reserves and commits comes from
/// `requests` (made before the timed part), `batch` reservations long.
pub fn bench_batches_by_callers(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    engine: &Engine,
    batch: usize,
    mut requests: impl FnMut() -> (Vec<Request>, Vec<Request>),
) {
    for callers in [1, CALLERS] {
        let name = match callers {
            1 => name.to_owned(),
            _ => format!("{name}_{callers}_callers"),
        };
        group.throughput(Throughput::Elements((callers * batch) as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || (0..callers).map(|_| requests()).collect(),
                |work| reserve_then_commit_batches(engine, work),
                BatchSize::LargeInput,
            )
        });
    }
}

/// Each caller submits its batch of reserves, then (once they are answered)
/// their commits; the callers' batches are in flight at the same time.
fn reserve_then_commit_batches(engine: &Engine, work: Vec<(Vec<Request>, Vec<Request>)>) {
    let callers = work.into_iter().map(|(reserves, commits)| async move {
        assert!(engine.submit_batch(reserves).await.iter().all(Result::is_ok));
        assert!(engine.submit_batch(commits).await.iter().all(Result::is_ok));
    });
    futures::executor::block_on(futures::future::join_all(callers));
}

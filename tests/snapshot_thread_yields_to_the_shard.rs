//! Snapshot threads run at a lower priority than the shards, the syncers
//! and the HTTP workers (nice `SNAPSHOT_THREAD_NICE`), so that on a busy
//! machine a snapshot takes what CPU they leave. Linux only: the nice value
//! is read from `/proc/self/task/*/stat`.

use std::sync::Arc;
use stockd_engine::{Engine, EngineConfig, ManualClock, StoreConfig, SNAPSHOT_THREAD_NICE};
use stockd_wal::MemStorage;

/// The nice value of every thread of this process whose name starts with
/// `prefix`.
fn nice_of_threads_named(prefix: &str) -> Vec<i32> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("Linux has /proc") {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // Fields after the parenthesised name: state is field 3, nice 19.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = after_name.split(' ').nth(19 - 3).unwrap().parse().unwrap();
        nices.push(nice);
    }
    nices
}

#[test]
fn snapshot_threads_run_below_the_shards() {
    let storage = MemStorage::new();
    let segment_bytes_max = stockd_wal::SEGMENT_BYTES_MIN;
    let store = StoreConfig { storage: storage.clone(), lock: false, segment_bytes_max, ..StoreConfig::new("/data") };
    let config = EngineConfig { shards: 2, ..EngineConfig::default() };
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (engine, _) = Engine::open(config, store, clock, &Default::default()).expect("opens");
    // A snapshot written by every shard: each snapshot thread has begun.
    futures::executor::block_on(engine.snapshot()).expect("snapshots are written");
    assert_eq!(nice_of_threads_named("stockd-snap-"), vec![SNAPSHOT_THREAD_NICE; 2]);
    let shards = nice_of_threads_named("stockd-shard-");
    assert_eq!(shards.len(), 2);
    assert!(shards.iter().all(|&nice| nice < SNAPSHOT_THREAD_NICE), "shards at {shards:?}");
    engine.shutdown();
}

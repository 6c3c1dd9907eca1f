//! Injected I/O faults through the fault-injecting storage: a failing
//! fsync or write poisons the log; from the moment the failure is known no
//! request is acknowledged (every shard answers `storage_failed`, nobody is
//! left waiting); after a power cut the restart recovers the durable
//! prefix, which holds everything that was acknowledged.

mod common;

use common::{adjust, shop, shop_batched, stock_up, verify, Knowledge, Rng, Stopped, SKUS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use stockd_engine::{Engine, EngineConfig, Rejection, Request, Sku, StoreConfig, StoreError, SystemClock};
use stockd_wal::{MemStorage, Storage};

const SHARDS: usize = 3;

const WORKERS: u64 = 4;
/// Acknowledgements before the fault is injected.
const ACKS_BEFORE_FAULT: u64 = 300;

/// Boots of the pretend machine: every open here follows a power cut.
static BOOTS: AtomicU64 = AtomicU64::new(0);

fn store_booted(storage: &Arc<MemStorage>, boot: &str) -> StoreConfig {
    StoreConfig {
        storage: storage.clone(),
        lock: false,
        segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN,
        snapshot_every_bytes: 128 << 10,
        boot_id: Some(boot.to_owned()),
        ..StoreConfig::new("/data")
    }
}

fn open_booted(storage: &Arc<MemStorage>, boot: &str) -> Result<Engine, StoreError> {
    let config = EngineConfig { shards: SHARDS, ..EngineConfig::default() };
    Engine::open(config, store_booted(storage, boot), Arc::new(SystemClock), &Default::default())
        .map(|(engine, _)| engine)
}

/// Opens in a new boot. Recovery must always succeed: any failure here
/// fails the test.
fn open(storage: &Arc<MemStorage>) -> Engine {
    open_booted(storage, &format!("boot-{}", BOOTS.fetch_add(1, Ordering::SeqCst))).expect("recovers")
}

fn fault_then_crash(inject: impl FnOnce(&MemStorage)) {
    let storage = MemStorage::new();
    let engine = Arc::new(open(&storage));
    stock_up(&engine);
    let knowledge = Arc::new(Mutex::new(Knowledge::default()));
    let acks = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..=WORKERS)
        .map(|worker| {
            let (engine, knowledge, acks) = (Arc::clone(&engine), Arc::clone(&knowledge), Arc::clone(&acks));
            std::thread::spawn(move || {
                // Whether the failure was already known when the request now
                // in flight was submitted (each TRY precedes its submission).
                let mut failed_at_submit = false;
                let mut report = |line: String| {
                    if line.starts_with("TRY ") {
                        failed_at_submit = engine.failure().is_some();
                    }
                    assert!(!(failed_at_submit && line.starts_with("ACK ")), "acknowledged after the failure: {line}");
                    acks.fetch_add(u64::from(line.starts_with("ACK ")), Ordering::SeqCst);
                    knowledge.lock().unwrap().learn(&line);
                };
                let mut rng = Rng(0x5eed ^ worker);
                let stopped = if worker == WORKERS {
                    adjust(&engine, 1_000_000, &mut report)
                } else {
                    shop(&engine, &format!("w{worker}"), &mut rng, 1_000_000, &mut report)
                };
                assert!(matches!(stopped, Err(Stopped::StorageFailed)), "every worker ran into the failure");
            })
        })
        .collect();
    // Bounded: the workers acknowledge hundreds of requests per millisecond.
    for _ in 0..100_000_000u64 {
        if acks.load(Ordering::SeqCst) >= ACKS_BEFORE_FAULT {
            break;
        }
        std::thread::yield_now();
    }
    assert!(acks.load(Ordering::SeqCst) >= ACKS_BEFORE_FAULT, "the load got going");
    inject(&storage);
    for worker in workers {
        worker.join().expect("a worker panicked");
    }
    let failure = engine.failure().expect("the failure is reported");
    assert!(failure.contains("injected"), "{failure}");
    // Every shard refuses, not only the one whose storage failed.
    let skus: Vec<String> = (0..SKUS).map(|i| format!("sku-{i}")).collect();
    let shards: std::collections::BTreeSet<usize> = skus.iter().map(|sku| engine.shard_of_sku(sku)).collect();
    assert_eq!(shards.len(), SHARDS, "the SKUs cover every shard");
    for sku in &skus {
        let after = engine.submit_blocking(Request::GetSku { sku: Sku::new(sku).unwrap() });
        assert!(matches!(after, Err(Rejection::StorageFailed { .. })), "{sku} still refusing: {after:?}");
    }
    drop(engine);

    storage.crash();
    let engine = open(&storage);
    let knowledge = knowledge.lock().unwrap();
    assert!(knowledge.acknowledged_holds() > 0);
    verify(&engine, &knowledge, "after the fault and a power cut");
}

#[test]
fn a_failed_fsync_poisons_the_log_and_recovery_keeps_every_acknowledged_answer() {
    fault_then_crash(|storage| storage.fail_sync_after(1));
}

#[test]
fn a_failed_write_poisons_the_log_and_recovery_keeps_every_acknowledged_answer() {
    fault_then_crash(|storage| storage.fail_write_after(1));
}

#[test]
fn a_failed_fsync_that_drops_pages_is_never_retried_and_recovery_keeps_every_acknowledged_answer() {
    // Linux after a writeback error: that fsync fails, the dirty pages are
    // gone, and the next fsync would say yes.
    fault_then_crash(|storage| storage.fail_sync_once());
}

/// After a failed fsync, a start in the same boot would read back pages
/// the kernel still caches but the disk may not have: it is refused, naming
/// the failure, until a reboot; the start after the reboot recovers and
/// removes the record of the failure.
#[test]
fn a_start_in_the_boot_of_a_failed_fsync_is_refused_until_a_reboot() {
    let storage = MemStorage::new();
    let engine = open_booted(&storage, "boot-a").expect("a new directory opens");
    stock_up(&engine);
    storage.fail_sync_once();
    let mut result = Ok(());
    for i in 0..1_000 {
        let request = Request::AdjustStock { sku: Sku::new("sku-1").unwrap(), delta: 1 };
        if let Err(rejection) = engine.submit_blocking(request) {
            result = Err(rejection);
            break;
        }
        assert!(i < 999, "the injected fsync failure stops the log");
    }
    assert!(matches!(result, Err(Rejection::StorageFailed { .. })), "{result:?}");
    engine.shutdown();
    drop(engine);
    let marker = std::path::Path::new("/data").join(stockd_engine::FAILURE_MARKER);
    assert!(storage.exists(&marker), "the failure is recorded in the data directory");

    match open_booted(&storage, "boot-a") {
        Err(StoreError::FailedThisBoot { reason, .. }) => assert!(reason.contains("injected"), "{reason}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("started in the boot whose fsync failed"),
    }
    // A reboot (the marker, never synced, happened to reach the disk).
    let engine = open_booted(&storage, "boot-b").expect("starts after the reboot");
    assert!(!storage.exists(&marker), "the record of the failure is removed");
    engine.submit_blocking(Request::AdjustStock { sku: Sku::new("sku-1").unwrap(), delta: 1 }).expect("serves");
}

/// Power cuts in the middle of load. The disk keeps what was synced and,
/// as real disks may, a random subset of the rest: unsynced directory
/// entries (half-created segments, snapshot temp files) and unsynced 4 KiB
/// pages, in any order (so torn records with valid unsynced records after
/// them). Every acknowledged answer must survive, and the directory must
/// start.
#[test]
fn power_cuts_keeping_random_unsynced_pages_keep_every_acknowledged_answer() {
    let rounds: u64 = std::env::var("STOCKD_POWER_CUTS").ok().and_then(|n| n.parse().ok()).unwrap_or(12);
    let storage = MemStorage::new();
    stock_up(&open(&storage));
    let knowledge = Arc::new(Mutex::new(Knowledge::default()));
    let mut rng = Rng(0x00c0_ffee_1234_5678);
    for round in 0..rounds {
        let engine = Arc::new(open(&storage));
        verify(&engine, &knowledge.lock().unwrap(), &format!("after power cut {round}"));
        let acks = Arc::new(AtomicU64::new(0));
        // Every fourth round runs long enough to rotate segments, snapshot
        // and recycle covered segments into spares before its cut.
        let target = if round % 4 == 3 { 20_000 } else { 50 + rng.below(600) };
        let workers: Vec<_> = (0..=WORKERS)
            .map(|worker| {
                let (engine, knowledge, acks) = (Arc::clone(&engine), Arc::clone(&knowledge), Arc::clone(&acks));
                std::thread::spawn(move || {
                    let mut report = |line: String| {
                        acks.fetch_add(u64::from(line.starts_with("ACK ")), Ordering::SeqCst);
                        knowledge.lock().unwrap().learn(&line);
                    };
                    let mut rng = Rng(0xfeed ^ (round << 8) ^ worker);
                    // Runs until the frozen disk fails it.
                    let prefix = format!("p{round}-w{worker}");
                    let _ = match worker {
                        WORKERS => adjust(&engine, 1_000_000, &mut report),
                        0 => shop_batched(&engine, &prefix, &mut rng, 1_000_000, 100, &mut report),
                        _ => shop(&engine, &prefix, &mut rng, 1_000_000, &mut report),
                    };
                })
            })
            .collect();
        for _ in 0..100_000_000u64 {
            if acks.load(Ordering::SeqCst) >= target {
                break;
            }
            std::thread::yield_now();
        }
        storage.freeze();
        for worker in workers {
            worker.join().expect("a worker panicked");
        }
        drop(engine);
        let (mut entries, mut pages) = (Rng(rng.below(u64::MAX) | 1), Rng(rng.below(u64::MAX) | 1));
        storage.crash_with(|_| entries.below(2) == 0, |_, _| pages.below(2) == 0);
    }
    let engine = open(&storage);
    let knowledge = knowledge.lock().unwrap();
    verify(&engine, &knowledge, "after the last power cut");
    assert!(knowledge.acknowledged_holds() > 0);
}

/// A snapshot the disk cannot read back (a bad sector's EIO) is passed
/// over like a damaged one: the start recovers every change from the
/// snapshot before it and the log after that, and names the unreadable one.
#[test]
fn an_unreadable_newest_snapshot_falls_back_to_the_one_before_it() {
    let storage = MemStorage::new();
    let store = StoreConfig {
        storage: storage.clone(),
        lock: false,
        segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN,
        ..StoreConfig::new("/data")
    };
    let config = EngineConfig { shards: 1, ..EngineConfig::default() };
    let open = || Engine::open(config, store.clone(), Arc::new(SystemClock), &Default::default());
    let set = |engine: &Engine, round: u64| {
        let request = Request::SetStock {
            sku: Sku::new(&format!("sku-{round}")).unwrap(),
            on_hand: round,
            expected_version: None,
        };
        engine.submit_blocking(request).expect("durable");
    };
    {
        let (engine, _) = open().expect("a new directory opens");
        for round in 1..=3 {
            set(&engine, round);
            futures::executor::block_on(engine.snapshot()).expect("snapshot");
        }
        set(&engine, 4);
    }
    let shard_dir = stockd_engine::store::shard_dir(std::path::Path::new("/data"), 0);
    let snapshots = stockd_wal::list_snapshots(&*storage, &shard_dir).unwrap();
    assert_eq!(snapshots.len(), 2, "the newest and the one before it are kept");
    storage.fail_reads_of(&snapshots[0].path);

    let (engine, report) = open().expect("the snapshot before the unreadable one serves");
    let shard = &report.shards[0];
    assert_eq!(shard.snapshot_lsn, Some(snapshots[1].lsn), "recovered from the older snapshot");
    assert_eq!(shard.snapshots_passed_over.len(), 1, "{:?}", shard.snapshots_passed_over);
    let passed_over = &shard.snapshots_passed_over[0];
    assert!(passed_over.contains(snapshots[0].path.to_str().unwrap()) && passed_over.contains("read"), "{passed_over}");
    for round in 1..=4 {
        let counts = engine.read_view().get(&format!("sku-{round}")).expect("every change recovered");
        assert_eq!(counts.on_hand, round);
    }
}

//! The same history reached three ways must be the same state, compared
//! whole (SKU table, every reservation with its sequence number and
//! pending timer), not just counts:
//! 1. the live engine's state;
//! 2. the newest snapshot plus the log after it (what a restart does);
//! 3. the full log from LSN 1 with no snapshot at all.
//!
//! The history mixes every command: stock changes, carts on one shard and
//! across shards, commits, releases, expiries and forgotten reservations
//! (the clock advances), with snapshots taken at random points.

use std::path::Path;
use std::sync::Arc;
use stockd_engine::snapshot::StateImage;
use stockd_engine::{
    tools, CartLine, Engine, EngineConfig, ManualClock, Request, ReservationId, ReserveRequest, Sku, StoreConfig,
};
use stockd_wal::FsStorage;

const SHARDS: usize = 3;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn sku(i: u64) -> Sku {
    Sku::new(&format!("sku-{i}")).unwrap()
}

fn normalized(images: Vec<StateImage>) -> Vec<StateImage> {
    // Shard time of a live shard runs ahead of its last record's; the rest
    // of the state must be identical.
    images.into_iter().map(|image| StateImage { now_ms: 0, ..image.canonical() }).collect()
}

fn copy_without_snapshots(from: &Path, to: &Path) {
    for entry in walk(from) {
        let relative = entry.strip_prefix(from).unwrap();
        let name = relative.file_name().unwrap().to_str().unwrap();
        if name.starts_with("snapshot-") || name == "LOCK" {
            continue;
        }
        std::fs::create_dir_all(to.join(relative).parent().unwrap()).unwrap();
        std::fs::copy(&entry, to.join(relative)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn snapshot_plus_replay_equals_full_replay_equals_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let store = StoreConfig {
        segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN,
        snapshot_every_bytes: 64 << 10,
        ..StoreConfig::new(dir.path())
    };
    // One-slot capture slices: each snapshot is copied over many loop turns,
    // with requests applied between its slices.
    let config = EngineConfig { shards: SHARDS, retention_ms: 20_000, capture_slice: 1, ..EngineConfig::default() };
    let (engine, _) = Engine::open(config, store, clock.clone(), &Default::default()).unwrap();
    for shard in 0..SHARDS {
        engine.retain_log_from(shard, 1); // keep the whole log for the full replay
    }
    let mut rng = Rng(0x51ab_1e5e_ed00_0001);
    let stock = (0..12).map(|i| Request::SetStock { sku: sku(i), on_hand: 500, expected_version: None }).collect();
    assert!(engine.submit_batch_blocking(stock).iter().all(Result::is_ok));
    std::thread::scope(|scope| {
        let mut concurrent_snapshot = None;
        for step in 0..6_000u64 {
            let id = ReservationId::new(&format!("cart-{}", rng.below(3_000))).unwrap();
            let request = match rng.below(10) {
                0..=3 => {
                    let lines = (0..1 + rng.below(3)).map(|_| rng.below(12)).collect::<std::collections::BTreeSet<_>>();
                    let lines =
                        lines.into_iter().map(|s| CartLine { sku: sku(s), qty: 1 + rng.below(4) as u32 }).collect();
                    Request::Reserve(ReserveRequest { id, lines, ttl_ms: Some(1_000 + rng.below(9_000)) })
                }
                4 | 5 => Request::Commit { id },
                6 => Request::Release { id },
                7 => Request::AdjustStock { sku: sku(rng.below(12)), delta: rng.below(20) as i64 - 5 },
                8 => {
                    Request::SetStock { sku: sku(rng.below(12)), on_hand: 200 + rng.below(600), expected_version: None }
                }
                _ => {
                    clock.advance_ms(rng.below(1_500));
                    continue;
                }
            };
            let _ = engine.submit_blocking(request);
            if step % 1_000 == 999 && step < 4_000 {
                futures::executor::block_on(engine.snapshot()).expect("snapshot written");
            }
            if step >= 4_000 && concurrent_snapshot.is_none() {
                // The last snapshots (this one, and any the log's growth starts
                // later) are captured while requests keep coming.
                let engine = &engine;
                concurrent_snapshot = Some(scope.spawn(move || futures::executor::block_on(engine.snapshot())));
            }
        }
        concurrent_snapshot.expect("requested").join().expect("no panic").expect("snapshot written");
    });
    // Let every shard tick at the final time and every part hear its home.
    for _ in 0..3 {
        futures::executor::block_on(engine.audit()).unwrap();
    }
    let live = normalized(futures::executor::block_on(engine.capture_states()).unwrap());
    assert!(engine.stats().iter().all(|stats| stats.snapshots.load(std::sync::atomic::Ordering::Relaxed) > 0));
    engine.shutdown();
    drop(engine);

    let from_snapshot = normalized(tools::load_states(&FsStorage, dir.path()).unwrap());
    let full = tempfile::tempdir().unwrap();
    copy_without_snapshots(dir.path(), full.path());
    let from_log = normalized(tools::load_states(&FsStorage, full.path()).unwrap());
    assert!(live.iter().map(|image| image.reservations.len()).sum::<usize>() > 100, "the history left reservations");
    for shard in 0..SHARDS {
        assert_eq!(from_snapshot[shard], live[shard], "shard {shard}: snapshot + replay differs from the live state");
        assert_eq!(from_log[shard], live[shard], "shard {shard}: the full log differs from the live state");
    }
}

/// A snapshot asked for while another is being captured waits for a fresh
/// one; if the engine stops first, the stopping shard's last capture
/// answers it too (it is not left to `shutting_down`), and a restart loads
/// that snapshot.
#[test]
fn a_snapshot_asked_for_during_a_capture_is_written_when_the_engine_stops() {
    let dir = tempfile::tempdir().unwrap();
    // One slot per slice and an idle shard's pace of one slice per
    // millisecond: capturing 5,000 SKUs takes seconds, so it is surely
    // still going when the second request and the stop arrive.
    let config = EngineConfig { shards: 1, capture_slice: 1, ..EngineConfig::default() };
    let open =
        || Engine::open(config, StoreConfig::new(dir.path()), Arc::new(ManualClock::new(1_000)), &Default::default());
    let (engine, _) = open().unwrap();
    let stock = (0..5_000).map(|i| Request::SetStock { sku: sku(i), on_hand: 7, expected_version: None }).collect();
    assert!(engine.submit_batch_blocking(stock).iter().all(Result::is_ok));
    let mut first = Box::pin(engine.snapshot());
    assert!(futures::executor::block_on(async { futures::poll!(&mut first) }).is_pending());
    // Bounded wait for the capture's first slice (the shard reports each).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while engine.stats()[0].snapshot_capture_us.read().count == 0 {
        assert!(std::time::Instant::now() < deadline, "the capture never began");
        std::thread::yield_now();
    }
    let mut second = Box::pin(engine.snapshot());
    assert!(futures::executor::block_on(async { futures::poll!(&mut second) }).is_pending(), "sent, not yet answered");
    engine.shutdown();
    assert_eq!(futures::executor::block_on(first), Ok(()));
    assert_eq!(futures::executor::block_on(second), Ok(()));
    drop(engine);
    let (_, report) = open().unwrap();
    assert_eq!(report.shards[0].records_replayed, 0, "the snapshot covers the whole log");
}

//! Damage in the middle of the log is not a torn tail: a flipped byte in a
//! record followed by valid (durable) records, or in a shard's only usable
//! snapshot, makes the start refuse with a message naming the file and
//! byte offset (a damaged newest snapshot falls back to the one before it), and
//! `tools::verify` (`stockd wal verify`) reports the same place. A valid
//! record that changes nothing is refused too.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stockd_engine::{
    tools, CartLine, Engine, EngineConfig, FsyncPolicy, ManualClock, Request, ReservationId, ReserveRequest, Sku,
    StoreConfig, StoreError,
};
use stockd_wal::format::{read_frame, Frame, SEGMENT_HEADER_LEN};
use stockd_wal::{FsStorage, LogOptions, LogWriter, WalError};

fn open(dir: &Path) -> Result<Engine, StoreError> {
    let store = StoreConfig { segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN, ..StoreConfig::new(dir) };
    let config = EngineConfig { shards: 1, ..EngineConfig::default() };
    Engine::open(config, store, Arc::new(ManualClock::new(1_000_000)), &Default::default()).map(|(engine, _)| engine)
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("shard-00"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    files
}

/// Offsets of every record in a segment.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let Frame::Record { next, .. } = read_frame(bytes, at) {
        offsets.push(at);
        at = next;
    }
    offsets
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn write_history(dir: &Path) {
    let engine = open(dir).unwrap();
    for i in 0..20 {
        let request =
            Request::SetStock { sku: Sku::new(&format!("sku-{i}")).unwrap(), on_hand: 5, expected_version: None };
        engine.submit_blocking(request).unwrap();
    }
}

#[test]
fn a_flipped_byte_in_a_middle_record_refuses_to_start_and_names_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let segment = files(dir.path(), "wal").pop().unwrap();
    let offsets = record_offsets(&std::fs::read(&segment).unwrap());
    assert_eq!(offsets.len(), 20);
    let damaged = offsets[7];
    flip(&segment, damaged + 40);

    let error = open(dir.path()).err().expect("a damaged log must not start");
    let message = error.to_string();
    assert!(
        matches!(&error, StoreError::Wal(WalError::Corrupt { path, offset, .. }) if *path == segment && *offset == damaged as u64),
        "{message}"
    );
    assert!(message.contains(&format!("byte offset {damaged}")) && message.contains("stockd wal verify"), "{message}");

    let checks = tools::verify(&FsStorage, dir.path()).unwrap();
    assert!(
        matches!(&checks[0].error, Some(StoreError::Wal(WalError::Corrupt { offset, .. })) if *offset == damaged as u64)
    );

    // The runbook's salvage: everything before the damaged record (LSN 8)
    // into a new directory, which starts and serves it.
    let salvaged = dir.path().join("salvaged");
    let stopped = tools::replay_into(&FsStorage, dir.path(), &salvaged, tools::ReplayBound::Lsn(7)).unwrap();
    assert_eq!(stopped, [7]);
    let engine = open(&salvaged).expect("the salvaged directory starts");
    let kept: Vec<bool> = (0..20).map(|i| engine.read_view().get(&format!("sku-{i}")).is_some()).collect();
    assert_eq!(kept, (0..20).map(|i| i < 7).collect::<Vec<_>>(), "exactly the records before the damage");
}

#[test]
fn a_flipped_byte_in_the_snapshot_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    {
        let engine = open(dir.path()).unwrap();
        futures::executor::block_on(engine.snapshot()).unwrap();
    }
    let snapshot = files(dir.path(), "snap").pop().expect("a snapshot was written");
    flip(&snapshot, 100);
    let error = open(dir.path()).err().expect("a damaged snapshot must not start");
    assert!(error.to_string().contains(snapshot.to_str().unwrap()), "{error}");
    assert!(tools::verify(&FsStorage, dir.path()).unwrap()[0].error.is_some());
}

/// A shard keeps its two newest snapshots and the log after the older: a
/// damaged newest snapshot is passed over, the start recovers the same
/// state from the one before it and says so, and `wal verify` still
/// reports the damage. With the older one damaged too, the start refuses,
/// naming the newest.
#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_one_before_it() {
    const ROUND: usize = 15_000;
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    {
        let engine = open(dir.path()).unwrap();
        // Enough records between snapshots to fill several 1 MiB segments:
        // the log the older snapshot needs spans segments the newest covers.
        for round in 0..3 {
            futures::executor::block_on(engine.snapshot()).unwrap();
            let requests = (0..ROUND)
                .map(|i| Request::SetStock {
                    sku: Sku::new(&format!("sku-{round}-{i}")).unwrap(),
                    on_hand: 5,
                    expected_version: None,
                })
                .collect();
            assert!(engine.submit_batch_blocking(requests).iter().all(Result::is_ok));
        }
    }
    assert!(files(dir.path(), "wal").len() > 2, "the log rotated");
    let snapshots = files(dir.path(), "snap");
    assert_eq!(snapshots.len(), 2, "the newest two of three are kept: {snapshots:?}");
    let (older, newest) = (&snapshots[0], &snapshots[1]);
    flip(newest, 100);

    let store = StoreConfig { segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN, ..StoreConfig::new(dir.path()) };
    let config = EngineConfig { shards: 1, ..EngineConfig::default() };
    let clock = Arc::new(ManualClock::new(1_000_000));
    let open_with_report = || Engine::open(config, store.clone(), clock.clone(), &Default::default());
    let (engine, report) = open_with_report().expect("the older snapshot serves");
    let shard = &report.shards[0];
    assert_eq!(shard.snapshots_passed_over.len(), 1);
    assert!(shard.snapshots_passed_over[0].contains(newest.to_str().unwrap()), "{:?}", shard.snapshots_passed_over);
    assert_eq!(shard.snapshot_lsn, Some(20 + ROUND as u64), "the second snapshot");
    assert_eq!(shard.records_replayed, 2 * ROUND as u64, "the log after it, across segments");
    let skus = (0..20).map(|i| format!("sku-{i}"));
    let skus = skus.chain((0..3).flat_map(|round| (0..ROUND).map(move |i| format!("sku-{round}-{i}"))));
    assert!(skus.into_iter().all(|sku| engine.read_view().get(&sku).is_some_and(|c| c.on_hand == 5)), "every record");
    let checks = tools::verify(&FsStorage, dir.path()).unwrap();
    let recovered = checks[0].recovered.as_ref().expect("recoverable");
    assert_eq!(recovered.snapshots_passed_over.len(), 1, "verify reports the damage");

    // The next snapshot keeps the one this start recovered from, not the
    // damaged one between them: damaged as well, the start still recovers.
    futures::executor::block_on(engine.snapshot()).unwrap();
    drop(engine);
    let latest = files(dir.path(), "snap").pop().unwrap();
    assert_ne!(&latest, newest);
    flip(&latest, 100);
    let (engine, report) = open_with_report().expect("the snapshot recovered from earlier serves again");
    assert_eq!(report.shards[0].snapshot_lsn, Some(20 + ROUND as u64));
    assert_eq!(report.shards[0].snapshots_passed_over.len(), 2, "{:?}", report.shards[0].snapshots_passed_over);
    drop(engine);

    flip(older, 100);
    let error = open(dir.path()).err().expect("no usable snapshot: never a replay from nothing past them");
    let message = error.to_string();
    assert!(message.contains(latest.to_str().unwrap()), "names the newest: {message}");
}

/// Damage in the fallback (the older snapshot, or the log after it) does
/// not stop a start, which uses the newest snapshot, but `wal verify`
/// reports it: the next damaged snapshot would have nothing to fall back on.
#[test]
fn damage_in_the_fallback_is_reported_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    {
        let engine = open(dir.path()).unwrap();
        futures::executor::block_on(engine.snapshot()).unwrap();
        // More than a 1 MiB segment of records between the two snapshots:
        // a start reads none of the segments before the newest one's.
        let requests = (0..15_000)
            .map(|i| Request::SetStock {
                sku: Sku::new(&format!("between-{i}")).unwrap(),
                on_hand: 1,
                expected_version: None,
            })
            .collect();
        assert!(engine.submit_batch_blocking(requests).iter().all(Result::is_ok));
        futures::executor::block_on(engine.snapshot()).unwrap();
    }
    let fallback_damage = |dir: &Path| {
        let checks = tools::verify(&FsStorage, dir).unwrap();
        assert!(checks[0].error.is_none(), "{:?}", checks[0].error);
        checks[0].fallback_damage.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    assert_eq!(fallback_damage(dir.path()), Vec::<String>::new(), "healthy");

    // A record after the older snapshot (LSN 20) that only a fallback reads.
    assert!(files(dir.path(), "wal").len() > 1, "the log rotated");
    let segment = files(dir.path(), "wal").remove(0);
    let between = record_offsets(&std::fs::read(&segment).unwrap())[25];
    flip(&segment, between + 40);
    drop(open(dir.path()).expect("a start uses the newest snapshot"));
    let damage = fallback_damage(dir.path());
    assert!(damage.len() == 1 && damage[0].contains(&format!("byte offset {between}")), "{damage:?}");
    flip(&segment, between + 40);

    let snapshots = files(dir.path(), "snap");
    assert_eq!(snapshots.len(), 2);
    flip(&snapshots[0], 100);
    drop(open(dir.path()).expect("a start uses the newest snapshot"));
    let damage = fallback_damage(dir.path());
    assert!(damage.len() == 1 && damage[0].contains(snapshots[0].to_str().unwrap()), "{damage:?}");
}

#[test]
fn a_healthy_directory_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let checks = tools::verify(&FsStorage, dir.path()).unwrap();
    let recovered = checks[0].recovered.as_ref().expect("healthy");
    assert_eq!((recovered.records_replayed, recovered.torn_tail.as_ref()), (20, None));
}

/// A data directory whose manifest names more shard directories than exist
/// lost data (a directory entry that never reached the disk, an operator's
/// rm): the start, `wal verify` and `wal replay` refuse it instead of
/// reading that shard as empty.
#[test]
fn a_missing_shard_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig { segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN, ..StoreConfig::new(dir.path()) };
    let config = EngineConfig { shards: 2, ..EngineConfig::default() };
    let clock = Arc::new(ManualClock::new(1_000_000));
    drop(Engine::open(config, store.clone(), clock.clone(), &Default::default()).unwrap());
    std::fs::remove_dir_all(dir.path().join("shard-01")).unwrap();
    let error =
        Engine::open(config, store, clock, &Default::default()).err().expect("a missing shard must not start empty");
    assert!(error.to_string().contains("shard-01") && error.to_string().contains("missing"), "{error}");
    let verified = tools::verify(&FsStorage, dir.path()).expect_err("verify refuses");
    assert!(verified.to_string().contains("shard-01"), "{verified}");
    let target = dir.path().with_extension("replayed");
    let replayed =
        tools::replay_into(&FsStorage, dir.path(), &target, tools::ReplayBound::End).expect_err("replay refuses");
    assert!(replayed.to_string().contains("shard-01"), "{replayed}");
    assert!(!target.exists(), "no partial copy");
}

/// A well-formed, checksummed record that changes nothing (here a second
/// copy of a commit) means the log and the state disagree: a start, `wal
/// verify` and `wal replay` all refuse it, naming the LSN.
#[test]
fn a_record_that_changes_nothing_is_refused_by_start_verify_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path()).unwrap();
        let sku = Sku::new("sku-0").unwrap();
        engine.submit_blocking(Request::SetStock { sku: sku.clone(), on_hand: 5, expected_version: None }).unwrap();
        let id = ReservationId::new("r-1").unwrap();
        let lines = vec![CartLine { sku, qty: 1 }];
        engine.submit_blocking(Request::Reserve(ReserveRequest { id: id.clone(), lines, ttl_ms: None })).unwrap();
        engine.submit_blocking(Request::Commit { id }).unwrap();
    }
    let shard_dir = dir.path().join("shard-00");
    let mut commit = Vec::new();
    let scanned = stockd_wal::scan(&FsStorage, &shard_dir, 0, 0, |_, payload| {
        commit = payload.to_vec();
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    assert_eq!(scanned.records, 3);
    let options = LogOptions { shard: 0, segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN, spare_segments: false };
    let mut writer = LogWriter::open(Arc::new(FsStorage), &shard_dir, options, scanned.tail).unwrap();
    assert_eq!(writer.append(|buffer| buffer.extend_from_slice(&commit)), 4);
    writer.write().unwrap().sync().unwrap();
    drop(writer);

    let diverged = |error: &StoreError| matches!(error, StoreError::Replay { shard: 0, lsn: 4, .. });
    let error = open(dir.path()).err().expect("a log that disagrees with itself must not start");
    assert!(diverged(&error), "{error}");
    let checks = tools::verify(&FsStorage, dir.path()).unwrap();
    assert!(checks[0].error.as_ref().is_some_and(diverged), "{:?}", checks[0].error);
    let error = tools::replay_into(&FsStorage, dir.path(), &dir.path().join("copy"), tools::ReplayBound::End)
        .expect_err("replay refuses it too");
    assert!(diverged(&error), "{error}");
}

/// With fsync off nothing is ever claimed durable, so no later record
/// vouches for an earlier one: damage is a torn tail (the start keeps the
/// records before it), never corruption that refuses to start.
#[test]
fn with_fsync_off_damage_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig {
        segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN,
        fsync: FsyncPolicy::Never,
        ..StoreConfig::new(dir.path())
    };
    let config = EngineConfig { shards: 1, ..EngineConfig::default() };
    let open = || {
        Engine::open(config, store.clone(), Arc::new(ManualClock::new(1_000_000)), &Default::default())
            .map(|(engine, _)| engine)
    };
    {
        let engine = open().unwrap();
        for i in 0..5 {
            let request =
                Request::SetStock { sku: Sku::new(&format!("sku-{i}")).unwrap(), on_hand: 5, expected_version: None };
            engine.submit_blocking(request).unwrap();
        }
    }
    let segment = files(dir.path(), "wal").pop().unwrap();
    let offsets = record_offsets(&std::fs::read(&segment).unwrap());
    assert_eq!(offsets.len(), 5);
    flip(&segment, offsets[1] + 40);
    let engine = open().expect("a torn tail, not corruption");
    let kept: Vec<bool> = (0..5).map(|i| engine.read_view().get(&format!("sku-{i}")).is_some()).collect();
    assert_eq!(kept, [true, false, false, false, false]);
}

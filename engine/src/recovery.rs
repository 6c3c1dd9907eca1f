//! Opening a data directory: every shard loads its newest valid snapshot
//! and replays its log after it (shards in parallel), through the same
//! `apply` as live traffic. A replayed command that changes nothing means
//! replay diverged from the run that logged it, and recovery stops there.
//!
//! Then cross-shard carts are reconciled before any shard runs (in
//! particular before any tick): a held part away from home asks its home
//! (directly, all states are here) and follows what home decided while the
//! process was down; a part whose home has no record of the cart is an
//! orphan of an attempt the crash cut short and is aborted. These commands
//! are logged like any other. A cart is therefore never partly sold and
//! partly expired, however long the process was down.
//!
//! One case it cannot tell apart: home forgets a finished cart at its
//! forget time (deadline + retention, at least 10 minutes), and a part
//! learns the decision only after home's sync. If shard time jumps past
//! the forget time in between (the wall clock stepped forward, or the
//! process was paused that long) and the process then dies before the
//! part's copy of the decision is durable, home has no record and the
//! part is aborted although the cart may have been committed. Recovery
//! cannot know the decision; it aborts as for an orphan and lists such
//! parts (home's time past their forget time) in
//! `RecoveryReport::undecidable`, which the server logs as a warning.

use crate::clock::Clock;
use crate::codec;
use crate::command::{Command, ReservationState};
use crate::durable::{Failure, LogSetup, Logged};
use crate::engine::{Engine, EngineConfig, StoreHandles};
use crate::ids::ReservationId;
use crate::snapshot;
use crate::state::{AwayPart, Batch, ShardConfig, ShardState, WARM_WINDOW};
use crate::store::{prepare_layout, shard_dir, DirLock, FailureMarker, FsyncPolicy, StoreConfig, StoreError};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockd_wal::{
    list_snapshots, read_snapshot, scan, LogOptions, LogTail, LogWriter, SnapshotFile, Storage, WalError,
};

/// Records replayed between two updates of the shared progress counters.
const PROGRESS_STEP: u64 = 4_096;

/// Counters recovery advances as it goes, for a progress bar.
#[derive(Default)]
pub struct RecoveryProgress {
    /// Bytes of log segments to read (known before replay starts).
    pub bytes_total: AtomicU64,
    /// Bytes of log segments read so far.
    pub bytes_read: AtomicU64,
    /// Records replayed so far.
    pub records: AtomicU64,
}

/// What recovery did, for the log line an operator reads.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub shards: Vec<ShardRecovery>,
    /// Cross-shard parts finished or aborted after replay.
    pub reconciled: usize,
    /// Aborted parts whose home had passed their forget time: home may
    /// have forgotten a decision, commit included (see the module comment).
    pub undecidable: Vec<ReservationId>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct ShardRecovery {
    pub shard: u16,
    pub snapshot_lsn: Option<u64>,
    pub records_replayed: u64,
    /// The LSN the shard's next record gets.
    pub next_lsn: u64,
    /// A torn record cut from the log's tail: (file, offset, why).
    pub torn_tail: Option<(PathBuf, u64, &'static str)>,
    pub discarded_segment: Option<PathBuf>,
    /// Newer snapshots found damaged and passed over (the shard recovered
    /// from an older one and the log after it), each why.
    pub snapshots_passed_over: Vec<String>,
    pub skus: usize,
    pub holds: usize,
}

/// One shard's state after replay, with where its log ends.
pub(crate) struct Replayed {
    pub state: ShardState,
    pub tail: LogTail,
    pub now_ms: u64,
    pub report: ShardRecovery,
}

impl Engine {
    /// Opens (or creates) a data directory, recovers every shard, and starts
    /// the engine with the log on. The engine is ready when this returns.
    pub fn open(
        config: EngineConfig,
        store: StoreConfig,
        clock: Arc<dyn Clock>,
        progress: &RecoveryProgress,
    ) -> Result<(Engine, RecoveryReport), StoreError> {
        let began = Instant::now();
        let storage = Arc::clone(&store.storage);
        storage.create_dir_all(&store.data_dir).map_err(|e| WalError::io("create", &store.data_dir, e))?;
        let lock = if store.lock { Some(DirLock::acquire(&store.data_dir)?) } else { None };
        let marker = FailureMarker {
            storage: Arc::clone(&storage),
            data_dir: store.data_dir.clone(),
            boot_id: store.boot_id.clone(),
        };
        marker.check()?;
        // Recovery writes and syncs too (a cut tail, reconciled carts): a
        // failure there must stop the next start in this boot as well.
        let recovered = marker.recorded(recover(&store, config.shards, progress));
        let Recovered { replayed, writers, now_ms, reconciled, undecidable } = recovered?;
        // Recovered from what the disk holds (a reboot came between): a
        // failure recorded before is history now.
        marker.recorded(marker.clear())?;
        // One failure for the whole engine: after any shard's log fails,
        // no shard acknowledges anything (the process is expected to stop).
        let failure = Arc::new(Failure::new(marker));
        let retain: Vec<Arc<AtomicU64>> = (0..config.shards).map(|_| Arc::new(AtomicU64::new(u64::MAX))).collect();
        let reports: Vec<ShardRecovery> = replayed.iter().map(|replay| replay.report.clone()).collect();
        let mut states = Vec::with_capacity(config.shards);
        for replay in replayed {
            let mut state = replay.state;
            state.publish_now();
            states.push(state);
        }
        let mut writers = writers.into_iter().map(Some).collect::<Vec<_>>();
        let engine = Engine::launch(config, clock, states, now_ms, |shard, target, stats| {
            let setup = LogSetup {
                writer: writers[shard].take().expect("one writer per shard"),
                dir: shard_dir(&store.data_dir, shard),
                fsync: store.fsync,
                snapshot_every_bytes: store.snapshot_every_bytes,
                failure: Arc::clone(&failure),
                retain_from_lsn: Arc::clone(&retain[shard]),
                recovered_from_snapshot: reports[shard].snapshot_lsn,
            };
            Box::new(Logged::start(setup, shard as u16, target, stats))
        });
        engine.attach_store(StoreHandles { failure, retain_from_lsn: retain, _lock: lock, data_dir: store.data_dir });
        let report = RecoveryReport { shards: reports, reconciled, undecidable, elapsed: began.elapsed() };
        Ok((engine, report))
    }
}

/// Replays every shard, each on its own thread.
fn replay_all(
    storage: &dyn Storage,
    store: &StoreConfig,
    shards: usize,
    progress: &RecoveryProgress,
) -> Result<Vec<Replayed>, StoreError> {
    for shard in 0..shards {
        for segment in stockd_wal::list_segments(storage, &shard_dir(&store.data_dir, shard))? {
            let len = storage.len(&segment.path).unwrap_or(0);
            progress.bytes_total.fetch_add(len, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..shards)
            .map(|shard| {
                std::thread::Builder::new()
                    .name(format!("stockd-replay-{shard}"))
                    .spawn_scoped(scope, move || replay_shard(storage, &store.data_dir, shard as u16, progress))
                    .expect("the OS can start a replay thread")
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().expect("a replay thread panicked")).collect()
    })
}

/// Loads the newest usable snapshot of `shard` and replays its log after it.
pub(crate) fn replay_shard(
    storage: &dyn Storage,
    data_dir: &std::path::Path,
    shard: u16,
    progress: &RecoveryProgress,
) -> Result<Replayed, StoreError> {
    let dir = shard_dir(data_dir, usize::from(shard));
    let LoadedSnapshot { mut state, file, mut now_ms, passed_over } = load_snapshot(storage, &dir, shard, |_, _| true)?;
    let snapshot_lsn = file.map(|file| file.lsn);
    let after_lsn = snapshot_lsn.unwrap_or(0);
    let mut diverged = None;
    // Counted here and published in steps: the replay threads share the
    // progress counters, and an atomic add per record made them fight over
    // one cache line (measured: most of replay's time).
    let (mut records, mut bytes) = (0u64, 0u64);
    let outcome = {
        let mut batch = state.batch();
        // Records are applied a window at a time, each window warmed first
        // (see `Batch::warm`): decoded, then looked up together, then applied.
        let mut window: Vec<(u64, u64, Command)> = Vec::with_capacity(WARM_WINDOW);
        let mut apply_window = |batch: &mut Batch<'_>, window: &mut Vec<(u64, u64, Command)>| {
            let commands = || window.iter().map(|(_, _, command)| command);
            batch.warm(commands().filter_map(Command::reservation_id), commands().flat_map(Command::skus));
            for (lsn, at_ms, command) in window.drain(..) {
                if let Err(reason) = apply_logged(batch, &command, at_ms) {
                    diverged.get_or_insert((lsn, reason));
                    return Err("replay diverged".to_owned());
                }
                now_ms = now_ms.max(at_ms);
            }
            Ok(())
        };
        let scanned = scan(storage, &dir, shard, after_lsn, |lsn, payload| {
            let (at_ms, command) = codec::decode(payload)?;
            window.push((lsn, at_ms, command));
            records += 1;
            bytes += payload.len() as u64 + 32;
            if records % PROGRESS_STEP == 0 {
                progress.records.fetch_add(PROGRESS_STEP, Ordering::Relaxed);
                progress.bytes_read.fetch_add(std::mem::take(&mut bytes), Ordering::Relaxed);
            }
            if window.len() == WARM_WINDOW {
                apply_window(&mut batch, &mut window)?;
            }
            Ok(ControlFlow::Continue(()))
        });
        if scanned.is_ok() {
            // The last, partial window. A divergence is kept in `diverged`,
            // which the caller checks first.
            let _ = apply_window(&mut batch, &mut window);
        }
        scanned
    };
    progress.records.fetch_add(records % PROGRESS_STEP, Ordering::Relaxed);
    progress.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    let snapshots_passed_over = passed_over.iter().map(ToString::to_string).collect();
    let outcome = match (outcome, diverged) {
        (_, Some((lsn, reason))) => Err(StoreError::Replay { shard, lsn, reason }),
        (outcome, None) => outcome.map_err(StoreError::from),
    }
    .map_err(|error| explain_passed_over(passed_over, error))?;
    // Notices are for live parts; recovery reconciles parts itself.
    state.discard_notices();
    let report = ShardRecovery {
        shard,
        snapshot_lsn,
        records_replayed: outcome.records,
        next_lsn: outcome.tail.next_lsn,
        torn_tail: outcome.torn,
        discarded_segment: outcome.discarded,
        snapshots_passed_over,
        skus: state.sku_count(),
        holds: state.held_count(),
    };
    Ok(Replayed { state, tail: outcome.tail, now_ms, report })
}

/// Applies a logged command during replay. The outcome was sent to a
/// caller when the command was logged; replay only needs the state change,
/// and a logged command was accepted, so one that changes nothing means the
/// log and the state disagree (the reason).
pub(crate) fn apply_logged(batch: &mut Batch<'_>, command: &Command, at_ms: u64) -> Result<(), String> {
    let before = batch.mutations();
    let _ = batch.apply(command, at_ms);
    if batch.mutations() == before {
        return Err(format!("{command:?} changed nothing"));
    }
    Ok(())
}

/// A shard's state from its snapshot (or a new one).
pub(crate) struct LoadedSnapshot {
    pub state: ShardState,
    /// The snapshot it came from; `None` for a new state.
    pub file: Option<SnapshotFile>,
    /// The shard time it was taken at.
    pub now_ms: u64,
    /// Newer snapshots passed over: damaged, or (point-in-time replay) past
    /// the point asked for. Each why.
    pub passed_over: Vec<StoreError>,
}

/// The newest snapshot that restores and that `wanted(lsn, now_ms)`
/// accepts; a new state when there is none. A shard keeps its newest two
/// snapshots and the log after the older (`durable`'s snapshot writer), so
/// a damaged newest one falls back to the one before it. When none
/// restores, the error is the newest one's.
pub(crate) fn load_snapshot(
    storage: &dyn Storage,
    dir: &std::path::Path,
    shard: u16,
    wanted: impl Fn(u64, u64) -> bool,
) -> Result<LoadedSnapshot, StoreError> {
    let snapshots = list_snapshots(storage, dir)?;
    if snapshots.is_empty() {
        let state = ShardState::new(ShardConfig { shard });
        return Ok(LoadedSnapshot { state, file: None, now_ms: 0, passed_over: Vec::new() });
    }
    let mut passed_over = Vec::new();
    for file in snapshots {
        match restore_snapshot(storage, &file, shard) {
            Ok((state, now_ms)) if wanted(file.lsn, now_ms) => {
                return Ok(LoadedSnapshot { state, file: Some(file), now_ms, passed_over })
            }
            Ok(_) => passed_over.push(StoreError::Snapshot {
                path: file.path,
                reason: "it is past the requested point, and older history is no longer kept".into(),
            }),
            // Damage (or a file the disk cannot read back): an older
            // snapshot may do.
            Err(
                error @ (StoreError::Snapshot { .. }
                | StoreError::Wal(WalError::Corrupt { .. })
                | StoreError::Wal(WalError::Io { operation: "read", .. })),
            ) => passed_over.push(error),
            Err(error) => return Err(error),
        }
    }
    Err(passed_over.swap_remove(0))
}

/// One snapshot, read and restored, with its time. A snapshot that does
/// not read back, is not the shard's, or does not restore is an error.
pub(crate) fn restore_snapshot(
    storage: &dyn Storage,
    file: &SnapshotFile,
    shard: u16,
) -> Result<(ShardState, u64), StoreError> {
    let unusable = |reason: String| StoreError::Snapshot { path: file.path.clone(), reason };
    let loaded = read_snapshot(storage, &file.path)?;
    if loaded.header.shard != shard || loaded.header.lsn != file.lsn {
        return Err(unusable(format!("header names shard {} at LSN {}", loaded.header.shard, loaded.header.lsn)));
    }
    let image = snapshot::access(loaded.payload()).map_err(unusable)?;
    if image.shard.to_native() != shard || image.lsn.to_native() != file.lsn {
        return Err(unusable("the image belongs to another shard or LSN".into()));
    }
    let now_ms = image.now_ms.to_native();
    let state = ShardState::restore(image).map_err(unusable)?;
    Ok((state, now_ms))
}

/// Why a replay that passed over newer snapshots failed: the newest one's
/// problem (the cause), and what went wrong with the older one.
pub(crate) fn explain_passed_over(passed_over: Vec<StoreError>, error: StoreError) -> StoreError {
    match passed_over.into_iter().next() {
        Some(newest) => StoreError::SnapshotsUnusable { newest: Box::new(newest), older: Box::new(error) },
        None => error,
    }
}

/// The shards as recovery leaves them, their logs open for appending.
struct Recovered {
    replayed: Vec<Replayed>,
    writers: Vec<LogWriter>,
    /// The latest shard time in any log.
    now_ms: u64,
    reconciled: usize,
    undecidable: Vec<ReservationId>,
}

/// Replays every shard, opens its log after the last whole record (cutting
/// a torn tail), and reconciles cross-shard carts.
fn recover(store: &StoreConfig, shards: usize, progress: &RecoveryProgress) -> Result<Recovered, StoreError> {
    let storage = &store.storage;
    prepare_layout(storage.as_ref(), &store.data_dir, shards)?;
    let mut replayed = replay_all(storage.as_ref(), store, shards, progress)?;
    let now_ms = replayed.iter().map(|shard| shard.now_ms).max().unwrap_or(0);
    let mut writers = Vec::with_capacity(shards);
    for (shard, replay) in replayed.iter().enumerate() {
        if let Some(path) = &replay.report.discarded_segment {
            stockd_wal::reader::discard(storage.as_ref(), path)?;
        }
        let options = LogOptions {
            shard: shard as u16,
            segment_bytes_max: store.segment_bytes_max,
            spare_segments: store.spare_segments,
        };
        let dir = shard_dir(&store.data_dir, shard);
        writers.push(LogWriter::open(Arc::clone(storage), &dir, options, replay.tail.clone())?);
    }
    let (reconciled, undecidable) = reconcile(&mut replayed, &mut writers, now_ms, store.fsync)?;
    Ok(Recovered { replayed, writers, now_ms, reconciled, undecidable })
}

/// Finishes or aborts every held part away from home (see the module
/// comment); logs and syncs those commands. Returns how many there were,
/// and the aborted parts whose home may have forgotten a decision.
fn reconcile(
    replayed: &mut [Replayed],
    writers: &mut [LogWriter],
    now_ms: u64,
    fsync: FsyncPolicy,
) -> Result<(usize, Vec<ReservationId>), StoreError> {
    let shard_count = replayed.len();
    let mut commands: Vec<Vec<Command>> = (0..shard_count).map(|_| Vec::new()).collect();
    let mut undecidable = Vec::new();
    for (shard, replay) in replayed.iter().enumerate() {
        for AwayPart { id, fingerprint, home, forget_at_ms } in replay.state.held_away_parts() {
            let home = replayed.get(usize::from(home));
            let command = match home.and_then(|home| home.state.part_state(&id)) {
                Some((ReservationState::Held, home_fingerprint)) if home_fingerprint == fingerprint => continue,
                Some((ReservationState::Committed, f)) if f == fingerprint => Command::CommitPart { id },
                Some((ReservationState::Released, f)) if f == fingerprint => Command::ReleasePart { id },
                Some((ReservationState::Expired, f)) if f == fingerprint => Command::ExpirePart { id },
                // No home record (or one for another body): the cart was
                // never completed, unless home's time passed the forget time
                // (home may have forgotten it, and the id been used again).
                _ => {
                    if home.is_some_and(|home| home.now_ms >= forget_at_ms) {
                        undecidable.push(id.clone());
                    }
                    Command::Abort { id, fingerprint }
                }
            };
            commands[shard].push(command);
        }
    }
    let mut count = 0;
    for ((replay, writer), commands) in replayed.iter_mut().zip(writers.iter_mut()).zip(commands) {
        if commands.is_empty() {
            continue;
        }
        {
            let mut batch = replay.state.batch();
            for command in &commands {
                apply_logged(&mut batch, command, now_ms).expect("a reconciling command changes the state");
                writer.append(|buffer| codec::encode(command, now_ms, buffer));
            }
        }
        replay.state.discard_notices();
        let point = writer.write()?;
        if fsync == FsyncPolicy::Always {
            point.sync().map_err(|e| WalError::io("fsync", &replay.report.shard_dir_hint(), e))?;
        }
        count += commands.len();
    }
    Ok((count, undecidable))
}

impl ShardRecovery {
    fn shard_dir_hint(&self) -> PathBuf {
        PathBuf::from(format!("shard-{:02}", self.shard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::request::Request;
    use crate::Sku;
    use stockd_wal::MemStorage;

    fn store(storage: &Arc<MemStorage>) -> StoreConfig {
        let segment_bytes_max = stockd_wal::SEGMENT_BYTES_MIN;
        StoreConfig { storage: storage.clone(), lock: false, segment_bytes_max, ..StoreConfig::new("/data") }
    }

    /// Appends `command`, applied at `now_ms`, to `shard`'s log (as the run
    /// that wrote the log would have); returns its LSN.
    fn append(storage: &Arc<MemStorage>, shard: u16, command: &Command, now_ms: u64) -> u64 {
        let data_dir = std::path::Path::new("/data");
        let replayed = replay_shard(storage.as_ref(), data_dir, shard, &Default::default()).unwrap();
        let options = LogOptions { shard, segment_bytes_max: stockd_wal::SEGMENT_BYTES_MIN, spare_segments: true };
        let dir = shard_dir(data_dir, usize::from(shard));
        let mut writer = LogWriter::open(storage.clone(), &dir, options, replayed.tail).unwrap();
        let lsn = writer.append(|buffer| codec::encode(command, now_ms, buffer));
        writer.write().unwrap().sync().unwrap();
        lsn
    }

    /// A start whose own writes or syncs fail (here a sync of the data
    /// directory or of the log's cut tail) records the failure like a
    /// running engine does: the next start in the same boot is refused,
    /// naming it.
    #[test]
    fn a_sync_failing_during_recovery_refuses_the_next_start_in_the_boot() {
        let storage = MemStorage::new();
        let config = EngineConfig { shards: 1, ..EngineConfig::default() };
        let booted = |boot: &str| StoreConfig { boot_id: Some(boot.to_owned()), ..store(&storage) };
        let clock = Arc::new(ManualClock::new(1_000));
        let (engine, _) = Engine::open(config, booted("boot-a"), clock.clone(), &Default::default()).unwrap();
        let sku = Sku::new("sku-1").unwrap();
        engine.submit_blocking(Request::SetStock { sku, on_hand: 1, expected_version: None }).unwrap();
        engine.shutdown();
        drop(engine);

        storage.fail_sync_after(1);
        let failed = Engine::open(config, booted("boot-a"), clock.clone(), &Default::default()).err();
        let sync_failed = matches!(
            &failed,
            Some(StoreError::Wal(WalError::Io { operation, .. })) if operation.starts_with("fsync")
        );
        assert!(sync_failed, "{failed:?}");
        match Engine::open(config, booted("boot-a"), clock, &Default::default()).err() {
            Some(StoreError::FailedThisBoot { reason, .. }) => assert!(reason.contains("injected"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A held part whose home has no record of its cart is aborted; it is
    /// reported as undecidable only when home's time has passed the cart's
    /// forget time, so that home may have forgotten a decision (a commit
    /// included) instead of never having completed the cart.
    #[test]
    fn a_part_whose_home_passed_its_forget_time_is_aborted_and_reported() {
        let forget_at_ms = 62_000;
        for (home_time, reported) in [(forget_at_ms - 1, false), (forget_at_ms, true)] {
            let storage = MemStorage::new();
            let config = EngineConfig { shards: 2, ..EngineConfig::default() };
            let clock = Arc::new(ManualClock::new(1_000));
            let (engine, _) = Engine::open(config, store(&storage), clock.clone(), &Default::default()).unwrap();
            let sku_on = |shard| {
                (0..)
                    .map(|i| Sku::new(&format!("sku-{i}")).unwrap())
                    .find(|sku| engine.shard_of_sku(sku.as_str()) == shard)
            };
            let (home_sku, away_sku) = (sku_on(0).unwrap(), sku_on(1).unwrap());
            let id =
                (0..).map(|i| ReservationId::new(&format!("cart-{i}")).unwrap()).find(|id| engine.home_of(id) == 0);
            let id = id.unwrap();
            for sku in [&home_sku, &away_sku] {
                engine
                    .submit_blocking(Request::SetStock { sku: sku.clone(), on_hand: 5, expected_version: None })
                    .unwrap();
            }
            engine.shutdown();
            drop(engine);
            // Shard 1 holds a part of a cart whose home, shard 0, has no
            // record of it; home's log goes on to `home_time`.
            let lines = vec![crate::CartLine { sku: away_sku.clone(), qty: 2 }];
            let part = crate::ReservePart {
                id: id.clone(),
                fingerprint: 7,
                lines,
                expires_at_ms: 2_000,
                forget_at_ms,
                home: 0,
                participants: 0b11,
            };
            append(&storage, 1, &Command::Reserve(part), 1_000);
            append(&storage, 0, &Command::SetStock { sku: home_sku, on_hand: 6, expected_version: None }, home_time);

            let (engine, report) = Engine::open(config, store(&storage), clock, &Default::default()).unwrap();
            assert_eq!(report.reconciled, 1, "home time {home_time}");
            let listed: Vec<&str> = report.undecidable.iter().map(ReservationId::as_str).collect();
            assert_eq!(listed, if reported { vec![id.as_str()] } else { vec![] }, "home time {home_time}");
            let counts = engine.submit_blocking(Request::GetSku { sku: away_sku }).unwrap();
            assert!(matches!(counts, crate::Reply::Sku(counts) if counts.reserved == 0), "aborted: {counts:?}");
        }
    }

    /// A log of `good` applied SetStock records followed by a checksummed,
    /// well-formed record that changes nothing (a commit of an id no
    /// record ever held): replay must refuse at exactly that LSN, whether
    /// the record falls in a full window or in the last, partial one.
    #[test]
    fn replay_refuses_a_record_that_changes_nothing_wherever_it_falls() {
        for good in [1, WARM_WINDOW - 1, WARM_WINDOW, 3 * WARM_WINDOW + 5] {
            let storage = MemStorage::new();
            let config = EngineConfig { shards: 1, ..EngineConfig::default() };
            let clock = Arc::new(ManualClock::new(1_000));
            let (engine, _) = Engine::open(config, store(&storage), clock.clone(), &Default::default()).unwrap();
            for i in 0..good {
                let sku = Sku::new(&format!("sku-{i}")).unwrap();
                engine.submit_blocking(Request::SetStock { sku, on_hand: 1, expected_version: None }).unwrap();
            }
            engine.shutdown();
            drop(engine);

            let nobody = Command::Commit { id: crate::ReservationId::new("nobody").unwrap() };
            let bad_lsn = append(&storage, 0, &nobody, 2_000);

            let error = Engine::open(config, store(&storage), clock, &Default::default()).err().expect("refuses");
            match error {
                StoreError::Replay { shard: 0, lsn, .. } => assert_eq!(lsn, bad_lsn, "after {good} good records"),
                other => panic!("after {good} good records: {other}"),
            }
        }
    }
}

//! What an SRE runs against the data directory of a stopped server (the
//! `stockd wal ...` commands print what these return, holding the
//! directory's shared lock). Everything here reads; only `replay_into`
//! writes, and only into a new directory. Files are read as mappings: never
//! call these on a directory an engine of the same process runs on (its
//! snapshot cleanup cuts files, and a cut under a mapping is a SIGBUS).

use crate::codec;
use crate::command::{Command, Query};
use crate::recovery::{
    apply_logged, explain_passed_over, load_snapshot, replay_shard, restore_snapshot, LoadedSnapshot, RecoveryProgress,
    ShardRecovery,
};
use crate::snapshot::StateImage;
use crate::state::ShardState;
use crate::store::{
    check_shard_dirs, current_boot_id, recorded_shards, shard_dir, write_manifest, FailureMarker, StoreError,
};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stockd_wal::{list_segments, list_snapshots, scan, Storage, WalError};

/// A WAL payload as (shard time, command), or why it is not one (for
/// tools and fuzzing: replay does the same).
pub fn decode_payload(payload: &[u8]) -> Result<(u64, Command), String> {
    codec::decode(payload)
}

/// Checks a snapshot payload the way a start would: it must restore, and
/// the state it restores to must pass the full invariant audit (which
/// panics when one breaks). Returns the SKU and reservation counts.
pub fn check_snapshot_payload(payload: &[u8]) -> Result<(usize, usize), String> {
    let mut state = ShardState::restore(crate::snapshot::access(payload)?)?;
    state.batch().query(&Query::Audit).map_err(|rejection| rejection.to_string())?;
    Ok((state.sku_count(), state.reservation_sizes().0))
}

/// The payload a snapshot of `state` as of `lsn` at `now_ms` holds (for
/// fuzzing: real images to damage).
pub fn snapshot_payload(state: &ShardState, lsn: u64, now_ms: u64) -> Result<Vec<u8>, String> {
    let mut payload = Vec::new();
    state.capture(lsn, now_ms).write_to(&mut payload)?;
    Ok(payload)
}

/// The shard count a data directory was created with (every one of its
/// shard directories must exist).
pub fn shard_count(storage: &dyn Storage, data_dir: &Path) -> Result<usize, StoreError> {
    let shards = recorded_shards(storage, data_dir)?.ok_or_else(|| StoreError::Manifest {
        path: data_dir.to_path_buf(),
        reason: "not a stockd data directory (no manifest)".into(),
    })?;
    check_shard_dirs(storage, data_dir, shards)?;
    Ok(shards)
}

/// One shard's health, as `verify` found it.
#[derive(Debug)]
pub struct ShardCheck {
    pub shard: u16,
    /// What replay found (present when the shard recovers).
    pub recovered: Option<ShardRecovery>,
    /// Why the shard cannot be recovered.
    pub error: Option<StoreError>,
    /// Damage in what a start would fall back on were the snapshot it uses
    /// damaged: an older snapshot, or the log between it and the newest.
    pub fallback_damage: Vec<StoreError>,
}

/// Loads every shard's newest usable snapshot and replays its log, exactly as a
/// start would, without changing anything. A torn tail is reported (start
/// cuts it); corruption is an error naming the file and offset. The older
/// snapshots kept as a fallback, and the log after them, are checked too.
pub fn verify(storage: &dyn Storage, data_dir: &Path) -> Result<Vec<ShardCheck>, StoreError> {
    let shards = shard_count(storage, data_dir)?;
    let progress = RecoveryProgress::default();
    (0..shards as u16)
        .map(|shard| {
            let check = match replay_shard(storage, data_dir, shard, &progress) {
                Ok(replayed) => {
                    let fallback_damage = check_fallbacks(storage, data_dir, shard, replayed.report.snapshot_lsn)?;
                    ShardCheck { shard, recovered: Some(replayed.report), error: None, fallback_damage }
                }
                Err(error) => ShardCheck { shard, recovered: None, error: Some(error), fallback_damage: Vec::new() },
            };
            Ok(check)
        })
        .collect()
}

/// Restores every snapshot older than the one a start uses (at
/// `used_lsn`) and replays the log from each up to `used_lsn`, as a start
/// falling back would: the damage it would meet.
fn check_fallbacks(
    storage: &dyn Storage,
    data_dir: &Path,
    shard: u16,
    used_lsn: Option<u64>,
) -> Result<Vec<StoreError>, StoreError> {
    let Some(used_lsn) = used_lsn else { return Ok(Vec::new()) };
    let dir = shard_dir(data_dir, usize::from(shard));
    let mut damage = Vec::new();
    for older in list_snapshots(storage, &dir)?.into_iter().filter(|file| file.lsn < used_lsn) {
        let replayed = restore_snapshot(storage, &older, shard).and_then(|(state, now_ms)| {
            let loaded = LoadedSnapshot { state, file: Some(older), now_ms, passed_over: Vec::new() };
            replay_from(storage, &dir, shard, loaded, ReplayBound::Lsn(used_lsn))
        });
        if let Err(error) = replayed {
            damage.push(error);
        }
    }
    Ok(damage)
}

/// Refuses to read `data_dir` in the boot of a storage failure (see
/// `FailureMarker`): the log may be read back from cached pages the disk
/// does not hold, so what a tool reports or copies would not be the disk's.
pub fn refuse_after_a_failure_this_boot(storage: Arc<dyn Storage>, data_dir: &Path) -> Result<(), StoreError> {
    FailureMarker { storage, data_dir: data_dir.to_path_buf(), boot_id: current_boot_id() }.check()
}

/// Every shard's state as a start would recover it (before cross-shard
/// parts are reconciled), without changing anything.
pub fn load_states(storage: &dyn Storage, data_dir: &Path) -> Result<Vec<StateImage>, StoreError> {
    let shards = shard_count(storage, data_dir)?;
    let progress = RecoveryProgress::default();
    (0..shards as u16)
        .map(|shard| {
            let replayed = replay_shard(storage, data_dir, shard, &progress)?;
            Ok(replayed.state.capture(replayed.tail.next_lsn - 1, replayed.now_ms))
        })
        .collect()
}

/// One record of a shard's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRecord {
    pub shard: u16,
    pub lsn: u64,
    /// The shard's time when the command was applied.
    pub now_ms: u64,
    pub command: Command,
}

/// Visits every record of `shard`'s log after `after_lsn`, in order (the
/// records a snapshot already covers may be gone; none when `after_lsn` is
/// at or past the log's end).
pub fn read_log(
    storage: &dyn Storage,
    data_dir: &Path,
    shard: u16,
    after_lsn: u64,
    mut each: impl FnMut(LoggedRecord),
) -> Result<stockd_wal::ScanOutcome, StoreError> {
    let dir = shard_dir(data_dir, usize::from(shard));
    let segments = list_segments(storage, &dir)?;
    // The scan starts at the oldest segment at the earliest, and at the
    // newest at the latest: a bound past the log's end is not a log that
    // ends too early.
    let start = match (segments.first(), segments.last()) {
        (Some(oldest), Some(newest)) => {
            after_lsn.min(newest.first_lsn.saturating_sub(1)).max(oldest.first_lsn.saturating_sub(1))
        }
        _ => after_lsn,
    };
    Ok(scan(storage, &dir, shard, start, |lsn, payload| {
        if lsn > after_lsn {
            let (now_ms, command) = codec::decode(payload)?;
            each(LoggedRecord { shard, lsn, now_ms, command });
        }
        Ok(ControlFlow::Continue(()))
    })?)
}

/// The newest snapshot of each shard: (shard, path, LSN, bytes).
pub fn snapshots(storage: &dyn Storage, data_dir: &Path) -> Result<Vec<(u16, PathBuf, u64, u64)>, StoreError> {
    let shards = shard_count(storage, data_dir)?;
    let mut found = Vec::new();
    for shard in 0..shards {
        let dir = shard_dir(data_dir, shard);
        if let Some(newest) = list_snapshots(storage, &dir)?.into_iter().next() {
            let len = storage.len(&newest.path).map_err(|e| WalError::io("read", &newest.path, e))?;
            found.push((shard as u16, newest.path, newest.lsn, len));
        }
    }
    Ok(found)
}

/// Where a point-in-time replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayBound {
    /// Every record (of each shard).
    End,
    /// Records with an LSN up to this, in every shard's own numbering.
    Lsn(u64),
    /// Records applied at or before this shard time (ms since the epoch):
    /// a consistent cut across shards.
    TimeMs(u64),
}

/// Replays `source` up to `bound` into the new directory `target`, as one
/// snapshot per shard with an empty log after it. Returns, per shard, the
/// LSN it stopped at.
///
/// A cut by time is consistent: a cart's parts are held before its home
/// part and decided after it, in shard time too (see `shard::PeerMail`),
/// so a time that keeps home's hold keeps every part's, and starting a server
/// on `target` finishes any decision the cut left half heard. A cut by LSN
/// is refused when there is more than one shard: each shard numbers its own
/// records, so one LSN is a different moment on each, and could keep a home
/// hold without its parts (a server started there would stop at the cart's
/// next step).
pub fn replay_into(
    storage: &dyn Storage,
    source: &Path,
    target: &Path,
    bound: ReplayBound,
) -> Result<Vec<u64>, StoreError> {
    let shards = shard_count(storage, source)?;
    if matches!(bound, ReplayBound::Lsn(_)) && shards > 1 {
        return Err(StoreError::LsnCutAcrossShards { path: source.to_path_buf(), shards });
    }
    // A fresh target only: anything already there (a manifest, shard
    // directories with old segments) could mix into the replayed state.
    if storage.exists(target) {
        return Err(StoreError::Manifest {
            path: target.to_path_buf(),
            reason: "the target must not exist yet".into(),
        });
    }
    // Every shard replayed before anything is written: a shard that cannot
    // reach the point (its snapshot is past it, a damaged record before it)
    // leaves no target behind.
    let replayed = (0..shards as u16)
        .map(|shard| replay_bounded(storage, source, shard, bound))
        .collect::<Result<Vec<_>, StoreError>>()?;
    storage.create_dir_all(target).map_err(|e| WalError::io("create", target, e))?;
    if let Some(parent) = target.parent() {
        storage.sync_dir(parent).map_err(|e| WalError::io("fsync directory", parent, e))?;
    }
    let mut stopped_at = Vec::with_capacity(shards);
    for (shard, (state, lsn, now_ms)) in (0..shards as u16).zip(replayed) {
        let image = state.capture(lsn, now_ms);
        let dir = shard_dir(target, usize::from(shard));
        storage.create_dir_all(&dir).map_err(|e| WalError::io("create", &dir, e))?;
        storage.sync_dir(target).map_err(|e| WalError::io("fsync directory", target, e))?;
        stockd_wal::write_snapshot_with(storage, &dir, shard, lsn, |out| image.write_to(out)).map_err(|error| {
            match error {
                WalError::Encode { reason } => StoreError::Snapshot { path: dir.clone(), reason },
                error => error.into(),
            }
        })?;
        stopped_at.push(lsn);
    }
    // Last: a target with a manifest is complete. One that failed while
    // writing (or was cut by a crash) has none, and a start refuses it
    // (`store::prepare_layout`: shard files without a manifest).
    write_manifest(storage, target, shards)?;
    Ok(stopped_at)
}

/// One shard's state after its snapshot and the records within `bound`:
/// (state, last LSN applied, its time).
fn replay_bounded(
    storage: &dyn Storage,
    data_dir: &Path,
    shard: u16,
    bound: ReplayBound,
) -> Result<(ShardState, u64, u64), StoreError> {
    let dir = shard_dir(data_dir, usize::from(shard));
    // The newest snapshot within the bound (a shard keeps two: a point
    // between them replays from the older).
    let within_bound = |snapshot_lsn: u64, snapshot_ms: u64| match bound {
        ReplayBound::End => true,
        ReplayBound::Lsn(limit) => snapshot_lsn <= limit,
        ReplayBound::TimeMs(limit) => snapshot_ms <= limit,
    };
    let loaded = load_snapshot(storage, &dir, shard, within_bound)?;
    replay_from(storage, &dir, shard, loaded, bound)
}

/// `loaded` (a snapshot, with the newer ones passed over) and the records
/// of `dir`'s log after it within `bound`: (state, last LSN applied, its time).
fn replay_from(
    storage: &dyn Storage,
    dir: &Path,
    shard: u16,
    loaded: LoadedSnapshot,
    bound: ReplayBound,
) -> Result<(ShardState, u64, u64), StoreError> {
    let LoadedSnapshot { mut state, file, mut now_ms, passed_over } = loaded;
    let mut lsn = file.as_ref().map_or(0, |file| file.lsn);
    let mut diverged = None;
    let scanned = {
        let mut batch = state.batch();
        scan(storage, dir, shard, lsn, |record_lsn, payload| {
            let (at_ms, command) = codec::decode(payload)?;
            let within = match bound {
                ReplayBound::End => true,
                ReplayBound::Lsn(limit) => record_lsn <= limit,
                ReplayBound::TimeMs(limit) => at_ms <= limit,
            };
            // Records are in LSN and time order: once one is past, all are.
            // The scan stops there (or right after the LSN asked for), so
            // a damaged record past the point (the damage a salvage cuts
            // off) is never read.
            if !within {
                return Ok(ControlFlow::Break(()));
            }
            // Checked as at a start.
            if let Err(reason) = apply_logged(&mut batch, &command, at_ms) {
                diverged = Some((record_lsn, reason));
                return Err("replay diverged".into());
            }
            (lsn, now_ms) = (record_lsn, at_ms);
            Ok(match bound {
                ReplayBound::Lsn(limit) if record_lsn >= limit => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            })
        })
    };
    if let Some((lsn, reason)) = diverged {
        return Err(explain_passed_over(passed_over, StoreError::Replay { shard, lsn, reason }));
    }
    scanned.map_err(|error| explain_passed_over(passed_over, error.into()))?;
    state.discard_notices();
    Ok((state, lsn, now_ms))
}

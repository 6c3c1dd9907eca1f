//! A shard's durability through its WAL: the shard thread frames every
//! command into the log's buffer as it applies it, and at the end of the
//! batch writes the buffer (one `pwrite`) and hands the batch's completion
//! to its *syncer* thread. The syncer takes every batch waiting, runs one
//! `fdatasync` for all of them (group commit), then delivers them in order:
//! publish, tell other shards, reply. Meanwhile the shard applies its next
//! batch; no reply ever precedes its own batch's sync.
//!
//! Snapshots ride the same queue: a snapshot of the state after batch k is
//! written only once batch k is durable (the log must always reach the
//! snapshot's LSN), by a third thread so the syncer never waits on it.
//! That thread also prepares the memory a shard captures into (see
//! `snapshot`): asked first, it touches an image's pages while the shard
//! goes on, so the capture itself only copies.
//!
//! The snapshot thread also makes each next segment of the log ahead of
//! need (`SpareSegment`): the shard hands it to its writer, whose rotation
//! then only renames it. When a snapshot is written, up to four segments it
//! covers are set aside for reuse instead of removed; the writer takes those
//! before its spare, and no spare is made while one waits.
//!
//! A failed write or sync is never retried: the shard's log is poisoned,
//! every waiting and later request hears `storage_failed`, and the process
//! is expected to stop (`Engine::failure`).

use crate::codec;
use crate::command::{Command, PartOutcome, PartReply};
use crate::rejection::Rejection;
use crate::shard::{Completion, CompletionTarget, Durability, SnapshotJob};
use crate::snapshot::{ImageRoom, StateImage};
use crate::stats::ShardStats;
use crate::store::{FailureMarker, FsyncPolicy};
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;
use stockd_wal::{LogWriter, SpareSegment, Storage, SyncPoint, WalError};

/// Batches the syncer takes at once (each is up to `batch_len_max` ops).
const SYNC_JOBS_MAX: usize = 64;
/// Batches written but not yet synced; the shard waits (backpressure) past it.
const SYNC_QUEUE_LEN_MAX: usize = 256;

/// The engine's first storage failure, set once and recorded in the data
/// directory (`FailureMarker`).
pub(crate) struct Failure {
    reason: OnceLock<String>,
    marker: FailureMarker,
}

impl Failure {
    pub(crate) fn new(marker: FailureMarker) -> Failure {
        Failure { reason: OnceLock::new(), marker }
    }

    pub(crate) fn set(&self, reason: String) {
        // The record is written before the failure shows, so whoever acts
        // on it (the server exits at once) leaves the record behind; a
        // second failing thread waits for it.
        self.reason.get_or_init(|| {
            self.marker.record(&reason);
            reason
        });
    }

    pub(crate) fn get(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    fn rejection(&self) -> Option<Rejection> {
        self.get().map(|reason| Rejection::StorageFailed { reason: reason.to_owned() })
    }
}

/// What a logged shard is given.
pub(crate) struct LogSetup {
    pub writer: LogWriter,
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub snapshot_every_bytes: u64,
    pub failure: Arc<Failure>,
    /// The oldest LSN a consumer of the log (a future order sink) still
    /// needs; segments from it on are kept. `u64::MAX`: none.
    pub retain_from_lsn: Arc<AtomicU64>,
    /// The snapshot recovery started from, if any: known to restore.
    pub recovered_from_snapshot: Option<u64>,
}

pub(crate) struct Logged {
    writer: LogWriter,
    jobs: Option<Sender<SyncJob>>,
    recycled: Receiver<Completion>,
    threads: Vec<JoinHandle<()>>,
    failure: Arc<Failure>,
    stats: Arc<ShardStats>,
    snapshot_every_bytes: u64,
    bytes_at_last_snapshot: u64,
    snapshot_in_flight: Arc<AtomicBool>,
    /// Size of the last snapshot written (set by the snapshot writer).
    last_snapshot_bytes: Arc<AtomicU64>,
    snapshot_tasks: Option<Sender<SnapshotTask>>,
    /// Images prepared for capture; one at most is asked for at a time.
    prepared: Receiver<StateImage>,
    preparing: bool,
    /// Spare segments made by the snapshot thread (none while recycled
    /// segments wait); one is asked for at a time (failing to make one is a
    /// storage failure of the shard).
    spares: Receiver<Option<SpareSegment>>,
    spare_asked: bool,
    shard_count: usize,
}

/// Work for the snapshot thread.
enum SnapshotTask {
    /// Touch the pages of an empty image with this room; hand it back.
    Prepare(ImageRoom),
    /// Serialize and write a captured image.
    Write(SnapshotJob),
    /// Make a spare segment of this many bytes; hand it back (or none,
    /// while recycled segments wait).
    PrepareSpare(u64),
}

struct SyncJob {
    point: Option<SyncPoint>,
    completion: Completion,
}

impl Logged {
    pub(crate) fn start(setup: LogSetup, shard: u16, target: CompletionTarget, stats: Arc<ShardStats>) -> Logged {
        let LogSetup { writer, dir, fsync, snapshot_every_bytes, failure, retain_from_lsn, recovered_from_snapshot } =
            setup;
        let shard_count = target.peers.len();
        let (jobs, job_inbox) = crossbeam_channel::bounded(SYNC_QUEUE_LEN_MAX);
        let (recycle, recycled) = crossbeam_channel::bounded(8);
        let (snapshot_tasks, snapshot_inbox) = crossbeam_channel::unbounded();
        let (prepare, prepared) = crossbeam_channel::bounded(1);
        let (spare, spares) = crossbeam_channel::bounded(1);
        let snapshot_in_flight = Arc::new(AtomicBool::new(false));
        let last_snapshot_bytes = Arc::new(AtomicU64::new(0));
        let syncer = {
            let (failure, stats) = (Arc::clone(&failure), Arc::clone(&stats));
            let snapshots = snapshot_tasks.clone();
            let run = move || run_syncer(job_inbox, target, fsync, failure, stats, snapshots, recycle);
            std::thread::Builder::new().name(format!("stockd-sync-{shard}")).spawn(run)
        };
        let options = writer.options();
        let recycle_bytes = options.spare_segments.then_some(options.segment_bytes_max);
        let snapshotter = {
            let writer = SnapshotWriter {
                // Its directory syncs and the log's exclude each other, and
                // a failure of either stops both (see `stockd_wal::writer`).
                storage: writer.gated_storage(),
                dir,
                shard,
                failure: Arc::clone(&failure),
                stats: Arc::clone(&stats),
                in_flight: Arc::clone(&snapshot_in_flight),
                last_bytes: Arc::clone(&last_snapshot_bytes),
                retain_from_lsn,
                recycle_bytes,
                known_good: recovered_from_snapshot,
            };
            std::thread::Builder::new()
                .name(format!("stockd-snap-{shard}"))
                .spawn(move || writer.run(snapshot_inbox, prepare, spare))
        };
        let threads = vec![syncer.expect("the OS can start a thread"), snapshotter.expect("the OS can start a thread")];
        let bytes_at_last_snapshot = writer.counters().bytes_written;
        Logged {
            writer,
            jobs: Some(jobs),
            recycled,
            threads,
            failure,
            stats,
            snapshot_every_bytes,
            bytes_at_last_snapshot,
            snapshot_in_flight,
            last_snapshot_bytes,
            snapshot_tasks: Some(snapshot_tasks),
            prepared,
            preparing: false,
            spares,
            spare_asked: false,
            shard_count,
        }
    }
}

impl Logged {
    /// Gives the writer the spare it asked for, once it is made, and asks
    /// for the next one when the writer has used its own (and has no
    /// recycled segment to take).
    fn keep_a_spare(&mut self) {
        if let Ok(spare) = self.spares.try_recv() {
            self.writer.set_spare(spare);
            self.spare_asked = false;
        }
        if self.writer.needs_spare() && !self.spare_asked {
            let tasks = self.snapshot_tasks.as_ref().expect("snapshot tasks close only in close()");
            let bytes = self.writer.options().segment_bytes_max;
            tasks.send(SnapshotTask::PrepareSpare(bytes)).expect("the snapshot thread runs until close()");
            self.spare_asked = true;
        }
    }
}

impl Durability for Logged {
    fn append(&mut self, command: &Command, now_ms: u64) {
        self.writer.append(|buffer| codec::encode(command, now_ms, buffer));
        self.stats.wal_records.fetch_add(1, Ordering::Relaxed);
    }

    fn end_batch(&mut self, mut completion: Completion) -> Completion {
        let point = if self.writer.buffered_len() > 0 {
            match self.writer.write() {
                Ok(point) => Some(point),
                Err(error) => {
                    self.failure.set(error.to_string());
                    None
                }
            }
        } else {
            None
        };
        let counters = self.writer.counters();
        self.stats.wal_bytes.store(counters.bytes_written, Ordering::Relaxed);
        self.stats.wal_segments_created.store(counters.segments_created, Ordering::Relaxed);
        self.stats.wal_segments_recycled.store(counters.segments_recycled, Ordering::Relaxed);
        if let Some(rejection) = self.failure.rejection() {
            // Nothing of this batch may be acknowledged; earlier batches
            // still in the syncer's queue fail there the same way.
            completion.fail(&rejection);
        }
        if let Some(snapshot) = &completion.snapshot {
            self.snapshot_in_flight.store(true, Ordering::Relaxed);
            debug_assert!(snapshot.image.lsn < self.writer.next_lsn());
        }
        self.keep_a_spare();
        let jobs = self.jobs.as_ref().expect("jobs close only in close()");
        jobs.send(SyncJob { point, completion }).expect("the syncer runs until close()");
        self.recycled.try_recv().unwrap_or_else(|_| Completion::with_shards(self.shard_count))
    }

    fn failure(&self) -> Option<Rejection> {
        self.failure.rejection()
    }

    /// After `snapshot_every_bytes` of log, and at least twice the last
    /// snapshot's size: capturing pauses the shard in proportion to its state
    /// (~30 ns per reservation, measured), so a bigger state snapshots less
    /// often and the pauses stay a small, constant share of time, while a
    /// restart still replays at most about twice the state's size.
    fn wants_snapshot(&self) -> bool {
        let written = self.writer.counters().bytes_written + self.writer.buffered_len() as u64;
        let threshold = self.snapshot_every_bytes.max(2 * self.last_snapshot_bytes.load(Ordering::Relaxed));
        written - self.bytes_at_last_snapshot >= threshold
            && !self.snapshot_in_flight.load(Ordering::Relaxed)
            && self.failure.get().is_none()
    }

    fn snapshot_image(&mut self, room: &dyn Fn() -> ImageRoom) -> Option<StateImage> {
        if self.preparing {
            let image = self.prepared.try_recv().ok()?;
            self.preparing = false;
            // The capture begins now: the log from here on is after it.
            self.bytes_at_last_snapshot = self.writer.counters().bytes_written + self.writer.buffered_len() as u64;
            return Some(image);
        }
        let tasks = self.snapshot_tasks.as_ref().expect("snapshot tasks close only in close()");
        tasks.send(SnapshotTask::Prepare(room())).expect("the snapshot thread runs until close()");
        self.preparing = true;
        None
    }

    fn last_lsn(&self) -> Option<u64> {
        Some(self.writer.next_lsn() - 1)
    }

    fn close(mut self: Box<Self>) {
        drop(self.jobs.take());
        drop(self.snapshot_tasks.take());
        for thread in self.threads.drain(..) {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

fn run_syncer(
    jobs: Receiver<SyncJob>,
    target: CompletionTarget,
    fsync: FsyncPolicy,
    failure: Arc<Failure>,
    stats: Arc<ShardStats>,
    snapshots: Sender<SnapshotTask>,
    recycle: Sender<Completion>,
) {
    let mut batch: Vec<SyncJob> = Vec::new();
    while let Ok(job) = jobs.recv() {
        batch.push(job);
        batch.extend(jobs.try_iter().take(SYNC_JOBS_MAX));
        // Rotation synced every earlier segment, so the newest point covers
        // every record of every batch taken.
        if let Some(point) = batch.iter().rev().find_map(|job| job.point.as_ref()) {
            if failure.get().is_none() {
                sync(point, fsync, &failure, &stats);
            }
        }
        let rejection = failure.rejection();
        for SyncJob { mut completion, .. } in batch.drain(..) {
            let snapshot = completion.snapshot.take();
            match &rejection {
                None => completion.deliver(&target),
                Some(rejection) => completion.fail(rejection),
            }
            if let Some(snapshot) = snapshot {
                match &rejection {
                    None => {
                        snapshots.send(SnapshotTask::Write(snapshot)).expect("the snapshot writer outlives the syncer")
                    }
                    Some(rejection) => snapshot.answer(Err(rejection.clone())),
                }
            }
            let _ = recycle.try_send(completion);
        }
    }
}

fn sync(point: &SyncPoint, fsync: FsyncPolicy, failure: &Failure, stats: &ShardStats) {
    match fsync {
        // Nothing is claimed durable either: later records never vouch for
        // unsynced ones, so after a power cut damaged records are a torn
        // tail (though snapshots and segment headers may be lost too: the
        // directory may not start, README Known limitations).
        FsyncPolicy::Never => {}
        FsyncPolicy::Always => {
            let began = Instant::now();
            match point.sync() {
                Ok(()) => stats.fsync_us.record(began.elapsed().as_micros() as u64),
                // Never retried: the pages it could not write may be gone.
                Err(error) => failure.set(format!("fdatasync of the WAL failed: {error}")),
            }
        }
    }
}

struct SnapshotWriter {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    shard: u16,
    failure: Arc<Failure>,
    stats: Arc<ShardStats>,
    in_flight: Arc<AtomicBool>,
    last_bytes: Arc<AtomicU64>,
    retain_from_lsn: Arc<AtomicU64>,
    /// The length of the log's segments when covered ones are kept for
    /// reuse as spares (spares are on).
    recycle_bytes: Option<u64>,
    /// The newest snapshot known to be good: the one this process last
    /// wrote, or recovered from. It is the one kept beside a new one (not
    /// merely the next older file, which a start may have passed over as
    /// damaged).
    known_good: Option<u64>,
}

/// The snapshot thread's nice value. Its work (touching an image's pages,
/// serializing, writing) is background work beside the shard, the syncer
/// and the HTTP workers; on 2 cores at nice 0 it took CPU from them at the
/// moment requests waited (paced `/v1/batch` load at half the maximum
/// rate, p99 5.3-5.9 → 4.2-4.8 ms uniform, 5.1-5.7 → 4.1-4.4 ms hot SKU;
/// nice 19 measured the same as 10 within noise). 10, not 19:
/// on a saturated machine a snapshot still gets about a tenth of a core's
/// share, so the log between snapshots does not grow without bound. The
/// thread also yields its core every `stockd_wal::BACKGROUND_YIELD_BYTES`
/// of work, which nice alone does not make it do.
pub const SNAPSHOT_THREAD_NICE: i32 = 10;

impl SnapshotWriter {
    fn run(
        mut self,
        tasks: Receiver<SnapshotTask>,
        prepared: Sender<StateImage>,
        spares: Sender<Option<SpareSegment>>,
    ) {
        // On Linux the nice value is per thread. Raising it needs no
        // privilege; if it fails anyway, snapshots just run at nice 0.
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), SNAPSHOT_THREAD_NICE);
        for task in tasks {
            match task {
                // The shard may have stopped waiting for it (shutting down).
                SnapshotTask::Prepare(room) => drop(prepared.try_send(StateImage::with_room(room))),
                // The same rule as the log: the disk failed (or is full,
                // which the next rotation would find too); nothing is retried.
                SnapshotTask::PrepareSpare(bytes) => {
                    match SpareSegment::prepare(self.storage.as_ref(), &self.dir, bytes) {
                        Ok(spare) => drop(spares.try_send(spare)),
                        Err(error) => self.failure.set(format!("making the next WAL segment failed: {error}")),
                    }
                }
                SnapshotTask::Write(job) => {
                    let outcome = self.write(&job);
                    self.in_flight.store(false, Ordering::Relaxed);
                    job.answer(outcome);
                }
            }
        }
    }

    fn write(&mut self, job: &SnapshotJob) -> PartOutcome {
        let lsn = job.image.lsn;
        let storage = self.storage.as_ref();
        let written =
            stockd_wal::write_snapshot_with(storage, &self.dir, self.shard, lsn, |out| job.image.write_to(out))
                .and_then(|(_, payload_len)| {
                    self.last_bytes.store(payload_len, Ordering::Relaxed);
                    // Keep the last good snapshot before this one and the
                    // log after it: a start that finds this one damaged
                    // recovers from that one (`recovery::load_snapshot`).
                    let Some(previous) = self.known_good.filter(|&good| good < lsn) else {
                        // The first snapshot, or this one again at the same
                        // LSN: only stray temp files go.
                        return stockd_wal::snapshot::remove_older_snapshots(storage, &self.dir, 0).map(|()| 0);
                    };
                    stockd_wal::snapshot::remove_older_snapshots(storage, &self.dir, previous)?;
                    // Keep what a consumer of the log still needs.
                    let retain_from = self.retain_from_lsn.load(Ordering::Relaxed);
                    stockd_wal::reader::remove_covered_segments(
                        storage,
                        &self.dir,
                        previous.min(retain_from.saturating_sub(1)),
                        self.recycle_bytes,
                    )
                });
        match written {
            Ok(_) => {
                self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
                self.stats.snapshot_lsn.store(lsn, Ordering::Relaxed);
                self.known_good = Some(lsn);
                Ok(PartReply::Done)
            }
            // Nothing failed on disk: this snapshot is skipped, the log goes on.
            Err(WalError::Encode { reason }) => Err(Rejection::StorageFailed { reason }),
            Err(error) => {
                // Same rule as the log: an I/O failure is not retried.
                self.failure.set(format!("writing a snapshot failed: {error}"));
                Err(Rejection::StorageFailed { reason: error.to_string() })
            }
        }
    }
}

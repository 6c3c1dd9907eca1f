//! Appending to one shard's log. Records are framed into an aligned buffer
//! as the shard applies its batch (`append`); `write` puts the whole batch
//! into the current segment with one positional write and returns the
//! `SyncPoint` that makes it durable, which the caller runs on another
//! thread (group commit, and the next batch is applied meanwhile). Every
//! write ends with an end marker (32 zero bytes, where the segment has room)
//! that the next write overwrites, so a log read back ends at a clean `End`
//! even in a file whose older bytes are not zeros (a recycled segment).
//!
//! Rotation: a batch that would overflow the segment is cut at a record
//! boundary. The full segment is made durable *before* the new one gets any
//! record, so a torn record can only ever be at the tail of the last
//! segment. A new segment is made (from a recycled segment, the spare, or
//! preallocated), its header and an end marker written and synced, and its
//! directory entry synced, before records go in.
//!
//! Spare segments: writes into blocks that were already written let each
//! `fdatasync` flush data only; in fallocated blocks it must also record
//! that they now hold data (measured here: single-request HTTP holds +20 %,
//! p50 -17 %). So a rotation prefers a file whose blocks were all written:
//! first a *recycled* segment (one the older kept snapshot covers, renamed for
//! reuse by `reader::remove_covered_segments`; only the writer takes them),
//! then the *spare* (a file filled with zeros ahead of need, away from the
//! writer's thread, by `SpareSegment::prepare`, which makes one only when
//! no recycled segment is waiting), and only then a new preallocated file.
//! A recycled or spare file gets its header and end marker, synced, before
//! its rename to the segment's name (then the directory is synced), so a
//! segment's name never shows an older or missing header; a recycled file's
//! own rename away from its old segment name is made durable first (one
//! more directory sync), so that name never shows a newer header either.
//! A continued log's last segment is cut at its end and preallocated again
//! at open, so the blocks past that end are fallocated until the next
//! rotation.
//!
//! Any failed write or sync poisons the writer: it refuses every later
//! call. A failed fsync is never retried (the kernel may have dropped the
//! dirty pages it could not write, so a retry that "succeeds" proves
//! nothing). Every fsync of the log's files, by the writer (rotation) or by
//! whoever runs a `SyncPoint` (the syncer), goes through one `SyncGate`:
//! they never run at once, and an error one of them saw poisons the other.
//! Linux reports a writeback error to one fsync of a file only; without the
//! gate the other could return success for pages that were lost. Threads
//! that work in the log's directory beside it (snapshots, removing covered
//! segments, making spares) get `LogWriter::gated_storage`, whose directory
//! syncs go through the same gate: after a directory sync of theirs failed
//! the log acknowledges nothing more, and after the log failed they make no
//! more directory changes durable (their own files' syncs, of other inodes,
//! are not gated).

use crate::format::{
    encode_segment_header, record_len, seal_record, segment_file_name, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::storage::{AlignedBytes, FileBytes, Storage, StorageFile};
use crate::WalError;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The name of a shard's spare segment (never a segment's name: readers
/// ignore it, and one left by an earlier run is taken or replaced).
pub const SPARE_SEGMENT_NAME: &str = "spare-segment.tmp";
/// What a covered segment set aside for reuse is renamed to begin with
/// (`recycled-segment-<its first LSN>.tmp`; readers ignore it too).
pub const RECYCLED_SEGMENT_PREFIX: &str = "recycled-segment-";
/// Covered segments kept for reuse at most, per log: the disk space a log
/// keeps after its snapshot, in return for segments that need no zeros.
pub const RECYCLED_SEGMENTS_MAX: usize = 4;
/// Zeros written into a spare between two syncs of it, so the disk never
/// holds a segment's worth of dirty pages in front of the log's next sync.
const SPARE_SYNC_STEP: usize = 1 << 20;
/// Written after every write's last record (an `End` frame to readers).
const END_MARKER: [u8; RECORD_HEADER_LEN] = [0; RECORD_HEADER_LEN];

/// Smallest segment size accepted: room for many of the engine's records
/// (a few KiB at most). A record larger than a segment still goes whole
/// into one, which grows past the size.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    pub shard: u16,
    pub segment_bytes_max: u64,
    /// Make each next segment ahead of need (`SpareSegment`); without,
    /// every segment is created and preallocated when the log reaches it.
    pub spare_segments: bool,
}

/// What a writer has done since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounters {
    pub bytes_written: u64,
    /// Segments begun, and how many of them were recycled segments.
    pub segments_created: u64,
    pub segments_recycled: u64,
}

/// Where an existing log ends, as recovery found it (see `reader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    /// The LSN the next record gets.
    pub next_lsn: u64,
    /// The last segment and the offset just past its last valid record.
    pub segment: Option<(PathBuf, u64)>,
}

impl LogTail {
    pub fn empty() -> LogTail {
        LogTail { next_lsn: 1, segment: None }
    }
}

pub struct LogWriter {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: LogOptions,
    segment: Option<Arc<dyn StorageFile>>,
    /// Where the next written byte goes in the current segment.
    segment_end: u64,
    /// Framed records not yet written.
    buffer: AlignedBytes,
    /// Buffer offsets where a new segment must begin, with its first LSN.
    cuts: Vec<(usize, u64)>,
    /// `segment_end` once the buffer is written (decides the cuts).
    planned_end: u64,
    next_lsn: u64,
    /// Every record up to this LSN is durable (advanced by `SyncPoint::sync`).
    durable_lsn: Arc<AtomicU64>,
    gate: Arc<SyncGate>,
    counters: LogCounters,
    spare: Option<SpareSegment>,
    /// Whether recycled segments wait in the directory, as far as the
    /// writer knows (it looks at every rotation; `set_spare(None)` says
    /// some came since).
    recycled_waiting: bool,
}

/// A zero-filled, synced segment file waiting to be the next segment.
#[derive(Debug)]
pub struct SpareSegment {
    path: PathBuf,
    bytes: u64,
}

impl SpareSegment {
    /// Makes the spare for the log in `dir` whose segments are `bytes`
    /// long: the one an earlier run left, or a new file filled with zeros;
    /// none while recycled segments wait there (the writer takes those
    /// first). Slow (it may write the whole file): call it on a thread that
    /// answers nobody.
    pub fn prepare(storage: &dyn Storage, dir: &Path, bytes: u64) -> Result<Option<SpareSegment>, WalError> {
        let path = dir.join(SPARE_SEGMENT_NAME);
        if storage.exists(&path) {
            if storage.len(&path).map_err(|e| WalError::io("stat", &path, e))? == bytes {
                return Ok(Some(SpareSegment { path, bytes }));
            }
            remove_gradually(storage, dir, vec![SPARE_SEGMENT_NAME.to_owned()])?;
        }
        if !recycled_segments(storage, dir)?.is_empty() {
            return Ok(None);
        }
        let made = Self::zero_fill(storage, &path, bytes);
        if made.is_err() {
            // A partial spare would only take disk space.
            let _ = storage.remove(&path);
        }
        made.map(Some)
    }

    fn zero_fill(storage: &dyn Storage, path: &Path, bytes: u64) -> Result<SpareSegment, WalError> {
        let file = storage.create(path).map_err(|e| WalError::io("create", path, e))?;
        file.set_len_allocated(bytes).map_err(|e| WalError::io("preallocate", path, e))?;
        let zeros = vec![0u8; SPARE_SYNC_STEP];
        for at in (0..bytes).step_by(SPARE_SYNC_STEP) {
            let len = (bytes - at).min(SPARE_SYNC_STEP as u64) as usize;
            file.write_at(at, &zeros[..len]).map_err(|e| WalError::io("write", path, e))?;
            file.sync_data().map_err(|e| WalError::io("fsync", path, e))?;
        }
        Ok(SpareSegment { path: path.to_path_buf(), bytes })
    }
}

/// The names of the recycled segments in `dir`, oldest first.
pub fn recycled_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<String>, WalError> {
    let names = storage.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut recycled: Vec<String> = names.into_iter().filter(|name| is_recycled_segment(name)).collect();
    recycled.sort();
    Ok(recycled)
}

/// The name a covered segment whose first LSN is `first_lsn` takes when it
/// is set aside for reuse.
pub fn recycled_segment_name(first_lsn: u64) -> String {
    format!("{RECYCLED_SEGMENT_PREFIX}{first_lsn:020}.tmp")
}

fn is_recycled_segment(name: &str) -> bool {
    name.starts_with(RECYCLED_SEGMENT_PREFIX) && name.ends_with(".tmp")
}

/// Removes `names` of `dir` gradually (an unlink of a segment-sized file
/// at once would stall the log's fdatasync), then syncs `dir`.
fn remove_gradually(storage: &dyn Storage, dir: &Path, names: Vec<String>) -> Result<(), WalError> {
    if !names.is_empty() {
        crate::reclaim::remove_gradually(storage, dir, &names)?;
        storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    Ok(())
}

/// Serialises the fsyncs of one log and remembers its first failure. File
/// syncs run one at a time (the syncer's and a rotation's may be of the
/// same segment), and so do directory syncs (a rotation's and the snapshot
/// thread's are of the same directory); a file sync and a directory sync
/// may overlap, being of different inodes.
#[derive(Default)]
struct SyncGate {
    /// Why the log failed, once it has.
    failed: Mutex<Option<String>>,
    files: Mutex<()>,
    dirs: Mutex<()>,
}

impl SyncGate {
    /// Syncs `file` unless the log already failed; a failure poisons it.
    fn sync_file(&self, file: &dyn StorageFile) -> std::io::Result<()> {
        let _one_at_a_time = self.files.lock();
        self.check()?;
        file.sync_data().inspect_err(|e| self.fail(format!("fsync failed: {e}")))
    }

    /// Syncs `dir` unless the log already failed; a failure poisons it.
    fn sync_dir(&self, storage: &dyn Storage, dir: &Path) -> std::io::Result<()> {
        let _one_at_a_time = self.dirs.lock();
        self.check()?;
        storage.sync_dir(dir).inspect_err(|e| self.fail(format!("fsync of {} failed: {e}", dir.display())))
    }

    fn check(&self) -> std::io::Result<()> {
        match &*self.failed.lock() {
            Some(why) => {
                Err(std::io::Error::other(format!("the log failed earlier ({why}); nothing more is made durable")))
            }
            None => Ok(()),
        }
    }

    /// Poisons the log; the first reason given is kept.
    fn fail(&self, why: String) {
        self.failed.lock().get_or_insert(why);
    }

    fn is_poisoned(&self) -> bool {
        self.failed.lock().is_some()
    }
}

/// A log's storage whose directory syncs go through the log's gate.
struct GatedStorage {
    inner: Arc<dyn Storage>,
    gate: Arc<SyncGate>,
}

impl Storage for GatedStorage {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn create(&self, path: &Path) -> std::io::Result<Arc<dyn StorageFile>> {
        self.inner.create(path)
    }

    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn StorageFile>> {
        self.inner.open(path)
    }

    fn read(&self, path: &Path) -> std::io::Result<FileBytes> {
        self.inner.read(path)
    }

    fn len(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.len(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.gate.sync_dir(self.inner.as_ref(), dir)
    }
}

/// What makes the records written so far durable: one `fdatasync` of the
/// current segment (earlier segments were synced when they filled).
#[derive(Clone)]
pub struct SyncPoint {
    file: Arc<dyn StorageFile>,
    /// The last LSN written before this point.
    lsn: u64,
    durable_lsn: Arc<AtomicU64>,
    gate: Arc<SyncGate>,
}

impl SyncPoint {
    /// Makes every record up to `lsn()` durable. Never call it again after
    /// it failed: the writer is poisoned and the process must stop.
    pub fn sync(&self) -> std::io::Result<()> {
        self.gate.sync_file(self.file.as_ref())?;
        self.durable_lsn.fetch_max(self.lsn, Ordering::Release);
        Ok(())
    }

    pub fn lsn(&self) -> u64 {
        self.lsn
    }
}

impl LogWriter {
    /// Continues the log recovery found (`tail`), or starts one in an empty
    /// directory. A continued segment has everything past its last valid
    /// record cut away first (a torn tail, or unacknowledged leftovers).
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: LogOptions,
        tail: LogTail,
    ) -> Result<LogWriter, WalError> {
        assert!(options.segment_bytes_max >= SEGMENT_BYTES_MIN, "segments of at least 1 MiB");
        storage.create_dir_all(dir).map_err(|e| WalError::io("create", dir, e))?;
        // The directory's own entry must survive a power cut too.
        if let Some(parent) = dir.parent() {
            storage.sync_dir(parent).map_err(|e| WalError::io("fsync directory", parent, e))?;
        }
        let recycled_waiting = tidy_reusable_files(storage.as_ref(), dir, options)?;
        let mut writer = LogWriter {
            storage,
            dir: dir.to_path_buf(),
            options,
            segment: None,
            segment_end: 0,
            buffer: AlignedBytes::with_capacity(1 << 20),
            cuts: Vec::new(),
            planned_end: 0,
            next_lsn: tail.next_lsn,
            durable_lsn: Arc::new(AtomicU64::new(tail.next_lsn - 1)),
            gate: Arc::default(),
            counters: LogCounters::default(),
            spare: None,
            recycled_waiting,
        };
        match tail.segment {
            Some((path, end)) => {
                let file = writer.storage.open(&path).map_err(|e| WalError::io("open", &path, e))?;
                // Everything past the last valid record is garbage or unacknowledged.
                file.set_len_allocated(end).map_err(|e| WalError::io("truncate", &path, e))?;
                file.set_len_allocated(options.segment_bytes_max.max(end))
                    .map_err(|e| WalError::io("preallocate", &path, e))?;
                file.sync_data().map_err(|e| WalError::io("fsync", &path, e))?;
                // Its name may not be durable yet: the run that made it may
                // have stopped between the rename and the directory sync.
                writer
                    .gate
                    .sync_dir(writer.storage.as_ref(), dir)
                    .map_err(|e| WalError::io("fsync directory", dir, e))?;
                writer.segment = Some(file);
                writer.segment_end = end;
            }
            None => {
                // A new log: its first segment is made like any other.
                if writer.needs_spare() {
                    let spare = SpareSegment::prepare(writer.storage.as_ref(), dir, options.segment_bytes_max)?;
                    writer.set_spare(spare);
                }
                writer.create_segment(writer.next_lsn)?
            }
        }
        writer.planned_end = writer.segment_end;
        Ok(writer)
    }

    /// The LSN the next appended record gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Bytes framed and not yet written.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// What this writer has done so far.
    pub fn counters(&self) -> LogCounters {
        self.counters
    }

    pub fn options(&self) -> LogOptions {
        self.options
    }

    /// The log's storage for other threads working in its directory: their
    /// directory syncs go through the log's `SyncGate` (module comment).
    pub fn gated_storage(&self) -> Arc<dyn Storage> {
        Arc::new(GatedStorage { inner: Arc::clone(&self.storage), gate: Arc::clone(&self.gate) })
    }

    /// Whether the writer uses spare segments and has neither a spare nor,
    /// as far as it knows, a recycled segment for its next rotation.
    pub fn needs_spare(&self) -> bool {
        self.options.spare_segments && self.spare.is_none() && !self.recycled_waiting
    }

    /// Hands the writer what `SpareSegment::prepare` made for this log's
    /// segment size: a spare, or none because recycled segments are waiting
    /// (the next rotation looks for them).
    pub fn set_spare(&mut self, spare: Option<SpareSegment>) {
        match spare {
            Some(spare) => {
                assert_eq!(spare.bytes, self.options.segment_bytes_max, "a spare of this log's segment size");
                self.spare = Some(spare);
            }
            None => self.recycled_waiting = true,
        }
    }

    /// Frames one record whose payload `encode` appends to the buffer it is
    /// given (at a 16-aligned position). Returns the record's LSN.
    pub fn append(&mut self, encode: impl FnOnce(&mut AlignedBytes)) -> u64 {
        let start = self.buffer.len();
        debug_assert_eq!(start % 16, 0);
        self.buffer.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
        encode(&mut self.buffer);
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        seal_record(&mut self.buffer[start..], lsn, self.durable_lsn.load(Ordering::Acquire));
        let len = record_len(self.buffer.len() - start - RECORD_HEADER_LEN);
        self.buffer.resize(start + len, 0);
        if self.planned_end + len as u64 > self.options.segment_bytes_max {
            self.cuts.push((start, lsn));
            self.planned_end = SEGMENT_HEADER_LEN as u64;
        }
        self.planned_end += len as u64;
        lsn
    }

    /// Writes every framed record (rotating segments as needed) and returns
    /// what makes them durable.
    pub fn write(&mut self) -> Result<SyncPoint, WalError> {
        if self.gate.is_poisoned() {
            return Err(WalError::Poisoned);
        }
        let result = self.write_buffer();
        if let Err(error) = &result {
            self.gate.fail(error.to_string());
        }
        result
    }

    fn write_buffer(&mut self) -> Result<SyncPoint, WalError> {
        let mut from = 0;
        let cuts = std::mem::take(&mut self.cuts);
        for &(cut, first_lsn) in &cuts {
            self.write_to_segment(from, cut)?;
            let full = self.segment.as_ref().expect("a writer always has a segment");
            self.gate.sync_file(full.as_ref()).map_err(|e| WalError::io("fsync", &self.dir, e))?;
            self.durable_lsn.fetch_max(first_lsn - 1, Ordering::Release);
            self.create_segment(first_lsn)?;
            from = cut;
        }
        self.write_to_segment(from, self.buffer.len())?;
        self.buffer.clear();
        self.cuts = cuts;
        self.cuts.clear();
        let file = Arc::clone(self.segment.as_ref().expect("a writer always has a segment"));
        let (durable_lsn, gate) = (Arc::clone(&self.durable_lsn), Arc::clone(&self.gate));
        Ok(SyncPoint { file, lsn: self.next_lsn - 1, durable_lsn, gate })
    }

    /// Writes `buffer[from..to]` at the segment's end, followed by the end
    /// marker where the segment has room (one write when the records are the
    /// buffer's last, two at a cut).
    fn write_to_segment(&mut self, from: usize, to: usize) -> Result<(), WalError> {
        if from == to {
            return Ok(());
        }
        let segment = self.segment.as_ref().expect("a writer always has a segment");
        let records_end = self.segment_end + (to - from) as u64;
        let room = self.options.segment_bytes_max.saturating_sub(records_end);
        let marker = room.min(END_MARKER.len() as u64) as usize;
        let written = if to == self.buffer.len() {
            self.buffer.extend_from_slice(&END_MARKER[..marker]);
            let written = segment.write_at(self.segment_end, &self.buffer[from..to + marker]);
            self.buffer.resize(to, 0);
            written
        } else {
            segment
                .write_at(self.segment_end, &self.buffer[from..to])
                .and_then(|()| segment.write_at(records_end, &END_MARKER[..marker]))
        };
        written.map_err(|e| WalError::io("write", &self.dir, e))?;
        self.segment_end = records_end;
        self.counters.bytes_written += (to - from) as u64;
        Ok(())
    }

    /// Makes the segment starting at `first_lsn` from a recycled segment,
    /// the spare, or a new preallocated file, with its header and an end
    /// marker written and synced before it has the segment's name, and
    /// names it durably.
    fn create_segment(&mut self, first_lsn: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment_file_name(first_lsn));
        // A recycled file holds older records after its header.
        let mut start = [0u8; SEGMENT_HEADER_LEN + END_MARKER.len()];
        start[..SEGMENT_HEADER_LEN].copy_from_slice(&encode_segment_header(self.options.shard, first_lsn));
        let reused = match self.take_recycled()? {
            Some(recycled) => {
                // Its rename from a segment's name (by the snapshot thread)
                // must be durable before it gets a newer header: a power
                // cut could otherwise leave that older name on a file whose
                // header names another segment.
                self.gate
                    .sync_dir(self.storage.as_ref(), &self.dir)
                    .map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
                self.counters.segments_recycled += 1;
                Some(recycled)
            }
            None => self.spare.take().map(|spare| spare.path),
        };
        let file = match &reused {
            Some(from) => self.storage.open(from).map_err(|e| WalError::io("open", from, e))?,
            None => {
                let file = self.storage.create(&path).map_err(|e| WalError::io("create", &path, e))?;
                file.set_len_allocated(self.options.segment_bytes_max)
                    .map_err(|e| WalError::io("preallocate", &path, e))?;
                file
            }
        };
        let at = reused.as_deref().unwrap_or(&path);
        file.write_at(0, &start).map_err(|e| WalError::io("write", at, e))?;
        self.gate.sync_file(file.as_ref()).map_err(|e| WalError::io("fsync", at, e))?;
        if let Some(from) = &reused {
            self.storage.rename(from, &path).map_err(|e| WalError::io("rename", from, e))?;
        }
        self.gate
            .sync_dir(self.storage.as_ref(), &self.dir)
            .map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
        self.segment = Some(file);
        self.segment_end = SEGMENT_HEADER_LEN as u64;
        self.counters.segments_created += 1;
        Ok(())
    }

    /// The oldest recycled segment, if any waits (the writer is the only
    /// one that takes them; a snapshot may have added some since it last
    /// looked, so it looks at every rotation).
    fn take_recycled(&mut self) -> Result<Option<PathBuf>, WalError> {
        if !self.options.spare_segments {
            return Ok(None);
        }
        let recycled = recycled_segments(self.storage.as_ref(), &self.dir)?;
        self.recycled_waiting = recycled.len() > 1;
        Ok(recycled.first().map(|name| self.dir.join(name)))
    }
}

/// Tidies the files a log reuses as segments before a writer opens it, and
/// says whether recycled segments wait. With spares off, the spare and the
/// recycled segments an earlier run left are removed (nothing will take
/// them); with spares on, recycled segments of another length (the segment
/// size changed) are.
fn tidy_reusable_files(storage: &dyn Storage, dir: &Path, options: LogOptions) -> Result<bool, WalError> {
    let recycled = recycled_segments(storage, dir)?;
    if !options.spare_segments {
        let mut names = recycled;
        if storage.exists(&dir.join(SPARE_SEGMENT_NAME)) {
            names.push(SPARE_SEGMENT_NAME.to_owned());
        }
        remove_gradually(storage, dir, names)?;
        return Ok(false);
    }
    let mut other_length = Vec::new();
    for name in &recycled {
        let path = dir.join(name);
        if storage.len(&path).map_err(|e| WalError::io("stat", &path, e))? != options.segment_bytes_max {
            other_length.push(name.clone());
        }
    }
    let waiting = recycled.len() > other_length.len();
    remove_gradually(storage, dir, other_length)?;
    Ok(waiting)
}

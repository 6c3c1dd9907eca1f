//! stockd-wal: the segmented, checksummed, group-committed write-ahead log,
//! and snapshot files. It knows bytes, not inventory: it never imports the
//! engine. A payload is whatever the engine encodes (an rkyv archive); the
//! log frames it with a length, a CRC32C and an LSN, keeps it 16-aligned so
//! it can be read in place, and says exactly which records survived a crash.
//!
//! # Layout
//! - `format`: the bytes on disk, documented byte by byte (also in
//!   `docs/wal-format.md`), with the codec for headers and frames.
//! - `storage`: the file layer (`Storage`), and `FsStorage`, the real one.
//! - `mem_storage`: a fault-injecting, crash-simulating `Storage` for tests.
//! - `writer`: appending, group commit (`SyncPoint`), segment rotation,
//!   recycled segments and spare segments made ahead.
//! - `reader`: replaying a log, torn tails versus corruption, segment GC
//!   (covered segments removed or recycled).
//! - `reclaim`: removing big files without stalling the live log's fsync.
//! - `snapshot`: atomic snapshot files.
//!
//! Durability rules kept here: fsync before acknowledging (the caller runs
//! the `SyncPoint` before it answers), fsync the directory on every file
//! creation and rename that a reader must find (a spare or recycled
//! segment becomes one by its rename, after its header is synced), never
//! retry a failed fsync (the writer is poisoned), a checksum on every record
//! and header.
// One `unsafe` block, allowed where it stands: mapping files for reading
// (`FsStorage::read`).
#![deny(unsafe_code)]

pub mod format;
pub mod mem_storage;
pub mod reader;
pub mod reclaim;
pub mod snapshot;
pub mod storage;
pub mod writer;

pub use mem_storage::MemStorage;
pub use reader::{list_segments, scan, ScanOutcome, SegmentFile};
pub use snapshot::{list_snapshots, read_snapshot, write_snapshot_with, LoadedSnapshot, SnapshotFile};
pub use storage::{AlignedBytes, FileBytes, FsStorage, Storage, StorageFile};
pub use writer::{
    LogCounters, LogOptions, LogTail, LogWriter, SpareSegment, SyncPoint, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN,
    SPARE_SEGMENT_NAME,
};

use std::path::{Path, PathBuf};

/// Background work beside the shards (serializing a snapshot, touching the
/// pages of the image a shard will capture into) gives up its core after
/// every this many bytes (`std::thread::yield_now`). Running at a higher
/// nice value is not enough: the scheduler (EEVDF) lets a running task
/// finish its time slice, about 1.5 ms here, before a task it wakes gets
/// the core, and a request crosses several wake-ups (HTTP worker, shard,
/// syncer). 64 KiB is tens of microseconds of work; a yield with nothing
/// else runnable costs about a microsecond. Measured with paced
/// `/v1/batch` load at half the maximum rate on 2 cores (README.md).
pub const BACKGROUND_YIELD_BYTES: usize = 64 << 10;

/// Everything that can go wrong with the log or a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("{operation} {}: {source}", path.display())]
    Io { operation: &'static str, path: PathBuf, source: std::io::Error },
    #[error("corrupt {} at byte offset {offset}: {reason}; run `stockd wal verify` on the data directory", path.display())]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("the log failed earlier and accepts nothing more (the process must restart)")]
    Poisoned,
    /// A snapshot's payload could not be produced (nothing failed on disk).
    #[error("the snapshot could not be encoded: {reason}")]
    Encode { reason: String },
}

impl WalError {
    pub fn io(operation: &'static str, path: &Path, source: std::io::Error) -> WalError {
        WalError::Io { operation, path: path.to_path_buf(), source }
    }
}

//! The engine's data directory: where each shard's log and snapshots live,
//! the manifest that pins the shard count (routing depends on it), the lock
//! that keeps a second process out, and the options of the durable store.
//!
//! ```text
//! DATA_DIR/
//!   stockd.manifest        "stockd data directory" / "format 2" / "shards N"
//!   LOCK                   flock()ed by the running process
//!   STORAGE_FAILED         the boot id and reason of a storage failure, if
//!                          one happened (`FailureMarker`; .tmp while written)
//!   shard-00/              00000000000000000001.wal, ..., snapshot-<lsn>.snap,
//!                          spare-segment.tmp (the next segment, made ahead)
//!   shard-01/
//! ```
//!
//! `StoreError` is the engine's error for opening and recovering a data
//! directory. It is separate from `Rejection` on purpose: a rejection is an
//! answer to a request with a stable code; these are startup failures an
//! operator reads.

use crate::limits::SHARDS_MAX;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use stockd_wal::format::FORMAT_VERSION;
use stockd_wal::{FsStorage, Storage, WalError, SEGMENT_BYTES_DEFAULT};

/// When a batch counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before any answer (group-committed). The default.
    Always,
    /// Write but never sync: a crash loses acknowledged work. For measuring
    /// the CPU path only.
    Never,
}

/// Snapshot after this many bytes of log since the last snapshot.
pub const SNAPSHOT_EVERY_BYTES_DEFAULT: u64 = 128 << 20;

#[derive(Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub segment_bytes_max: u64,
    pub snapshot_every_bytes: u64,
    /// Make each shard's next segment ahead of need (see `stockd_wal::SpareSegment`):
    /// faster fdatasyncs, at the price of writing every segment's zeros
    /// (README.md, Known limitations).
    pub spare_segments: bool,
    pub storage: Arc<dyn Storage>,
    /// Take an exclusive lock on the directory (real filesystems only).
    pub lock: bool,
    /// This machine's boot (see `FailureMarker`); tests pretend a reboot
    /// by changing it.
    pub boot_id: Option<String>,
}

impl StoreConfig {
    /// The defaults: the real filesystem, fsync always, 64 MiB segments.
    pub fn new(data_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.into(),
            fsync: FsyncPolicy::Always,
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            snapshot_every_bytes: SNAPSHOT_EVERY_BYTES_DEFAULT,
            spare_segments: true,
            storage: Arc::new(FsStorage),
            lock: true,
            boot_id: current_boot_id(),
        }
    }
}

/// The kernel's id of the current boot, where it has one (Linux).
pub fn current_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
}

/// The file that records a storage failure in the data directory.
pub const FAILURE_MARKER: &str = "STORAGE_FAILED";

/// A storage failure, recorded in the data directory so that the next start
/// in the same boot refuses. After a failed fsync, Linux may keep the pages
/// that did not reach the disk in its cache, marked clean: a start before a
/// reboot would read them back as if they were durable, acknowledge new
/// records after them, and lose both at the next reboot. After a reboot the
/// cache holds only what the disk holds, and the start removes the marker.
///
/// The marker is written without an fsync: it only has to last until the
/// next boot, which the page cache does (and the disk may be failing).
pub(crate) struct FailureMarker {
    pub storage: Arc<dyn Storage>,
    pub data_dir: PathBuf,
    pub boot_id: Option<String>,
}

impl FailureMarker {
    /// Writes the marker (a temp file renamed, so it is whole). Best
    /// effort: the disk has just failed; the process stops either way.
    pub fn record(&self, reason: &str) {
        let [temp, path] = self.paths();
        let boot = self.boot_id.as_deref().unwrap_or("unknown");
        let text = format!("boot_id {boot}\nreason {}\n", reason.replace('\n', " "));
        let write = || -> std::io::Result<()> {
            if self.storage.exists(&temp) {
                self.storage.remove(&temp)?;
            }
            self.storage.create(&temp)?.write_at(0, text.as_bytes())?;
            self.storage.rename(&temp, &path)
        };
        let _ = write();
    }

    /// Refuses a start in the boot that recorded a failure, or when either
    /// boot is unknown. A marker without its boot id (cut short by a power
    /// cut, being unsynced) can only be from an earlier boot.
    pub fn check(&self) -> Result<(), StoreError> {
        let [_, path] = self.paths();
        if !self.storage.exists(&path) {
            return Ok(());
        }
        let bytes = self.storage.read(&path).map_err(|e| WalError::io("read", &path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let field = |name: &str| text.lines().find_map(|line| line.strip_prefix(name)).map(str::trim);
        let reason = field("reason ").unwrap_or("no reason recorded").to_owned();
        match (field("boot_id "), self.boot_id.as_deref()) {
            (None, _) => Ok(()),
            (Some(recorded), Some(now)) if recorded != "unknown" && recorded != now => Ok(()),
            _ => Err(StoreError::FailedThisBoot { path, reason }),
        }
    }

    /// Records `result`'s error if it is a storage failure
    /// (`StoreError::is_storage_failure`), and passes it on.
    pub fn recorded<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result {
            if error.is_storage_failure() {
                self.record(&error.to_string());
            }
        }
        result
    }

    /// The temp file the marker is written to, and the marker.
    fn paths(&self) -> [PathBuf; 2] {
        [self.data_dir.join(format!("{FAILURE_MARKER}.tmp")), self.data_dir.join(FAILURE_MARKER)]
    }

    /// Removes the marker after a successful start in a later boot.
    pub fn clear(&self) -> Result<(), StoreError> {
        let mut removed = false;
        for file in self.paths() {
            if self.storage.exists(&file) {
                self.storage.remove(&file).map_err(|e| WalError::io("remove", &file, e))?;
                removed = true;
            }
        }
        if removed {
            self.storage.sync_dir(&self.data_dir).map_err(|e| WalError::io("fsync directory", &self.data_dir, e))?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("{} holds data for {found} shards but {configured} were configured; start with --shards {found}", path.display())]
    ShardCountMismatch { path: PathBuf, found: usize, configured: usize },
    #[error("{} is in use by another stockd process", path.display())]
    Locked { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("snapshot {} is unusable: {reason}; run `stockd wal verify` on the data directory", path.display())]
    Snapshot { path: PathBuf, reason: String },
    #[error("{newest}; the snapshot before it could not be used either: {older}")]
    SnapshotsUnusable { newest: Box<StoreError>, older: Box<StoreError> },
    #[error("replay of shard {shard} diverged at LSN {lsn}: {reason}")]
    Replay { shard: u16, lsn: u64, reason: String },
    #[error(
        "{} has {shards} shards, each numbering its own LSNs: a cut at one LSN would split carts that span \
         shards; cut by time (--until-time), which is the same moment on every shard",
        path.display()
    )]
    LsnCutAcrossShards { path: PathBuf, shards: usize },
    #[error(
        "storage failed earlier in this boot of the machine ({reason}): the kernel may still cache writes that \
         never reached the disk, and a start now would read them back as durable. Fix the disk, reboot, then \
         start again ({} records the failure; delete it only if no fsync failed, e.g. a full disk)",
        path.display()
    )]
    FailedThisBoot { path: PathBuf, reason: String },
}

impl StoreError {
    /// A failed write or sync (not, say, a missing file or a refused
    /// permission): the disk failed. Recorded in the data directory
    /// (`FailureMarker::recorded`); the server exits 3 on it.
    pub fn is_storage_failure(&self) -> bool {
        const WRITES: [&str; 5] = ["write", "fsync", "fsync directory", "truncate", "preallocate"];
        matches!(self, StoreError::Wal(WalError::Io { operation, .. }) if WRITES.contains(operation))
    }
}

pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard:02}"))
}

const MANIFEST: &str = "stockd.manifest";
/// Shard directories a start looks into when there is no manifest (every
/// shard count a directory can have).
const MANIFESTLESS_SHARDS_CHECKED: usize = crate::limits::SHARDS_MAX;

/// The formats only development builds wrote, which this build refuses
/// rather than keep their decoders (docs/wal-format.md, Versions): format 1
/// logged every command at the size of the largest; format 2's SKU versions
/// did not count commits, so its compare-and-set stock changes would replay
/// against other versions.
fn development_format_refused(format: u32) -> Option<String> {
    let written = match format {
        1 => "before 2026-11-24",
        2 => "before 2026-11-25",
        _ => return None,
    };
    Some(format!(
        "a data directory of format {format}, written by a development build {written}; this build reads \
         format {FORMAT_VERSION}. Replay it with the build that wrote it, or start a new directory"
    ))
}

/// The shard count recorded in `data_dir`, if it has a manifest.
pub fn recorded_shards(storage: &dyn Storage, data_dir: &Path) -> Result<Option<usize>, StoreError> {
    let path = data_dir.join(MANIFEST);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = storage.read(&path).map_err(|e| WalError::io("read", &path, e))?;
    let bad = |reason: &str| StoreError::Manifest { path: path.clone(), reason: reason.to_owned() };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some("stockd data directory") {
        return Err(bad("not a stockd manifest"));
    }
    let format = lines.next().and_then(|line| line.strip_prefix("format ")).and_then(|n| n.parse::<u32>().ok());
    if format != Some(FORMAT_VERSION) {
        let reason = format
            .and_then(development_format_refused)
            .unwrap_or_else(|| format!("not a data directory of format {FORMAT_VERSION}, the one this build reads"));
        return Err(bad(&reason));
    }
    let shards = lines.next().and_then(|line| line.strip_prefix("shards ")).and_then(|n| n.parse().ok());
    match shards {
        Some(shards) if (1..=SHARDS_MAX).contains(&shards) => Ok(Some(shards)),
        _ => Err(bad("no valid `shards N` line")),
    }
}

/// Refuses a data directory whose manifest names a shard directory that
/// does not exist: data was lost, and reading it as an empty shard would
/// serve (or verify, or replay) a state without that shard's stock.
pub(crate) fn check_shard_dirs(storage: &dyn Storage, data_dir: &Path, shards: usize) -> Result<(), StoreError> {
    match (0..shards).map(|shard| shard_dir(data_dir, shard)).find(|dir| !storage.exists(dir)) {
        Some(missing) => Err(StoreError::Manifest {
            path: missing,
            reason: "this shard's directory is missing: data was lost; restore the directory from a backup".into(),
        }),
        None => Ok(()),
    }
}

/// Makes `data_dir` a data directory for `shards` shards, or checks that it
/// is one: in a new directory the shard directories are created and made
/// durable *before* the manifest, so "the manifest exists" implies "every
/// shard directory does", and a missing one is refused (lost data), never
/// silently recovered as empty.
pub(crate) fn prepare_layout(storage: &dyn Storage, data_dir: &Path, shards: usize) -> Result<(), StoreError> {
    storage.create_dir_all(data_dir).map_err(|e| WalError::io("create", data_dir, e))?;
    if let Some(parent) = data_dir.parent() {
        // The data directory's own entry survives a power cut too.
        storage.sync_dir(parent).map_err(|e| WalError::io("fsync directory", parent, e))?;
    }
    match recorded_shards(storage, data_dir)? {
        Some(found) if found != shards => {
            Err(StoreError::ShardCountMismatch { path: data_dir.to_path_buf(), found, configured: shards })
        }
        Some(_) => check_shard_dirs(storage, data_dir, shards),
        None => {
            // A new directory. One whose shard directories hold files but
            // that has no manifest was not made by a start (which writes the
            // manifest before any file): a `wal replay --into` that did not
            // finish, or a lost manifest. Starting would serve a partial state.
            for shard in 0..MANIFESTLESS_SHARDS_CHECKED {
                let dir = shard_dir(data_dir, shard);
                let files = match storage.exists(&dir) {
                    true => storage.list(&dir).map_err(|e| WalError::io("list", &dir, e))?,
                    false => Vec::new(),
                };
                if !files.is_empty() {
                    return Err(StoreError::Manifest {
                        path: data_dir.join(MANIFEST),
                        reason: format!(
                            "missing, but {} holds files: an unfinished `stockd wal replay --into`, or a lost \
                             manifest; replay again into a new directory, or restore the manifest from a backup",
                            dir.display()
                        ),
                    });
                }
            }
            for shard in 0..shards {
                let dir = shard_dir(data_dir, shard);
                storage.create_dir_all(&dir).map_err(|e| WalError::io("create", &dir, e))?;
            }
            storage.sync_dir(data_dir).map_err(|e| WalError::io("fsync directory", data_dir, e))?;
            write_manifest(storage, data_dir, shards)
        }
    }
}

/// Records the shard count (atomically: temp, fsync, rename, fsync).
pub(crate) fn write_manifest(storage: &dyn Storage, data_dir: &Path, shards: usize) -> Result<(), StoreError> {
    let path = data_dir.join(MANIFEST);
    let temp = data_dir.join(format!("{MANIFEST}.tmp"));
    let text = format!("stockd data directory\nformat {FORMAT_VERSION}\nshards {shards}\n");
    if storage.exists(&temp) {
        storage.remove(&temp).map_err(|e| WalError::io("remove", &temp, e))?;
    }
    let file = storage.create(&temp).map_err(|e| WalError::io("create", &temp, e))?;
    file.write_at(0, text.as_bytes()).map_err(|e| WalError::io("write", &temp, e))?;
    file.sync_data().map_err(|e| WalError::io("fsync", &temp, e))?;
    storage.rename(&temp, &path).map_err(|e| WalError::io("rename", &temp, e))?;
    storage.sync_dir(data_dir).map_err(|e| WalError::io("fsync directory", data_dir, e))?;
    Ok(())
}

/// A `flock` on `DATA_DIR/LOCK`, released when dropped (or when the process
/// dies, however it dies). A server holds it exclusively while it runs; the
/// read-only SRE tools hold it shared, so they run side by side but never
/// beside a server.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// The writer's lock: created if missing.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, StoreError> {
        let path = data_dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| WalError::io("open", &path, e))?;
        DirLock::lock(file, data_dir, rustix::fs::FlockOperation::NonBlockingLockExclusive)
    }

    /// A reader's lock: opens `LOCK` read-only, so a read-only copy of a
    /// data directory can be inspected (if `LOCK` is missing no server ever
    /// ran there, and it is created when the directory is writable).
    pub fn acquire_shared(data_dir: &Path) -> Result<DirLock, StoreError> {
        let path = data_dir.join("LOCK");
        let file = match File::open(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                OpenOptions::new().create(true).truncate(false).write(true).open(&path)
            }
            opened => opened,
        }
        .map_err(|e| WalError::io("open", &path, e))?;
        DirLock::lock(file, data_dir, rustix::fs::FlockOperation::NonBlockingLockShared)
    }

    fn lock(file: File, data_dir: &Path, operation: rustix::fs::FlockOperation) -> Result<DirLock, StoreError> {
        match rustix::fs::flock(&file, operation) {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked { path: data_dir.to_path_buf() }),
            Err(errno) => Err(WalError::io("flock", &data_dir.join("LOCK"), errno.into()).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockd_wal::MemStorage;

    fn manifest_error(storage: &MemStorage, data_dir: &Path) -> String {
        match recorded_shards(storage, data_dir) {
            Err(StoreError::Manifest { reason, .. }) => reason,
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }

    /// Whether a start with `now` as its boot id is refused by a marker
    /// whose text is `text`.
    fn refused(text: &str, now: Option<&str>) -> bool {
        let storage = MemStorage::new();
        let data_dir = PathBuf::from("/data");
        storage.create_dir_all(&data_dir).unwrap();
        storage.create(&data_dir.join(FAILURE_MARKER)).unwrap().write_at(0, text.as_bytes()).unwrap();
        let marker = FailureMarker { storage, data_dir, boot_id: now.map(str::to_owned) };
        match marker.check() {
            Ok(()) => false,
            Err(StoreError::FailedThisBoot { reason, .. }) => {
                assert!(reason == "disk on fire" || !text.contains("disk on fire"), "{reason}");
                true
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_failure_record_refuses_only_a_start_in_its_boot() {
        let record = |boot: &str| format!("boot_id {boot}\nreason disk on fire\n");
        assert!(refused(&record("boot-a"), Some("boot-a")), "the same boot");
        assert!(!refused(&record("boot-a"), Some("boot-b")), "after a reboot");
        assert!(refused(&record("unknown"), Some("boot-b")), "recorded where no boot id was known");
        assert!(refused(&record("boot-a"), None), "no boot id known now");
        // Cut short by a power cut (it is never synced): an earlier boot.
        assert!(!refused("", Some("boot-b")), "empty");
        assert!(!refused("boot_i", Some("boot-b")), "torn");
        assert!(!refused("boot_id boot-", Some("boot-a")), "torn inside the id");
    }

    #[test]
    fn a_directory_of_another_format_is_refused_with_its_format_named() {
        let storage = MemStorage::new();
        let data_dir = Path::new("/data");
        storage.create_dir_all(data_dir).unwrap();
        write_manifest(storage.as_ref(), data_dir, 3).unwrap();
        assert_eq!(recorded_shards(storage.as_ref(), data_dir).unwrap(), Some(3));

        let manifest = data_dir.join(MANIFEST);
        let overwrite = |text: &str| {
            storage.remove(&manifest).unwrap();
            let file = storage.create(&manifest).unwrap();
            file.write_at(0, text.as_bytes()).unwrap();
        };
        for old in [1, 2] {
            overwrite(&format!("stockd data directory\nformat {old}\nshards 3\n"));
            let reason = manifest_error(&storage, data_dir);
            assert!(
                reason.contains(&format!("format {old}")) && reason.contains(&format!("reads format {FORMAT_VERSION}")),
                "{reason}"
            );
        }
        overwrite("stockd data directory\nformat 9\nshards 3\n");
        let reason = manifest_error(&storage, data_dir);
        assert!(reason.contains(&format!("not a data directory of format {FORMAT_VERSION}")), "{reason}");
        overwrite("something else\nformat 2\nshards 3\n");
        assert_eq!(manifest_error(&storage, data_dir), "not a stockd manifest");
    }
}

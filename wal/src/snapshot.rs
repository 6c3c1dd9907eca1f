//! Snapshot files: one shard's state as of an LSN, written atomically
//! (temp file, fsync, rename, fsync of the directory), so a reader only
//! ever finds complete, checksummed snapshots under their final name.

use crate::format::{
    decode_snapshot, encode_snapshot_header, parse_snapshot_file_name, snapshot_file_name, SnapshotHeader,
    SNAPSHOT_HEADER_LEN,
};
use crate::storage::{FileBytes, Storage, StorageFile};
use crate::WalError;
use std::io;
use std::path::{Path, PathBuf};

/// Bytes of snapshot written between two syncs of it.
const SNAPSHOT_SYNC_CHUNK: usize = 1 << 20;
// The yield check in `PayloadWriter::write` finds 64 KiB boundaries of a
// chunk that restarts at 0.
const _: () = assert!(SNAPSHOT_SYNC_CHUNK % crate::BACKGROUND_YIELD_BYTES == 0);

/// A snapshot file found in a shard's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub lsn: u64,
}

/// Snapshot files in `dir`, newest first.
pub fn list_snapshots(storage: &dyn Storage, dir: &Path) -> Result<Vec<SnapshotFile>, WalError> {
    if !storage.exists(dir) {
        return Ok(Vec::new());
    }
    let names = storage.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut snapshots: Vec<SnapshotFile> = names
        .iter()
        .filter_map(|name| Some(SnapshotFile { path: dir.join(name), lsn: parse_snapshot_file_name(name)? }))
        .collect();
    snapshots.sort_by_key(|snapshot| std::cmp::Reverse(snapshot.lsn));
    Ok(snapshots)
}

/// Writes the snapshot of `shard` at `lsn` durably, its payload streamed by
/// `write_payload` (whose error, if it fails without a disk failure, is
/// `WalError::Encode`). Returns the file and the payload's length.
pub fn write_snapshot_with(
    storage: &dyn Storage,
    dir: &Path,
    shard: u16,
    lsn: u64,
    write_payload: impl FnOnce(&mut dyn io::Write) -> Result<(), String>,
) -> Result<(PathBuf, u64), WalError> {
    let path = dir.join(snapshot_file_name(lsn));
    let temp = dir.join(format!("{}.tmp", snapshot_file_name(lsn)));
    if storage.exists(&temp) {
        storage.remove(&temp).map_err(|e| WalError::io("remove", &temp, e))?;
    }
    let file = storage.create(&temp).map_err(|e| WalError::io("create", &temp, e))?;
    let mut payload =
        PayloadWriter { file: file.as_ref(), temp: &temp, chunk: Vec::new(), len: 0, crc: 0, failed: None };
    let encoded = write_payload(&mut payload);
    match (payload.failed.take(), encoded) {
        (Some(failed), _) => return Err(failed),
        (None, Err(reason)) => {
            // Nothing failed on disk: the partial file goes (it may be big).
            drop(file);
            let name = format!("{}.tmp", snapshot_file_name(lsn));
            crate::reclaim::remove_gradually(storage, dir, &[name])?;
            return Err(WalError::Encode { reason });
        }
        (None, Ok(())) => payload.write_chunk(false)?,
    }
    // The header last, with the payload's length and checksum, in the same
    // sync as the last chunk.
    let header = encode_snapshot_header(shard, lsn, payload.len, payload.crc);
    file.write_at(0, &header).map_err(|e| WalError::io("write", &temp, e))?;
    file.sync_data().map_err(|e| WalError::io("fsync", &temp, e))?;
    storage.rename(&temp, &path).map_err(|e| WalError::io("rename", &temp, e))?;
    storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    Ok((path, payload.len))
}

/// Where a snapshot's payload streams into its temp file: a chunk at a
/// time, checksummed as it goes, each full chunk synced so the disk never
/// holds a snapshot's worth of dirty pages in front of the WAL's next
/// fdatasync. No buffer of the whole payload exists (serializing a 200 MB
/// payload into memory first cost its page faults and its free on every
/// snapshot). Serializing yields the core at each `BACKGROUND_YIELD_BYTES`
/// boundary the chunk crosses (once per `write` call: a single large write,
/// such as the SKU key arena, yields once for up to 1 MiB).
struct PayloadWriter<'a> {
    file: &'a dyn StorageFile,
    temp: &'a Path,
    chunk: Vec<u8>,
    /// Payload bytes written to the file so far, and their CRC32C.
    len: u64,
    crc: u32,
    /// The first write or sync that failed; nothing is written after it.
    failed: Option<WalError>,
}

impl PayloadWriter<'_> {
    fn write_chunk(&mut self, sync: bool) -> Result<(), WalError> {
        let offset = SNAPSHOT_HEADER_LEN as u64 + self.len;
        self.file.write_at(offset, &self.chunk).map_err(|e| WalError::io("write", self.temp, e))?;
        if sync {
            self.file.sync_data().map_err(|e| WalError::io("fsync", self.temp, e))?;
        }
        self.crc = crc32c::crc32c_append(self.crc, &self.chunk);
        self.len += self.chunk.len() as u64;
        self.chunk.clear();
        Ok(())
    }
}

impl io::Write for PayloadWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("the snapshot file failed"));
        }
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(SNAPSHOT_SYNC_CHUNK);
        }
        let taken = bytes.len().min(SNAPSHOT_SYNC_CHUNK - self.chunk.len());
        let before = self.chunk.len();
        self.chunk.extend_from_slice(&bytes[..taken]);
        if before / crate::BACKGROUND_YIELD_BYTES != self.chunk.len() / crate::BACKGROUND_YIELD_BYTES {
            std::thread::yield_now();
        }
        if self.chunk.len() == SNAPSHOT_SYNC_CHUNK {
            if let Err(error) = self.write_chunk(true) {
                let message = error.to_string();
                self.failed = Some(error);
                return Err(io::Error::other(message));
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A snapshot read back and checked: its header and the whole file (the
/// payload is `bytes[SNAPSHOT_HEADER_LEN..]`, 16-aligned).
pub struct LoadedSnapshot {
    pub header: SnapshotHeader,
    pub bytes: FileBytes,
}

impl LoadedSnapshot {
    pub fn payload(&self) -> &[u8] {
        decode_snapshot(&self.bytes).expect("checked when loaded").1
    }
}

pub fn read_snapshot(storage: &dyn Storage, path: &Path) -> Result<LoadedSnapshot, WalError> {
    let bytes = storage.read(path).map_err(|e| WalError::io("read", path, e))?;
    let header =
        decode_snapshot(&bytes).map_err(|reason| WalError::Corrupt { path: path.to_path_buf(), offset: 0, reason })?.0;
    Ok(LoadedSnapshot { header, bytes })
}

/// Deletes snapshots older than `lsn` and stray temp files.
pub fn remove_older_snapshots(storage: &dyn Storage, dir: &Path, lsn: u64) -> Result<(), WalError> {
    let names = storage.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let doomed: Vec<String> = names
        .iter()
        .filter(|name| {
            let older = parse_snapshot_file_name(name).is_some_and(|other| other < lsn);
            older || name.ends_with(".snap.tmp") && !name.contains(&snapshot_file_name(lsn))
        })
        .chain(crate::reclaim::leftovers(&names))
        .cloned()
        .collect();
    crate::reclaim::remove_gradually(storage, dir, &doomed)?;
    storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;

    #[test]
    fn a_disk_failure_mid_payload_is_an_io_error_and_an_encoding_failure_is_not() {
        let storage = MemStorage::new();
        let dir = PathBuf::from("/data/shard-0");
        storage.create_dir_all(&dir).unwrap();
        let refused = write_snapshot_with(storage.as_ref(), &dir, 0, 5, |out| {
            out.write_all(&[1; 10]).unwrap();
            Err("too big".into())
        });
        assert!(matches!(refused, Err(WalError::Encode { ref reason }) if reason == "too big"), "{refused:?}");
        assert!(storage.list(&dir).unwrap().is_empty(), "the partial file is gone");
        // The second chunk's sync fails: the payload writer stops there.
        let syncs_before = storage.counts().0;
        storage.fail_sync_after(2);
        let payload = vec![3u8; 3 * SNAPSHOT_SYNC_CHUNK];
        let failed = write_snapshot_with(storage.as_ref(), &dir, 0, 6, |out| {
            out.write_all(&payload).map_err(|error| error.to_string())
        });
        assert!(matches!(failed, Err(WalError::Io { operation: "fsync", .. })), "{failed:?}");
        assert_eq!(storage.counts().0 - syncs_before, 2, "no sync after the failed one");
        assert!(list_snapshots(storage.as_ref(), &dir).unwrap().is_empty());
    }

    #[test]
    fn a_snapshot_of_several_sync_chunks_survives_a_power_cut_whole() {
        let storage = MemStorage::new();
        let dir = PathBuf::from("/data/shard-0");
        storage.create_dir_all(&dir).unwrap();
        for ancestor in ["/", "/data"] {
            storage.sync_dir(Path::new(ancestor)).unwrap();
        }
        let payload: Vec<u8> = (0..2 * SNAPSHOT_SYNC_CHUNK + 4_104).map(|i| (i * 7 % 251) as u8).collect();
        let write = |out: &mut dyn io::Write| out.write_all(&payload).map_err(|error| error.to_string());
        let (path, _) = write_snapshot_with(storage.as_ref(), &dir, 0, 42, write).unwrap();
        storage.crash();
        let loaded = read_snapshot(storage.as_ref(), &path).unwrap();
        assert_eq!(loaded.header.lsn, 42);
        assert_eq!(loaded.payload(), payload.as_slice());
        assert_eq!(list_snapshots(storage.as_ref(), &dir).unwrap(), vec![SnapshotFile { path, lsn: 42 }]);
    }
}

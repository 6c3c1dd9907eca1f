//! Snapshot files: one shard's state as of an LSN, written atomically
//! (temp file, fsync, rename, fsync of the directory), so a reader only
//! ever finds complete, checksummed snapshots under their final name.

use crate::format::{
    decode_snapshot, encode_snapshot_header, parse_snapshot_file_name, snapshot_file_name, SnapshotHeader,
    SNAPSHOT_HEADER_LEN,
};
use crate::storage::{FileBytes, Storage};
use crate::WalError;
use std::path::{Path, PathBuf};

/// Bytes of snapshot written between two syncs of it.
const SNAPSHOT_SYNC_CHUNK: usize = 1 << 20;

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

/// Writes `payload` as the snapshot of `shard` at `lsn`, durably.
pub fn write_snapshot(
    storage: &dyn Storage,
    dir: &Path,
    shard: u16,
    lsn: u64,
    payload: &[u8],
) -> Result<PathBuf, WalError> {
    let path = dir.join(snapshot_file_name(lsn));
    let temp = dir.join(format!("{}.tmp", snapshot_file_name(lsn)));
    if storage.exists(&temp) {
        storage.remove(&temp).map_err(|e| WalError::io("remove", &temp, e))?;
    }
    let file = storage.create(&temp).map_err(|e| WalError::io("create", &temp, e))?;
    let header = encode_snapshot_header(shard, lsn, payload);
    file.write_at(0, &header).map_err(|e| WalError::io("write", &temp, e))?;
    // Synced a chunk at a time: the disk never holds a snapshot's worth of
    // dirty pages in front of the WAL's next fdatasync.
    for (index, chunk) in payload.chunks(SNAPSHOT_SYNC_CHUNK).enumerate() {
        let offset = (SNAPSHOT_HEADER_LEN + index * SNAPSHOT_SYNC_CHUNK) as u64;
        file.write_at(offset, chunk).map_err(|e| WalError::io("write", &temp, e))?;
        file.sync_data().map_err(|e| WalError::io("fsync", &temp, e))?;
    }
    file.sync_data().map_err(|e| WalError::io("fsync", &temp, e))?;
    storage.rename(&temp, &path).map_err(|e| WalError::io("rename", &temp, e))?;
    storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    Ok(path)
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
    fn a_snapshot_of_several_sync_chunks_survives_a_power_cut_whole() {
        let storage = MemStorage::new();
        let dir = PathBuf::from("/data/shard-0");
        storage.create_dir_all(&dir).unwrap();
        for ancestor in ["/", "/data"] {
            storage.sync_dir(Path::new(ancestor)).unwrap();
        }
        let payload: Vec<u8> = (0..2 * SNAPSHOT_SYNC_CHUNK + 4_104).map(|i| (i * 7 % 251) as u8).collect();
        let path = write_snapshot(storage.as_ref(), &dir, 0, 42, &payload).unwrap();
        storage.crash();
        let loaded = read_snapshot(storage.as_ref(), &path).unwrap();
        assert_eq!(loaded.header.lsn, 42);
        assert_eq!(loaded.payload(), payload.as_slice());
        assert_eq!(list_snapshots(storage.as_ref(), &dir).unwrap(), vec![SnapshotFile { path, lsn: 42 }]);
    }
}

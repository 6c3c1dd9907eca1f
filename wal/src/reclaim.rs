//! Removing big files (covered segments, older snapshots) without stalling
//! the live log. On ext4 mounted with `discard` (as on this machine),
//! unlinking a 64 MiB segment discards all of its blocks inside one journal
//! commit, and the live segment's next fdatasync waits for that commit:
//! measured, a concurrent fdatasync stalled 25 ms, and under paced load the
//! request p99 doubled. So a file is first renamed out of the way (nothing
//! reads `*.deleting`), then cut from its end a step at a time, each step
//! synced so that each commit carries one step's discard (the stall stays
//! under about 1 ms), then unlinked. A crash part-way leaves a `*.deleting`
//! file, which the next cleanup of that directory removes.

use crate::storage::Storage;
use crate::WalError;
use std::path::Path;

/// What a file being removed is renamed to end with.
pub const REMOVING_SUFFIX: &str = ".deleting";

/// How much of a file one synced cut releases.
const STEP_BYTES: u64 = 1 << 20;

/// Removes the files `names` of `dir` gradually (see the module comment).
/// The caller syncs `dir` afterwards to make the removals durable.
pub fn remove_gradually(storage: &dyn Storage, dir: &Path, names: &[String]) -> Result<(), WalError> {
    let mut doomed = Vec::with_capacity(names.len());
    for name in names {
        if name.ends_with(REMOVING_SUFFIX) {
            doomed.push(dir.join(name));
            continue;
        }
        let (from, to) = (dir.join(name), dir.join(format!("{name}{REMOVING_SUFFIX}")));
        storage.rename(&from, &to).map_err(|e| WalError::io("rename", &from, e))?;
        doomed.push(to);
    }
    if !doomed.is_empty() {
        // Durable before any cut (a leftover's rename too: the process that
        // renamed it may have died before its directory sync), so a cut
        // file never lies under a name a reader trusts.
        storage.sync_dir(dir).map_err(|e| WalError::io("fsync directory", dir, e))?;
    }
    for path in doomed {
        let file = storage.open(&path).map_err(|e| WalError::io("open", &path, e))?;
        let mut len = storage.len(&path).map_err(|e| WalError::io("stat", &path, e))?;
        while len > STEP_BYTES {
            len = (len - 1) / STEP_BYTES * STEP_BYTES;
            file.set_len_allocated(len).map_err(|e| WalError::io("truncate", &path, e))?;
            file.sync_data().map_err(|e| WalError::io("fsync", &path, e))?;
        }
        drop(file);
        storage.remove(&path).map_err(|e| WalError::io("remove", &path, e))?;
    }
    Ok(())
}

/// Files a crash left half removed in `names` (a directory listing).
pub fn leftovers(names: &[String]) -> impl Iterator<Item = &String> {
    names.iter().filter(|name| name.ends_with(REMOVING_SUFFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::segment_file_name;
    use crate::reader::{list_segments, remove_covered_segments};
    use crate::MemStorage;
    use std::path::PathBuf;

    /// A durable `/data` with a durable file `name` of `len` bytes.
    fn storage_with(name: &str, len: usize) -> (std::sync::Arc<MemStorage>, PathBuf) {
        let storage = MemStorage::new();
        let dir = PathBuf::from("/data");
        storage.create_dir_all(&dir).unwrap();
        storage.sync_dir(Path::new("/")).unwrap();
        let file = storage.create(&dir.join(name)).unwrap();
        file.write_at(0, &vec![7u8; len]).unwrap();
        file.sync_data().unwrap();
        storage.sync_dir(&dir).unwrap();
        (storage, dir)
    }

    #[test]
    fn a_big_file_is_renamed_then_cut_a_synced_step_at_a_time_then_removed() {
        let (storage, dir) = storage_with("a.wal", 3 * STEP_BYTES as usize + 100);
        let (syncs_before, _) = storage.counts();
        remove_gradually(storage.as_ref(), &dir, &["a.wal".to_owned()]).unwrap();
        // One directory sync after the rename, then cuts to 3, 2 and 1 MiB.
        assert_eq!(storage.counts().0 - syncs_before, 4);
        assert!(storage.list(&dir).unwrap().is_empty());
    }

    #[test]
    fn a_crash_part_way_leaves_a_file_nothing_reads_and_the_next_cleanup_removes_it() {
        let first = segment_file_name(1);
        let (storage, dir) = storage_with(&first, 3 * STEP_BYTES as usize);
        // The rename's directory sync succeeds, the second cut's sync fails.
        storage.fail_sync_after(3);
        assert!(remove_gradually(storage.as_ref(), &dir, std::slice::from_ref(&first)).is_err());
        storage.crash();
        let left = format!("{first}{REMOVING_SUFFIX}");
        assert_eq!(storage.list(&dir).unwrap(), vec![left]);
        assert!(list_segments(storage.as_ref(), &dir).unwrap().is_empty(), "a reader never sees it");
        remove_covered_segments(storage.as_ref(), &dir, 0, None).unwrap();
        assert!(storage.list(&dir).unwrap().is_empty());
    }
}

//! A fault-injecting, crash-simulating `Storage` held in memory, beside the
//! real one (as TigerBeetle and fjall keep theirs). It tracks, per file, the
//! bytes *written* (what reads see) and the bytes *durable* (as of the last
//! successful `sync_data`), and per directory the entries visible and the
//! entries durable (as of the last `sync_dir` of that directory; a directory
//! is itself an entry of its parent).
//!
//! A power cut (`crash_with`) keeps the durable state and, as a real disk
//! may, any subset of what was not yet durable: an unsynced directory entry
//! may survive (with its durable contents, often none; an unsynced rename
//! that survives takes the file from its old name), and each 4 KiB page
//! of unsynced data may or may not have reached the disk, independently of
//! the others. `crash()` keeps nothing unsynced.
//!
//! Faults: `fail_sync_after(n)` / `fail_write_after(n)` make the n-th next
//! call fail, and every later one (a dead disk); `fail_sync_once()` makes
//! the next sync fail and drop the file's dirty pages while later syncs
//! succeed, as Linux does after a writeback error (which is why a failed
//! fsync must never be retried); `fail_dir_sync_once()` does the same to
//! the next directory sync. Writes count renames and removals too.
//! `fail_reads_of(path)` makes every read of one file fail, as a bad
//! sector's EIO does (it stays across crashes).

use crate::storage::{AlignedBytes, FileBytes, Storage, StorageFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A page of unsynced data reaches the disk whole or not at all.
const PAGE: usize = 4096;

#[derive(Default)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    durable_dirs: BTreeSet<PathBuf>,
    /// Visible entries: path -> file.
    visible: BTreeMap<PathBuf, Arc<MemFile>>,
    /// Durable entries: path -> file.
    durable: BTreeMap<PathBuf, Arc<MemFile>>,
    faults: Faults,
    /// Files whose reads fail (bad sectors: no crash clears them).
    unreadable: BTreeSet<PathBuf>,
}

#[derive(Default)]
struct Faults {
    /// Power is gone: every write and sync fails until the crash.
    frozen: bool,
    syncs_until_failure: Option<u64>,
    writes_until_failure: Option<u64>,
    fail_next_sync_once: bool,
    fail_next_dir_sync_once: bool,
    syncs: u64,
    writes: u64,
}

impl Faults {
    /// Counts one call; true when it must fail.
    fn fails(countdown: &mut Option<u64>, count: &mut u64) -> bool {
        *count += 1;
        match countdown {
            Some(0) => true,
            Some(left) => {
                *left -= 1;
                *left == 0
            }
            None => false,
        }
    }

    fn write_fails(&mut self) -> bool {
        Faults::fails(&mut self.writes_until_failure, &mut self.writes) || self.frozen
    }

    fn sync_fails(&mut self) -> bool {
        Faults::fails(&mut self.syncs_until_failure, &mut self.syncs) || self.frozen
    }
}

struct MemFile {
    written: Mutex<Vec<u8>>,
    durable: Mutex<Vec<u8>>,
    state: std::sync::Weak<Mutex<State>>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

fn is_root(path: &Path) -> bool {
    path.parent().is_none()
}

impl MemStorage {
    pub fn new() -> Arc<MemStorage> {
        Arc::new(MemStorage::default())
    }

    /// The `n`-th next `sync_data`/`sync_dir` fails, and every one after it.
    pub fn fail_sync_after(&self, n: u64) {
        assert!(n > 0);
        self.state.lock().faults.syncs_until_failure = Some(n);
    }

    /// The `n`-th next write (or rename, or removal) fails, and every one after it.
    pub fn fail_write_after(&self, n: u64) {
        assert!(n > 0);
        self.state.lock().faults.writes_until_failure = Some(n);
    }

    /// The next file sync fails and the file's unsynced bytes are lost;
    /// later syncs succeed (Linux after a writeback error).
    pub fn fail_sync_once(&self) {
        self.state.lock().faults.fail_next_sync_once = true;
    }

    /// The next directory sync fails (its unsynced entries stay unsynced);
    /// later syncs succeed, as Linux reports a writeback error to one
    /// fsync of the directory only.
    pub fn fail_dir_sync_once(&self) {
        self.state.lock().faults.fail_next_dir_sync_once = true;
    }

    /// Every later read of the file at `path` fails, as a bad sector's
    /// EIO does.
    pub fn fail_reads_of(&self, path: &Path) {
        self.state.lock().unreadable.insert(path.to_path_buf());
    }

    /// The power goes out now: every later write and sync fails (the
    /// process may still be running, but nothing it does lands) until
    /// `crash`/`crash_with` decides what the disk kept.
    pub fn freeze(&self) {
        self.state.lock().faults.frozen = true;
    }

    /// Syncs and writes attempted so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.faults.syncs, state.faults.writes)
    }

    /// A power cut that keeps only what was durable. Faults are cleared.
    pub fn crash(&self) {
        self.crash_with(|_| false, |_, _| false);
    }

    /// A power cut: what was durable survives; `entry_survives(path)` says
    /// whether an unsynced directory entry (a directory or a file) made it
    /// anyway; `page_survives(path, page)` whether an unsynced 4 KiB page of
    /// a surviving file did. Faults are cleared (the disk works again).
    pub fn crash_with(
        &self,
        mut entry_survives: impl FnMut(&Path) -> bool,
        mut page_survives: impl FnMut(&Path, usize) -> bool,
    ) {
        let mut state = self.state.lock();
        state.faults = Faults::default();
        let unsynced_dirs: Vec<PathBuf> = state.dirs.difference(&state.durable_dirs).cloned().collect();
        for dir in unsynced_dirs {
            if entry_survives(&dir) {
                state.durable_dirs.insert(dir);
            }
        }
        let durable_dirs = state.durable_dirs.clone();
        let dir_survives = |path: &Path| path.ancestors().skip(1).all(|dir| is_root(dir) || durable_dirs.contains(dir));
        state.dirs = durable_dirs.iter().filter(|dir| dir_survives(dir)).cloned().collect();
        let mut survivors = state.durable.clone();
        for (path, file) in &state.visible {
            if !survivors.contains_key(path) && entry_survives(path) {
                // A rename is atomic: a file that kept its new name lost
                // its old one (the store never makes hard links).
                survivors.retain(|_, other| !Arc::ptr_eq(other, file));
                survivors.insert(path.clone(), Arc::clone(file));
            }
        }
        survivors.retain(|path, _| dir_survives(path));
        for (path, file) in &survivors {
            let mut written = file.written.lock();
            let mut durable = file.durable.lock();
            // The durable bytes, plus the unsynced pages that made it (a page
            // past the durable length extends the file only if it survived).
            let mut survived = durable.clone();
            survived.truncate(written.len());
            for (page, bytes) in written.chunks(PAGE).enumerate() {
                let at = page * PAGE;
                let unsynced = durable.get(at..at + bytes.len()) != Some(bytes);
                if unsynced && page_survives(path, page) {
                    if survived.len() < at + bytes.len() {
                        survived.resize(at + bytes.len(), 0);
                    }
                    survived[at..at + bytes.len()].copy_from_slice(bytes);
                }
            }
            *written = survived.clone();
            *durable = survived;
        }
        state.visible = survivors.clone();
        state.durable = survivors;
    }

    fn file(&self, path: &Path) -> io::Result<Arc<MemFile>> {
        self.state.lock().visible.get(path).cloned().ok_or_else(|| not_found(path))
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
            if is_root(ancestor) {
                state.durable_dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let names = state
            .visible
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state.lock();
        state.visible.contains_key(path) || state.dirs.contains(path)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.state.lock();
        if state.faults.frozen {
            return Err(injected("create"));
        }
        if state.visible.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let parent = path.parent().expect("files live in a directory");
        if !state.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        let file = Arc::new(MemFile {
            written: Mutex::new(Vec::new()),
            durable: Mutex::new(Vec::new()),
            state: Arc::downgrade(&self.state),
        });
        state.visible.insert(path.to_path_buf(), Arc::clone(&file));
        Ok(file)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.file(path)?)
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        if self.state.lock().unreadable.contains(path) {
            return Err(injected("read"));
        }
        let file = self.file(path)?;
        let written = file.written.lock();
        let mut bytes = AlignedBytes::with_capacity(written.len());
        bytes.extend_from_slice(&written);
        Ok(FileBytes::Copied(bytes))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.file(path)?.written.lock().len() as u64)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.faults.write_fails() {
            return Err(injected("rename"));
        }
        let file = state.visible.remove(from).ok_or_else(|| not_found(from))?;
        state.visible.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.faults.write_fails() {
            return Err(injected("remove"));
        }
        state.visible.remove(path).map(drop).ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let faults = &mut state.faults;
        if std::mem::take(&mut faults.fail_next_dir_sync_once) {
            faults.syncs += 1;
            return Err(injected("directory sync"));
        }
        if faults.sync_fails() {
            return Err(injected("directory sync"));
        }
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        state.durable.retain(|path, _| !in_dir(path));
        let entries: Vec<(PathBuf, Arc<MemFile>)> =
            state.visible.iter().filter(|(path, _)| in_dir(path)).map(|(p, f)| (p.clone(), Arc::clone(f))).collect();
        state.durable.extend(entries);
        let subdirs: Vec<PathBuf> = state.dirs.iter().filter(|path| in_dir(path)).cloned().collect();
        state.durable_dirs.extend(subdirs);
        Ok(())
    }
}

impl MemFile {
    /// Counts a call against the faults; `Some(drop)` when it must fail
    /// (and, for a once-failing sync, whether the dirty pages are lost).
    fn fault(&self, sync: bool) -> Option<bool> {
        let state = self.state.upgrade()?;
        let mut state = state.lock();
        let faults = &mut state.faults;
        if !sync {
            return faults.write_fails().then_some(false);
        }
        if std::mem::take(&mut faults.fail_next_sync_once) {
            faults.syncs += 1;
            return Some(true);
        }
        faults.sync_fails().then_some(false)
    }
}

impl StorageFile for MemFile {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if self.fault(false).is_some() {
            return Err(injected("write"));
        }
        let mut written = self.written.lock();
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        if written.len() < end {
            written.resize(end, 0);
        }
        written[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        match self.fault(true) {
            Some(true) => {
                // The kernel gave up on the dirty pages: they are gone.
                *self.written.lock() = self.durable.lock().clone();
                Err(injected("fsync"))
            }
            Some(false) => Err(injected("fsync")),
            None => {
                *self.durable.lock() = self.written.lock().clone();
                Ok(())
            }
        }
    }

    fn set_len_allocated(&self, len: u64) -> io::Result<()> {
        if self.fault(false).is_some() {
            return Err(injected("truncate"));
        }
        self.written.lock().resize(len as usize, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Arc<MemStorage>, PathBuf) {
        let storage = MemStorage::new();
        let dir = PathBuf::from("/data");
        storage.create_dir_all(&dir).unwrap();
        storage.sync_dir(Path::new("/")).unwrap();
        (storage, dir)
    }

    #[test]
    fn crash_keeps_only_synced_bytes_of_synced_entries() {
        let (storage, dir) = setup();
        let durable = storage.create(&dir.join("a")).unwrap();
        durable.write_at(0, b"hello").unwrap();
        durable.sync_data().unwrap();
        storage.sync_dir(&dir).unwrap();
        durable.write_at(5, b" world").unwrap();
        let unlisted = storage.create(&dir.join("b")).unwrap();
        unlisted.write_at(0, b"lost").unwrap();
        unlisted.sync_data().unwrap();
        storage.crash();
        assert_eq!(&storage.read(&dir.join("a")).unwrap()[..], b"hello");
        assert!(!storage.exists(&dir.join("b")), "an entry never synced in its directory is gone");
    }

    /// An unsynced rename survives a power cut or not, but the file never
    /// ends up under both names.
    #[test]
    fn a_rename_not_yet_synced_keeps_one_name_or_the_other() {
        for survives in [false, true] {
            let (storage, dir) = setup();
            let file = storage.create(&dir.join("old")).unwrap();
            file.write_at(0, b"bytes").unwrap();
            file.sync_data().unwrap();
            storage.sync_dir(&dir).unwrap();
            storage.rename(&dir.join("old"), &dir.join("new")).unwrap();
            storage.crash_with(|_| survives, |_, _| false);
            assert_eq!(storage.exists(&dir.join("new")), survives);
            assert_eq!(storage.exists(&dir.join("old")), !survives);
            let name = if survives { "new" } else { "old" };
            assert_eq!(&storage.read(&dir.join(name)).unwrap()[..], b"bytes");
        }
    }

    #[test]
    fn a_directory_never_synced_in_its_parent_is_gone_with_its_files() {
        let (storage, dir) = setup();
        let shard = dir.join("shard-00");
        storage.create_dir_all(&shard).unwrap();
        let file = storage.create(&shard.join("x")).unwrap();
        file.sync_data().unwrap();
        storage.sync_dir(&shard).unwrap();
        storage.crash();
        assert!(!storage.exists(&shard) && !storage.exists(&shard.join("x")));
        storage.create_dir_all(&shard).unwrap();
        storage.sync_dir(&dir).unwrap();
        storage.crash();
        assert!(storage.exists(&shard), "synced into its parent, it survives");
    }

    #[test]
    fn an_injected_sync_failure_makes_nothing_durable_and_sticks() {
        let (storage, dir) = setup();
        let file = storage.create(&dir.join("a")).unwrap();
        storage.sync_dir(&dir).unwrap();
        storage.fail_sync_after(1);
        file.write_at(0, b"x").unwrap();
        assert!(file.sync_data().is_err());
        assert!(file.sync_data().is_err(), "a dead disk stays dead");
        storage.crash();
        assert_eq!(storage.read(&dir.join("a")).unwrap().len(), 0);
    }

    #[test]
    fn a_sync_failing_once_drops_the_dirty_pages_and_the_next_one_succeeds() {
        let (storage, dir) = setup();
        let file = storage.create(&dir.join("a")).unwrap();
        storage.sync_dir(&dir).unwrap();
        file.write_at(0, b"kept").unwrap();
        file.sync_data().unwrap();
        file.write_at(4, b"lost").unwrap();
        storage.fail_sync_once();
        assert!(file.sync_data().is_err());
        assert!(file.sync_data().is_ok(), "a retry 'succeeds'...");
        assert_eq!(&storage.read(&dir.join("a")).unwrap()[..], b"kept", "...but the data is gone");
    }

    #[test]
    fn a_crash_keeps_any_subset_of_unsynced_pages() {
        let (storage, dir) = setup();
        let file = storage.create(&dir.join("a")).unwrap();
        storage.sync_dir(&dir).unwrap();
        file.write_at(0, &[1u8; 3 * PAGE]).unwrap();
        storage.crash_with(|_| false, |_, page| page == 1);
        let bytes = storage.read(&dir.join("a")).unwrap();
        assert!(bytes[..PAGE].iter().all(|&b| b == 0) && bytes[PAGE..2 * PAGE].iter().all(|&b| b == 1));
        assert!(bytes[2 * PAGE..].iter().all(|&b| b == 0), "pages persist out of order");
    }
}

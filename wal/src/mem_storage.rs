//! A fault-injecting, crash-simulating `Storage` held in memory, beside the
//! real one (as TigerBeetle and fjall keep theirs). It tracks, per file, the
//! bytes *written* (what reads see) and the bytes *durable* (as of the last
//! successful `sync_data`), and per directory the entries visible and the
//! entries durable (as of the last `sync_dir`). `crash` throws away
//! everything not durable, exactly as a power cut would; `crash_torn` also
//! keeps a prefix of the unsynced bytes, as a torn write would.
//!
//! Faults: `fail_sync_after(n)` / `fail_write_after(n)` make the n-th next
//! call fail (and every later one, as a dead disk would). A failed sync
//! makes nothing durable.

use crate::storage::{AlignedBytes, Storage, StorageFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Default)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    /// Visible entries: path -> file.
    visible: BTreeMap<PathBuf, Arc<MemFile>>,
    /// Durable entries: path -> file.
    durable: BTreeMap<PathBuf, Arc<MemFile>>,
    faults: Faults,
}

#[derive(Default)]
struct Faults {
    syncs_until_failure: Option<u64>,
    writes_until_failure: Option<u64>,
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

impl MemStorage {
    pub fn new() -> Arc<MemStorage> {
        Arc::new(MemStorage::default())
    }

    /// The `n`-th next `sync_data`/`sync_dir` fails, and every one after it.
    pub fn fail_sync_after(&self, n: u64) {
        assert!(n > 0);
        self.state.lock().faults.syncs_until_failure = Some(n);
    }

    /// The `n`-th next `write_at` fails, and every one after it.
    pub fn fail_write_after(&self, n: u64) {
        assert!(n > 0);
        self.state.lock().faults.writes_until_failure = Some(n);
    }

    /// Syncs and writes attempted so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.faults.syncs, state.faults.writes)
    }

    /// A power cut: only durable entries and durable bytes survive. Faults
    /// are cleared (the machine comes back with a working disk).
    pub fn crash(&self) {
        self.crash_keeping(|_, _| 0);
    }

    /// A power cut during a write: like `crash`, but for each file whose
    /// written bytes differ from its durable bytes, `keep(file, span)`
    /// chooses how many bytes of the differing span (first to last differing
    /// byte) reached the disk anyway, from its start.
    pub fn crash_torn(&self, mut keep: impl FnMut(&Path, usize) -> usize) {
        self.crash_keeping(|path, span| keep(path, span).min(span));
    }

    fn crash_keeping(&self, mut keep: impl FnMut(&Path, usize) -> usize) {
        let mut state = self.state.lock();
        state.faults = Faults::default();
        state.visible = state.durable.clone();
        for (path, file) in &state.visible {
            let mut written = file.written.lock();
            let durable = file.durable.lock();
            let differs = |at: usize| written.get(at).copied().unwrap_or(0) != durable.get(at).copied().unwrap_or(0);
            let len = written.len().max(durable.len());
            let first_difference = (0..len).find(|&at| differs(at)).unwrap_or(len);
            let last_difference = (0..len).rev().find(|&at| differs(at)).map_or(first_difference, |at| at + 1);
            let span = last_difference - first_difference;
            let kept = keep(path, span);
            let mut survived = durable.clone();
            if written.len() < survived.len() {
                survived.truncate(written.len());
            }
            let end = (first_difference + kept).min(written.len());
            if end > first_difference {
                if survived.len() < end {
                    survived.resize(end, 0);
                }
                survived[first_difference..end].copy_from_slice(&written[first_difference..end]);
            }
            *written = survived;
        }
        // Files that were not in any durable directory entry are gone.
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

    fn read(&self, path: &Path) -> io::Result<AlignedBytes> {
        let file = self.file(path)?;
        let written = file.written.lock();
        let mut bytes = AlignedBytes::with_capacity(written.len());
        bytes.extend_from_slice(&written);
        Ok(bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let file = state.visible.remove(from).ok_or_else(|| not_found(from))?;
        state.visible.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.visible.remove(path).map(drop).ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let faults = &mut state.faults;
        if Faults::fails(&mut faults.syncs_until_failure, &mut faults.syncs) {
            return Err(injected("directory sync"));
        }
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        state.durable.retain(|path, _| !in_dir(path));
        let entries: Vec<(PathBuf, Arc<MemFile>)> =
            state.visible.iter().filter(|(path, _)| in_dir(path)).map(|(p, f)| (p.clone(), Arc::clone(f))).collect();
        state.durable.extend(entries);
        Ok(())
    }
}

impl MemFile {
    fn check(&self, sync: bool) -> io::Result<()> {
        let Some(state) = self.state.upgrade() else { return Ok(()) };
        let mut state = state.lock();
        let faults = &mut state.faults;
        let failed = if sync {
            Faults::fails(&mut faults.syncs_until_failure, &mut faults.syncs)
        } else {
            Faults::fails(&mut faults.writes_until_failure, &mut faults.writes)
        };
        if failed {
            return Err(injected(if sync { "fsync" } else { "write" }));
        }
        Ok(())
    }
}

impl StorageFile for MemFile {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.check(false)?;
        let mut written = self.written.lock();
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        if written.len() < end {
            written.resize(end, 0);
        }
        written[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check(true)?;
        *self.durable.lock() = self.written.lock().clone();
        Ok(())
    }

    fn set_len_allocated(&self, len: u64) -> io::Result<()> {
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
        assert_eq!(storage.read(&dir.join("a")).unwrap().as_slice(), b"hello");
        assert!(!storage.exists(&dir.join("b")), "an entry never synced in its directory is gone");
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
    fn a_torn_crash_keeps_a_prefix_of_the_unsynced_span() {
        let (storage, dir) = setup();
        let file = storage.create(&dir.join("a")).unwrap();
        file.set_len_allocated(8).unwrap();
        file.sync_data().unwrap();
        storage.sync_dir(&dir).unwrap();
        file.write_at(2, b"abcd").unwrap();
        storage.crash_torn(|_, span| {
            assert_eq!(span, 4);
            2
        });
        assert_eq!(storage.read(&dir.join("a")).unwrap().as_slice(), b"\0\0ab\0\0\0\0");
    }
}

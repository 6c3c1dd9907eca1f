//! The file layer under the log and the snapshots. Everything durable goes
//! through `Storage` and `StorageFile`, so that a fault-injecting store can
//! stand in for the real filesystem in tests (see `mem_storage`).
//!
//! `FsStorage` is the real one: positional writes, `fdatasync` for file
//! data, `fsync` on the directory for entries, `fallocate` to preallocate,
//! and reads as read-only mappings (memmap2), so recovery reads segments and
//! snapshots in place instead of copying them into fresh memory.

use rkyv::util::AlignedVec;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Buffers handed to readers are aligned for in-place rkyv access.
pub type AlignedBytes = AlignedVec<16>;

/// A whole file's bytes as `Storage::read` gives them: mapped where the
/// store can map (page aligned), copied where it cannot (in-memory stores,
/// empty files). Either is aligned for in-place rkyv access.
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Copied(AlignedBytes),
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Copied(bytes) => bytes,
        }
    }
}

pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the files in `dir` (not sorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    /// Creates a new, empty file; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file for writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// The whole file, aligned for in-place access. The file must not
    /// shrink while the bytes are held (a mapping would fault): only a
    /// process holding the data directory's lock reads, and nothing
    /// truncates a file that a reader of the same process holds.
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// The file's length in bytes.
    fn len(&self, path: &Path) -> io::Result<u64>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

pub trait StorageFile: Send + Sync {
    /// Writes all of `bytes` at `offset`.
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file exactly `len` bytes with its blocks allocated: bytes
    /// past `len` are dropped and new space reads as zeros.
    fn set_len_allocated(&self, len: u64) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }

    #[allow(unsafe_code)]
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Copied(AlignedBytes::new()));
        }
        // SAFETY: a mapping is only unsound if the file shrinks under it.
        // It is mapped read-only; the process holds the data directory's
        // lock (exclusive for a server, shared for the CLI tools, so no
        // other stockd writes here); within the process, files are cut only
        // at open (the log's tail, after recovery dropped its mappings) and
        // when removed after a snapshot (`reclaim`: covered segments and
        // older snapshots, which the running engine never maps). A caller
        // of the `tools` functions in a process whose engine runs on the
        // same directory breaks this (the CLI never does). Mapped instead of
        // read: recovery reads every segment once and a copy into fresh
        // memory was a third of replay's time
        // (`cargo bench --bench wal -- replay`). Populated up front, since
        // readers go through every page in order.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
        Ok(FileBytes::Mapped(map))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // `Path::parent` of a bare relative name (`data`) is the empty path:
        // the current directory.
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        File::open(dir)?.sync_all()
    }
}

struct FsFile(File);

impl StorageFile for FsFile {
    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len_allocated(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        if len > 0 {
            // Allocated blocks make the later fdatasync of each write cheaper
            // (measured on this disk: p50 108-166 us instead of 168-184 us).
            rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `stockd serve --data-dir data` syncs the parent of `data`, which
    /// `Path::parent` gives as the empty path.
    #[test]
    fn the_parent_of_a_bare_relative_name_is_the_current_directory() {
        let parent = Path::new("data").parent().expect("a parent");
        assert!(parent.as_os_str().is_empty());
        FsStorage.sync_dir(parent).expect("the current directory is synced");
    }

    /// The mapped read path, the one `unsafe` block in this crate; also run
    /// under AddressSanitizer (README, Development).
    #[test]
    fn a_read_gives_every_written_byte_aligned_for_in_place_access() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let file = FsStorage.create(&path).unwrap();
        assert!(FsStorage.read(&path).unwrap().is_empty());
        let written: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 251) as u8).collect();
        file.write_at(0, &written).unwrap();
        let bytes = FsStorage.read(&path).unwrap();
        assert!(matches!(bytes, FileBytes::Mapped(_)));
        assert_eq!(&bytes[..], written.as_slice());
        assert_eq!(bytes.as_ptr() as usize % 16, 0);
        // A file that grows after it was read: the bytes already read stay
        // as they were and a new read sees the rest.
        file.write_at(written.len() as u64, b"tail").unwrap();
        assert_eq!(bytes.len(), written.len());
        assert_eq!(&FsStorage.read(&path).unwrap()[written.len()..], b"tail");
    }
}

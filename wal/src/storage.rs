//! The file layer under the log and the snapshots. Everything durable goes
//! through `Storage` and `StorageFile`, so that a fault-injecting store can
//! stand in for the real filesystem in tests (see `mem_storage`).
//!
//! `FsStorage` is the real one: positional writes, `fdatasync` for file
//! data, `fsync` on the directory for entries, `fallocate` to preallocate.

use rkyv::util::AlignedVec;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Buffers handed to readers are aligned for in-place rkyv access.
pub type AlignedBytes = AlignedVec<16>;

pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the files in `dir` (not sorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    /// Creates a new, empty file; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file for writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// The whole file, in a buffer aligned for in-place access.
    fn read(&self, path: &Path) -> io::Result<AlignedBytes>;
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

    fn read(&self, path: &Path) -> io::Result<AlignedBytes> {
        let mut file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).expect("a file fits in memory");
        let mut bytes = AlignedBytes::with_capacity(len);
        bytes.resize(len, 0);
        file.read_exact(&mut bytes)?;
        Ok(bytes)
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

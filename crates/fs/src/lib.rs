//! The file-system seam of cairn.
//!
//! Every file and directory operation the other cairn crates perform goes through the [`Fs`] and
//! [`File`] traits defined here, so that the same code runs on the real file system ([`RealFs`])
//! and on [`SimFs`], an in-memory, seeded simulator of power loss and I/O faults. `SimFs` keeps,
//! for every file and directory, what is *live* (what a running process sees) apart from what is
//! *durable* (what survives a power cut); only `sync_data`, `sync_all` and `sync_dir` move bytes
//! and directory entries from one to the other, exactly as the POSIX rules promise and no more.
//!
//! The traits are deliberately small: positional reads and writes, `set_len`, the two kinds of
//! fsync, rename, remove, list, create_dir_all, sync_dir, length queries, an advisory lock, and a
//! read-only [`Mapping`] of a file for zero-copy reads (memory-mapped on `RealFs`, a byte buffer on
//! `SimFs`).
//!
//! ```
//! use std::path::Path;
//! use cairn_fs::{Fs, OpenMode, SimFs, CrashOptions};
//!
//! # fn main() -> std::io::Result<()> {
//! let fs = SimFs::new(7);
//! fs.create_dir_all(Path::new("/data"))?;
//! let file = fs.open(Path::new("/data/a"), OpenMode::CreateNew)?;
//! file.write_all_at(b"hello", 0)?;
//! file.sync_data()?;
//! // The directory entry of a new file is not durable until its directory is synced:
//! let after_crash = fs.crash_image(1, &CrashOptions::durable_only());
//! assert!(!after_crash.exists(Path::new("/data/a"))?);
//! fs.sync_dir(Path::new("/"))?;
//! fs.sync_dir(Path::new("/data"))?;
//! let after_crash = fs.crash_image(1, &CrashOptions::durable_only());
//! assert_eq!(after_crash.contents(Path::new("/data/a"))?, b"hello");
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::Path;

pub mod crash_point;
#[cfg(loom)]
pub mod loom_support;
mod mapping;
#[doc(hidden)]
pub mod mutants;
mod real;
pub mod sim;
mod writeback;

pub use crash_point::crash_point;
pub use mapping::Mapping;
pub use real::RealFs;
pub use sim::{CrashOptions, FaultEffect, FaultRule, Op, OpMatch, SimFs, SimSnapshot, SimStats, SyncPoint};

/// How [`Fs::open`] opens a file. Every mode except `Read` opens for reading and writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpenMode {
    /// An existing file, read only.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// A new file; fails with [`io::ErrorKind::AlreadyExists`] if the name exists (`O_EXCL`).
    CreateNew,
    /// The file, created if missing and cut to length zero if present.
    CreateTruncate,
}

/// An exclusive advisory lock on a file, held until this value is dropped.
///
/// Obtained from [`Fs::lock_file`]; used to keep two processes (or two handles in one process)
/// from opening the same log or store at once.
pub struct FileLock {
    _held: Box<dyn Send + Sync>,
}

impl FileLock {
    pub(crate) fn new(held: Box<dyn Send + Sync>) -> FileLock {
        FileLock { _held: held }
    }
}

impl fmt::Debug for FileLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileLock")
    }
}

/// The file-system operations cairn needs, on paths.
///
/// Implementations: [`RealFs`] (std::fs) and [`SimFs`] (the power-loss simulator). All methods
/// report failures as [`io::Error`]; callers add the operation and path to their own error types.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Opens (or creates, per `mode`) the file at `path`.
    ///
    /// # Errors
    /// `NotFound` if the file (or, when creating, its directory) does not exist, `AlreadyExists`
    /// for [`OpenMode::CreateNew`] on an existing name, or any I/O error of the platform.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>>;

    /// Renames `from` to `to`, replacing `to` atomically if it exists. Not durable until the
    /// directories involved are synced with [`Fs::sync_dir`].
    ///
    /// # Errors
    /// `NotFound` if `from` does not exist, or any I/O error of the platform.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`. Open handles stay usable. Not durable until the directory is
    /// synced.
    ///
    /// # Errors
    /// `NotFound` if there is no such file, or any I/O error of the platform.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Lists the names in the directory at `path`, sorted by name.
    ///
    /// # Errors
    /// `NotFound` if the directory does not exist, or any I/O error of the platform.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;

    /// Creates the directory at `path` and any missing parents. New entries are not durable until
    /// each parent directory is synced.
    ///
    /// # Errors
    /// Any I/O error of the platform, or a non-directory in the way.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Makes the entries of the directory at `path` durable (creations, renames and removals).
    ///
    /// # Errors
    /// `NotFound` if the directory does not exist, or the error of the underlying fsync. A failed
    /// directory sync leaves it unknown which entries are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// The length in bytes of the file at `path`.
    ///
    /// # Errors
    /// `NotFound` if there is no such file, or any I/O error of the platform.
    fn file_len(&self, path: &Path) -> io::Result<u64>;

    /// Whether anything (file or directory) exists at `path`.
    ///
    /// # Errors
    /// Any I/O error other than "not found" while looking.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Takes an exclusive advisory lock on the file at `path`, creating the file if needed, without
    /// waiting.
    ///
    /// # Errors
    /// [`io::ErrorKind::WouldBlock`] if another holder has the lock, or any I/O error of the
    /// platform.
    fn lock_file(&self, path: &Path) -> io::Result<FileLock>;
}

/// An open file: positional I/O, length changes, the two kinds of fsync, and read-only mapping.
///
/// Handles may be shared between threads; positional calls do not move any cursor.
#[allow(clippy::len_without_is_empty)] // a file's length is a syscall; `is_empty` would hide that
pub trait File: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at or past the end).
    ///
    /// # Errors
    /// Any I/O error of the platform.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes at `pos`, extending the file if needed; returns how many
    /// were written, which may be fewer (a short write).
    ///
    /// # Errors
    /// `StorageFull` when out of space, or any I/O error of the platform.
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;

    /// Cuts or extends (with zeros) the file to `len` bytes.
    ///
    /// # Errors
    /// `StorageFull` when out of space, or any I/O error of the platform.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The current length of the file in bytes.
    ///
    /// # Errors
    /// Any I/O error of the platform.
    fn len(&self) -> io::Result<u64>;

    /// Makes the file's data and length durable (`fdatasync`).
    ///
    /// # Errors
    /// The error of the fsync. After a failed fsync the written data may be lost even though
    /// later reads still return it: never retry and trust a later fsync.
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's data and all its metadata durable (`fsync`).
    ///
    /// # Errors
    /// As for [`File::sync_data`].
    fn sync_all(&self) -> io::Result<()>;

    /// Starts writing `len` bytes at `offset` to the device, without waiting: a hint that keeps
    /// a later [`File::sync_data`] short by leaving it little dirty data. It makes nothing
    /// durable. [`RealFs`] uses `sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux (where the
    /// kernel or file system lacks it, nothing happens) and does nothing elsewhere; [`SimFs`]
    /// counts the calls and bytes and lets fault rules fail it. The default does nothing.
    ///
    /// # Errors
    /// Any I/O error of the platform (say, `EIO` or `ENOSPC` while starting the writes): treat
    /// it as a failed fsync (the data may be lost; poison, never retry).
    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    /// Maps the file's current contents read-only. Later writes to the file may or may not be
    /// visible through the mapping (they are on [`RealFs`], they are not on [`SimFs`]): map only
    /// bytes that no longer change. Cutting the file below a live mapping's length makes reads of
    /// the cut part fault on [`RealFs`]: never shorten a file while a mapping of it is alive.
    ///
    /// # Errors
    /// Any I/O error of the platform.
    fn map(&self) -> io::Result<Mapping>;

    /// Reads exactly `buf.len()` bytes at `pos`.
    ///
    /// # Errors
    /// `UnexpectedEof` if the file ends first, or any error of [`File::read_at`].
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(n) => {
                    buf = buf.get_mut(n..).unwrap_or_default();
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `pos`, continuing after short writes.
    ///
    /// # Errors
    /// `WriteZero` if a write makes no progress, or any error of [`File::write_at`].
    fn write_all_at(&self, mut buf: &[u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, pos) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    buf = buf.get(n..).unwrap_or_default();
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A step of [`create_dir_durably`] that failed: the operation, its path, and the error.
#[derive(Debug)]
pub struct DirStepError {
    /// `"stat"`, `"create_dir"` or `"sync_dir"`.
    pub op: &'static str,
    /// The directory the step was on.
    pub path: std::path::PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

/// Creates `dir` and its missing parents, making each new entry durable: the parent of every
/// directory created is fsynced, from the first one that existed down, so that a crash cannot
/// lose a new directory (and the files later synced in it).
///
/// # Errors
/// The failed step, with its path.
pub fn create_dir_durably(fs: &dyn Fs, dir: &Path) -> Result<(), DirStepError> {
    fn fail<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> DirStepError + 'p {
        move |source| DirStepError { op, path: path.to_path_buf(), source }
    }
    let mut created = Vec::new();
    let mut at = dir;
    while !fs.exists(at).map_err(fail("stat", at))? {
        created.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    fs.create_dir_all(dir).map_err(fail("create_dir", dir))?;
    for new in created.iter().rev() {
        let parent = match new.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs.sync_dir(parent).map_err(fail("sync_dir", parent))?;
    }
    Ok(())
}

//! [`DurableFile`]: a small file replaced atomically by fsync-and-rename (DESIGN §3).

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_fs::{Fs, OpenMode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{CorruptionKind, Error, Result};
use crate::frame::{self, Format};
use crate::mutants;

/// Temporary files are named `.<name>.tmp-<pid>-<counter>-<nanos>`: the part after the marker
/// is digits and dashes only, so that no other file's temporaries (nor `<name>` itself) match.
const TEMP_MARKER: &str = ".tmp-";
/// Suffix of the previous generation's file, when kept.
const PREVIOUS_SUFFIX: &str = ".prev";

/// Options of a [`DurableFile`]: what the payload is, and how the file is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableOptions {
    /// Four bytes naming the payload type, stored in the file and checked on read, so that a
    /// file of another kind is never decoded as this one.
    pub kind: [u8; 4],
    /// The payload's schema version, stored and checked on read: raise it whenever the encoded
    /// shape of the payload changes.
    pub version: u32,
    /// Keep the previous generation as `<name>.prev` (written, atomically, before the new one is
    /// installed), for inspection. Default `false`.
    pub keep_previous: bool,
    /// The largest file this handle reads or writes. Default 1 GiB.
    pub max_bytes: u64,
}

impl DurableOptions {
    /// Options for payloads of `kind` at schema `version`.
    pub fn new(kind: [u8; 4], version: u32) -> DurableOptions {
        DurableOptions { kind, version, keep_previous: false, max_bytes: 1 << 30 }
    }

    fn format(&self) -> Format {
        Format { kind: self.kind, version: self.version }
    }
}

/// A file holding one value of type `T`, replaced atomically: after a crash at any instruction
/// it reads as the value of the last completed [`write`](DurableFile::write), or the one before
/// if that write had not returned, whole, never a mix, never "nothing" unless no write ever
/// completed (DESIGN §3).
///
/// A write creates a uniquely named temporary file in the same directory (`create_new`), writes
/// the framed value (docs/format.md, "Durable file"), `sync_all`s it, renames it over the target
/// and fsyncs the directory. Any error while writing poisons the handle: that call and every
/// later one fail until the file is reopened (P6).
///
/// ```
/// use std::sync::Arc;
/// use cairn_checkpoint::{DurableFile, DurableOptions};
/// use cairn_fs::{Fs, SimFs};
///
/// # fn main() -> Result<(), cairn_checkpoint::Error> {
/// let fs = SimFs::new(1);
/// fs.create_dir_all("/task".as_ref()).unwrap();
/// let mut file: DurableFile<Vec<u64>> =
///     DurableFile::open(Arc::new(fs), "/task/offsets", DurableOptions::new(*b"OFFS", 1))?;
/// assert_eq!(file.read()?, None);
/// file.write(&vec![3, 1, 4])?;
/// assert_eq!(file.read()?, Some(vec![3, 1, 4]));
/// # Ok(())
/// # }
/// ```
pub struct DurableFile<T> {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    dir: PathBuf,
    name: String,
    options: DurableOptions,
    poison: Option<Arc<Error>>,
    _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for DurableFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableFile")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("poisoned", &self.poison.is_some())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> DurableFile<T> {
    /// A handle on the durable file at `path`, whose directory must exist. Leftover temporary
    /// files of this name (from writes a crash interrupted) are removed. Nothing is read yet.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be listed or a leftover cannot be removed.
    pub fn open(fs: Arc<dyn Fs>, path: impl AsRef<Path>, options: DurableOptions) -> Result<DurableFile<T>> {
        let file = DurableFile::handle(fs, path.as_ref(), options);
        let prefix = file.temp_prefix();
        for leftover in file.fs.list_dir(&file.dir).map_err(|e| Error::io("list", &file.dir, e))? {
            let leftover = leftover.to_string_lossy();
            let is_ours = leftover.strip_prefix(&prefix).is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'-')
            });
            if is_ours {
                let leftover = file.dir.join(leftover.as_ref());
                file.fs.remove_file(&leftover).map_err(|e| Error::io("remove", &leftover, e))?;
            }
        }
        Ok(file)
    }

    /// The value in the file at `path`, or `None` if there is no file, read without opening a
    /// handle: nothing is written and no leftover removed (for inspection tools, which must
    /// not change what they look at).
    ///
    /// # Errors
    /// As for [`DurableFile::read`].
    pub fn read_from(fs: Arc<dyn Fs>, path: impl AsRef<Path>, options: DurableOptions) -> Result<Option<T>> {
        DurableFile::handle(fs, path.as_ref(), options).read()
    }

    fn handle(fs: Arc<dyn Fs>, path: &Path, options: DurableOptions) -> DurableFile<T> {
        let path = path.to_path_buf();
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        DurableFile { fs, path, dir, name, options, poison: None, _value: PhantomData }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the previous generation, kept with [`DurableOptions::keep_previous`].
    pub fn previous_path(&self) -> PathBuf {
        self.dir.join(format!("{}{PREVIOUS_SUFFIX}", self.name))
    }

    /// Whether a failed write poisoned the handle.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some()
    }

    /// The value in the file, or `None` if the file does not exist.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the file and byte position if it exists but is empty,
    /// short, of another kind or version, fails its checksum, has trailing bytes, or does not
    /// decode; [`Error::TooLarge`]; [`Error::Io`]; [`Error::Poisoned`].
    pub fn read(&self) -> Result<Option<T>> {
        self.check_usable()?;
        self.read_at_path(&self.path)
    }

    /// The previous generation's value, kept with [`DurableOptions::keep_previous`], or `None`
    /// if there is none.
    ///
    /// # Errors
    /// As for [`DurableFile::read`].
    pub fn read_previous(&self) -> Result<Option<T>> {
        self.check_usable()?;
        self.read_at_path(&self.previous_path())
    }

    /// Replaces the file's value durably: when this returns, the new value survives any crash.
    /// With [`DurableOptions::keep_previous`], the value replaced is first saved, the same way,
    /// as the previous generation.
    ///
    /// # Errors
    /// [`Error::Encode`] or [`Error::TooLarge`] if the value cannot be written (nothing changes,
    /// the handle stays usable); [`Error::Io`] if any step fails, which poisons the handle: the
    /// file then holds the old or the new value (reopen and read to learn which), and after a
    /// failure before the rename, the old one; [`Error::Poisoned`].
    pub fn write(&mut self, value: &T) -> Result<()> {
        self.check_usable()?;
        let payload = codec::encode(value)
            .map_err(|e| Error::Encode { file: self.path.clone(), source: Box::new(e) })?;
        let bytes = frame::frame(self.options.format(), &payload);
        if bytes.len() as u64 > self.options.max_bytes {
            return Err(Error::TooLarge {
                file: self.path.clone(),
                bytes: bytes.len() as u64,
                max: self.options.max_bytes,
            });
        }
        let result = self.install_all(&bytes);
        result.map_err(|e| match e {
            // With `keep_previous`, the current file is over the limit: nothing was written.
            e @ Error::TooLarge { .. } => e,
            e => self.poison(e),
        })
    }

    /// Removes the file (and its previous generation) durably.
    ///
    /// # Errors
    /// [`Error::Io`], which poisons the handle; [`Error::Poisoned`].
    pub fn remove(&mut self) -> Result<()> {
        self.check_usable()?;
        let result = self.remove_all();
        result.map_err(|e| self.poison(e))
    }

    fn remove_all(&self) -> Result<()> {
        for path in [self.path.clone(), self.previous_path()] {
            match self.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
        }
        self.fs.sync_dir(&self.dir).map_err(|e| Error::io("sync_dir", &self.dir, e))
    }

    fn install_all(&self, bytes: &[u8]) -> Result<()> {
        if self.options.keep_previous
            && let Some(current) = self.read_raw(&self.path)?
        {
            self.install(&self.previous_path(), &current)?;
        }
        self.install(&self.path, bytes)?;
        cairn_fs::crash_point(cairn_fs::crash_point::CHECKPOINT_RENAMED);
        if !mutants::active(mutants::SKIP_DIR_SYNC) {
            self.fs.sync_dir(&self.dir).map_err(|e| Error::io("sync_dir", &self.dir, e))?;
        }
        cairn_fs::crash_point(cairn_fs::crash_point::CHECKPOINT_DIR_SYNCED);
        Ok(())
    }

    /// Writes `bytes` to a fresh temporary file, fsyncs it and renames it over `target`. The
    /// caller fsyncs the directory.
    fn install(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        let (temp, file) = self.create_temp()?;
        let written = file
            .write_all_at(bytes, 0)
            .map_err(|e| Error::io("write", &temp, e))
            .and_then(|()| {
                if mutants::active(mutants::SKIP_TEMP_SYNC) {
                    return Ok(());
                }
                file.sync_all().map_err(|e| Error::io("sync_all", &temp, e))
            })
            .inspect(|()| cairn_fs::crash_point(cairn_fs::crash_point::CHECKPOINT_TEMP_SYNCED))
            .and_then(|()| self.fs.rename(&temp, target).map_err(|e| Error::io("rename", &temp, e)));
        if written.is_err() {
            // Best effort: a leftover is removed by the next open anyway.
            let _ = self.fs.remove_file(&temp);
        }
        written
    }

    fn temp_prefix(&self) -> String {
        format!(".{}{TEMP_MARKER}", self.name)
    }

    /// Creates a temporary file with a name no other writer uses (`create_new`).
    fn create_temp(&self) -> Result<(PathBuf, Box<dyn cairn_fs::File>)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        loop {
            let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp =
                self.dir.join(format!("{}{}-{unique}-{nanos}", self.temp_prefix(), std::process::id()));
            match self.fs.open(&temp, OpenMode::CreateNew) {
                Ok(file) => return Ok((temp, file)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create", &temp, e)),
            }
        }
    }

    /// The raw bytes of the file at `path`, if it exists, within the size limit.
    fn read_raw(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let len = match self.fs.file_len(path) {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("stat", path, e)),
        };
        if len > self.options.max_bytes {
            return Err(Error::TooLarge {
                file: path.to_path_buf(),
                bytes: len,
                max: self.options.max_bytes,
            });
        }
        let file = match self.fs.open(path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, e)),
        };
        // The length is read again from the open file: the name may have been replaced since.
        let len = file.len().map_err(|e| Error::io("stat", path, e))?;
        if len > self.options.max_bytes {
            return Err(Error::TooLarge {
                file: path.to_path_buf(),
                bytes: len,
                max: self.options.max_bytes,
            });
        }
        let mut bytes = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io("read", path, e))?;
        Ok(Some(bytes))
    }

    fn read_at_path(&self, path: &Path) -> Result<Option<T>> {
        let Some(bytes) = self.read_raw(path)? else { return Ok(None) };
        let payload = frame::unframe(&bytes, self.options.format())
            .map_err(|(position, kind)| Error::corruption(path, position, kind))?;
        let value = codec::decode(payload).map_err(|source| Error::Corruption {
            file: path.to_path_buf(),
            position: frame::HEADER_LEN as u64,
            kind: CorruptionKind::Decode,
            source: Some(source),
        })?;
        Ok(Some(value))
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poison {
            Some(cause) => Err(Error::Poisoned { cause: Arc::clone(cause) }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, error: Error) -> Error {
        if self.poison.is_none() {
            self.poison = Some(Arc::new(error.duplicate()));
        }
        error
    }
}

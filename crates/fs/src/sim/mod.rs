//! [`SimFs`]: an in-memory file system that simulates power loss and I/O faults, deterministic by
//! seed.
//!
//! The model, per file: *live* bytes (what reads return) and *durable* bytes (what a power cut
//! keeps), with the list of writes and length changes made since the last successful
//! `sync_data`/`sync_all`. Per directory: live and durable entries, with the creations, renames
//! and removals made since the last `sync_dir`. A sync moves pending changes to the durable side;
//! nothing else does. In particular a file's fsync does not make its directory entry durable, and
//! a failed fsync throws the pending changes away while reads keep showing them (the behaviour
//! PostgreSQL's "fsyncgate" exposed).
//!
//! [`SimFs::crash_image`] returns the file system a power cut would leave, per
//! [`CrashOptions`]; [`SimFs::inject`] adds [`FaultRule`]s; [`SimFs::record_sync_points`] keeps a
//! frozen copy of the state before every sync so that a test can crash at each one (the
//! exhaustive mode).

mod crash;
mod fault;
mod rng;
mod tree;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use crash::CrashOptions;

/// How many times larger than their defaults cairn's own crash sweeps run: the environment
/// variable `CAIRN_SIM_SCALE` (default 1; `cargo xtask crash sim --profile long` raises it).
/// Each sweep reports the images it checked on stderr as `sim-images: <n>`, which the harness
/// adds up.
pub fn sweep_scale() -> u64 {
    std::env::var("CAIRN_SIM_SCALE").ok().and_then(|v| v.parse().ok()).filter(|s| *s > 0).unwrap_or(1)
}
pub use fault::{FaultEffect, FaultRule, Op, OpMatch};

use fault::injected;
use rng::Rng;
use tree::{Id, Node, Tree, to_usize};

use crate::{File, FileLock, Fs, Mapping, OpenMode};

/// The largest file the simulator holds (it keeps files in memory): writes and length changes
/// past it fail with `EFBIG`, as a real file system does past its own limit, instead of
/// allocating whatever a bad offset asks for.
pub const MAX_FILE_BYTES: u64 = 1 << 32;

/// Counters of the operations a [`SimFs`] has served since it was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Every operation, faulted or not.
    pub ops: u64,
    /// Calls to `write_at` that wrote at least one byte.
    pub writes: u64,
    /// Bytes stored by `write_at`.
    pub bytes_written: u64,
    /// Successful file fsyncs (`sync_data` and `sync_all`).
    pub file_syncs: u64,
    /// Successful directory syncs.
    pub dir_syncs: u64,
    /// Successful renames.
    pub renames: u64,
    /// Successful write-back hints ([`File::start_writeback`](crate::File::start_writeback)).
    pub writebacks: u64,
    /// Bytes those hints covered.
    pub writeback_bytes: u64,
    /// Faults injected.
    pub faults: u64,
}

/// A frozen copy of a [`SimFs`]'s files and directories, from which crash images can be made.
#[derive(Clone, Debug)]
pub struct SimSnapshot {
    tree: Tree,
}

impl SimSnapshot {
    /// The file system a power cut at the moment of the snapshot would leave, chosen by `seed`.
    pub fn crash_image(&self, seed: u64, options: &CrashOptions) -> SimFs {
        SimFs::from_tree(crash::crash_tree(&self.tree, seed, options), seed)
    }
}

/// A state recorded just before a sync operation ([`SimFs::record_sync_points`]), or before any
/// operation that changes state ([`SimFs::record_every_mutation`]).
#[derive(Clone, Debug)]
pub struct SyncPoint {
    /// The operation counter ([`SimStats::ops`]) of the sync.
    pub op_index: u64,
    /// The kind of sync: [`Op::SyncData`], [`Op::SyncAll`] or [`Op::SyncDir`].
    pub op: Op,
    /// The path of the file or directory being synced.
    pub path: PathBuf,
    /// The state just before the sync.
    pub snapshot: SimSnapshot,
}

/// Which operations leave a [`SyncPoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recording {
    Off,
    Syncs,
    Mutations,
}

struct State {
    tree: Tree,
    rules: Vec<FaultRule>,
    rng: Rng,
    stats: SimStats,
    capacity_bytes: Option<u64>,
    locked: Vec<Id>,
    recording: Recording,
    sync_points: Vec<SyncPoint>,
}

struct Shared {
    state: Mutex<State>,
    /// Under loom, every operation first touches this atomic, so that loom sees the file system
    /// as the shared state it is and explores the orders of operations of different threads
    /// (the std lock around the state is invisible to loom and is never held across a loom
    /// operation). A `SimFs` used under loom must be made inside the model.
    #[cfg(loom)]
    turn: loom::sync::atomic::AtomicU64,
}

impl Shared {
    fn new(state: State) -> Shared {
        Shared {
            state: Mutex::new(state),
            #[cfg(loom)]
            turn: loom::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        #[cfg(loom)]
        self.turn.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
        // A panic while holding the lock leaves the tree consistent (every mutation is a single
        // step), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The in-memory power-loss simulator. Clones share the same file system.
///
/// Paths are taken as absolute from the simulator's root (`a/b` and `/a/b` are the same file);
/// `..` is refused.
#[derive(Clone)]
pub struct SimFs {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("SimFs")
            .field("files", &state.tree.inodes.len())
            .field("dirs", &state.tree.dirs.len())
            .field("stats", &state.stats)
            .finish()
    }
}

impl SimFs {
    /// An empty simulated file system. `seed` drives the simulator's own random choices (which bit a
    /// fault flips, how short a short write is).
    pub fn new(seed: u64) -> SimFs {
        SimFs::from_tree(Tree::new(), seed)
    }

    fn from_tree(tree: Tree, seed: u64) -> SimFs {
        let state = State {
            tree,
            rules: Vec::new(),
            rng: Rng::new(seed.wrapping_add(1)),
            stats: SimStats::default(),
            capacity_bytes: None,
            locked: Vec::new(),
            recording: Recording::Off,
            sync_points: Vec::new(),
        };
        SimFs { shared: Arc::new(Shared::new(state)) }
    }

    /// Adds a fault rule; rules are checked in the order they were added and the first that
    /// fires decides.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().rules.push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.lock().rules.clear();
    }

    /// Limits the total live bytes of reachable files; writes and extensions past it fail with
    /// `ENOSPC`. `None` removes the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.shared.lock().capacity_bytes = bytes;
    }

    /// The operation counters so far.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    /// A frozen copy of the current state.
    pub fn snapshot(&self) -> SimSnapshot {
        SimSnapshot { tree: self.shared.lock().tree.clone() }
    }

    /// The file system a power cut now would leave, chosen by `seed`: a new, independent `SimFs`
    /// whose state is entirely durable. Handles opened on `self` keep working on `self`.
    pub fn crash_image(&self, seed: u64, options: &CrashOptions) -> SimFs {
        self.snapshot().crash_image(seed, options)
    }

    /// Starts or stops recording a [`SyncPoint`] before every file and directory sync.
    pub fn record_sync_points(&self, on: bool) {
        self.shared.lock().recording = if on { Recording::Syncs } else { Recording::Off };
    }

    /// Starts or stops recording a [`SyncPoint`] before every operation that changes state:
    /// creations, writes, length changes, syncs, renames, removals (a crash at every step).
    pub fn record_every_mutation(&self, on: bool) {
        self.shared.lock().recording = if on { Recording::Mutations } else { Recording::Off };
    }

    /// The sync points recorded so far, removed from the simulator.
    pub fn take_sync_points(&self) -> Vec<SyncPoint> {
        std::mem::take(&mut self.shared.lock().sync_points)
    }

    /// The live contents of the file at `path`, bypassing faults and counters (for tests).
    ///
    /// # Errors
    /// `NotFound` or `IsADirectory` as for opening the file.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.shared.lock();
        let id = state.tree.file_at(path)?;
        Ok(Vec::clone(&state.tree.inode(id)?.live))
    }

    /// Replaces the contents of the existing file at `path`, live and durable at once, bypassing
    /// faults and counters: the simulator's way of damaging a file "on disk" in a test.
    ///
    /// # Errors
    /// `NotFound` or `IsADirectory` as for opening the file.
    pub fn set_contents(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.shared.lock();
        let id = state.tree.file_at(path)?;
        let inode = state.tree.inode_mut(id)?;
        inode.live = Arc::new(bytes.to_vec());
        inode.durable = Arc::new(bytes.to_vec());
        inode.pending.clear();
        Ok(())
    }
}

impl State {
    /// Counts an operation and returns the fault to inject into it, if any.
    fn begin(&mut self, op: Op, path: &Path) -> Option<FaultEffect> {
        self.stats.ops += 1;
        if self.rules.is_empty() {
            return None;
        }
        let path = path.to_string_lossy();
        let effect = self.rules.iter_mut().find_map(|rule| rule.fire(op, &path).then_some(rule.effect));
        self.rules.retain(|rule| !rule.is_spent());
        if effect.is_some() {
            self.stats.faults += 1;
        }
        effect
    }

    /// Counts an operation and fails it if a fault rule with an error effect fires. Effects that
    /// change data (short writes, bit flips) are returned for the caller to apply.
    fn check(&mut self, op: Op, path: &Path) -> io::Result<Option<FaultEffect>> {
        match self.begin(op, path) {
            Some(effect @ (FaultEffect::Eio | FaultEffect::NoSpace)) => {
                Err(injected(effect, op, &path.to_string_lossy()))
            }
            other => Ok(other),
        }
    }

    fn record(&mut self, op: Op, path: &Path) {
        let wanted = match self.recording {
            Recording::Off => false,
            Recording::Syncs => op.is_file_sync() || op == Op::SyncDir,
            Recording::Mutations => op.is_mutating(),
        };
        if wanted {
            let point = SyncPoint {
                op_index: self.stats.ops,
                op,
                path: path.to_owned(),
                snapshot: SimSnapshot { tree: self.tree.clone() },
            };
            self.sync_points.push(point);
        }
    }

    fn ensure_room(&self, path: &Path, old_len: u64, new_len: Option<u64>) -> io::Result<()> {
        let new_len = match new_len {
            Some(len) if len <= MAX_FILE_BYTES => len,
            _ => {
                const EFBIG: i32 = 27;
                let os = io::Error::from_raw_os_error(EFBIG);
                return Err(io::Error::new(os.kind(), format!("{}: {os}", path.display())));
            }
        };
        let Some(capacity) = self.capacity_bytes else {
            return Ok(());
        };
        if new_len <= old_len {
            return Ok(());
        }
        if self.tree.live_bytes() + (new_len - old_len) > capacity {
            return Err(injected(FaultEffect::NoSpace, Op::Write, &path.to_string_lossy()));
        }
        Ok(())
    }

    fn flip_bit(&mut self, bytes: &mut [u8]) {
        if bytes.is_empty() {
            return;
        }
        let bit = self.rng.below(bytes.len() as u64 * 8);
        if let Some(byte) = bytes.get_mut(to_usize(bit / 8)) {
            *byte ^= 1 << (bit % 8);
        }
    }
}

fn already_exists(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, format!("{}: already exists", path.display()))
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>> {
        let mut state = self.shared.lock();
        let existing = state.tree.lookup(path);
        let creates =
            matches!(mode, OpenMode::CreateNew | OpenMode::CreateTruncate) && matches!(existing, Ok(None));
        // Counted (and open to faults) before any failure of its own, like every other operation.
        let op = if creates { Op::Create } else { Op::Open };
        state.record(op, path);
        state.check(op, path)?;
        if existing?.is_some() && mode == OpenMode::CreateNew {
            return Err(already_exists(path));
        }
        let id = if creates {
            let (parent, name) = state.tree.parent_of(path)?;
            state.tree.create_file(parent, name)?
        } else {
            let id = state.tree.file_at(path)?;
            if mode == OpenMode::CreateTruncate {
                let inode = state.tree.inode_mut(id)?;
                if !inode.live.is_empty() {
                    inode.set_len(0);
                }
            }
            id
        };
        let file = SimFile { fs: self.clone(), id, path: path.to_owned(), writable: mode != OpenMode::Read };
        Ok(Box::new(file))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.record(Op::Rename, from);
        state.check(Op::Rename, from)?;
        let node = state.tree.lookup(from)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", from.display()))
        })?;
        if let (Some(Node::Dir(_)), Node::File(_)) = (state.tree.lookup(to)?, node) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", to.display()),
            ));
        }
        let source = state.tree.parent_of(from)?;
        let target = state.tree.parent_of(to)?;
        state.tree.rename(source, target, node)?;
        state.stats.renames += 1;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.record(Op::Remove, path);
        state.check(Op::Remove, path)?;
        state.tree.file_at(path)?;
        let (parent, name) = state.tree.parent_of(path)?;
        state.tree.remove(parent, name)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut state = self.shared.lock();
        state.check(Op::ListDir, path)?;
        let id = state.tree.dir_at(path)?;
        Ok(state.tree.dir(id)?.live.keys().cloned().collect())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.record(Op::CreateDir, path);
        state.check(Op::CreateDir, path)?;
        let mut dir = tree::ROOT;
        for part in tree::components(path)? {
            dir = match state.tree.dir(dir)?.live.get(part).copied() {
                Some(Node::Dir(id)) => id,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{}: a component is a file", path.display()),
                    ));
                }
                None => state.tree.create_dir(dir, part)?,
            };
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.record(Op::SyncDir, path);
        state.check(Op::SyncDir, path)?;
        let id = state.tree.dir_at(path)?;
        state.tree.sync_dir(id)?;
        state.stats.dir_syncs += 1;
        Ok(())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let mut state = self.shared.lock();
        state.check(Op::Len, path)?;
        let id = state.tree.file_at(path)?;
        Ok(state.tree.inode(id)?.live.len() as u64)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut state = self.shared.lock();
        state.check(Op::Exists, path)?;
        Ok(state.tree.lookup(path)?.is_some())
    }

    fn lock_file(&self, path: &Path) -> io::Result<FileLock> {
        let mut state = self.shared.lock();
        state.check(Op::Lock, path)?;
        let id = match state.tree.lookup(path)? {
            Some(Node::File(id)) => id,
            Some(Node::Dir(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory", path.display()),
                ));
            }
            None => {
                let (parent, name) = state.tree.parent_of(path)?;
                state.tree.create_file(parent, name)?
            }
        };
        if state.locked.contains(&id) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another handle", path.display()),
            ));
        }
        state.locked.push(id);
        Ok(FileLock::new(Box::new(SimLock { fs: self.clone(), id })))
    }
}

struct SimLock {
    fs: SimFs,
    id: Id,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.shared.lock().locked.retain(|id| *id != self.id);
    }
}

/// An open file of a [`SimFs`]; it refers to the inode, so it keeps working after the name is
/// removed or renamed, as on POSIX.
struct SimFile {
    fs: SimFs,
    id: Id,
    path: PathBuf,
    writable: bool,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).field("id", &self.id).finish()
    }
}

impl SimFile {
    fn ensure_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: opened read-only", self.path.display()),
            ))
        }
    }

    fn sync(&self, op: Op) -> io::Result<()> {
        let mut state = self.fs.shared.lock();
        state.record(op, &self.path);
        if let Err(e) = state.check(op, &self.path) {
            state.tree.inode_mut(self.id)?.drop_pending();
            return Err(e);
        }
        state.tree.inode_mut(self.id)?.promote();
        state.stats.file_syncs += 1;
        Ok(())
    }
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut state = self.fs.shared.lock();
        let effect = state.check(Op::Read, &self.path)?;
        let live = Arc::clone(&state.tree.inode(self.id)?.live);
        let start = to_usize(pos).min(live.len());
        let source = live.get(start..).unwrap_or_default();
        let n = source.len().min(buf.len());
        let (target, source) = (buf.get_mut(..n).unwrap_or_default(), source.get(..n).unwrap_or_default());
        target.copy_from_slice(source);
        if effect == Some(FaultEffect::FlipBit) {
            state.flip_bit(target);
        }
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.ensure_writable()?;
        let mut state = self.fs.shared.lock();
        state.record(Op::Write, &self.path);
        let effect = state.check(Op::Write, &self.path)?;
        let mut n = buf.len();
        if effect == Some(FaultEffect::ShortWrite) && n > 1 {
            n = 1 + to_usize(state.rng.below(n as u64 - 1));
        }
        let data = buf.get(..n).unwrap_or_default();
        let old_len = state.tree.inode(self.id)?.live.len() as u64;
        state.ensure_room(&self.path, old_len, pos.checked_add(n as u64).map(|end| end.max(old_len)))?;
        if n > 0 {
            state.tree.inode_mut(self.id)?.write(pos, data);
            state.stats.writes += 1;
            state.stats.bytes_written += n as u64;
        }
        Ok(n)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.ensure_writable()?;
        let mut state = self.fs.shared.lock();
        state.record(Op::SetLen, &self.path);
        state.check(Op::SetLen, &self.path)?;
        let old_len = state.tree.inode(self.id)?.live.len() as u64;
        state.ensure_room(&self.path, old_len, Some(len))?;
        state.tree.inode_mut(self.id)?.set_len(len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.fs.shared.lock();
        state.check(Op::Len, &self.path)?;
        Ok(state.tree.inode(self.id)?.live.len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync(Op::SyncData)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync(Op::SyncAll)
    }

    fn start_writeback(&self, _offset: u64, len: u64) -> io::Result<()> {
        // Only a hint: nothing becomes durable, so the live and durable bytes stay as they are.
        let mut state = self.fs.shared.lock();
        state.record(Op::Writeback, &self.path);
        state.check(Op::Writeback, &self.path)?;
        state.stats.writebacks += 1;
        state.stats.writeback_bytes += len;
        Ok(())
    }

    fn map(&self) -> io::Result<Mapping> {
        let mut state = self.fs.shared.lock();
        let effect = state.check(Op::Map, &self.path)?;
        let mut bytes = Vec::clone(&state.tree.inode(self.id)?.live);
        if effect == Some(FaultEffect::FlipBit) {
            state.flip_bit(&mut bytes);
        }
        Ok(Mapping::from_bytes(bytes))
    }
}

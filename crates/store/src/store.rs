//! [`Store`]: the key-value store over its changelog.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_changelog::{CompactOptions, CompactionReport, Listener, Log, Record, SegmentSet, ValueLocation};
use cairn_fs::Fs;

use crate::cache::ValueCache;
use crate::error::{Error, Result};
use crate::follow::Follower;
use crate::index::{Index, Key, KeyBytes, Slot};
use crate::options::StoreOptions;
use crate::restore::{self, RestoreReport};
use crate::snapshot::{self, PendingSnapshot, SnapshotInfo};
use crate::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::view::{Entries, ReadView};

/// The changelog's directory inside a store's directory.
pub(crate) const LOG_DIR: &str = "changelog";
/// The snapshots' directory inside a store's directory.
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";

/// A key-value store whose durable form is a changelog (DESIGN §6).
///
/// Keys (non-empty byte strings) are kept in memory in byte order, each with where its latest
/// value is: a write not yet in the changelog holds its value; a flushed one points at the
/// value's bytes in a changelog segment, read through the segment's mapping (the active
/// segment's with a positional read), so values need not fit in memory.
///
/// Writes are visible to reads at once. They reach the changelog on [`Store::flush`] (or when
/// [`StoreOptions::write_buffer_bytes`] fill up) and are durable after [`Store::sync`]; after a
/// crash, opening the store brings back a prefix of its writes holding everything synced
/// (DESIGN P1, P3). [`Store::put_all`] and [`Store::delete_all`] are atomic.
///
/// Opening restores the index from the newest usable snapshot ([`Store::write_snapshot`]) and
/// a replay of the changelog after it, or by replaying the whole changelog
/// ([`Store::restore_report`] says which, and how long it took).
///
/// ```
/// use std::sync::Arc;
/// use cairn_store::{Store, StoreOptions};
///
/// # fn main() -> Result<(), cairn_store::Error> {
/// let fs = Arc::new(cairn_fs::SimFs::new(7));
/// let mut store = Store::open(fs.clone(), "/state", StoreOptions::default())?;
/// store.put(b"user:1", b"alice")?;
/// store.put(b"user:2", b"bob")?;
/// store.delete(b"user:1")?;
/// assert_eq!(store.get(b"user:2")?, Some(b"bob".to_vec()));
/// let end = store.sync()?; // durable from here
/// store.close()?;
///
/// let store = Store::open(fs, "/state", StoreOptions::default())?;
/// assert_eq!(store.get(b"user:1")?, None);
/// let all: Vec<_> = store.iter()?.collect::<Result<_, _>>()?;
/// assert_eq!(all, vec![(b"user:2".to_vec(), b"bob".to_vec())]);
/// assert_eq!(store.end_offset(), end);
/// # Ok(())
/// # }
/// ```
pub struct Store {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    options: StoreOptions,
    log: Log,
    shared: Arc<Shared>,
    /// Writes not yet appended to the changelog, in order.
    pending: Vec<PendingWrite>,
    pending_bytes: usize,
    report: RestoreReport,
    poison: Option<Arc<Error>>,
    cache: Option<Arc<ValueCache>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("pending", &self.pending.len())
            .field("poisoned", &self.poison.is_some())
            .finish_non_exhaustive()
    }
}

/// What the store shares with its compaction follower.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: RwLock<State>,
}

/// The index and the segments its locations point into.
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    pub(crate) index: Arc<Index>,
    pub(crate) segments: SegmentSet,
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A write waiting for the changelog.
#[derive(Debug)]
struct PendingWrite {
    key: Key,
    value: Option<Arc<[u8]>>,
    /// The last write of an atomic group (a single put or delete is a group of one).
    ends_group: bool,
}

impl Store {
    /// Opens (or creates) the store in `dir` and restores its index: the changelog
    /// (`<dir>/changelog`) is recovered (a torn tail cut, see `cairn-changelog`), then the
    /// newest usable snapshot (`<dir>/snapshots`) is loaded and the changelog after it
    /// replayed; snapshots that are damaged or lie past the changelog's end are skipped and
    /// reported ([`Store::restore_report`]), and snapshots past the end are deleted before
    /// anything is appended.
    ///
    /// # Errors
    /// [`Error::Changelog`] for damage in the changelog where it must be valid (a typed
    /// corruption naming file and byte), an I/O error, or a locked log;
    /// [`Error::InvalidOptions`]; [`Error::Io`] if the directories cannot be made or a stale
    /// snapshot removed.
    pub fn open(fs: Arc<dyn Fs>, dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        Store::open_inner(fs, dir.as_ref(), options, None)
    }

    /// Opens the store as of changelog offset `offset`: the changelog is first truncated there
    /// (durably), then the store restored as [`Store::open`] does. This is the task runtime's
    /// roll-back to its last checkpoint (DESIGN P8). Snapshots past `offset` are deleted first.
    ///
    /// The changelog must not have been compacted with a limit above `offset` (a task runtime
    /// compacts only below its checkpoint): records compaction dropped below that limit would
    /// otherwise be missing from the state at `offset`.
    ///
    /// The changelog is opened with `offset` as its known-durable end
    /// ([`LogOptions::known_durable_end`](cairn_changelog::LogOptions::known_durable_end)):
    /// below it, an invalid batch is corruption, not a tail to cut.
    ///
    /// # Errors
    /// [`Error::Changelog`] with a corruption naming the file and byte position if the
    /// changelog's valid records end before `offset` (nothing changes); as for [`Store::open`].
    pub fn open_at(
        fs: Arc<dyn Fs>,
        dir: impl AsRef<Path>,
        options: StoreOptions,
        offset: u64,
    ) -> Result<Store> {
        Store::open_inner(fs, dir.as_ref(), options, Some(offset))
    }

    fn open_inner(fs: Arc<dyn Fs>, dir: &Path, options: StoreOptions, at: Option<u64>) -> Result<Store> {
        options.validate()?;
        let snapshots = dir.join(SNAPSHOT_DIR);
        if crate::mutants::active(crate::mutants::STORE_DIR_NOT_DURABLE) {
            fs.create_dir_all(&snapshots).map_err(|e| Error::io("create directory", &snapshots, e))?;
        } else {
            cairn_fs::create_dir_durably(fs.as_ref(), &snapshots)
                .map_err(|e| Error::io(e.op, e.path, e.source))?;
        }
        let shared = Arc::new(Shared::default());
        let mut log_options = options.log.clone();
        // Everything up to `at` was committed durably: damage below it is corruption to report,
        // never a torn tail to cut (which would destroy committed records, DESIGN P5).
        log_options.known_durable_end = log_options.known_durable_end.max(at);
        if let Some(mut maintenance) = options.compaction.clone() {
            maintenance.listener = Some(Listener(Arc::new(Follower::new(Arc::downgrade(&shared)))));
            log_options.maintenance = Some(maintenance);
        }
        let log = Log::open(Arc::clone(&fs), dir.join(LOG_DIR), log_options)?;
        if let Some(offset) = at {
            let end = log.end_offset();
            if offset > end {
                return Err(Error::OffsetPastEnd { offset, end });
            }
            // Snapshots past the new end first: after the cut, appends would make them look
            // valid again.
            snapshot::remove_above(fs.as_ref(), &snapshots, offset)?;
            log.truncate(offset)?;
        } else {
            snapshot::remove_above(fs.as_ref(), &snapshots, log.end_offset())?;
        }
        let (state, report) = restore::restore(&fs, &snapshots, &log, &options)?;
        *shared.write() = state;
        let cache =
            (options.value_cache_bytes > 0).then(|| Arc::new(ValueCache::new(options.value_cache_bytes)));
        Ok(Store {
            fs,
            dir: dir.to_path_buf(),
            options,
            log,
            shared,
            pending: Vec::new(),
            pending_bytes: 0,
            report,
            poison: None,
            cache,
        })
    }

    /// What the last restore did: from which snapshot, what it replayed, how long it took.
    pub fn restore_report(&self) -> &RestoreReport {
        &self.report
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The changelog (for its offsets, reports and readers; write only through the store).
    pub fn changelog(&self) -> &Log {
        &self.log
    }

    /// The changelog's end offset: every write flushed so far lies below it.
    pub fn end_offset(&self) -> u64 {
        self.log.end_offset()
    }

    /// Live keys (including writes not yet flushed).
    pub fn len(&self) -> usize {
        self.shared.read().index.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an error poisoned the store.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some() || self.log.is_poisoned()
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poison {
            Some(cause) => Err(Error::Poisoned { cause: Arc::clone(cause) }),
            None => Ok(()),
        }
    }

    fn poisoned(&mut self, e: Error) -> Error {
        if self.poison.is_none() {
            self.poison = Some(Arc::new(e.duplicate()));
        }
        e
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.options.key_bytes_max {
            return Err(Error::KeyTooLarge { bytes: key.len(), max: self.options.key_bytes_max });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.options.value_bytes_max {
            return Err(Error::ValueTooLarge { bytes: value.len(), max: self.options.value_bytes_max });
        }
        Ok(())
    }

    /// The value of `key`, or `None`.
    ///
    /// # Errors
    /// [`Error::EmptyKey`], [`Error::KeyTooLarge`]; [`Error::Changelog`] if the value cannot be
    /// read (an I/O error, or bytes that are not the key's record: a typed corruption);
    /// [`Error::Poisoned`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_usable()?;
        self.check_key(key)?;
        let state = self.shared.read();
        read_slot(&state.segments, self.cache.as_deref(), key, state.index.get(KeyBytes::new(key)))
    }

    /// The values of `keys`, in their order (`None` for a key not present).
    ///
    /// # Errors
    /// As for [`Store::get`].
    pub fn get_all<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        self.check_usable()?;
        keys.iter().try_for_each(|k| self.check_key(k.as_ref()))?;
        let state = self.shared.read();
        let cache = self.cache.as_deref();
        keys.iter()
            .map(|k| {
                read_slot(&state.segments, cache, k.as_ref(), state.index.get(KeyBytes::new(k.as_ref())))
            })
            .collect()
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`Error::EmptyKey`], [`Error::KeyTooLarge`], [`Error::ValueTooLarge`] (nothing changes);
    /// as for [`Store::flush`] if the write buffer fills and is flushed; [`Error::Poisoned`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_usable()?;
        self.check_key(key)?;
        self.check_value(value)?;
        self.write_group(&[(key, Some(value))])
    }

    /// Sets every key to its value, atomically: after a crash all of them or none are in the
    /// changelog. A key given twice takes its last value.
    ///
    /// # Errors
    /// As for [`Store::put`]; [`Error::Changelog`] with
    /// [`cairn_changelog::Error::BatchTooLarge`] if the entries together exceed one changelog
    /// batch (nothing changes).
    pub fn put_all<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, entries: &[(K, V)]) -> Result<()> {
        self.check_usable()?;
        for (k, v) in entries {
            self.check_key(k.as_ref())?;
            self.check_value(v.as_ref())?;
        }
        let writes: Vec<(&[u8], Option<&[u8]>)> =
            entries.iter().map(|(k, v)| (k.as_ref(), Some(v.as_ref()))).collect();
        self.write_group(&writes)
    }

    /// Removes `key` (a tombstone in the changelog); removing an absent key still writes one.
    ///
    /// # Errors
    /// As for [`Store::put`].
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.check_usable()?;
        self.check_key(key)?;
        self.write_group(&[(key, None)])
    }

    /// Removes every key, atomically.
    ///
    /// # Errors
    /// As for [`Store::put_all`].
    pub fn delete_all<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<()> {
        self.check_usable()?;
        keys.iter().try_for_each(|k| self.check_key(k.as_ref()))?;
        let writes: Vec<(&[u8], Option<&[u8]>)> = keys.iter().map(|k| (k.as_ref(), None)).collect();
        self.write_group(&writes)
    }

    /// Applies writes as one atomic group: into the index at once, into the pending list for
    /// the changelog.
    fn write_group(&mut self, writes: &[(&[u8], Option<&[u8]>)]) -> Result<()> {
        let Some(last) = writes.len().checked_sub(1) else {
            return Ok(());
        };
        let bytes: u64 = writes.iter().map(|(k, v)| record_bytes(k, *v)).sum::<u64>() + 48;
        let limit = self.options.log.batch_bytes_max.min(self.options.log.segment_bytes_max);
        if bytes > limit {
            return Err(cairn_changelog::Error::BatchTooLarge { bytes, max: limit }.into());
        }
        {
            let mut state = self.shared.write();
            let index = Arc::make_mut(&mut state.index);
            for (i, (key, value)) in writes.iter().enumerate() {
                let key = Key::new(key);
                let value: Option<Arc<[u8]>> = value.map(Arc::from);
                match &value {
                    Some(v) => {
                        index.insert(key.clone(), Slot::Pending(Arc::clone(v)));
                    }
                    None => {
                        index.remove(KeyBytes::new(key.as_bytes()));
                    }
                }
                self.pending.push(PendingWrite { key, value, ends_group: i == last });
            }
        }
        self.pending_bytes += bytes as usize;
        if self.pending_bytes >= self.options.write_buffer_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends the pending writes to the changelog and writes them to its files (readable, not
    /// yet durable). Returns the changelog's end offset.
    ///
    /// # Errors
    /// [`Error::Changelog`] if appending or writing fails, which poisons the store (and the
    /// log); [`Error::Poisoned`].
    pub fn flush(&mut self) -> Result<u64> {
        self.check_usable()?;
        match self.flush_pending() {
            Ok(end) => Ok(end),
            Err(e) => Err(self.poisoned(e)),
        }
    }

    fn flush_pending(&mut self) -> Result<u64> {
        if self.pending.is_empty() {
            return Ok(self.log.end_offset());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let now = now_ms();
        let limit = self.options.log.batch_bytes_max.min(self.options.log.segment_bytes_max);
        let mut locations: Vec<ValueLocation> = Vec::with_capacity(pending.len());
        let mut offsets: Vec<u64> = Vec::with_capacity(pending.len());
        let mut records: Vec<Record<'_>> = Vec::new();
        let mut batch_bytes = 48u64;
        let mut group_start = 0;
        // Whole groups go into one batch each, several groups into a batch while they fit.
        for (i, write) in pending.iter().enumerate() {
            if !write.ends_group {
                continue;
            }
            let group = pending.get(group_start..=i).unwrap_or_default();
            let group_bytes: u64 = group.iter().map(|w| record_bytes(&w.key, w.value.as_deref())).sum();
            if !records.is_empty() && batch_bytes + group_bytes > limit {
                offsets.extend(self.log.append_batch_located(&records, &mut locations)?);
                records.clear();
                batch_bytes = 48;
            }
            records.extend(group.iter().map(|w| Record::new(&w.key, w.value.as_deref(), now)));
            batch_bytes += group_bytes;
            group_start = i + 1;
        }
        if !records.is_empty() {
            offsets.extend(self.log.append_batch_located(&records, &mut locations)?);
        }
        drop(records);
        let end = self.log.flush()?;
        let current = self.log.segment_set();
        let mut state = self.shared.write();
        if locations.iter().any(|l| !state.segments.contains(l.segment)) {
            state.segments = state.segments.merged(&current);
        }
        let index = Arc::make_mut(&mut state.index);
        for ((write, at), offset) in pending.iter().zip(&locations).zip(&offsets) {
            let Some(value) = &write.value else { continue };
            // Unless a later write (still pending) replaced it.
            if let Some(slot) = index.get_mut(KeyBytes::new(write.key.as_bytes()))
                && matches!(slot, Slot::Pending(v) if Arc::ptr_eq(v, value))
            {
                *slot = Slot::Logged { offset: *offset, at: *at };
            }
        }
        Ok(end)
    }

    /// Flushes and makes every write so far durable (an fsync of the changelog, shared with
    /// concurrent syncs). Returns the durable end offset.
    ///
    /// # Errors
    /// As for [`Store::flush`]; a failed fsync poisons the store (never retried, P6).
    pub fn sync(&mut self) -> Result<u64> {
        self.flush()?;
        match self.log.sync() {
            Ok(end) => Ok(end),
            Err(e) => Err(self.poisoned(e.into())),
        }
    }

    /// A consistent read view of the store as it is now: later writes do not change what it
    /// returns. Taking it is cheap; the first write after it copies the index (its cost grows
    /// with the number of keys), so drop views when done.
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn view(&self) -> Result<ReadView> {
        self.check_usable()?;
        let state = self.shared.read();
        Ok(ReadView::new(state.clone(), self.cache.clone(), self.options.key_bytes_max))
    }

    /// The entries with keys in `[from, to)`, in byte order, as of now (over a
    /// [`Store::view`]).
    ///
    /// # Errors
    /// [`Error::InvalidRange`] if `from` is after `to`; [`Error::Poisoned`]. Reading each
    /// value may fail as [`Store::get`] does.
    pub fn range(&self, from: &[u8], to: &[u8]) -> Result<Entries> {
        self.view()?.range(from, to)
    }

    /// Every entry, in key byte order, as of now (over a [`Store::view`]).
    ///
    /// # Errors
    /// [`Error::Poisoned`]. Reading each value may fail as [`Store::get`] does.
    pub fn iter(&self) -> Result<Entries> {
        Ok(self.view()?.iter())
    }

    /// Compacts the changelog below `limit` now, following every record the pass moves.
    ///
    /// # Errors
    /// As for [`Log::compact`]; an error after the pass was installed leaves the store reading
    /// the old segments (still correct).
    pub fn compact(&mut self, limit: u64, options: &CompactOptions) -> Result<CompactionReport> {
        self.check_usable()?;
        let follower = Follower::new(Arc::downgrade(&self.shared));
        Ok(self.log.compact_with(limit, options, &follower)?)
    }

    /// The limit of background compaction ([`StoreOptions::compaction`] with
    /// [`cairn_changelog::CompactionLimit::Explicit`]): the task runtime passes its last
    /// checkpointed changelog offset.
    pub fn set_compaction_limit(&self, offset: u64) {
        self.log.set_compaction_limit(offset);
    }

    /// Flushes, syncs, and writes a snapshot of the index at the changelog's end, for fast
    /// restore; then deletes all but the newest [`StoreOptions::snapshots_kept`] snapshots.
    /// The snapshot is written through a durable file (fsync and rename): a crash leaves the
    /// older snapshots and the changelog as they were.
    ///
    /// # Errors
    /// As for [`Store::sync`]; [`Error::Snapshot`] or [`Error::Io`] if writing the snapshot or
    /// removing old ones fails, which poisons the store.
    pub fn write_snapshot(&mut self) -> Result<SnapshotInfo> {
        let pending = self.prepare_snapshot()?;
        pending.write().map_err(|e| self.poisoned(e))
    }

    /// Flushes, syncs, and encodes a snapshot of the index at the changelog's end, leaving the
    /// file I/O to [`PendingSnapshot::write`], which may run on another thread while the store
    /// goes on (the task runtime does so, keeping snapshots off its commits).
    ///
    /// # Errors
    /// As for [`Store::sync`].
    pub fn prepare_snapshot(&mut self) -> Result<PendingSnapshot> {
        let offset = self.sync()?;
        let state = self.shared.read();
        let dir = self.dir.join(SNAPSHOT_DIR);
        Ok(snapshot::encode(Arc::clone(&self.fs), dir, offset, &state, self.options.snapshots_kept))
    }

    /// Flushes and syncs the pending writes and closes the changelog; later calls fail.
    /// (Dropping a store without closing it loses writes not yet synced, as a crash would.)
    ///
    /// # Errors
    /// As for [`Store::sync`].
    pub fn close(mut self) -> Result<()> {
        self.sync()?;
        self.log.close()?;
        Ok(())
    }
}

/// The value a slot holds or points at.
pub(crate) fn read_slot(
    segments: &SegmentSet,
    cache: Option<&ValueCache>,
    key: &[u8],
    slot: Option<&Slot>,
) -> Result<Option<Vec<u8>>> {
    match slot {
        None => Ok(None),
        Some(Slot::Pending(value)) => Ok(Some(value.to_vec())),
        Some(Slot::Logged { at, .. }) => {
            if let Some(value) = cache.and_then(|c| c.get(at)) {
                return Ok(Some(value.to_vec()));
            }
            let mut scratch = Vec::new();
            let value = segments.read_value(*at, key, &mut scratch)?;
            if let Some(cache) = cache {
                cache.insert(*at, value);
            }
            Ok(Some(value.to_vec()))
        }
        Some(Slot::Unresolved { offset }) => {
            panic!("broken invariant: the snapshot entry of offset {offset} outlived restore unresolved")
        }
    }
}

/// The bytes a record takes in a batch, at most (three varints of up to 10 bytes).
fn record_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    (key.len() + value.map_or(0, <[u8]>::len) + 30) as u64
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

//! Snapshots of the index ("hint files", docs/format.md "Store snapshot"): the index at a known
//! changelog offset, written through `cairn-checkpoint`'s durable file (fsync and rename), named
//! by that offset, so that restore costs the number of keys, not the changelog's length.
//!
//! The payload names the changelog segments its locations point into by what identifies them
//! on disk (base offset, sealed or not, bytes, records, compaction time); restore uses the
//! locations only where the segment is still the same (see `restore.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_changelog::{SegmentId, SegmentInfo};
use cairn_checkpoint::{DurableFile, DurableOptions};
use cairn_fs::Fs;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::Slot;
use crate::store::State;

/// The durable file's payload kind and schema version.
const KIND: [u8; 4] = *b"SNAP";
const VERSION: u32 = 1;
const SUFFIX: &str = ".snapshot";
/// Bytes of an entry after its key: offset u64, segment u32, position u32, length u32.
const ENTRY_FIXED: usize = 20;

/// A snapshot written by [`Store::write_snapshot`](crate::Store::write_snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The snapshot's file.
    pub path: PathBuf,
    /// The changelog offset it covers: the index as of every record below it.
    pub offset: u64,
    /// Keys in it.
    pub keys: u64,
    /// Bytes of the file's payload.
    pub bytes: u64,
    /// Older snapshots deleted after it was written.
    pub removed: usize,
}

/// What a snapshot file holds (bincode, docs/format.md).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub(crate) offset: u64,
    pub(crate) keys: u64,
    pub(crate) segments: Vec<SegmentRecord>,
    /// `keys` entries in strictly increasing key order: key length u32, key, offset u64,
    /// segment (index into `segments`) u32, value position u32, value length u32; all LE.
    #[serde(with = "serde_bytes")]
    pub(crate) entries: Vec<u8>,
}

/// How a snapshot identifies a changelog segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentRecord {
    pub(crate) base_offset: u64,
    pub(crate) sealed: bool,
    pub(crate) bytes: u64,
    pub(crate) records: Option<u64>,
    pub(crate) compacted_ms: Option<i64>,
    pub(crate) first_batch_crc: Option<u32>,
}

impl SegmentRecord {
    fn of(info: &SegmentInfo) -> SegmentRecord {
        SegmentRecord {
            base_offset: info.base_offset,
            sealed: info.sealed,
            bytes: info.bytes,
            records: info.records,
            compacted_ms: info.compacted_ms,
            first_batch_crc: info.first_batch_crc,
        }
    }

    /// Whether `current` is the segment this record describes, or its continuation (an active
    /// segment that grew or was sealed since): locations into it are still valid.
    pub(crate) fn same_as(&self, current: &SegmentInfo) -> bool {
        // The first batch's checksum tells a compacted rewrite from the appended original even
        // when a truncation made the rewrite active again (its compaction time is then lost).
        let same_first_batch = (self.first_batch_crc.is_some()
            && self.first_batch_crc == current.first_batch_crc)
            || crate::mutants::active(crate::mutants::SNAPSHOT_IGNORES_FIRST_BATCH);
        let same_file = self.base_offset == current.base_offset
            && self.compacted_ms == current.compacted_ms
            && same_first_batch;
        if self.sealed {
            same_file && current.sealed && current.bytes == self.bytes && current.records == self.records
        } else {
            same_file && current.bytes >= self.bytes
        }
    }
}

fn options() -> DurableOptions {
    let mut options = DurableOptions::new(KIND, VERSION);
    options.max_bytes = 1 << 40;
    options
}

fn file_name(offset: u64) -> String {
    format!("{offset:020}{SUFFIX}")
}

/// The snapshots in `dir`, newest (highest offset) first.
pub(crate) fn list(fs: &dyn Fs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for name in fs.list_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let name = name.to_string_lossy();
        if let Some(offset) =
            name.strip_suffix(SUFFIX).filter(|d| d.len() == 20).and_then(|d| d.parse::<u64>().ok())
        {
            found.push((offset, dir.join(name.as_ref())));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

/// Removes, durably, every snapshot above `offset`, and leftovers of interrupted snapshot
/// writes.
pub(crate) fn remove_above(fs: &dyn Fs, dir: &Path, offset: u64) -> Result<()> {
    let mut removed = false;
    for name in fs.list_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let name = name.to_string_lossy();
        // A durable file's temporaries are `.<name>.tmp-<digits and dashes>`.
        let temporary = name.starts_with('.') && name.contains(&format!("{SUFFIX}.tmp-"));
        let above = name
            .strip_suffix(SUFFIX)
            .filter(|d| d.len() == 20)
            .and_then(|d| d.parse::<u64>().ok())
            .is_some_and(|at| at > offset);
        if temporary || above {
            let path = dir.join(name.as_ref());
            fs.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(dir).map_err(|e| Error::io("sync_dir", dir, e))?;
    }
    Ok(())
}

/// A snapshot encoded from the index by [`Store::prepare_snapshot`](crate::Store::prepare_snapshot),
/// not yet written: [`PendingSnapshot::write`] does the file I/O, on any thread, while the
/// store goes on.
#[must_use = "a prepared snapshot is written only by `write`"]
pub struct PendingSnapshot {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    kept: usize,
    payload: Payload,
}

impl std::fmt::Debug for PendingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSnapshot")
            .field("dir", &self.dir)
            .field("offset", &self.payload.offset)
            .field("keys", &self.payload.keys)
            .finish_non_exhaustive()
    }
}

impl PendingSnapshot {
    /// The changelog offset the snapshot covers.
    pub fn offset(&self) -> u64 {
        self.payload.offset
    }

    /// Writes the snapshot through a durable file (fsync and rename), then deletes all but the
    /// newest [`StoreOptions::snapshots_kept`](crate::StoreOptions::snapshots_kept) snapshots.
    /// A crash at any point leaves the older snapshots and the changelog as they were. Write
    /// one snapshot of a store at a time, and not while the store is being reopened.
    ///
    /// # Errors
    /// [`Error::Snapshot`] or [`Error::Io`]: an I/O step failed, possibly an fsync; the
    /// snapshot may or may not exist (restore checks it either way). Treat it as a failed
    /// durability step: stop using the store (the task runtime poisons the task).
    pub fn write(self) -> Result<SnapshotInfo> {
        let PendingSnapshot { fs, dir, kept, payload } = self;
        let path = dir.join(file_name(payload.offset));
        let mut file: DurableFile<Payload> =
            DurableFile::open(Arc::clone(&fs), &path, options()).map_err(Error::Snapshot)?;
        file.write(&payload).map_err(Error::Snapshot)?;
        cairn_fs::crash_point(cairn_fs::crash_point::SNAPSHOT_WRITTEN);
        let mut removed = 0;
        for (_, old) in list(fs.as_ref(), &dir)?.iter().skip(kept) {
            match fs.remove_file(old) {
                Ok(()) => removed += 1,
                // Pruned meanwhile by another writer of a snapshot of this store.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", old, e)),
            }
        }
        if removed > 0 {
            fs.sync_dir(&dir).map_err(|e| Error::io("sync_dir", &dir, e))?;
        }
        let (offset, keys, bytes) = (payload.offset, payload.keys, payload.entries.len() as u64);
        Ok(SnapshotInfo { path, offset, keys, bytes, removed })
    }
}

/// Encodes the snapshot of `state` at `offset`, to be written into `dir`, keeping only the
/// newest `kept` after it.
pub(crate) fn encode(
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    offset: u64,
    state: &State,
    kept: usize,
) -> PendingSnapshot {
    let infos = state.segments.infos();
    let ids: Vec<SegmentId> = infos.iter().map(|i| i.id).collect();
    let segments: Vec<SegmentRecord> = infos.iter().map(SegmentRecord::of).collect();
    let mut entries = Vec::with_capacity(state.index.len() * (ENTRY_FIXED + 20));
    for (key, slot) in state.index.iter() {
        let Slot::Logged { offset, at } = slot else {
            panic!("broken invariant: a snapshot is written after a flush, so every slot is logged");
        };
        let segment = ids.binary_search(&at.segment).unwrap_or_else(|_| {
            panic!("broken invariant: a location names segment {:?}, not in the store's set", at.segment)
        });
        entries.extend_from_slice(&(key.len() as u32).to_le_bytes());
        entries.extend_from_slice(key);
        entries.extend_from_slice(&offset.to_le_bytes());
        entries.extend_from_slice(&(segment as u32).to_le_bytes());
        entries.extend_from_slice(&at.position.to_le_bytes());
        entries.extend_from_slice(&at.len.to_le_bytes());
    }
    let payload = Payload { offset, keys: state.index.len() as u64, segments, entries };
    PendingSnapshot { fs, dir, kept, payload }
}

/// Reads the snapshot at `path`.
pub(crate) fn read(fs: Arc<dyn Fs>, path: &Path) -> Result<Option<Payload>, cairn_checkpoint::Error> {
    let file: DurableFile<Payload> = DurableFile::open(fs, path, options())?;
    file.read()
}

/// Why a snapshot's entries cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadEntries {
    /// Byte position in the entries where the problem is.
    pub(crate) position: usize,
    pub(crate) what: &'static str,
}

/// One decoded entry: its key, offset, segment index (into the payload's segments), location.
pub(crate) struct Decoded<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) offset: u64,
    pub(crate) segment: usize,
    pub(crate) position: u32,
    pub(crate) len: u32,
}

/// Decodes the entries of `payload`, calling `each` in key order; checks every length, the key
/// order, the offsets (below the snapshot's) and the segment indexes.
pub(crate) fn decode_entries<'a>(
    payload: &'a Payload,
    mut each: impl FnMut(Decoded<'a>),
) -> Result<(), BadEntries> {
    let bytes = payload.entries.as_slice();
    let mut at = 0usize;
    let mut previous: Option<&[u8]> = None;
    let mut count = 0u64;
    let bad = |position, what| Err(BadEntries { position, what });
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 4) else { return bad(at, "entry header cut short") };
        let key_len = le_u32(len) as usize;
        let Some(key) = bytes.get(at + 4..).and_then(|rest| rest.get(..key_len)) else {
            return bad(at, "key runs past the entries");
        };
        let fixed_at = at + 4 + key_len;
        let Some(fixed) = bytes.get(fixed_at..fixed_at + ENTRY_FIXED) else {
            return bad(at, "entry cut short");
        };
        let u32_at = |i: usize| fixed.get(i..i + 4).map_or(0, le_u32);
        let offset = u64::from(u32_at(0)) | (u64::from(u32_at(4)) << 32);
        let segment = u32_at(8) as usize;
        if key.is_empty() || previous.is_some_and(|p| p >= key) {
            return bad(at, "keys out of order or empty");
        }
        if offset >= payload.offset {
            return bad(at, "an entry's offset is not below the snapshot's");
        }
        if segment >= payload.segments.len() {
            return bad(at, "an entry names a segment the snapshot does not list");
        }
        each(Decoded { key, offset, segment, position: u32_at(12), len: u32_at(16) });
        previous = Some(key);
        count += 1;
        at = fixed_at + ENTRY_FIXED;
    }
    if count != payload.keys {
        return bad(at, "the entry count differs from the header's");
    }
    Ok(())
}

fn le_u32(bytes: &[u8]) -> u32 {
    bytes.try_into().map_or(0, u32::from_le_bytes)
}

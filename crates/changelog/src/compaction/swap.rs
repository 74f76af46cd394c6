//! The commit record of a compaction pass (docs/format.md, "Compaction protocol").
//!
//! A pass writes its new segments as `<base>.log.compacting` and `<base>.index.compacting`,
//! fsyncs them and the directory, and then commits by making `compaction.swap` durable (written
//! as a temporary file, fsynced, renamed, directory fsynced). The record names the segments the
//! pass replaces and the ones it installs. Applying it renames every `.compacting` file to its
//! final name (over an old file of the same base, if any), removes the old segments that have no
//! successor of their base, fsyncs the directory, and removes the record. Every step is
//! idempotent, so recovery applies a record it finds to the end, whatever part of it a crash
//! had made durable; without a record, `.compacting` files are leftovers of an uncommitted pass
//! and are removed. Old segments are never touched before the record is durable.
//!
//! ```text
//! 0   u32 magic      0x5C0A_C7ED
//! 4   u16 version    1
//! 6   u16 flags      0
//! 8   u32 old_count
//! 12  u32 new_count
//! 16  u64 × old_count  base offsets of the segments replaced, increasing
//!     u64 × new_count  base offsets of the segments installed, increasing
//!     u32 crc32c      of every byte before it
//! ```

use std::path::Path;

use cairn_fs::{Fs, OpenMode};

use crate::batch::{u32_at, u64_at};
use crate::error::{CorruptionKind, Error, Result};
use crate::mutants;
use crate::segment::{index_name, log_name};

/// The record's file name in the log directory.
pub(crate) const SWAP_NAME: &str = "compaction.swap";
/// Suffix of a pass's output files until the pass commits.
pub(crate) const COMPACTING_SUFFIX: &str = ".compacting";

const MAGIC: u32 = 0x5C0A_C7ED;
const VERSION: u16 = 1;
const HEADER_LEN: usize = 16;
/// The most segments a record names: far more than a directory holds, small enough that a
/// damaged count cannot make a huge allocation.
const MAX_SEGMENTS: u32 = 1 << 20;

/// The segments a pass replaces and the ones it installs, by base offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SwapRecord {
    pub(crate) old: Vec<u64>,
    pub(crate) new: Vec<u64>,
}

/// `<name>.compacting`.
pub(crate) fn compacting(name: &str) -> String {
    format!("{name}{COMPACTING_SUFFIX}")
}

impl SwapRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * (self.old.len() + self.new.len()) + 4);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.old.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.new.len() as u32).to_le_bytes());
        for base in self.old.iter().chain(&self.new) {
            out.extend_from_slice(&base.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The record in `bytes`, or the position and kind of the first problem.
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<SwapRecord, (u64, CorruptionKind)> {
        if bytes.len() < HEADER_LEN + 4 {
            let kind =
                CorruptionKind::Truncated { needed: (HEADER_LEN + 4) as u64, available: bytes.len() as u64 };
            return Err((0, kind));
        }
        let magic = u32_at(bytes, 0);
        if magic != MAGIC {
            return Err((0, CorruptionKind::BadMagic { found: magic }));
        }
        let version = u32_at(bytes, 4) as u16;
        let flags = (u32_at(bytes, 4) >> 16) as u16;
        if version != VERSION || flags != 0 {
            return Err((4, CorruptionKind::UnsupportedFormat { version, flags }));
        }
        let (old, new) = (u32_at(bytes, 8), u32_at(bytes, 12));
        if old > MAX_SEGMENTS || new > MAX_SEGMENTS {
            return Err((8, CorruptionKind::BadLength { length: u64::from(old.max(new)) }));
        }
        let len = HEADER_LEN + 8 * (old as usize + new as usize) + 4;
        if bytes.len() != len {
            return Err((0, CorruptionKind::BadLength { length: bytes.len() as u64 }));
        }
        let body = bytes.get(..len - 4).unwrap_or_default();
        let (stored, computed) = (u32_at(bytes, len - 4), crc32c::crc32c(body));
        if stored != computed {
            return Err(((len - 4) as u64, CorruptionKind::Checksum { stored, computed }));
        }
        let bases =
            |from: usize, count: u32| (0..count as usize).map(|i| u64_at(bytes, from + 8 * i)).collect();
        let record =
            SwapRecord { old: bases(HEADER_LEN, old), new: bases(HEADER_LEN + 8 * old as usize, new) };
        let increasing = |v: &[u64]| v.iter().zip(v.iter().skip(1)).all(|(a, b)| a < b);
        if !increasing(&record.old) || !increasing(&record.new) {
            return Err((HEADER_LEN as u64, CorruptionKind::BadRecord { record: 0 }));
        }
        Ok(record)
    }
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |e| Error::io(op, path, e)
}

/// Reads the record in `dir`, if there is one.
pub(crate) fn read(fs: &dyn Fs, dir: &Path) -> Result<Option<SwapRecord>> {
    let path = dir.join(SWAP_NAME);
    if !fs.exists(&path).map_err(io("stat", &path))? {
        return Ok(None);
    }
    let file = fs.open(&path, OpenMode::Read).map_err(io("open", &path))?;
    let len = file.len().map_err(io("stat", &path))?;
    let max = (HEADER_LEN + 16 * MAX_SEGMENTS as usize + 4) as u64;
    if len > max {
        return Err(Error::corruption(&path, 0, CorruptionKind::BadLength { length: len }));
    }
    let mut bytes = vec![0; len as usize];
    file.read_exact_at(&mut bytes, 0).map_err(io("read", &path))?;
    SwapRecord::decode(&bytes).map(Some).map_err(|(position, kind)| Error::corruption(&path, position, kind))
}

pub(crate) fn remove_if_present(fs: &dyn Fs, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

fn rename_if_present(fs: &dyn Fs, from: &Path, to: &Path) -> Result<()> {
    match fs.rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("rename", from, e)),
    }
}

/// Applies a durable `record` in `dir` to the end (idempotent): installs the new segments,
/// removes the replaced ones, then the record, with directory fsyncs between.
pub(crate) fn apply(fs: &dyn Fs, dir: &Path, record: &SwapRecord) -> Result<()> {
    for &base in &record.new {
        for name in [log_name(base), index_name(base)] {
            rename_if_present(fs, &dir.join(compacting(&name)), &dir.join(&name))?;
        }
    }
    for &base in record.old.iter().filter(|b| !record.new.contains(b)) {
        // The marker first: a crash in between leaves an unmarked segment, never a marked one
        // without its data.
        remove_if_present(fs, &dir.join(index_name(base)))?;
        remove_if_present(fs, &dir.join(log_name(base)))?;
    }
    fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
    let path = dir.join(SWAP_NAME);
    remove_if_present(fs, &path)?;
    fs.sync_dir(dir).map_err(io("sync_dir", dir))
}

/// What opening a log does about compaction: completes a committed pass (returning `true`),
/// then removes the output of any pass that did not commit, syncing the directory if it removed
/// something. Returns whether a pass was completed and how many files were removed.
pub(crate) fn recover(fs: &dyn Fs, dir: &Path) -> Result<(bool, usize)> {
    let completed = match read(fs, dir)? {
        Some(record) if !mutants::active(mutants::OPEN_IGNORES_SWAP_RECORD) => {
            apply(fs, dir, &record)?;
            true
        }
        Some(_) => {
            remove_if_present(fs, &dir.join(SWAP_NAME))?;
            false
        }
        None => false,
    };
    let removed = remove_uncommitted(fs, dir)?;
    if removed > 0 {
        fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
    }
    Ok((completed, removed))
}

/// Removes every `.compacting` file in `dir` (the output of a pass that did not commit).
/// Returns how many there were; the caller syncs the directory.
fn remove_uncommitted(fs: &dyn Fs, dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for name in fs.list_dir(dir).map_err(io("list", dir))? {
        if name.to_str().is_some_and(|n| n.ends_with(COMPACTING_SUFFIX)) {
            remove_if_present(fs, &dir.join(&name))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_any_flip_is_refused() {
        let record = SwapRecord { old: vec![0, 100, 250], new: vec![0, 180] };
        let bytes = record.encode();
        assert_eq!(SwapRecord::decode(&bytes), Ok(record));
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SwapRecord::decode(&damaged).is_err(), "bit {bit} flip accepted");
        }
        for len in 0..bytes.len() {
            assert!(SwapRecord::decode(&bytes[..len]).is_err());
        }
    }
}

//! The small trait every peer implements, the workloads, and the records they write.

use std::path::Path;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T = ()> = std::result::Result<T, Error>;

/// Key bytes of every record.
pub const KEY_BYTES: usize = 16;
/// Value bytes of the append and restore workloads (116 B records).
pub const VALUE_BYTES: usize = 100;
/// Value bytes of the durable-commit workloads (272 B records).
pub const COMMIT_VALUE_BYTES: usize = 256;

/// The workloads, in the order of the report.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    /// One record at a time, no fsync; what was written is handed to the OS at the end.
    Append,
    /// One record per commit, each commit durable (an fsync or fdatasync) before the next.
    Commit,
    /// Four writers, each committing one record at a time durably.
    Group,
    /// Reopen a store of 1 M keys written by 1.5 M puts, until it answers a get.
    Restore,
    /// Random gets of present keys on the reopened store.
    Get,
}

impl Workload {
    pub const ALL: [Workload; 5] =
        [Workload::Append, Workload::Commit, Workload::Group, Workload::Restore, Workload::Get];

    pub fn id(self) -> &'static str {
        match self {
            Workload::Append => "append",
            Workload::Commit => "commit",
            Workload::Group => "group",
            Workload::Restore => "restore",
            Workload::Get => "get",
        }
    }

    pub fn from_id(id: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.id() == id)
    }

    pub fn title(self) -> &'static str {
        match self {
            Workload::Append => "append, 16 B key + 100 B value, one record at a time, no fsync",
            Workload::Commit => "durable commit, 1 writer, 16 B key + 256 B value per commit",
            Workload::Group => "durable commit, 4 writers, 16 B key + 256 B value per commit",
            Workload::Restore => "reopen after 1 M keys / 1.5 M puts (16 B keys, 100 B values)",
            Workload::Get => "random get of present keys after reopen, 1 M keys",
        }
    }

    /// Whether a larger figure is better (throughput) or a smaller one (time).
    pub fn higher_is_better(self) -> bool {
        self != Workload::Restore
    }

    /// Whether the workload writes with durable commits (a peer's sync calls are checked).
    pub fn durable(self) -> bool {
        matches!(self, Workload::Commit | Workload::Group)
    }
}

/// How a peer runs a workload, or why it cannot.
pub enum Setting {
    /// The exact calls and options used.
    Offered(&'static str),
    /// The peer offers no setting with this guarantee; the reason. Its writer for the tier
    /// makes the nearest calls it has, so that strace shows what they do.
    NotOffered(&'static str),
    /// Not a separate system for this workload: the figure is the named system's.
    Same(&'static str),
}

/// Writes records at one durability tier. Shared by the writer threads of [`Workload::Group`].
pub trait Writer: Send + Sync {
    /// Writes one record; with [`Workload::Commit`] and [`Workload::Group`] it is durable when
    /// this returns.
    fn write(&self, key: &[u8], value: &[u8]) -> Result;
    /// Called once after the last write of [`Workload::Append`]: hands what is buffered in the
    /// process to the OS (no fsync).
    fn finish(&self) -> Result;
}

/// Answers gets on a reopened store.
pub trait Reader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// A map rebuilt by replaying a log (the raw baseline, commitlog).
impl Reader for std::collections::HashMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(std::collections::HashMap::get(self, key).cloned())
    }
}

/// One system under test.
pub trait Peer: Sync {
    fn name(&self) -> &'static str;
    /// The crate and version, as the lockfile pins it.
    fn version(&self) -> &'static str;
    /// How this peer runs `workload` ([`Workload::Get`] uses the store [`Workload::Restore`]
    /// reopened).
    fn setting(&self, workload: Workload) -> Setting;
    /// Opens a fresh writer in the empty directory `dir` for `workload`.
    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>>;
    /// Writes the restore data set into the empty directory `dir` ([`puts`]), durably, and
    /// closes it.
    fn load(&self, dir: &Path, keys: u64) -> Result;
    /// Reopens what [`Peer::load`] wrote, ready to answer gets.
    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>>;
    /// Whether reopening rebuilds an index of every key in memory by reading a log (all of it,
    /// or the tail after a snapshot), as cairn does; not so a store that opens on-disk tables or
    /// trees and reads them lazily on gets (and replays at most a short journal).
    fn rebuilds_from_log(&self) -> bool;
}

/// The 16-byte key of `i`: a hash of `i` first, so that consecutive `i` are in random key order.
pub fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut key = [0u8; KEY_BYTES];
    key[..8].copy_from_slice(&x.to_be_bytes());
    key[8..].copy_from_slice(&i.to_be_bytes());
    key
}

/// The value put for key `i` in put number `version` (0 or 1).
pub fn value(i: u64, version: u64) -> [u8; VALUE_BYTES] {
    let mut value = [b'v'; VALUE_BYTES];
    value[..8].copy_from_slice(&i.to_le_bytes());
    value[8..16].copy_from_slice(&version.to_le_bytes());
    value
}

/// The restore data set: `keys` keys each put once, in random key order, then every second key
/// put again with a new value: 1.5 puts per key.
pub fn puts(keys: u64) -> impl Iterator<Item = ([u8; KEY_BYTES], [u8; VALUE_BYTES])> {
    let first = (0..keys).map(|i| (key(i), value(i, 0)));
    let second = (0..keys).filter(|i| i % 2 == 0).map(|i| (key(i), value(i, 1)));
    first.chain(second)
}

/// The value key `i` holds after [`puts`].
pub fn latest(i: u64) -> [u8; VALUE_BYTES] {
    value(i, u64::from(i.is_multiple_of(2)))
}

/// Splits a record written as key then value.
pub fn split(record: &[u8]) -> Result<(&[u8], &[u8])> {
    if record.len() < KEY_BYTES {
        return Err(format!("a record of {} bytes is shorter than a key", record.len()).into());
    }
    Ok(record.split_at(KEY_BYTES))
}

/// Key and value in one buffer.
pub fn joined(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(key.len() + value.len());
    record.extend_from_slice(key);
    record.extend_from_slice(value);
    record
}

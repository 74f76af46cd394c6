//! Fault injection for [`SimFs`](super::SimFs): rules that make matching operations fail.

use std::io;

/// A file-system operation, as counted by [`SimStats`](super::SimStats) and matched by
/// [`FaultRule`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`Fs::open`](crate::Fs::open) of an existing file.
    Open,
    /// [`Fs::open`](crate::Fs::open) that creates a file.
    Create,
    /// [`File::read_at`](crate::File::read_at).
    Read,
    /// [`File::write_at`](crate::File::write_at).
    Write,
    /// [`File::set_len`](crate::File::set_len).
    SetLen,
    /// [`File::len`](crate::File::len) or [`Fs::file_len`](crate::Fs::file_len).
    Len,
    /// [`File::sync_data`](crate::File::sync_data).
    SyncData,
    /// [`File::sync_all`](crate::File::sync_all).
    SyncAll,
    /// [`File::map`](crate::File::map).
    Map,
    /// [`File::start_writeback`](crate::File::start_writeback).
    Writeback,
    /// [`Fs::rename`](crate::Fs::rename).
    Rename,
    /// [`Fs::remove_file`](crate::Fs::remove_file).
    Remove,
    /// [`Fs::list_dir`](crate::Fs::list_dir).
    ListDir,
    /// [`Fs::create_dir_all`](crate::Fs::create_dir_all).
    CreateDir,
    /// [`Fs::sync_dir`](crate::Fs::sync_dir).
    SyncDir,
    /// [`Fs::exists`](crate::Fs::exists).
    Exists,
    /// [`Fs::lock_file`](crate::Fs::lock_file).
    Lock,
}

impl Op {
    /// Whether the operation is a file fsync (`sync_data` or `sync_all`).
    pub fn is_file_sync(self) -> bool {
        matches!(self, Op::SyncData | Op::SyncAll)
    }

    /// Whether the operation changes live state or promotes it to durable state.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Op::Create
                | Op::Write
                | Op::SetLen
                | Op::SyncData
                | Op::SyncAll
                | Op::Rename
                | Op::Remove
                | Op::CreateDir
                | Op::SyncDir
        )
    }
}

/// Which operations a [`FaultRule`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpMatch {
    /// Every operation.
    Any,
    /// Operations that change state ([`Op::is_mutating`]).
    Mutating,
    /// File fsyncs, `sync_data` and `sync_all`.
    FileSync,
    /// Exactly this operation.
    Only(Op),
}

impl OpMatch {
    fn matches(self, op: Op) -> bool {
        match self {
            OpMatch::Any => true,
            OpMatch::Mutating => op.is_mutating(),
            OpMatch::FileSync => op.is_file_sync(),
            OpMatch::Only(only) => only == op,
        }
    }
}

/// What a firing [`FaultRule`] does to the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultEffect {
    /// The operation fails with `EIO` and changes nothing. A failing file fsync also discards
    /// the file's pending writes from the durable side (the "fsyncgate" behaviour of Linux: the
    /// page cache keeps showing the data, but it will never reach the disk, and the next fsync
    /// succeeds).
    Eio,
    /// The operation fails with `ENOSPC` ([`io::ErrorKind::StorageFull`]) and changes nothing.
    /// Applies to writes, length changes and creations only.
    NoSpace,
    /// A write stores only a part of its bytes (at least one) and reports that shorter length.
    /// Other operations are not affected.
    ShortWrite,
    /// A read or a mapping returns the data with one bit flipped; the file is unchanged. Other
    /// operations are not affected.
    FlipBit,
}

/// A rule that injects a fault into matching operations of a [`SimFs`](super::SimFs).
///
/// A rule matches operations by kind and, optionally, by a substring of the path; it lets the
/// first `skip` matches pass, then fires on the next `times` matches (forever if `None`).
///
/// ```
/// use cairn_fs::{FaultRule, Op};
/// // The 10th operation of any kind (counting from 0) fails with EIO, once.
/// let nth = FaultRule::fail_nth_op(9);
/// // Every fsync of a file whose path contains ".log" fails, and drops its pending writes.
/// let gate = FaultRule::fail_file_sync().on_path(".log");
/// // The third rename fails.
/// let rename = FaultRule::fail(Op::Rename).skip(2).times(1);
/// # let _ = (nth, gate, rename);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// The operations the rule applies to.
    pub ops: OpMatch,
    /// Only paths containing this string, if set.
    pub path_contains: Option<String>,
    /// Matching operations let through before the rule fires.
    pub skip: u64,
    /// How many times the rule fires; `None` for every match after `skip`.
    pub times: Option<u64>,
    /// What happens when it fires.
    pub effect: FaultEffect,
}

impl FaultRule {
    /// A rule failing every operation of kind `op` with `EIO`.
    pub fn fail(op: Op) -> FaultRule {
        FaultRule {
            ops: OpMatch::Only(op),
            path_contains: None,
            skip: 0,
            times: None,
            effect: FaultEffect::Eio,
        }
    }

    /// The `n`-th operation from now (counting from 0, any kind, any path) fails with `EIO`.
    pub fn fail_nth_op(n: u64) -> FaultRule {
        FaultRule {
            ops: OpMatch::Any,
            path_contains: None,
            skip: n,
            times: Some(1),
            effect: FaultEffect::Eio,
        }
    }

    /// File fsyncs fail with `EIO` and drop the file's pending writes (fsyncgate).
    pub fn fail_file_sync() -> FaultRule {
        FaultRule {
            ops: OpMatch::FileSync,
            path_contains: None,
            skip: 0,
            times: None,
            effect: FaultEffect::Eio,
        }
    }

    /// Writes, length changes and creations fail with `ENOSPC`.
    pub fn no_space() -> FaultRule {
        FaultRule {
            ops: OpMatch::Any,
            path_contains: None,
            skip: 0,
            times: None,
            effect: FaultEffect::NoSpace,
        }
    }

    /// Writes store only part of their bytes.
    pub fn short_write() -> FaultRule {
        FaultRule {
            ops: OpMatch::Any,
            path_contains: None,
            skip: 0,
            times: None,
            effect: FaultEffect::ShortWrite,
        }
    }

    /// Reads and mappings return one flipped bit.
    pub fn flip_bit_on_read() -> FaultRule {
        FaultRule {
            ops: OpMatch::Any,
            path_contains: None,
            skip: 0,
            times: None,
            effect: FaultEffect::FlipBit,
        }
    }

    /// The same rule, for the given operations instead.
    pub fn for_ops(mut self, ops: OpMatch) -> FaultRule {
        self.ops = ops;
        self
    }

    /// The same rule, limited to paths containing `fragment`.
    pub fn on_path(mut self, fragment: impl Into<String>) -> FaultRule {
        self.path_contains = Some(fragment.into());
        self
    }

    /// The same rule, letting the first `n` matches through.
    pub fn skip(mut self, n: u64) -> FaultRule {
        self.skip = n;
        self
    }

    /// The same rule, firing `n` times only.
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// The same rule with another effect.
    pub fn with_effect(mut self, effect: FaultEffect) -> FaultRule {
        self.effect = effect;
        self
    }

    /// Whether the rule fires for this operation now; advances its counters.
    pub(crate) fn fire(&mut self, op: Op, path: &str) -> bool {
        if !self.ops.matches(op) {
            return false;
        }
        if let Some(fragment) = &self.path_contains
            && !path.contains(fragment.as_str())
        {
            return false;
        }
        // Each effect only makes sense for some operations; the others pass untouched and are
        // not counted against `skip`.
        let applicable = match self.effect {
            FaultEffect::ShortWrite => op == Op::Write,
            FaultEffect::FlipBit => matches!(op, Op::Read | Op::Map),
            FaultEffect::NoSpace => {
                matches!(op, Op::Write | Op::SetLen | Op::Create | Op::CreateDir)
            }
            FaultEffect::Eio => true,
        };
        if !applicable {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        match &mut self.times {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    pub(crate) fn is_spent(&self) -> bool {
        self.times == Some(0)
    }
}

pub(crate) fn injected(effect: FaultEffect, op: Op, path: &str) -> io::Error {
    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;
    let errno = match effect {
        FaultEffect::NoSpace => ENOSPC,
        _ => EIO,
    };
    let os = io::Error::from_raw_os_error(errno);
    io::Error::new(os.kind(), format!("injected fault on {op:?} of {path}: {os}"))
}

//! Records as callers append them and as readers see them.

use std::time::{SystemTime, UNIX_EPOCH};

/// A record to append: a key, a value or none (a tombstone, meaning "delete the key"), and a
/// timestamp in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The key; may be empty.
    pub key: &'a [u8],
    /// The value, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// Milliseconds since the Unix epoch (any `i64`; the log does not interpret it).
    pub timestamp_ms: i64,
}

impl<'a> Record<'a> {
    /// A record with every field given.
    pub fn new(key: &'a [u8], value: Option<&'a [u8]>, timestamp_ms: i64) -> Record<'a> {
        Record { key, value, timestamp_ms }
    }

    /// A record setting `key` to `value`, stamped with the current time.
    pub fn put(key: &'a [u8], value: &'a [u8]) -> Record<'a> {
        Record { key, value: Some(value), timestamp_ms: now_ms() }
    }

    /// A tombstone for `key`, stamped with the current time.
    pub fn tombstone(key: &'a [u8]) -> Record<'a> {
        Record { key, value: None, timestamp_ms: now_ms() }
    }

    /// The same record with another timestamp.
    pub fn at(self, timestamp_ms: i64) -> Record<'a> {
        Record { timestamp_ms, ..self }
    }
}

/// A record read from the log, borrowing its key and value from the batch that holds it (a
/// mapped segment or the reader's buffer): no copy is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordView<'a> {
    /// The record's offset.
    pub offset: u64,
    /// Milliseconds since the Unix epoch, as appended.
    pub timestamp_ms: i64,
    /// The key.
    pub key: &'a [u8],
    /// The value, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

impl RecordView<'_> {
    /// An owned copy of the record.
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.to_vec(),
            value: self.value.map(<[u8]>::to_vec),
        }
    }
}

/// A record read from the log, with its own copies of key and value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnedRecord {
    /// The record's offset.
    pub offset: u64,
    /// Milliseconds since the Unix epoch, as appended.
    pub timestamp_ms: i64,
    /// The key.
    pub key: Vec<u8>,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

impl OwnedRecord {
    /// The record as an appendable [`Record`] (without its offset).
    pub fn as_record(&self) -> Record<'_> {
        Record { key: &self.key, value: self.value.as_deref(), timestamp_ms: self.timestamp_ms }
    }
}

pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

//! Shared helpers of the changelog's integration tests: the model checker `check(ops)`, record
//! generation, temporary directories, and log reading.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_changelog::{Error, Log, LogOptions, OwnedRecord, Record};
use cairn_fs::Fs;

/// Options that make every workload roll segments: 4 KiB segments, small index interval, a
/// small write buffer.
pub fn small_options() -> LogOptions {
    let mut options = LogOptions::default();
    options.segment_bytes_max = 4096;
    options.index_interval_bytes = 256;
    options.write_buffer_bytes = 512;
    options
}

/// A record to append, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: i64,
}

impl Rec {
    pub fn as_record(&self) -> Record<'_> {
        Record::new(&self.key, self.value.as_deref(), self.timestamp_ms)
    }

    /// A deterministic record whose content depends on `seed`: keys of 1 to 24 bytes, values of 0
    /// to `max_value` bytes, one in eight a tombstone.
    pub fn generate(seed: u64, max_value: usize) -> Rec {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let key_len = 1 + (next() % 24) as usize;
        let key = (0..key_len)
            .map(|i| (next() as u8).wrapping_add(i as u8))
            .collect();
        let value = if next() % 8 == 0 {
            None
        } else {
            let len = (next() % (max_value as u64 + 1)) as usize;
            Some((0..len).map(|_| next() as u8).collect())
        };
        Rec {
            key,
            value,
            timestamp_ms: (next() % 1_000_000) as i64 - 1000,
        }
    }

    pub fn matches(&self, record: &OwnedRecord) -> bool {
        self.key == record.key
            && self.value == record.value
            && self.timestamp_ms == record.timestamp_ms
    }
}

/// Every record readable from `offset` on.
pub fn read_from(log: &Log, offset: u64) -> Vec<OwnedRecord> {
    log.reader(offset)
        .unwrap()
        .into_records()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Asserts that `records` are exactly `expected` with offsets from `start`.
pub fn assert_records(records: &[OwnedRecord], expected: &[Rec], start: u64) {
    assert_eq!(records.len(), expected.len(), "record count");
    for (i, (got, want)) in records.iter().zip(expected).enumerate() {
        assert_eq!(got.offset, start + i as u64, "offset of record {i}");
        assert!(
            want.matches(got),
            "record {} differs: got {got:?}, want {want:?}",
            start + i as u64
        );
    }
}

/// One step of a model-checked workload.
#[derive(Clone, Debug)]
pub enum Op {
    Append(Rec),
    Batch(Vec<Rec>),
    Flush,
    Sync,
    /// Truncate at this fraction (per mille) of the current length.
    Truncate(u16),
    /// Close and reopen.
    Reopen,
    /// Read everything from this fraction (per mille) of the current length.
    Read(u16),
}

/// Runs `ops` against a log in `dir` and a model (a `Vec` of records), checking after every step
/// that offsets, watermarks and contents agree.
pub fn check(fs: Arc<dyn Fs>, dir: &Path, options: &LogOptions, ops: &[Op]) {
    let mut log = Log::open(Arc::clone(&fs), dir, options.clone()).unwrap();
    let mut model: Vec<Rec> = read_from(&log, 0)
        .iter()
        .map(|r| Rec {
            key: r.key.clone(),
            value: r.value.clone(),
            timestamp_ms: r.timestamp_ms,
        })
        .collect();
    let start = log.start_offset();
    for op in ops {
        let len = start + model.len() as u64;
        match op {
            Op::Append(rec) => {
                assert_eq!(log.append(rec.as_record()).unwrap(), len);
                model.push(rec.clone());
            }
            Op::Batch(recs) => {
                let records: Vec<_> = recs.iter().map(Rec::as_record).collect();
                let payload: usize = recs
                    .iter()
                    .map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len))
                    .sum();
                match log.append_batch(&records) {
                    Ok(range) => {
                        assert_eq!(range, len..len + recs.len() as u64);
                        model.extend(recs.iter().cloned());
                    }
                    Err(Error::BatchTooLarge { bytes, max }) => {
                        assert!(
                            bytes > max && bytes >= payload as u64,
                            "refused a batch that fits"
                        );
                        assert_eq!(log.end_offset(), len, "a refused batch changed the log");
                    }
                    Err(e) => panic!("append_batch: {e}"),
                }
            }
            Op::Flush => {
                assert_eq!(log.flush().unwrap(), len);
                assert_eq!(log.written_offset(), len);
            }
            Op::Sync => {
                assert_eq!(log.sync().unwrap(), len);
                assert_eq!(log.durable_offset(), len);
            }
            Op::Truncate(per_mille) => {
                let at = start + model.len() as u64 * u64::from(*per_mille) / 1000;
                let durable_before = log.durable_offset();
                log.truncate(at).unwrap();
                model.truncate((at - start) as usize);
                assert_eq!(log.end_offset(), at);
                if at < len {
                    assert_eq!(
                        log.durable_offset(),
                        at,
                        "truncation leaves the rest durable"
                    );
                } else {
                    assert_eq!(
                        log.durable_offset(),
                        durable_before,
                        "a truncation at the end changes nothing"
                    );
                }
            }
            Op::Reopen => {
                log.close().unwrap();
                drop(log);
                log = Log::open(Arc::clone(&fs), dir, options.clone()).unwrap();
                assert_eq!(log.end_offset(), len, "reopened log end");
                assert_eq!(log.durable_offset(), len, "reopened log durable end");
                assert!(
                    log.recovery_report().tail_cut.is_none(),
                    "clean close left a tail"
                );
            }
            Op::Read(per_mille) => {
                log.flush().unwrap();
                let from = start + model.len() as u64 * u64::from(*per_mille) / 1000;
                let skip = (from - start) as usize;
                assert_records(&read_from(&log, from), &model[skip..], from);
            }
        }
    }
    log.flush().unwrap();
    assert_records(&read_from(&log, start), &model, start);
}

/// A directory under the system's temporary directory, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "cairn-test-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

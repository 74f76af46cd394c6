//! Shared helpers of the changelog's integration tests: the model checker `check(ops)`, record
//! generation, temporary directories, and log reading.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod compact;
pub mod repair;
pub mod sweep;

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
        let key = (0..key_len).map(|i| (next() as u8).wrapping_add(i as u8)).collect();
        let value = if next() % 8 == 0 {
            None
        } else {
            let len = (next() % (max_value as u64 + 1)) as usize;
            Some((0..len).map(|_| next() as u8).collect())
        };
        Rec { key, value, timestamp_ms: (next() % 1_000_000) as i64 - 1000 }
    }

    pub fn matches(&self, record: &OwnedRecord) -> bool {
        self.key == record.key && self.value == record.value && self.timestamp_ms == record.timestamp_ms
    }
}

/// Every record readable from `offset` on.
pub fn read_from(log: &Log, offset: u64) -> Vec<OwnedRecord> {
    log.reader(offset).unwrap().into_records().collect::<Result<Vec<_>, _>>().unwrap()
}

/// Asserts that `records` are exactly `expected` with offsets from `start`.
pub fn assert_records(records: &[OwnedRecord], expected: &[Rec], start: u64) {
    assert_eq!(records.len(), expected.len(), "record count");
    for (i, (got, want)) in records.iter().zip(expected).enumerate() {
        assert_eq!(got.offset, start + i as u64, "offset of record {i}");
        assert!(want.matches(got), "record {} differs: got {got:?}, want {want:?}", start + i as u64);
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
        .map(|r| Rec { key: r.key.clone(), value: r.value.clone(), timestamp_ms: r.timestamp_ms })
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
                let payload: usize =
                    recs.iter().map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len)).sum();
                match log.append_batch(&records) {
                    Ok(range) => {
                        assert_eq!(range, len..len + recs.len() as u64);
                        model.extend(recs.iter().cloned());
                    }
                    Err(Error::BatchTooLarge { bytes, max }) => {
                        assert!(bytes > max && bytes >= payload as u64, "refused a batch that fits");
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
                    assert_eq!(log.durable_offset(), at, "truncation leaves the rest durable");
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
                assert!(log.recovery_report().tail_cut.is_none(), "clean close left a tail");
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

/// `00000000000000000042.log` for base offset 42.
pub fn log_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// `00000000000000000042.index` for base offset 42.
pub fn index_name(base: u64) -> String {
    format!("{base:020}.index")
}

/// Every file of `dir` and its bytes.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().into_string().unwrap(), std::fs::read(entry.path()).unwrap())
        })
        .collect()
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

/// What a crash test knows at one moment: every record appended (and not truncated away), and
/// the end offset acknowledged durable by a successful `sync` or `truncate`.
#[derive(Clone, Debug, Default)]
pub struct Acked {
    pub appended: Vec<Rec>,
    pub durable: u64,
}

/// Opens the log on a crash image and checks DESIGN P1/P3/P4: the records are exactly a prefix
/// of `appended` (no garbage, no holes, no phantoms) holding at least the first `floor`.
/// Returns the records, or a description of the violation.
pub fn recover_prefix(
    fs: Arc<dyn Fs>,
    dir: &Path,
    options: &LogOptions,
    appended: &[Rec],
    floor: u64,
) -> Result<Vec<OwnedRecord>, String> {
    let log = Log::open(fs, dir, options.clone()).map_err(|e| format!("open failed: {e}"))?;
    let records = log
        .reader(0)
        .map_err(|e| format!("reader: {e}"))?
        .into_records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("read failed: {e}"))?;
    if (records.len() as u64) < floor {
        return Err(format!("lost acknowledged records: recovered {} < acknowledged {floor}", records.len()));
    }
    if records.len() > appended.len() {
        return Err(format!("phantom records: recovered {} > appended {}", records.len(), appended.len()));
    }
    for (i, (got, want)) in records.iter().zip(appended).enumerate() {
        if got.offset != i as u64 || !want.matches(got) {
            return Err(format!("record {i} is not what was appended: {got:?}"));
        }
    }
    if log.durable_offset() != records.len() as u64 {
        return Err(format!("durable end {} after open, expected {}", log.durable_offset(), records.len()));
    }
    Ok(records)
}

/// The probe for the directory fsync at a roll (DESIGN §3: a new segment is not durable until
/// its directory is synced): fill a segment, append one record that lands in a new segment,
/// sync it, lose power with every unsynced change dropped, and look for the record.
pub fn first_record_in_new_segment_survives() -> Result<(), String> {
    use cairn_fs::{CrashOptions, SimFs};
    let fs = SimFs::new(5);
    let dir = Path::new("/log");
    let options = small_options();
    let log = Log::open(Arc::new(fs.clone()), dir, options.clone()).map_err(|e| e.to_string())?;
    let mut appended = Vec::new();
    let mut seed = 0;
    while count_segments(&fs, dir) < 2 {
        let rec = Rec::generate(seed, 100);
        seed += 1;
        log.append(rec.as_record()).map_err(|e| e.to_string())?;
        appended.push(rec);
    }
    let acked = log.sync().map_err(|e| e.to_string())?;
    if acked != appended.len() as u64 {
        return Err(format!("sync acknowledged {acked}, appended {}", appended.len()));
    }
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    recover_prefix(Arc::new(image), dir, &options, &appended, acked).map(|_| ())
}

/// Segment files in `dir` of the simulator (live view).
pub fn count_segments(fs: &cairn_fs::SimFs, dir: &Path) -> usize {
    fs.list_dir(dir)
        .map(|names| names.iter().filter(|n| n.to_string_lossy().ends_with(".log")).count())
        .unwrap_or(0)
}

/// The probe for P4's "the cut is made durable before any new append": two unsynced batches,
/// the first destroyed by the crash and the second intact; recovery must cut both, so that a new
/// batch of the same length written where the first was cannot bring the second back.
pub fn cut_tail_stays_cut() -> Result<(), String> {
    use cairn_fs::{CrashOptions, SimFs};
    let fs = SimFs::new(9);
    let dir = Path::new("/log");
    let mut options = small_options();
    options.write_buffer_bytes = 0;
    let segment = dir.join("00000000000000000000.log");
    let first = Rec { key: b"first".to_vec(), value: Some(vec![1; 40]), timestamp_ms: 7 };
    let second = Rec { key: b"second".to_vec(), value: Some(vec![2; 40]), timestamp_ms: 7 };
    let again = Rec { key: b"again".to_vec(), value: Some(vec![3; 40]), timestamp_ms: 7 };
    let log = Log::open(Arc::new(fs.clone()), dir, options.clone()).map_err(|e| e.to_string())?;
    log.append(first.as_record()).map_err(|e| e.to_string())?;
    // The first batch's bytes (the file itself may be longer: preallocation).
    let inspection = cairn_changelog::LogDir::open(Arc::new(fs.clone()), dir)
        .and_then(|d| d.stat())
        .map_err(|e| e.to_string())?;
    let first_len = inspection.segments.first().ok_or("no segment")?.valid_bytes as usize;
    log.append(second.as_record()).map_err(|e| e.to_string())?;
    drop(log);

    // The crash keeps the second batch and destroys the first.
    let image = fs.crash_image(0, &CrashOptions::keep_all());
    let mut bytes = image.contents(&segment).map_err(|e| e.to_string())?;
    bytes[..first_len].fill(0);
    image.set_contents(&segment, &bytes).map_err(|e| e.to_string())?;

    let log = Log::open(Arc::new(image.clone()), dir, options.clone()).map_err(|e| e.to_string())?;
    let cut = log.recovery_report().tail_cut.clone().ok_or("the torn tail was not reported")?;
    if cut.position != 0 || cut.bytes == 0 {
        return Err(format!("unexpected cut {cut:?}"));
    }
    if log.append(again.as_record()).map_err(|e| e.to_string())? != 0 {
        return Err("the new record did not get offset 0".into());
    }
    log.sync().map_err(|e| e.to_string())?;
    // The power cut comes after the sync, before a close (whose cut of preallocated space
    // would also remove the second batch, hiding a missing cut at open).
    let crashed = image.crash_image(1, &CrashOptions::keep_all());
    drop(log);
    recover_prefix(Arc::new(crashed), dir, &options, &[again], 1).map(|_| ())
}

/// A `SimFs` whose fsyncs (file and directory) take `delay_us` while it is above zero, as real
/// ones take 100-250 µs (DESIGN §8), which raises `syncing` when a file fsync starts, and which
/// can panic in the next file fsync or in a rename of a path containing a given text: lets a test
/// hold a group-commit leader inside its fsync, open the windows of races between syncs,
/// truncations and readers, or interrupt a compaction's install.
#[derive(Debug, Clone)]
pub struct SlowFs {
    pub inner: cairn_fs::SimFs,
    pub delay_us: Arc<AtomicU64>,
    pub syncing: Arc<std::sync::atomic::AtomicBool>,
    pub panic_next_sync: Arc<std::sync::atomic::AtomicBool>,
    pub panic_on_rename_of: Arc<std::sync::Mutex<Option<String>>>,
}

#[derive(Debug)]
struct SlowFile {
    inner: Box<dyn cairn_fs::File>,
    fs: SlowFs,
}

impl SlowFs {
    pub fn new(seed: u64) -> SlowFs {
        SlowFs {
            inner: cairn_fs::SimFs::new(seed),
            delay_us: Arc::new(AtomicU64::new(0)),
            syncing: Arc::default(),
            panic_next_sync: Arc::default(),
            panic_on_rename_of: Arc::default(),
        }
    }

    fn pause(&self) {
        let us = self.delay_us.load(Ordering::SeqCst);
        if us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(us));
        }
    }
}

impl Fs for SlowFs {
    fn open(&self, path: &Path, mode: cairn_fs::OpenMode) -> std::io::Result<Box<dyn cairn_fs::File>> {
        Ok(Box::new(SlowFile { inner: self.inner.open(path, mode)?, fs: self.clone() }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let doomed =
            self.panic_on_rename_of.lock().unwrap().take_if(|text| from.to_string_lossy().contains(&**text));
        if doomed.is_some() {
            panic!("injected panic in rename of {}", from.display());
        }
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        self.inner.list_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.pause();
        self.inner.sync_dir(path)
    }
    fn file_len(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.file_len(path)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.inner.exists(path)
    }
    fn lock_file(&self, path: &Path) -> std::io::Result<cairn_fs::FileLock> {
        self.inner.lock_file(path)
    }
}

impl cairn_fs::File for SlowFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> std::io::Result<usize> {
        self.inner.write_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.fs.panic_next_sync.swap(false, Ordering::SeqCst) {
            panic!("injected panic in fsync");
        }
        self.fs.syncing.store(true, Ordering::SeqCst);
        self.fs.pause();
        self.inner.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.sync_data()
    }
    fn start_writeback(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.start_writeback(offset, len)
    }
    fn map(&self) -> std::io::Result<cairn_fs::Mapping> {
        self.inner.map()
    }
}

/// The group-commit probe: while one caller's fsync is in flight, a second caller appends and
/// syncs; when its `sync` returns, its record must be durable (DESIGN P1: no acknowledgement
/// before a covering fsync).
pub fn concurrent_sync_waits_for_a_covering_fsync() -> Result<(), String> {
    use cairn_fs::CrashOptions;
    let slow = SlowFs::new(4);
    let (fs, syncing) = (slow.inner.clone(), Arc::clone(&slow.syncing));
    let dir = Path::new("/log");
    let log = Arc::new(Log::open(Arc::new(slow.clone()), dir, small_options()).map_err(|e| e.to_string())?);
    slow.delay_us.store(300_000, Ordering::SeqCst);
    syncing.store(false, Ordering::SeqCst);
    let a = Rec::generate(1, 50);
    let b = Rec::generate(2, 50);
    log.append(a.as_record()).map_err(|e| e.to_string())?;
    let leader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.sync().map_err(|e| e.to_string()))
    };
    while !syncing.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    log.append(b.as_record()).map_err(|e| e.to_string())?;
    let acked = log.sync().map_err(|e| e.to_string())?;
    let image = fs.crash_image(0, &CrashOptions::durable_only());
    leader.join().map_err(|_| "leader panicked".to_string())??;
    if acked < 2 {
        return Err(format!("sync acknowledged only {acked}"));
    }
    recover_prefix(Arc::new(image), dir, &small_options(), &[a, b], acked).map(|_| ())
}

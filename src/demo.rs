//! `cairn demo`: the changelog end to end on the real file system.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::changelog::{CompactOptions, Log, LogOptions, Record};
use cairn::fs::{Fs, OpenMode, RealFs};

/// What `cairn demo` was asked to do.
pub struct DemoOptions {
    pub dir: Option<PathBuf>,
    pub records: u64,
    pub value_bytes: usize,
    pub keep: bool,
}

type DemoResult<T = ()> = Result<T, Box<dyn Error>>;

/// `println!` that returns an error instead of panicking when stdout is closed (`| head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

pub fn run(options: &DemoOptions) -> DemoResult {
    let (dir, temporary) = match &options.dir {
        Some(dir) => (dir.clone(), false),
        None => (temp_dir(), true),
    };
    say!("cairn demo: {} records of {} B values in {}", options.records, options.value_bytes, dir.display());
    let result = run_in(&dir, options);
    if temporary && !options.keep {
        // The demo's own scratch space; not a durability path.
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        say!("log kept in {}", dir.display());
    }
    result
}

fn temp_dir() -> PathBuf {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("cairn-demo-{}-{nanos}", std::process::id()))
}

/// `key-000000000042` for record 42 (cheap enough not to show in the append figure).
fn key_of(mut i: u64) -> [u8; 16] {
    let mut key = *b"key-000000000000";
    for digit in key.iter_mut().skip(4).rev() {
        *digit = b'0' + (i % 10) as u8;
        i /= 10;
    }
    key
}

/// Record values: a window of a random pool chosen by the record's index, with the index in the
/// first bytes, so that every value differs and can be regenerated to verify it.
struct Values {
    pool: Vec<u8>,
    len: usize,
}

impl Values {
    fn new(len: usize) -> Values {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let pool = (0..len + 4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Values { pool, len }
    }

    fn fill(&self, i: u64, buf: &mut Vec<u8>) {
        let start = (i.wrapping_mul(131) % 4096) as usize;
        buf.clear();
        buf.extend_from_slice(self.pool.get(start..start + self.len).unwrap_or_default());
        for (byte, tag) in buf.iter_mut().zip(i.to_le_bytes()) {
            *byte = tag;
        }
    }
}

fn rate(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}

fn run_in(dir: &Path, options: &DemoOptions) -> DemoResult {
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    let log_options = LogOptions::default();
    let record_bytes = 16 + options.value_bytes as u64;

    // 1. Append and sync.
    let log = Log::open(Arc::clone(&fs), dir, log_options.clone())?;
    let base = log.end_offset();
    let values = Values::new(options.value_bytes);
    let mut value = Vec::with_capacity(options.value_bytes);
    let started = Instant::now();
    for i in 0..options.records {
        values.fill(i, &mut value);
        log.append(Record::new(&key_of(i), Some(&value), i as i64))?;
    }
    let appended = started.elapsed();
    let sync_started = Instant::now();
    let durable = log.sync()?;
    let synced = sync_started.elapsed();
    log.close()?;
    drop(log);
    say!(
        "append:  {:>10.0} records/s  {:>8.1} MB/s  ({:.2} s); sync {:.1} ms; durable end {durable}",
        rate(options.records as f64, appended),
        rate((options.records * record_bytes) as f64, appended) / 1e6,
        appended.as_secs_f64(),
        synced.as_secs_f64() * 1e3,
    );

    // 2. Reopen and verify every record.
    let log = Log::open(Arc::clone(&fs), dir, log_options.clone())?;
    let report = log.recovery_report().clone();
    say!(
        "reopen:  {:.1} ms for {} segments, offsets {}..{}",
        report.duration.as_secs_f64() * 1e3,
        report.segments,
        report.start_offset,
        report.end_offset
    );
    let started = Instant::now();
    let expected = verify(&log, base, &values)?;
    if expected != options.records {
        return Err(format!("read {expected} records back, appended {}", options.records).into());
    }
    let read = started.elapsed();
    say!(
        "verify:  {:>10.0} records/s  {:>8.1} MB/s  ({:.2} s); all {} records match",
        rate(expected as f64, read),
        rate((expected * record_bytes) as f64, read) / 1e6,
        read.as_secs_f64(),
        expected
    );

    // 3. Compaction: a tenth of the keys written again, a hundredth deleted, then one pass below
    //    the durable end keeps the latest record of every key at its offset.
    let rewritten = options.records / 10;
    let deleted = options.records / 100;
    for i in 0..rewritten {
        values.fill(options.records + i, &mut value);
        log.append(Record::new(&key_of(i), Some(&value), 0))?;
    }
    for i in rewritten..rewritten + deleted {
        log.append(Record::new(&key_of(i), None, 0))?;
    }
    let limit = log.sync()?;
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = Some(0);
    let pass = log.compact(limit, &compact)?;
    say!(
        "compact: {:>10.0} records/s  {:>8.1} MB/s  ({:.2} s); {} -> {} records, {:.1} -> {:.1} MB, {} segments written",
        rate(pass.records_before as f64, pass.duration),
        rate(pass.bytes_before as f64, pass.duration) / 1e6,
        pass.duration.as_secs_f64(),
        pass.records_before,
        pass.records_after,
        pass.bytes_before as f64 / 1e6,
        pass.bytes_after as f64 / 1e6,
        pass.segments_written,
    );
    let kept = verify_compacted(&log, base, options.records, rewritten, deleted, &values)?;
    say!("         every key reads as its latest record ({kept} records; deletes kept until their horizon)");

    // 4. A torn write: records appended after the last sync, then the end of the segment damaged
    //    as a power cut can leave it. Recovery cuts the invalid tail and reports it.
    let synced_end = log.end_offset();
    for i in 0..10 {
        values.fill(i, &mut value);
        log.append(Record::new(b"unsynced", Some(&value), 0))?;
    }
    log.flush()?;
    let active = log.dir().join(last_segment(fs.as_ref(), dir)?);
    drop(log);
    let file = fs.open(&active, OpenMode::ReadWrite)?;
    let len = file.len()?;
    file.write_all_at(&[0xA5; 64], len.saturating_sub(100))?;
    drop(file);
    let log = Log::open(Arc::clone(&fs), dir, log_options)?;
    let report = log.recovery_report();
    match &report.tail_cut {
        Some(cut) => say!(
            "recover: {:.1} ms; torn tail cut at byte {} of {} ({} bytes, {} records dropped: {}); log ends at {}",
            report.duration.as_secs_f64() * 1e3,
            cut.position,
            cut.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            cut.bytes,
            cut.records,
            cut.reason,
            log.end_offset()
        ),
        None => return Err("the damaged tail was not detected".into()),
    }
    if log.end_offset() < synced_end {
        return Err("recovery lost synced records".into());
    }
    log.close()?;
    Ok(())
}

/// Reads every record from `base` on and checks it against what was appended; returns how many
/// it read. The reader is gone when this returns (a live reader keeps the directory locked).
fn verify(log: &Log, base: u64, values: &Values) -> DemoResult<u64> {
    let mut reader = log.reader(base)?;
    let mut value = Vec::new();
    let mut expected = 0u64;
    while let Some(batch) = reader.next_batch()? {
        for record in batch.records() {
            let record = record?;
            let i = record.offset - base;
            values.fill(i, &mut value);
            if i != expected || record.key != key_of(i) || record.value != Some(&value[..]) {
                return Err(
                    format!("record at offset {} does not match what was appended", record.offset).into()
                );
            }
            expected += 1;
        }
    }
    Ok(expected)
}

/// Reads the compacted log from `base` and checks that every key appears once, as its latest
/// record: keys below `rewritten` with their second value, the next `deleted` as tombstones,
/// the rest with their first. Returns how many records it read.
fn verify_compacted(
    log: &Log,
    base: u64,
    records: u64,
    rewritten: u64,
    deleted: u64,
    values: &Values,
) -> DemoResult<u64> {
    let mut seen = vec![false; records as usize];
    let mut value = Vec::new();
    let mut count = 0u64;
    let mut reader = log.reader(base)?;
    while let Some(batch) = reader.next_batch()? {
        for record in batch.records() {
            let record = record?;
            let key = std::str::from_utf8(record.key.get(4..).unwrap_or_default())
                .ok()
                .and_then(|digits| digits.parse::<u64>().ok())
                .filter(|k| *k < records)
                .ok_or_else(|| format!("record at offset {} has a foreign key", record.offset))?;
            let slot = seen.get_mut(key as usize).ok_or("key out of range")?;
            if std::mem::replace(slot, true) {
                return Err(format!("key {key} appears twice after compaction").into());
            }
            let expected = if key < rewritten {
                values.fill(records + key, &mut value);
                Some(&value[..])
            } else if key < rewritten + deleted {
                None
            } else {
                values.fill(key, &mut value);
                Some(&value[..])
            };
            if record.value != expected {
                return Err(format!("key {key} at offset {} is not its latest record", record.offset).into());
            }
            count += 1;
        }
    }
    if count != records {
        return Err(format!("{count} keys after compaction, expected {records}").into());
    }
    Ok(count)
}

fn last_segment(fs: &dyn Fs, dir: &Path) -> DemoResult<String> {
    fs.list_dir(dir)?
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".log"))
        .max()
        .ok_or_else(|| "no segment files".into())
}

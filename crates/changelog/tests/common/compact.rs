//! What a compacted log must read as, checked against the records appended (the model).

use std::collections::HashMap;

use cairn_changelog::OwnedRecord;

use super::Rec;

/// How the check treats tombstones below the limit.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Every compaction limit used so far was at most this; offsets at or above it are exactly
    /// as appended.
    pub floor: u64,
    /// The clock of the last pass, and the tombstone horizon after a record's timestamp
    /// (`None`: tombstones are kept for ever).
    pub now_ms: i64,
    pub horizon_ms: Option<i64>,
    /// The last pass compacted everything below `floor`: each key appears at most once there,
    /// and no tombstone past its horizon.
    pub full: bool,
}

fn expired(rec: &Rec, expect: &Expect) -> bool {
    rec.value.is_none()
        && expect.horizon_ms.is_some_and(|h| rec.timestamp_ms.saturating_add(h) <= expect.now_ms)
}

/// Checks a compacted log's records (`read`, from offset 0) against the records appended
/// (`model[offset]`): every record read is the one appended at its offset, in order; from
/// `floor` on, every appended record is there; below it, the latest record of every key is
/// there (a tombstone only until its horizon may have passed), so that folding the log by key
/// gives the same state as folding the model.
pub fn check_compacted(read: &[OwnedRecord], model: &[Rec], expect: &Expect) -> Result<(), String> {
    let mut previous = None;
    for r in read {
        if previous.is_some_and(|p| r.offset <= p) {
            return Err(format!("offset {} after {previous:?}", r.offset));
        }
        previous = Some(r.offset);
        let Some(want) = model.get(r.offset as usize) else {
            return Err(format!("offset {} past the end {}", r.offset, model.len()));
        };
        if !want.matches(r) {
            return Err(format!("record at {} differs: got {r:?}, want {want:?}", r.offset));
        }
    }
    let at_or_above: Vec<u64> = read.iter().map(|r| r.offset).filter(|o| *o >= expect.floor).collect();
    let expected: Vec<u64> = (expect.floor..model.len() as u64).collect();
    if at_or_above != expected {
        return Err(format!("records at or above the limit {} changed", expect.floor));
    }
    // The latest record of every key, overall and below the floor.
    let mut latest: HashMap<&[u8], u64> = HashMap::new();
    for (offset, rec) in model.iter().enumerate() {
        latest.insert(&rec.key, offset as u64);
    }
    let present: std::collections::HashSet<u64> = read.iter().map(|r| r.offset).collect();
    for (key, &offset) in &latest {
        let rec = &model[offset as usize];
        if !present.contains(&offset) && !expired(rec, expect) {
            return Err(format!("latest record of key {key:?} at {offset} is gone"));
        }
    }
    // Folding by key: the same state (a key deleted or absent alike).
    let fold = |records: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>| {
        let mut state: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for (key, value) in records {
            match value {
                Some(v) => state.insert(key.to_vec(), v.to_vec()),
                None => state.remove(key),
            };
        }
        state
    };
    // Below the floor too: a store restored up to its checkpoint (the limit) finds its state.
    for end in [expect.floor, model.len() as u64] {
        let got =
            fold(&mut read.iter().filter(|r| r.offset < end).map(|r| (r.key.as_slice(), r.value.as_deref())));
        let want = fold(&mut model.iter().take(end as usize).map(|r| (r.key.as_slice(), r.value.as_deref())));
        if got != want {
            return Err(format!("folding the log below {end} gives another state than the records appended"));
        }
    }
    if expect.full {
        let mut seen = std::collections::HashSet::new();
        for r in read.iter().filter(|r| r.offset < expect.floor) {
            if !seen.insert(&r.key) {
                return Err(format!("key {:?} twice below the limit after a full pass", r.key));
            }
            let rec = &model[r.offset as usize];
            if expired(rec, expect) {
                return Err(format!("tombstone at {} outlived its horizon", r.offset));
            }
        }
    }
    Ok(())
}

/// The log directory of the compaction crash sweep.
pub const SWEEP_DIR: &str = "/log";

/// Builds a log with a clean prefix, dirty segments and tombstones, then records the file system
/// before every mutation of one compaction pass, and checks that a power cut at each of them
/// (several crash images per point) recovers to exactly the log before the pass or exactly the
/// log after it, with no leftover files, and that the recovered log compacts and reopens again.
/// Returns the number of images checked.
pub fn compaction_crash_sweep(images_per_point: u64) -> Result<usize, String> {
    use std::path::Path;
    use std::sync::Arc;

    use cairn_changelog::{CompactOptions, DeleteHorizon, Log, Record};
    use cairn_fs::{CrashOptions, Fs, SimFs};

    let fs = SimFs::new(5);
    let mut options = super::small_options();
    options.segment_bytes_max = 4096;
    let dir = Path::new(SWEEP_DIR);
    let log = Log::open(Arc::new(fs.clone()), dir, options.clone()).unwrap();
    let mut compact = CompactOptions::default();
    compact.delete_horizon = DeleteHorizon::AfterTimestamp(std::time::Duration::from_millis(100));
    compact.batch_bytes_target = 4096;
    compact.roll_active_bytes_min = Some(0);
    compact.now_ms = Some(1_000);
    let append = |from: u32, to: u32, ts: i64| {
        for i in from..to {
            let key = format!("key-{:02}", (i * 7) % 37);
            let value = format!("value-{i}-{}", "x".repeat((i % 90) as usize));
            let value = (i % 11 != 0).then_some(value.as_bytes());
            log.append(Record::new(key.as_bytes(), value, ts)).unwrap();
        }
    };
    append(0, 500, 0);
    let end = log.sync().unwrap();
    log.compact(end, &compact).unwrap();
    append(500, 800, 950);
    let end = log.sync().unwrap();
    let before = super::read_from(&log, 0);

    fs.record_every_mutation(true);
    compact.now_ms = Some(1_040);
    let report = log.compact(end - 40, &compact).unwrap();
    let points = fs.take_sync_points();
    fs.record_every_mutation(false);
    let after = super::read_from(&log, 0);
    if report.segments_written == 0 || before == after {
        return Err(format!("the pass changed nothing: {report:?}"));
    }
    drop(log);

    let mut checked = 0;
    let mut snapshots: Vec<_> =
        points.into_iter().map(|p| (format!("{:?} of {}", p.op, p.path.display()), p.snapshot)).collect();
    snapshots.push(("after the pass".into(), fs.snapshot()));
    for (label, snapshot) in &snapshots {
        for seed in 0..images_per_point {
            let crash = if seed % 2 == 0 { CrashOptions::default() } else { CrashOptions::adversarial() };
            let image = snapshot.crash_image(seed, &crash);
            let context = |what: String| format!("crash before {label}, image seed {seed}: {what}");
            let log = Log::open(Arc::new(image.clone()), dir, options.clone())
                .map_err(|e| context(format!("open failed: {e}")))?;
            let read: Vec<_> = log
                .reader(0)
                .and_then(|r| r.into_records().collect::<Result<Vec<_>, _>>())
                .map_err(|e| context(format!("read failed: {e}")))?;
            if read != before && read != after {
                let lost = before.iter().filter(|r| !read.contains(r)).count();
                return Err(context(format!(
                    "the log is neither the one before the pass nor the one after ({} records, {lost} of the old ones missing)",
                    read.len()
                )));
            }
            for name in image.list_dir(dir).unwrap() {
                let name = name.to_string_lossy().into_owned();
                if name.ends_with(".compacting") || name.ends_with(".tmp") || name == "compaction.swap" {
                    return Err(context(format!("leftover {name} after open")));
                }
            }
            // The recovered log compacts again, and reads the same after another open.
            log.compact(end - 40, &compact)
                .map_err(|e| context(format!("compaction after recovery: {e}")))?;
            let again = super::read_from(&log, 0);
            drop(log);
            let reopened = Log::open(Arc::new(image), dir, options.clone()).unwrap();
            if super::read_from(&reopened, 0) != again {
                return Err(context("a reopen changed the log".into()));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// Compacts a log whose keys all share one hash in the key map (dirty records, then a clean
/// segment rewritten for a colliding key) and checks that every key keeps its latest record.
pub fn colliding_keys_survive() -> Result<(), String> {
    use std::sync::Arc;

    use cairn_changelog::{CompactOptions, Log, Record};
    use cairn_fs::SimFs;

    let log = Log::open(Arc::new(SimFs::new(9)), "/log", super::small_options()).unwrap();
    let mut compact = CompactOptions::default();
    compact.collide_keys = true;
    compact.roll_active_bytes_min = Some(0);
    let mut want: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut put = |key: &str, value: String| {
        log.append(Record::new(key.as_bytes(), Some(value.as_bytes()), 0)).unwrap();
        want.insert(key.as_bytes().to_vec(), value.into_bytes());
    };
    for round in 0..3 {
        for key in ["apple", "banana", "cherry"] {
            put(key, format!("{key}-{round}"));
        }
    }
    let end = log.sync().unwrap();
    log.compact(end, &compact).unwrap();
    // Only one of them is written again: the clean segment is rewritten for it.
    put("banana", "banana-again".into());
    let end = log.sync().unwrap();
    log.compact(end, &compact).unwrap();
    let mut got: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for r in super::read_from(&log, 0) {
        if got.insert(r.key.clone(), r.value.clone().unwrap_or_default()).is_some() {
            return Err(format!("key {:?} twice after compaction", String::from_utf8_lossy(&r.key)));
        }
    }
    if got != want {
        return Err(format!("colliding keys lost records: got {got:?}, want {want:?}"));
    }
    Ok(())
}

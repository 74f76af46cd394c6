//! Power loss at every step of a sequence of writes (DESIGN §3, §7 rung 2): before each
//! creation, write, fsync, rename and directory fsync, under every pending-write outcome, the
//! file reads as exactly the value before the write or the value being written: never an error,
//! never a mix, never "nothing" once a write completed. After a write returns, its value
//! survives a power cut that keeps nothing unsynced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use cairn_checkpoint::{DurableFile, DurableOptions, mutants};
use cairn_fs::{CrashOptions, Fs, SimFs, SimSnapshot};

const PATH: &str = "/task/state";

/// The value of the `i`-th write: sizes from empty to about 16 KB, so that torn writes cross
/// sector and page boundaries.
fn value(i: u64) -> Vec<u64> {
    let len = [0, 3, 700, 2000, 64, 1100][(i % 6) as usize] + i;
    (0..len).map(|j| j.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i).collect()
}

/// Every pending-write outcome alone, with directory operations lost, kept, or either, plus
/// the two extremes.
fn outcomes() -> Vec<CrashOptions> {
    let mut all = vec![CrashOptions::durable_only(), CrashOptions::keep_all()];
    for outcome in 0..7 {
        for dir in [0u8, 50, 100] {
            let mut options = CrashOptions::durable_only();
            options.drop = 0;
            match outcome {
                0 => options.keep = 1,
                1 => options.drop = 1,
                2 => options.torn_byte = 1,
                3 => options.torn_sector = 1,
                4 => options.torn_page = 1,
                5 => options.garbage = 1,
                _ => options.zeroes = 1,
            }
            options.reorder = true;
            options.set_len_survives_percent = 50;
            options.dir_op_survives_percent = dir;
            all.push(options);
        }
    }
    all.push(CrashOptions::adversarial());
    all
}

fn open(fs: &SimFs, keep_previous: bool) -> DurableFile<Vec<u64>> {
    let mut options = DurableOptions::new(*b"TEST", 1);
    options.keep_previous = keep_previous;
    DurableFile::open(Arc::new(fs.clone()), PATH, options).unwrap()
}

/// What a crash image must hold: `before` (the last completed write, if any) or `during` (the
/// write in progress).
struct Point {
    snapshot: SimSnapshot,
    before: Option<u64>,
    during: u64,
    label: String,
}

/// Runs `writes` writes with every mutation recorded; checks after each completed write that
/// a durable-only image holds it. Returns the recorded points, or the first violation.
fn run(writes: u64, keep_previous: bool) -> Result<Vec<Point>, String> {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/task")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let mut file = open(&fs, keep_previous);
    let mut points = Vec::new();
    for i in 1..=writes {
        fs.record_every_mutation(true);
        file.write(&value(i)).map_err(|e| format!("write {i}: {e}"))?;
        fs.record_every_mutation(false);
        for point in fs.take_sync_points() {
            points.push(Point {
                snapshot: point.snapshot,
                before: (i > 1).then(|| i - 1),
                during: i,
                label: format!("write {i}, before {:?} of {}", point.op, point.path.display()),
            });
        }
        // Acknowledged: it survives a power cut that keeps nothing unsynced.
        let image = fs.crash_image(i, &CrashOptions::durable_only());
        let got = open(&image, keep_previous).read().map_err(|e| format!("after write {i}: {e}"))?;
        if got != Some(value(i)) {
            return Err(format!("after write {i} returned, a power cut left {}", describe(&got)));
        }
    }
    Ok(points)
}

fn describe(value: &Option<Vec<u64>>) -> String {
    match value {
        None => "no file".into(),
        Some(v) => (1..100)
            .find(|i| value_is(v, *i))
            .map_or_else(|| "an unknown value".into(), |i| format!("value {i}")),
    }
}

fn value_is(v: &[u64], i: u64) -> bool {
    v == value(i).as_slice()
}

/// Checks every point under every outcome; returns the number of images or the first violation.
fn check(points: &[Point], keep_previous: bool, seeds: u64) -> Result<usize, String> {
    let mut images = 0;
    for (p, point) in points.iter().enumerate() {
        for (o, outcome) in outcomes().iter().enumerate() {
            for seed in 0..seeds {
                let image = point.snapshot.crash_image(p as u64 * 1000 + o as u64 * 10 + seed, outcome);
                let file = open(&image, keep_previous);
                let got =
                    file.read().map_err(|e| format!("{}, outcome {o}, seed {seed}: {e}", point.label))?;
                let allowed = match (&got, point.before) {
                    (None, None) => true,
                    (None, Some(_)) => false,
                    (Some(v), before) => value_is(v, point.during) || before.is_some_and(|b| value_is(v, b)),
                };
                if !allowed {
                    return Err(format!(
                        "{}, outcome {o}, seed {seed}: read {}",
                        point.label,
                        describe(&got)
                    ));
                }
                if keep_previous {
                    // The previous generation is a whole earlier value, or missing.
                    let previous =
                        file.read_previous().map_err(|e| format!("{}: previous: {e}", point.label))?;
                    if let Some(v) = &previous
                        && !(1..point.during).any(|i| value_is(v, i))
                    {
                        return Err(format!("{}: previous is {}", point.label, describe(&previous)));
                    }
                }
                images += 1;
            }
        }
    }
    Ok(images)
}

#[test]
fn a_crash_at_every_step_of_a_write_leaves_the_old_or_the_new_value() {
    let points = run(12, false).unwrap();
    assert!(points.len() >= 12 * 5, "expected create, write, fsync, rename, dir fsync per write");
    let images = check(&points, false, 3 * cairn_fs::sim::sweep_scale()).unwrap();
    eprintln!("checked {images} crash images at {} points", points.len());
    eprintln!("sim-images: {images}");
}

#[test]
fn a_crash_at_every_step_keeps_the_previous_generation_whole() {
    let points = run(8, true).unwrap();
    let images = check(&points, true, 2 * cairn_fs::sim::sweep_scale()).unwrap();
    eprintln!("sim-images: {images}");
}

fn with_mutant<T>(name: &'static str, probe: impl FnOnce() -> T) -> T {
    let _serial = mutants::exclusive();
    mutants::set(Some(name));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe));
    mutants::set(None);
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[test]
fn without_the_temp_file_fsync_a_crash_leaves_damage() {
    let verdict =
        with_mutant(mutants::SKIP_TEMP_SYNC, || run(6, false).and_then(|points| check(&points, false, 2)));
    let violation = verdict.expect_err("the sweep passed without the temp-file fsync");
    eprintln!("caught: {violation}");
}

#[test]
fn without_the_directory_fsync_an_acknowledged_write_is_lost() {
    let verdict = with_mutant(mutants::SKIP_DIR_SYNC, || run(3, false));
    let violation = verdict.err().expect("the sweep passed without the directory fsync");
    assert!(violation.contains("after write 1 returned"), "{violation}");
}

#[test]
fn every_mutant_is_checked() {
    for name in mutants::ALL {
        assert!(
            [mutants::SKIP_TEMP_SYNC, mutants::SKIP_DIR_SYNC].contains(name),
            "mutant {name} is never checked"
        );
    }
}

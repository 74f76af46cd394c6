//! The crash-sweep machinery shared by `crash.rs` (which expects every image to recover) and
//! `mutants.rs` (which expects a deliberately broken build to fail it).

use std::path::Path;
use std::sync::Arc;

use cairn_changelog::{Log, LogOptions};
use cairn_fs::{CrashOptions, SimFs, SimSnapshot};

use super::{Acked, Rec, recover_prefix, small_options};

/// One step of a crash workload.
#[derive(Clone, Debug)]
pub enum Step {
    Append(Rec),
    Batch(Vec<Rec>),
    Flush,
    Sync,
    /// Truncate at this fraction (per mille) of the current length.
    Truncate(u16),
}

/// A state the simulator froze just before a sync, and what the test knew then: the records
/// the image may hold (a prefix of `appended`), and how many it must hold.
pub struct Point {
    pub snapshot: SimSnapshot,
    pub appended: Vec<Rec>,
    pub floor: u64,
    pub label: String,
}

pub const DIR: &str = "/log";

/// Runs `steps` on a fresh simulator with sync-point recording on, returning every point.
pub fn record_points(options: &LogOptions, steps: &[Step]) -> Vec<Point> {
    let fs = SimFs::new(11);
    let log = Log::open(Arc::new(fs.clone()), DIR, options.clone()).unwrap();
    fs.record_sync_points(true);
    let mut state = Acked::default();
    let mut points = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let before = state.clone();
        let floor_during;
        match step {
            Step::Append(rec) => {
                log.append(rec.as_record()).unwrap();
                state.appended.push(rec.clone());
                floor_during = before.durable;
            }
            Step::Batch(recs) => {
                let records: Vec<_> = recs.iter().map(Rec::as_record).collect();
                log.append_batch(&records).unwrap();
                state.appended.extend(recs.iter().cloned());
                floor_during = before.durable;
            }
            Step::Flush => {
                log.flush().unwrap();
                floor_during = before.durable;
            }
            Step::Sync => {
                state.durable = log.sync().unwrap();
                assert_eq!(state.durable, state.appended.len() as u64);
                floor_during = before.durable;
            }
            Step::Truncate(per_mille) => {
                let at = state.appended.len() as u64 * u64::from(*per_mille) / 1000;
                log.truncate(at).unwrap();
                if at < state.appended.len() as u64 {
                    state.appended.truncate(at as usize);
                    state.durable = at;
                }
                floor_during = before.durable.min(at);
            }
        }
        // During a truncation the image may still hold the records being removed.
        let visible = if matches!(step, Step::Truncate(_)) { &before.appended } else { &state.appended };
        for point in fs.take_sync_points() {
            points.push(Point {
                snapshot: point.snapshot,
                appended: visible.clone(),
                floor: floor_during,
                label: format!("step {i} ({step:?}), {:?} of {}", point.op, point.path.display()),
            });
        }
    }
    // And a power cut after the last step.
    points.push(Point {
        snapshot: fs.snapshot(),
        appended: state.appended.clone(),
        floor: state.durable,
        label: "after the last step".into(),
    });
    points
}

/// Checks one crash image, then appends on the recovered log, crashes again and checks again.
pub fn check_image(
    point: &Point,
    image: SimFs,
    options: &LogOptions,
    seed: u64,
    known_durable: bool,
) -> Result<(), String> {
    let mut options = options.clone();
    if known_durable {
        options.known_durable_end = Some(point.floor);
    }
    let dir = Path::new(DIR);
    let recovered = recover_prefix(Arc::new(image.clone()), dir, &options, &point.appended, point.floor)
        .map_err(|e| format!("{}, image seed {seed}: {e}", point.label))?;

    // Second life: more records, some synced, then another power cut.
    let mut appended: Vec<Rec> = recovered
        .iter()
        .map(|r| Rec { key: r.key.clone(), value: r.value.clone(), timestamp_ms: r.timestamp_ms })
        .collect();
    let mut options = options.clone();
    options.known_durable_end = None;
    let log = Log::open(Arc::new(image.clone()), dir, options.clone()).unwrap();
    for i in 0..6 {
        let rec = Rec::generate(seed.wrapping_mul(31).wrapping_add(1_000_000 + i), 300);
        log.append(rec.as_record()).unwrap();
        appended.push(rec);
    }
    let acked = log.sync().unwrap();
    for i in 6..9 {
        let rec = Rec::generate(seed.wrapping_mul(31).wrapping_add(1_000_000 + i), 300);
        log.append(rec.as_record()).unwrap();
        appended.push(rec);
    }
    log.flush().unwrap();
    let second = image.crash_image(seed ^ 0x5555, &CrashOptions::adversarial());
    drop(log);
    recover_prefix(Arc::new(second), dir, &options, &appended, acked)
        .map_err(|e| format!("{}, image seed {seed}, second crash: {e}", point.label))?;
    Ok(())
}

/// A random workload of about `len` steps that rolls segments often.
pub fn workload(seed: u64, len: usize) -> Vec<Step> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..len)
        .map(|i| {
            let rec = |j: u64| {
                Rec::generate(seed * 10_000 + i as u64 * 16 + j, if j.is_multiple_of(5) { 900 } else { 120 })
            };
            match next() % 20 {
                0..=8 => Step::Append(rec(0)),
                9..=11 => Step::Batch((0..1 + next() % 6).map(rec).collect()),
                12 => Step::Flush,
                13..=18 => Step::Sync,
                _ => Step::Truncate((500 + next() % 501) as u16),
            }
        })
        .collect()
}

pub fn options_for(seed: u64) -> LogOptions {
    let mut options = small_options();
    options.write_buffer_bytes = [0, 512, 8192][(seed % 3) as usize];
    options
}

/// A scripted workload crossing several segments, with every kind of step.
pub fn scripted() -> Vec<Step> {
    let mut steps = Vec::new();
    let mut n = 0;
    let mut rec = |max| {
        n += 1;
        Rec::generate(7_000 + n, max)
    };
    for round in 0..10 {
        for _ in 0..5 {
            steps.push(Step::Append(rec(300)));
        }
        steps.push(Step::Batch((0..4).map(|_| rec(200)).collect()));
        steps.push(if round % 2 == 0 { Step::Sync } else { Step::Flush });
        steps.push(Step::Append(rec(1500)));
        steps.push(Step::Sync);
        if round == 3 {
            steps.push(Step::Truncate(700));
            steps.push(Step::Append(rec(50)));
            steps.push(Step::Sync);
        }
    }
    steps
}

/// Checks at least `target` seeded adversarial crash images, taken before every sync of random
/// workloads, and returns how many images and workloads it took, or the first violation.
pub fn sweep(target: usize) -> Result<(usize, u64), String> {
    let mut images = 0;
    let mut workloads = 0u64;
    while images < target {
        let seed = 1 + workloads;
        let options = options_for(seed);
        let points = record_points(&options, &workload(seed, 60));
        for (p, point) in points.iter().enumerate() {
            for k in 0..3u64 {
                let image_seed = seed * 1_000_003 + p as u64 * 7 + k;
                let image = point.snapshot.crash_image(image_seed, &CrashOptions::adversarial());
                check_image(point, image, &options, image_seed, k == 1)?;
                images += 1;
            }
        }
        workloads += 1;
    }
    Ok((images, workloads))
}

//! The crash sweep: power cuts (`SimFs` crash images) at every sync point of seeded workloads
//! of puts, deletes, batches, flushes, syncs, snapshot writes and compactions.

use std::sync::Arc;

use cairn_changelog::CompactOptions;
use cairn_fs::{CrashOptions, SimFs, SimSnapshot};
use cairn_store::Store;

use super::{Model, Op, apply, contents, small_options, write};

const DIR: &str = "/store";

/// A seeded workload (a small xorshift, so that a failure replays from its seed).
fn workload(seed: u64, len: usize) -> Vec<Op> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut ops = Vec::new();
    for _ in 0..len {
        let key = vec![b'a' + next(16) as u8; 1 + next(3) as usize];
        let value = vec![next(256) as u8; next(150) as usize];
        ops.push(match next(20) {
            0..=8 => Op::Put(key, value),
            9..=10 => Op::Delete(key),
            11..=12 => Op::PutAll(vec![(key.clone(), value.clone()), (vec![b'z', next(4) as u8], value)]),
            13 => Op::DeleteAll(vec![key, vec![b'z', next(4) as u8]]),
            14 => Op::Flush,
            15..=16 => Op::Sync,
            17 => Op::Snapshot,
            _ => Op::Compact(0),
        });
    }
    ops
}

struct Point {
    snapshot: SimSnapshot,
    /// The image holds the state after at least `floor` and at most `ceiling` write ops.
    floor: usize,
    ceiling: usize,
    label: String,
}

/// Runs `ops`, returning the model after every write op and a point at every sync.
fn record(ops: &[Op]) -> (Vec<Model>, Vec<Point>) {
    let fs = SimFs::new(3);
    let mut store = Store::open(Arc::new(fs.clone()), DIR, small_options()).unwrap();
    fs.record_sync_points(true);
    let mut states = vec![Model::new()];
    let mut synced = 0;
    let mut points = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let floor = synced;
        match op {
            Op::Flush => {
                store.flush().unwrap();
            }
            Op::Sync => {
                store.sync().unwrap();
                synced = states.len() - 1;
            }
            Op::Snapshot => {
                store.write_snapshot().unwrap();
                synced = states.len() - 1;
            }
            Op::Compact(_) => {
                let end = store.sync().unwrap();
                synced = states.len() - 1;
                let mut options = CompactOptions::default();
                options.roll_active_bytes_min = Some(1);
                store.compact(end, &options).unwrap();
            }
            write_op => {
                write(&mut store, write_op);
                let mut model = states.last().unwrap().clone();
                apply(&mut model, write_op);
                states.push(model);
            }
        }
        for point in fs.take_sync_points() {
            points.push(Point {
                snapshot: point.snapshot,
                floor,
                ceiling: states.len() - 1,
                label: format!("step {i} ({op:?}), {:?} of {}", point.op, point.path.display()),
            });
        }
    }
    points.push(Point {
        snapshot: fs.snapshot(),
        floor: synced,
        ceiling: states.len() - 1,
        label: "after the last step".into(),
    });
    (states, points)
}

fn check_point(states: &[Model], point: &Point, seed: u64) -> Result<(), String> {
    let image = point.snapshot.crash_image(seed, &CrashOptions::adversarial());
    let store = Store::open(Arc::new(image), DIR, small_options())
        .map_err(|e| format!("{}, image seed {seed}: open failed: {e}", point.label))?;
    let got = contents(&store);
    let matches = (point.floor..=point.ceiling).any(|j| states[j] == got);
    if !matches {
        return Err(format!(
            "{}, image seed {seed}: the store ({} keys) is no state between write {} and {} ({:?})",
            point.label,
            got.len(),
            point.floor,
            point.ceiling,
            store.restore_report()
        ));
    }
    Ok(())
}

/// Checks three crash images at every sync point of six seeded workloads; returns the number
/// of images, or the failures.
pub fn sweep() -> Result<usize, Vec<String>> {
    let mut images = 0;
    let mut failures = Vec::new();
    for workload_seed in 1..=6 * cairn_fs::sim::sweep_scale() {
        let ops = workload(workload_seed, 70);
        let (states, points) = record(&ops);
        for (p, point) in points.iter().enumerate() {
            for image_seed in 0..3u64 {
                images += 1;
                if let Err(e) = check_point(&states, point, workload_seed * 1000 + p as u64 * 7 + image_seed)
                {
                    failures.push(format!("workload {workload_seed}: {e}"));
                }
            }
        }
    }
    if failures.is_empty() { Ok(images) } else { Err(failures) }
}

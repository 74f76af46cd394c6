//! The repair crash sweep, shared by `inspect.rs` (the real code must pass it) and `mutants.rs`
//! (a repair that removes bytes before its copies are durable must fail it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cairn_changelog::{Log, Repair};
use cairn_fs::{CrashOptions, Fs, SimFs};

use super::{Rec, read_from, small_options};

const DIR: &str = "/log";
const SAVED: &str = "/saved";

/// What the sweep damages before repairing.
#[derive(Clone, Copy, Debug)]
pub enum Damage {
    /// A bit flipped in the middle of the third segment: the log is cut inside it.
    FlipInMiddleSegment,
    /// The third segment removed: the log is cut at the gap, the later segments removed.
    MiddleSegmentMissing,
    /// The last segment removed: the marker of the new last one is removed.
    LastSegmentMissing,
}

/// Damages a log on the simulator, repairs it with a crash image recorded before every change
/// the repair makes, and checks `images_per_point` images of each: no byte the image lost is
/// missing from the save directory, and a second repair leaves exactly the records before the
/// damage. Returns how many points were checked.
pub fn repair_crash_sweep(damage: Damage, images_per_point: u64) -> Result<usize, String> {
    let fs = SimFs::new(5);
    let dir = Path::new(DIR);
    let mut options = small_options();
    options.write_buffer_bytes = 0;
    let log = Log::open(Arc::new(fs.clone()), dir, options).unwrap();
    let all: Vec<Rec> = (0..120).map(|seed| Rec::generate(seed, 200)).collect();
    for rec in &all {
        log.append(rec.as_record()).unwrap();
    }
    log.sync().unwrap();
    log.close().unwrap();
    drop(log);
    let names = |fs: &SimFs, dir: &Path| -> Vec<String> {
        let mut names: Vec<String> =
            fs.list_dir(dir).unwrap_or_default().into_iter().map(|n| n.into_string().unwrap()).collect();
        names.sort();
        names
    };
    let segments: Vec<String> = names(&fs, dir).into_iter().filter(|n| n.ends_with(".log")).collect();
    assert!(segments.len() >= 5, "{segments:?}");
    match damage {
        Damage::FlipInMiddleSegment => {
            let victim = dir.join(&segments[2]);
            let mut bytes = fs.contents(&victim).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
            fs.set_contents(&victim, &bytes).unwrap();
        }
        Damage::MiddleSegmentMissing => remove_durably(&fs, &dir.join(&segments[2])),
        Damage::LastSegmentMissing => remove_durably(&fs, &dir.join(segments.last().unwrap())),
    }
    let originals: BTreeMap<String, Vec<u8>> =
        names(&fs, dir).into_iter().map(|n| (n.clone(), fs.contents(&dir.join(&n)).unwrap())).collect();

    fs.record_every_mutation(true);
    let repair = Repair::prepare(Arc::new(fs.clone()), dir, &mut |_| {}).unwrap();
    let end = repair.plan().end_offset_after;
    assert!(end > 0 && end < all.len() as u64, "{:?}", repair.plan());
    assert!(!repair.plan().is_empty());
    repair.apply(Path::new(SAVED)).unwrap();
    let mut points: Vec<(String, cairn_fs::SimSnapshot)> = fs
        .take_sync_points()
        .into_iter()
        .map(|p| (format!("before {:?} of {}", p.op, p.path.display()), p.snapshot))
        .collect();
    fs.record_every_mutation(false);
    points.push(("after the repair".into(), fs.snapshot()));
    for (label, snapshot) in &points {
        for seed in 0..images_per_point {
            let image = snapshot.crash_image(seed, &CrashOptions::adversarial());
            check_image(&image, &originals, &all, end)
                .map_err(|e| format!("{label}, image seed {seed}: {e}"))?;
        }
    }
    Ok(points.len())
}

fn remove_durably(fs: &SimFs, path: &Path) {
    fs.remove_file(path).unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
}

fn check_image(
    image: &SimFs,
    originals: &BTreeMap<String, Vec<u8>>,
    all: &[Rec],
    end: u64,
) -> Result<(), String> {
    let (dir, saved) = (Path::new(DIR), Path::new(SAVED));
    for (name, bytes) in originals.iter().filter(|(n, _)| n.ends_with(".log")) {
        let now = image.contents(&dir.join(name)).ok();
        let kept = now.as_ref().map_or(0, Vec::len);
        if now.as_ref().is_some_and(|now| now[..] != bytes[..kept]) {
            return Err(format!("{name} changed other than by a cut"));
        }
        if kept == bytes.len() {
            continue;
        }
        let whole = image.contents(&saved.join(name)).ok();
        let tail = image.contents(&saved.join(format!("{name}.cut-at-{kept}"))).ok();
        if whole.as_deref() != Some(&bytes[..]) && tail.as_deref() != Some(&bytes[kept..]) {
            return Err(format!("bytes {kept}.. of {name} removed but not saved"));
        }
    }
    let fs = Arc::new(image.clone());
    let again = Repair::prepare(fs.clone(), dir, &mut |_| {}).map_err(|e| format!("second repair: {e}"))?;
    again.apply(Path::new("/saved-again")).map_err(|e| format!("second repair: {e}"))?;
    let mut options = small_options();
    options.verify_on_open = true;
    let log = Log::open(fs, dir, options).map_err(|e| format!("open after the second repair: {e}"))?;
    if log.end_offset() != end {
        return Err(format!("the log ends at {}, not {end}", log.end_offset()));
    }
    let records = read_from(&log, 0);
    if records.len() as u64 != end || !records.iter().zip(all).all(|(r, rec)| rec.matches(r)) {
        return Err("the records differ from those before the damage".into());
    }
    Ok(())
}

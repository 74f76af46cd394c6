//! Power-loss tests on the simulator (DESIGN §7 rung 2): seeded crash images taken at every
//! sync of random workloads that roll segments, the exhaustive crash-at-every-sync-point mode on
//! a scripted workload, a second crash after recovery, and the directory-fsync probe.
//!
//! Every image must reopen to exactly a prefix of what was appended, holding everything a
//! successful `sync` acknowledged (P1, P3, P4); after appending and syncing on the recovered
//! log, a second crash must again leave a prefix (a cut tail never comes back).
//!
//! `CAIRN_CRASH_IMAGES` sets how many seeded images the sweep checks (default 2000 times
//! `CAIRN_SIM_SCALE`, see `cairn_fs::sim::sweep_scale`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cairn_changelog::Log;
use cairn_fs::{CrashOptions, SimFs};
use common::sweep::{DIR, check_image, record_points, scripted, sweep};
use common::{Rec, first_record_in_new_segment_survives, recover_prefix, small_options};

#[test]
fn seeded_crash_images_recover_a_durable_prefix() {
    let target: usize = std::env::var("CAIRN_CRASH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000 * cairn_fs::sim::sweep_scale() as usize);
    let (images, workloads) = sweep(target).unwrap();
    eprintln!("checked {images} crash images from {workloads} workloads");
    eprintln!("sim-images: {images}");
}

#[test]
fn crash_at_every_sync_point_recovers_a_durable_prefix() {
    let options = small_options();
    let points = record_points(&options, &scripted());
    assert!(points.len() > 25, "the scripted workload should sync often, got {} points", points.len());
    eprintln!("sim-images: {}", points.len() * 6);
    for (p, point) in points.iter().enumerate() {
        let outcomes = [CrashOptions::durable_only(), CrashOptions::keep_all()];
        for (k, crash) in outcomes.iter().enumerate() {
            check_image(point, point.snapshot.crash_image(p as u64, crash), &options, k as u64, k == 0)
                .unwrap();
        }
        for seed in 0..4 {
            let image_seed = 90_000 + p as u64 * 10 + seed;
            let image = point.snapshot.crash_image(image_seed, &CrashOptions::adversarial());
            check_image(point, image, &options, image_seed, seed % 2 == 0).unwrap();
        }
    }
}

#[test]
fn first_record_in_a_new_segment_survives_power_loss() {
    first_record_in_new_segment_survives().unwrap();
}

#[test]
fn process_kill_keeps_everything_written() {
    // A killed process leaves the page cache: everything written (flushed) is recovered, synced
    // or not.
    let options = small_options();
    let fs = SimFs::new(3);
    let log = Log::open(Arc::new(fs.clone()), DIR, options.clone()).unwrap();
    let mut appended = Vec::new();
    for i in 0..200 {
        let rec = Rec::generate(i, 150);
        log.append(rec.as_record()).unwrap();
        appended.push(rec);
        if i % 37 == 0 {
            log.sync().unwrap();
        }
    }
    log.flush().unwrap();
    let image = fs.crash_image(0, &CrashOptions::keep_all());
    let records =
        recover_prefix(Arc::new(image), DIR.as_ref(), &options, &appended, appended.len() as u64).unwrap();
    assert_eq!(records.len(), appended.len());
}

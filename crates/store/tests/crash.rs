//! Power cuts (`SimFs` crash images) at every sync point of seeded workloads of puts, deletes,
//! batches, flushes, syncs, snapshot writes and compactions: after reopening, the store equals
//! the model after some prefix of the writes that holds everything synced (DESIGN P1, P3), and a
//! crash while a snapshot is written never loses data (P7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

#[test]
fn every_crash_image_restores_a_prefix_holding_everything_synced() {
    match common::sweep::sweep() {
        Ok(images) => {
            eprintln!("{images} crash images restored a synced prefix");
            eprintln!("sim-images: {images}");
            assert!(images > 300, "only {images} images");
        }
        Err(failures) => panic!("{} images failed:\n{}", failures.len(), failures.join("\n")),
    }
}

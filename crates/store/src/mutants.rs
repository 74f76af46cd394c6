//! The store's deliberate bugs ("mutants"), switched on by its tests (`tests/mutants.rs`) to
//! prove that a test can fail; the switch itself is [`cairn_fs::mutants`].

pub use cairn_fs::mutants::*;

/// Every mutant name (its constant's name in lower case), for the test that checks each one is
/// caught.
pub const ALL: &[&str] =
    &[FOLLOWER_DROPS_MOVES, CACHE_IGNORES_SEGMENT, SNAPSHOT_IGNORES_FIRST_BATCH, STORE_DIR_NOT_DURABLE];

/// The compaction follower ignores moved records: slots keep pointing into replaced segments.
pub const FOLLOWER_DROPS_MOVES: &str = "follower_drops_moves";
/// The value cache finds an entry by its position alone, whatever its segment.
pub const CACHE_IGNORES_SEGMENT: &str = "cache_ignores_segment";
/// A snapshot's segment is taken as unchanged without comparing first-batch checksums.
pub const SNAPSHOT_IGNORES_FIRST_BATCH: &str = "snapshot_ignores_first_batch";
/// The store creates its directories without syncing their parents.
pub const STORE_DIR_NOT_DURABLE: &str = "store_dir_not_durable";

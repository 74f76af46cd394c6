//! The changelog's deliberate bugs ("mutants"), switched on by its tests to prove that a test
//! can fail; the switch itself is [`cairn_fs::mutants`].

pub use cairn_fs::mutants::*;

/// Every mutant name, for tests that check each one is exercised.
pub const ALL: &[&str] = &[
    NEW_SEGMENT_SKIPS_DIR_SYNC,
    NO_DIR_SYNC_ON_APPEND_PATH,
    OPEN_SKIPS_TAIL_CUT,
    ACK_WITHOUT_SYNC,
    PUBLISH_RELAXED,
    WAKE_ONE,
    SWAP_IN_TWO_STEPS,
    KEY_MAP_HASH_ONLY,
    COMPACTION_SKIPS_OUTPUT_SYNC,
    COMPACTION_REMOVES_BEFORE_COMMIT,
    OPEN_IGNORES_SWAP_RECORD,
];

/// A roll does not sync the directory after creating the new segment, so its name may not be
/// durable when its first record is acknowledged.
pub const NEW_SEGMENT_SKIPS_DIR_SYNC: &str = "new_segment_skips_dir_sync";
/// Neither a roll nor a sync fsyncs the directory: nothing makes a new segment's name durable.
pub const NO_DIR_SYNC_ON_APPEND_PATH: &str = "no_dir_sync_on_append_path";
/// Recovery leaves an invalid tail in place instead of cutting it durably.
pub const OPEN_SKIPS_TAIL_CUT: &str = "open_skips_tail_cut";
/// Group commit acknowledges a waiter while another caller's fsync is still running.
pub const ACK_WITHOUT_SYNC: &str = "ack_without_sync";
/// The end-offset publication uses a relaxed store instead of a release store.
pub const PUBLISH_RELAXED: &str = "publish_relaxed";
/// Group commit wakes one waiter instead of all after an fsync.
pub const WAKE_ONE: &str = "wake_one";
/// A compaction swap removes the old segments from the list and inserts the new ones in two
/// steps, releasing the list's lock in between.
pub const SWAP_IN_TWO_STEPS: &str = "swap_in_two_steps";
/// The compaction key map takes two keys with equal hashes for the same key.
pub const KEY_MAP_HASH_ONLY: &str = "key_map_hash_only";
/// Compaction commits its new segments without fsyncing them.
pub const COMPACTION_SKIPS_OUTPUT_SYNC: &str = "compaction_skips_output_sync";
/// Compaction removes the segments it replaces before its commit record is durable.
pub const COMPACTION_REMOVES_BEFORE_COMMIT: &str = "compaction_removes_before_commit";
/// Recovery removes a committed pass's new segments instead of completing the pass.
pub const OPEN_IGNORES_SWAP_RECORD: &str = "open_ignores_swap_record";

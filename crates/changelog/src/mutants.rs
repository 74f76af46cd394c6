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
    END_BEFORE_WRITE,
    DURABLE_BEFORE_FSYNC,
    POISON_CHECK_BEFORE_LOCK,
    CLOSE_SKIPS_FINAL_SYNC,
    STOP_WITHOUT_LOCK,
    MARK_BEFORE_INDEX,
    REPAIR_REMOVES_BEFORE_SAVED,
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
/// Writing out publishes the new end offset before the bytes are in the file.
pub const END_BEFORE_WRITE: &str = "end_before_write";
/// Group commit publishes the durable watermark before the leader's fsync instead of after.
pub const DURABLE_BEFORE_FSYNC: &str = "durable_before_fsync";
/// An append checks for poisoning before it takes the writer's lock instead of under it.
pub const POISON_CHECK_BEFORE_LOCK: &str = "poison_check_before_lock";
/// Closing marks the log closed without its final fsync; a sync that waited for the close
/// still trusts the close to have made its records durable.
pub const CLOSE_SKIPS_FINAL_SYNC: &str = "close_skips_final_sync";
/// Stopping the maintenance thread wakes it without holding its lock, so a thread between
/// checking the stop flag and waiting misses the wake-up.
pub const STOP_WITHOUT_LOCK: &str = "stop_without_lock";
/// Repair removes bytes from the log without first making its copies of them durable (no fsync
/// of the copies or of the save directory).
pub const REPAIR_REMOVES_BEFORE_SAVED: &str = "repair_removes_before_saved";
/// A sync marks a sealed segment (for compaction, which takes only marked ones) before its
/// index file, the durability marker, is written.
pub const MARK_BEFORE_INDEX: &str = "mark_before_index";

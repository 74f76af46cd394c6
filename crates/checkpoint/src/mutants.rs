//! The checkpoint crate's deliberate bugs ("mutants"), switched on by its tests to prove that a
//! test can fail; the switch itself is [`cairn_fs::mutants`].

pub use cairn_fs::mutants::*;

/// Every mutant name, for the test that checks each one is exercised.
pub const ALL: &[&str] = &[SKIP_TEMP_SYNC, SKIP_DIR_SYNC];

/// A write renames its temporary file over the target without fsyncing it first.
pub const SKIP_TEMP_SYNC: &str = "checkpoint_skip_temp_sync";
/// A write does not fsync the directory after the rename.
pub const SKIP_DIR_SYNC: &str = "checkpoint_skip_dir_sync";

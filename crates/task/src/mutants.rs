//! The runtime's deliberate bugs ("mutants"), switched on by its tests (`tests/mutants.rs`) to
//! prove that a test can fail; the switch itself is [`cairn_fs::mutants`].

pub use cairn_fs::mutants::*;

/// Every mutant name (its constant's name in lower case).
pub const ALL: &[&str] = &[CHECKPOINT_BEFORE_CHANGELOG_SYNC];

/// The commit writes the checkpoint after flushing the stores but before fsyncing their
/// changelogs (Samza's order for its producers, which DESIGN §5 forbids).
pub const CHECKPOINT_BEFORE_CHANGELOG_SYNC: &str = "checkpoint_before_changelog_sync";

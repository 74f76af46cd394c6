//! `cairn checkpoint show`.

use std::path::{Path, PathBuf};

use cairn::checkpoint::{Checkpoint, CheckpointFile, CorruptionKind, Error};
use serde::Serialize;

use super::{BoxError, Exit, print_json, real_fs, require_exists, show_ms};

/// A task directory's checkpoint file name.
const CHECKPOINT_NAME: &str = "checkpoint";

#[derive(Serialize)]
struct JsonShow<'a> {
    file: String,
    /// `"ok"`, `"missing"` or `"damaged"`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a Checkpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    damage: Option<JsonDamage>,
}

#[derive(Serialize)]
struct JsonDamage {
    position: u64,
    kind: &'static str,
    message: String,
}

/// `cairn checkpoint show FILE|DIR`: the checkpoint (of a task directory: its `checkpoint`
/// file), read without changing anything; damage reported with the byte position.
pub fn show(path: &Path, json: bool) -> Result<Exit, BoxError> {
    require_exists(path)?;
    let file: PathBuf = if path.is_dir() { path.join(CHECKPOINT_NAME) } else { path.to_path_buf() };
    let shown = file.display().to_string();
    match CheckpointFile::read_from(real_fs(), &file) {
        Ok(Some(checkpoint)) => {
            if json {
                print_json(&JsonShow {
                    file: shown,
                    status: "ok",
                    checkpoint: Some(&checkpoint),
                    damage: None,
                })?;
            } else {
                print_checkpoint(&shown, &checkpoint);
            }
            Ok(Exit::Success)
        }
        Ok(None) => {
            if json {
                print_json(&JsonShow { file: shown, status: "missing", checkpoint: None, damage: None })?;
            } else {
                println!("{shown}: no checkpoint (a task here starts from nothing)");
            }
            Ok(Exit::NotFound)
        }
        Err(Error::Corruption { file, position, kind, .. }) => {
            if json {
                let damage = JsonDamage { position, kind: kind_name(&kind), message: kind.to_string() };
                print_json(&JsonShow {
                    file: shown,
                    status: "damaged",
                    checkpoint: None,
                    damage: Some(damage),
                })?;
            } else {
                println!("DAMAGED: {} at byte {position}: {kind}", file.display());
                println!("a task refuses to start from a damaged checkpoint; it is never read as \"none\"");
            }
            Ok(Exit::Damage)
        }
        Err(other) => Err(other.into()),
    }
}

/// A stable short name for each kind of damage.
fn kind_name(kind: &CorruptionKind) -> &'static str {
    match kind {
        CorruptionKind::Empty => "empty",
        CorruptionKind::Truncated { .. } => "truncated",
        CorruptionKind::BadMagic { .. } => "bad_magic",
        CorruptionKind::UnsupportedFrame { .. } => "unsupported_frame",
        CorruptionKind::WrongKind { .. } => "wrong_kind",
        CorruptionKind::UnsupportedVersion { .. } => "unsupported_version",
        CorruptionKind::Checksum { .. } => "checksum",
        CorruptionKind::TrailingBytes { .. } => "trailing_bytes",
        CorruptionKind::Decode => "decode",
        _ => "other",
    }
}

fn print_checkpoint(file: &str, checkpoint: &Checkpoint) {
    println!("checkpoint {file}");
    println!("  id          {}", checkpoint.id);
    println!("  created     {}", show_ms(checkpoint.created_ms));
    for (title, offsets) in [
        ("inputs (next offset)", &checkpoint.inputs),
        ("changelogs (end offset)", &checkpoint.changelogs),
        ("outputs (end offset)", &checkpoint.outputs),
    ] {
        println!("  {title}:");
        if offsets.is_empty() {
            println!("    none");
        }
        for (name, offset) in offsets {
            println!("    {name:<24} {offset}");
        }
    }
}

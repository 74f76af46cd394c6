//! Counts the sync calls one record costs at a peer's setting: the probe runs under
//! `strace -f -c` twice, with 0 and with [`RECORDS`] records, and the difference is divided by
//! [`RECORDS`], so that what opening and closing sync is left out.

use std::path::Path;
use std::process::Command;

use crate::peer::{Result, Workload};

/// The system calls that can make written data durable.
const SYNC_CALLS: [&str; 6] = ["fsync", "fdatasync", "sync_file_range", "msync", "syncfs", "sync"];

/// Records written by the counted probe.
const RECORDS: u64 = 200;

pub fn available() -> bool {
    Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// Sync calls per record, by name, as "1.00 fdatasync" (or "none").
pub fn sync_calls_per_record(peer: &str, workload: Workload, work: &Path) -> Result<String> {
    let base = count(peer, workload, 0, work)?;
    let counted = count(peer, workload, RECORDS, work)?;
    let mut parts = Vec::new();
    for (name, calls) in counted {
        let before = base.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| *c);
        let per_record = calls.saturating_sub(before) as f64 / RECORDS as f64;
        if per_record >= 0.005 {
            parts.push(format!("{per_record:.2} {name}"));
        }
    }
    Ok(if parts.is_empty() { "none".to_owned() } else { parts.join(" + ") })
}

/// Runs the probe under strace and returns the count of each sync call it made.
fn count(peer: &str, workload: Workload, records: u64, work: &Path) -> Result<Vec<(&'static str, u64)>> {
    let dir = work.join(format!("strace-{}-{}-{records}", peer.replace([' ', ','], "-"), workload.id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let summary = work.join("strace-summary.txt");
    let output = Command::new("strace")
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&summary)
        .arg("-e")
        .arg(format!("trace={}", SYNC_CALLS.join(",")))
        .arg(std::env::current_exe()?)
        .args(["probe", peer, workload.id(), &records.to_string()])
        .arg(&dir)
        .output()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !output.status.success() {
        return Err(format!(
            "strace of the {peer} probe failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let text = std::fs::read_to_string(&summary)?;
    // Rows read "% time  seconds  usecs/call  calls  [errors]  syscall".
    let mut counts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(calls)) = (fields.last(), fields.get(3)) else { continue };
        if let Some(name) = SYNC_CALLS.iter().find(|n| *n == name)
            && let Ok(calls) = calls.parse()
        {
            counts.push((*name, calls));
        }
    }
    Ok(counts)
}

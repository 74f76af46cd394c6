//! Helpers shared by the benches.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A scratch directory under the system's temporary directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "cairn-bench-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The segment files (`*.log`) of a log directory, in offset order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// A group's measurement time: `seconds`, or a fifth of it (at least 2 s) when
/// `cargo xtask bench --quick` set `CAIRN_BENCH_QUICK`. (A group's own setting overrides
/// criterion's `--measurement-time`, so the quick mode needs its own switch.)
pub fn measurement_time(seconds: u64) -> Duration {
    if std::env::var_os("CAIRN_BENCH_QUICK").is_some() {
        Duration::from_secs((seconds / 5).max(2))
    } else {
        Duration::from_secs(seconds)
    }
}

/// The `p`-quantile (0.0 to 1.0) of sorted latencies, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

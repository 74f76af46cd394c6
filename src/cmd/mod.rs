//! The operator commands of the `cairn` tool: `log`, `checkpoint`, `store`.
//!
//! Each command prints for people by default and, with `--json`, one JSON document (or, for
//! record listings, one JSON object per line) for scripts. Progress bars go to stderr, and only
//! when stderr is a terminal. The exit codes are [`Exit`]'s.

pub mod checkpoint;
pub mod log;
pub mod store;

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cairn::changelog::{Finding, Problem, Severity};
use cairn::fs::{Fs, RealFs};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// The error type of the commands: printed with its causes, exit code [`Exit::Failed`].
pub type BoxError = Box<dyn std::error::Error + 'static>;

/// How a command ended (the process's exit code; README, "Exit codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It did its work; `log verify`: nothing found.
    Success = 0,
    /// It could not do its work: an I/O error, a locked or missing directory, a bad value.
    Failed = 1,
    /// Damage: `log verify` found damage that opening refuses or a read fails on (repair
    /// needed); `log dump` stopped at such damage; `checkpoint show`: the file is damaged.
    Damage = 3,
    /// `log verify` found only what opening repairs by itself (a torn tail, an index to
    /// rebuild, leftover files).
    Recoverable = 4,
    /// `store get`: no such key; `checkpoint show`: no checkpoint file.
    NotFound = 5,
    /// `log repair` was not confirmed: nothing changed.
    Declined = 6,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// The file system the commands work on.
pub fn real_fs() -> Arc<dyn Fs> {
    Arc::new(RealFs::new())
}

/// Prints `value` as one line of JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), BoxError> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A progress bar over `total` bytes on stderr, drawn only when stderr is a terminal.
pub fn byte_progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// A spinner with elapsed time on stderr, for work that reports no progress along the way;
/// drawn only when stderr is a terminal.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Bytes shown to people: as a quoted string if they are printable UTF-8, else as `0x` hex.
pub fn show_bytes(bytes: &[u8]) -> String {
    match printable(bytes) {
        Some(text) => format!("{text:?}"),
        None => format!("0x{}", hex(bytes)),
    }
}

/// The bytes as text, if they are UTF-8 without control characters.
pub fn printable(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().filter(|text| !text.chars().any(char::is_control))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Parses hex (an optional `0x` prefix, an even number of digits).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err(format!("{text:?}: an odd number of hex digits"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{text:?}: not hex"))
        })
        .collect()
}

/// Bytes in JSON: `{"utf8": text}` when printable, `{"hex": digits}` otherwise.
#[derive(Debug, Serialize)]
pub enum JsonBytes {
    /// Printable UTF-8.
    #[serde(rename = "utf8")]
    Utf8(String),
    /// Anything else, as lower-case hex.
    #[serde(rename = "hex")]
    Hex(String),
}

impl JsonBytes {
    /// The bytes as JSON shows them.
    pub fn new(bytes: &[u8]) -> JsonBytes {
        match printable(bytes) {
            Some(text) => JsonBytes::Utf8(text.to_string()),
            None => JsonBytes::Hex(hex(bytes)),
        }
    }
}

/// A size for people: `12.3 MiB`.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {name}") }
}

/// Milliseconds since the Unix epoch as UTC, `2026-11-21T09:30:00.123Z`.
pub fn show_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Days to a civil date (proleptic Gregorian; Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// A finding in JSON.
#[derive(Debug, Serialize)]
pub struct JsonFinding {
    /// The file.
    pub file: String,
    /// The byte position.
    pub position: u64,
    /// `"damage"` or `"recoverable"`.
    pub severity: String,
    /// A short name of the problem, stable for scripts.
    pub kind: &'static str,
    /// The whole message.
    pub message: String,
}

impl JsonFinding {
    /// The finding as JSON shows it.
    pub fn new(finding: &Finding) -> JsonFinding {
        JsonFinding {
            file: finding.file.display().to_string(),
            position: finding.position,
            severity: finding.severity.to_string(),
            kind: problem_kind(&finding.problem),
            message: finding.problem.to_string(),
        }
    }
}

/// A stable short name for each kind of problem.
fn problem_kind(problem: &Problem) -> &'static str {
    match problem {
        Problem::Data(_) => "data",
        Problem::TornTail { .. } => "torn_tail",
        Problem::BeyondEnd { .. } => "beyond_end",
        Problem::IndexMissing => "index_missing",
        Problem::IndexDamaged => "index_damaged",
        Problem::IndexMismatch { .. } => "index_mismatch",
        Problem::IndexEntry { .. } => "index_entry",
        Problem::Leftover => "leftover",
        Problem::UnfinishedCompaction => "unfinished_compaction",
        Problem::SwapRecord(_) => "swap_record",
        _ => "other",
    }
}

/// A finding for people: `damage: FILE at byte N: what`.
pub fn show_finding(finding: &Finding) -> String {
    let label = match finding.severity {
        Severity::Damage => "damage",
        Severity::Recoverable => "recoverable",
    };
    format!("{label}: {} at byte {}: {}", finding.file.display(), finding.position, finding.problem)
}

/// Fails unless `path` exists, naming it (so that no command creates a directory by mistake).
pub fn require_exists(path: &Path) -> Result<(), BoxError> {
    if path.exists() { Ok(()) } else { Err(format!("{}: no such file or directory", path.display()).into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(show_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(show_ms(1_763_717_400_123), "2025-11-21T09:30:00.123Z");
        assert_eq!(show_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(show_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn bytes_are_text_when_printable_and_hex_otherwise() {
        assert_eq!(show_bytes(b"user-1"), "\"user-1\"");
        assert_eq!(show_bytes(&[0, 255]), "0x00ff");
        assert_eq!(show_bytes(b"a\nb"), "0x610a62");
        assert_eq!(parse_hex("0x00ff"), Ok(vec![0, 255]));
        assert!(parse_hex("abc").is_err() && parse_hex("zz").is_err());
        assert_eq!(show_size(1536), "1.5 KiB");
    }
}

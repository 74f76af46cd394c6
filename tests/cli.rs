//! The `cairn` command-line tool, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

/// The value of `name N` in the demo's summary line.
fn summary_field(stdout: &str, name: &str) -> u64 {
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let after =
        summary.split(&format!(" {name} ")).nth(1).unwrap_or_else(|| panic!("no {name} in {summary}"));
    after.split([',', ' ']).next().unwrap().parse().unwrap()
}

#[test]
fn demo_kills_and_recovers_the_worker_and_finds_no_mismatch() {
    let output = cairn()
        .args(["demo", "--events", "60000", "--users", "3000", "--crashes", "2", "--seed", "7"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert_eq!(summary_field(&stdout, "events"), 60000, "{stdout}");
    assert_eq!(summary_field(&stdout, "keys"), 3000, "{stdout}");
    assert_eq!(summary_field(&stdout, "crashes"), 2, "{stdout}");
    assert_eq!(summary_field(&stdout, "mismatches"), 0, "{stdout}");
    assert_eq!(stdout.matches("killed with SIGKILL").count(), 2, "{stdout}");
    let dir = stdout.lines().next().and_then(|l| l.rsplit(" in ").next()).unwrap();
    assert!(!std::path::Path::new(dir).exists(), "the demo left {dir} behind");
}

#[test]
fn demo_in_a_given_directory_keeps_its_data_and_resumes() {
    let dir = std::env::temp_dir().join(format!("cairn-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = ["demo", "--events", "20000", "--users", "500", "--crashes", "1", "--dir"];
    let output = cairn().args(args).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.join("input/p0").exists() && dir.join("tasks/p1/checkpoint").exists());
    // A second run finds the input and the finished tasks: nothing left, still no mismatch.
    let output = cairn().args(args).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("input already present"), "{stdout}");
    assert_eq!(summary_field(&stdout, "mismatches"), 0, "{stdout}");
    assert_eq!(summary_field(&stdout, "events"), 20000, "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_commands_fail_with_usage() {
    let output = cairn().arg("frobnicate").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
}

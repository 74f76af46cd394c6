//! The `cairn` command-line tool, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

#[test]
fn demo_runs_end_to_end_and_cleans_up_its_directory() {
    let output = cairn().args(["demo", "--records", "20000"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for line in [
        "append:",
        "reopen:",
        "verify:",
        "all 20000 records match",
        "compact:",
        "every key reads as its latest record",
        "recover:",
        "torn tail cut",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    let dir = stdout.lines().next().and_then(|l| l.rsplit(" in ").next()).unwrap();
    assert!(!std::path::Path::new(dir).exists(), "the demo left {dir} behind");
}

#[test]
fn demo_in_a_given_directory_keeps_the_log() {
    let dir = std::env::temp_dir().join(format!("cairn-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let output = cairn().args(["demo", "--records", "5000", "--dir"]).arg(&dir).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.join("00000000000000000000.log").exists());
    // A second run appends after the first run's records and verifies its own.
    let output = cairn().args(["demo", "--records", "5000", "--dir"]).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("all 5000 records match"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_commands_fail_with_usage() {
    let output = cairn().arg("frobnicate").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
}

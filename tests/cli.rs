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

/// Ctrl-C (SIGINT) makes the demo's worker commit and exit cleanly mid-run; the demo then
/// resumes from that commit and finds every count exact.
#[test]
fn ctrl_c_stops_the_worker_with_a_commit_and_the_demo_resumes_from_it() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;

    use cairn::changelog::{Log, LogOptions, Record};
    use cairn::fs::RealFs;

    let dir = std::env::temp_dir().join(format!("cairn-cli-ctrlc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let events = 500_000u64;
    let input = Log::open(Arc::new(RealFs::new()), dir.join("input/p0"), LogOptions::default()).unwrap();
    for chunk in 0..events / 1000 {
        let keys: Vec<Vec<u8>> =
            (0..1000).map(|i| format!("user-{:07}", (chunk * 7 + i) % 900).into_bytes()).collect();
        let records: Vec<Record<'_>> = keys.iter().map(|k| Record::new(k, Some(b"/page/1"), 0)).collect();
        input.append_batch(&records).unwrap();
    }
    input.close().unwrap();
    drop(input);

    let mut worker = cairn()
        .args(["demo-worker", "--partitions", "1", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines().map(Result::unwrap);
    let started = lines.by_ref().find(|l| l.starts_with("PROGRESS") && !l.ends_with("processed=0"));
    assert!(started.is_some(), "the worker ended before processing anything");
    let kill = Command::new("kill").args(["-INT", &worker.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let done = lines.find(|l| l.starts_with("DONE")).expect("no DONE line after Ctrl-C");
    assert!(worker.wait().unwrap().success(), "the worker failed after Ctrl-C");
    let processed: u64 = done.split("processed=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(processed > 0 && processed < events, "Ctrl-C did not stop the run midway: {done}");

    let output = cairn()
        .args(["demo", "--partitions", "1", "--crashes", "0", "--events", &events.to_string(), "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("input already present"), "{stdout}");
    assert_eq!(summary_field(&stdout, "events"), events, "{stdout}");
    assert_eq!(summary_field(&stdout, "mismatches"), 0, "{stdout}");
    // Resumed exactly where the worker's commit on Ctrl-C left off.
    let run = stdout.lines().find(|l| l.starts_with("run 1:")).unwrap();
    let resumed: u64 =
        run.split(" messages processed").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(resumed, events - processed, "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The operator commands of the `cairn` tool (`log`, `checkpoint`, `store`), run as a user runs
//! them on prepared directories, healthy and damaged: their output, JSON shape and exit codes
//! (README, "Operator commands").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn::changelog::{Log, LogOptions, Record};
use cairn::checkpoint::{Checkpoint, CheckpointFile, CheckpointOptions};
use cairn::fs::RealFs;
use cairn::store::{Store, StoreOptions};
use serde_json::Value;

/// A directory removed when dropped.
struct Temp(PathBuf);

impl Temp {
    fn new(label: &str) -> Temp {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "cairn-operator-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Temp(path)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cairn ARGS` with `stdin` as its input.
fn cairn_with_input(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn cairn(args: &[&str]) -> Output {
    cairn_with_input(args, "")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing the output otherwise.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(output)))
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output).lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir` and its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap().path();
        if entry.is_dir() {
            all.extend(files(&entry));
        } else {
            all.insert(entry.clone(), std::fs::read(&entry).unwrap());
        }
    }
    all
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir).into_keys().filter(|p| p.extension().is_some_and(|e| e == "log")).collect()
}

/// A closed log of five or more 4 KiB segments, a batch per record: 300 records `key-<i % 40>` = `value-<i>`, every
/// tenth a tombstone, timestamps `1_700_000_000_000 + i`.
fn write_log(dir: &Path) -> u64 {
    let mut options = LogOptions::default();
    options.segment_bytes_max = 4096;
    options.index_interval_bytes = 256;
    options.write_buffer_bytes = 0; // a batch per record: more segments
    let log = Log::open(Arc::new(RealFs::new()), dir, options).unwrap();
    for i in 0..300u64 {
        let key = format!("key-{}", i % 40);
        let value = format!("value-{i}");
        let value = (i % 10 != 9).then_some(value.as_bytes());
        log.append(Record::new(key.as_bytes(), value, 1_700_000_000_000 + i as i64)).unwrap();
    }
    log.sync().unwrap();
    log.close().unwrap();
    300
}

#[test]
fn log_stat_dump_and_verify_describe_a_healthy_log() {
    let temp = Temp::new("healthy");
    let dir = temp.0.join("log");
    let records = write_log(&dir);
    let before = files(&dir);

    let output = cairn(&["log", "stat", path(&dir)]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("offsets       0 .. 300 (300 records, 30 tombstones)"), "{text}");
    assert!(text.contains("compacted     never"), "{text}");

    let stat = json(&cairn(&["log", "stat", path(&dir), "--json"]));
    assert_eq!(stat["end_offset"], records);
    assert_eq!(stat["records"], records);
    assert_eq!(stat["clean"], true);
    assert_eq!(stat["verified"], false);
    assert_eq!(stat["dirty_ratio"], 1.0);
    assert_eq!(stat["last_compaction_ms"], Value::Null);
    let segment_list = stat["segments"].as_array().unwrap();
    assert_eq!(segment_list.len(), segments(&dir).len());
    assert!(segment_list.len() >= 3);
    assert_eq!(segment_list[0]["base_offset"], 0);
    assert_eq!(segment_list[1]["base_offset"], segment_list[0]["next_offset"]);

    let output = cairn(&["log", "verify", path(&dir)]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("clean"), "{}", stdout(&output));
    assert_eq!(stderr(&output), "", "a progress bar was drawn into a pipe");
    let verify = json(&cairn(&["log", "verify", path(&dir), "--json"]));
    assert_eq!((verify["verified"].clone(), verify["clean"].clone()), (Value::Bool(true), Value::Bool(true)));
    assert_eq!(verify["findings"], Value::Array(vec![]));

    // dump from an offset, a limited number, as text and as JSON Lines.
    let output = cairn(&["log", "dump", path(&dir), "--from", "17", "--limit", "3"]);
    assert_exit(&output, 0);
    let lines: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], "offset 17 at 2023-11-14T22:13:20.017Z key \"key-17\" value \"value-17\"");
    assert_eq!(lines[2], "offset 19 at 2023-11-14T22:13:20.019Z key \"key-19\" tombstone");
    let dumped = json_lines(&cairn(&["log", "dump", path(&dir), "--from", "250", "--json"]));
    assert_eq!(dumped.len(), 50);
    assert_eq!(dumped[0]["offset"], 250);
    assert_eq!(dumped[0]["key"]["utf8"], "key-10");
    assert_eq!(dumped[0]["value"]["utf8"], "value-250");
    assert_eq!(dumped[9]["value"], Value::Null);
    assert_eq!(dumped[9]["tombstone"], true);
    assert_eq!(dumped[49]["offset"], 299);
    let keys = json_lines(&cairn(&["log", "dump", path(&dir), "--keys-only", "--json", "--limit", "2"]));
    assert!(keys.iter().all(|k| k.get("value").is_none() && k.get("key").is_some()), "{keys:?}");

    assert_eq!(files(&dir), before, "a read-only command changed the log");
}

/// Flips a bit in the middle of the second segment, which is sealed and known durable.
fn damage_sealed_segment(dir: &Path) -> (PathBuf, u64) {
    let segment = segments(dir)[1].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&segment, bytes).unwrap();
    (segment, at as u64)
}

#[test]
fn verify_names_the_damaged_file_and_batch_and_changes_nothing() {
    let temp = Temp::new("damaged");
    let dir = temp.0.join("log");
    write_log(&dir);
    let (segment, flipped) = damage_sealed_segment(&dir);
    let before = files(&dir);

    let output = cairn(&["log", "verify", path(&dir)]);
    assert_exit(&output, 3);
    let text = stdout(&output);
    assert!(text.contains(&format!("damage: {} at byte ", segment.display())), "{text}");
    assert!(text.contains("checksum mismatch") && text.contains("DAMAGED"), "{text}");

    let verify = json(&cairn(&["log", "verify", path(&dir), "--json"]));
    assert_eq!(verify["worst"], "damage");
    let finding = &verify["findings"][0];
    assert_eq!(finding["file"], path(&segment));
    assert_eq!(finding["severity"], "damage");
    assert_eq!(finding["kind"], "data");
    let position = finding["position"].as_u64().unwrap();
    assert!(position <= flipped, "the batch holding byte {flipped} starts after it, at {position}");

    // stat trusts the index headers and does not see it; dump stops at it.
    assert_exit(&cairn(&["log", "stat", path(&dir)]), 0);
    let output = cairn(&["log", "dump", path(&dir), "--json"]);
    assert_exit(&output, 3);
    assert!(
        stderr(&output).contains(&format!("stopped at damage: {}", segment.display())),
        "{}",
        stderr(&output)
    );
    assert!(!json_lines(&output).is_empty());

    assert_eq!(files(&dir), before, "verify or dump changed a damaged log");
}

#[test]
fn verify_tells_a_torn_tail_from_damage() {
    let temp = Temp::new("torn");
    let dir = temp.0.join("log");
    write_log(&dir);
    let last = segments(&dir).pop().unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[0x5A; 77]).unwrap();
    let output = cairn(&["log", "verify", path(&dir)]);
    assert_exit(&output, 4);
    assert!(stdout(&output).contains("torn tail"), "{}", stdout(&output));
    let verify = json(&cairn(&["log", "verify", path(&dir), "--json"]));
    assert_eq!(verify["findings"][0]["kind"], "torn_tail");
    assert_eq!(verify["end_offset"], 300);
    // dump shows every record and says where the log ends.
    let output = cairn(&["log", "dump", path(&dir), "--keys-only"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).lines().count(), 300);
    assert!(stderr(&output).contains("torn tail"), "{}", stderr(&output));
}

#[test]
fn repair_asks_saves_the_cut_bytes_and_leaves_a_clean_log() {
    let temp = Temp::new("repair");
    let dir = temp.0.join("log");
    write_log(&dir);
    let (segment, _) = damage_sealed_segment(&dir);
    let before = files(&dir);

    // Declined: nothing changes.
    let output = cairn_with_input(&["log", "repair", path(&dir)], "n\n");
    assert_exit(&output, 6);
    assert!(stdout(&output).contains("the repair will:"), "{}", stdout(&output));
    assert!(stderr(&output).contains("repair? [y/N]"), "{}", stderr(&output));
    let mut after = files(&dir);
    after.remove(&dir.join("LOCK"));
    let mut expected = before.clone();
    expected.remove(&dir.join("LOCK"));
    assert_eq!(after, expected, "a declined repair changed the log");

    // Confirmed on stdin.
    let save = temp.0.join("saved");
    let output = cairn_with_input(&["log", "repair", path(&dir), "--save-to", path(&save), "--json"], "y\n");
    assert_exit(&output, 0);
    let report = json(&output);
    assert_eq!(report["applied"], true);
    assert_eq!(report["plan"]["cut_file"], path(&segment));
    let cut = report["plan"]["cut_position"].as_u64().unwrap();
    let end = report["end_offset"].as_u64().unwrap();
    assert!(end > 0 && end < 300, "{report}");
    // The cut bytes and every removed segment are saved.
    let name = segment.file_name().unwrap().to_str().unwrap();
    let saved = std::fs::read(save.join(format!("{name}.cut-at-{cut}"))).unwrap();
    assert_eq!(saved, before[&segment][cut as usize..]);
    for removed in report["plan"]["removed_segments"].as_array().unwrap() {
        let removed = PathBuf::from(removed.as_str().unwrap());
        assert_eq!(std::fs::read(save.join(removed.file_name().unwrap())).unwrap(), before[&removed]);
    }
    // The log is clean and holds the records before the damage.
    assert_exit(&cairn(&["log", "verify", path(&dir)]), 0);
    let dumped = json_lines(&cairn(&["log", "dump", path(&dir), "--json"]));
    assert_eq!(dumped.len() as u64, end);

    // Nothing left to repair; --yes needs no answer.
    let output = cairn(&["log", "repair", path(&dir), "--yes"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("nothing to repair"), "{}", stdout(&output));
}

#[test]
fn repair_refuses_a_log_in_use() {
    let temp = Temp::new("repair-locked");
    let dir = temp.0.join("log");
    write_log(&dir);
    let log = Log::open(Arc::new(RealFs::new()), &dir, LogOptions::default()).unwrap();
    let output = cairn(&["log", "repair", path(&dir), "--yes"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("locked"), "{}", stderr(&output));
    // Inspection takes no lock.
    assert_exit(&cairn(&["log", "verify", path(&dir)]), 0);
    drop(log);
}

#[test]
fn compact_runs_one_pass_and_stat_shows_it() {
    let temp = Temp::new("compact");
    let dir = temp.0.join("log");
    write_log(&dir);
    let output = cairn(&["log", "compact", path(&dir), "--json"]);
    assert_exit(&output, 0);
    let report = json(&output);
    assert_eq!(report["limit"], 300);
    let (before, after) =
        (report["records_before"].as_u64().unwrap(), report["records_after"].as_u64().unwrap());
    assert!(after < before && after >= 40, "{report}");
    let stat = json(&cairn(&["log", "stat", path(&dir), "--json"]));
    assert!(stat["last_compaction_ms"].is_i64(), "{stat}");
    assert!(stat["dirty_ratio"].as_f64().unwrap() < 1.0, "{stat}");
    assert_exit(&cairn(&["log", "verify", path(&dir)]), 0);
    // Every key's latest record is still there (key-5 was last written at offset 285), and the
    // compacted segments hold each key at most once (the active segment is left alone).
    let dumped = json_lines(&cairn(&["log", "dump", path(&dir), "--json"]));
    let key5 = dumped.iter().rfind(|r| r["key"]["utf8"] == "key-5").unwrap();
    assert_eq!(
        (key5["offset"].clone(), key5["value"]["utf8"].clone()),
        (Value::from(285), Value::from("value-285"))
    );
    let active = dumped.last().unwrap()["segment"].clone();
    let compacted: Vec<String> =
        dumped.iter().filter(|r| r["segment"] != active).map(|r| r["key"].to_string()).collect();
    let distinct: std::collections::BTreeSet<&String> = compacted.iter().collect();
    assert!(!compacted.is_empty() && distinct.len() == compacted.len(), "{compacted:?}");
    let text = stdout(&cairn(&["log", "compact", path(&dir)]));
    assert!(text.contains("compaction below offset 300"), "{text}");
}

#[test]
fn checkpoint_show_reads_healthy_missing_and_damaged_checkpoints() {
    let temp = Temp::new("checkpoint");
    let task = temp.0.join("task");
    std::fs::create_dir_all(&task).unwrap();
    let output = cairn(&["checkpoint", "show", path(&task)]);
    assert_exit(&output, 5);
    assert_eq!(json(&cairn(&["checkpoint", "show", path(&task), "--json"]))["status"], "missing");

    let mut file =
        CheckpointFile::open(Arc::new(RealFs::new()), task.join("checkpoint"), CheckpointOptions::default())
            .unwrap();
    file.write(&Checkpoint::new(7).input("views/0", 1200).changelog("counts", 88).output("totals", 1200))
        .unwrap();
    let output = cairn(&["checkpoint", "show", path(&task)]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("id          7") && text.contains("views/0") && text.contains("1200"), "{text}");
    let shown = json(&cairn(&["checkpoint", "show", path(&task.join("checkpoint")), "--json"]));
    assert_eq!(shown["status"], "ok");
    assert_eq!(shown["checkpoint"]["id"], 7);
    assert_eq!(shown["checkpoint"]["changelogs"]["counts"], 88);

    let checkpoint = task.join("checkpoint");
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&checkpoint, &bytes).unwrap();
    let output = cairn(&["checkpoint", "show", path(&task)]);
    assert_exit(&output, 3);
    assert!(
        stdout(&output).contains(&format!("DAMAGED: {} at byte", checkpoint.display())),
        "{}",
        stdout(&output)
    );
    let shown = json(&cairn(&["checkpoint", "show", path(&task), "--json"]));
    assert_eq!(shown["status"], "damaged");
    assert!(shown["damage"]["position"].is_u64() && shown["damage"]["message"].is_string(), "{shown}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), bytes);
}

#[test]
fn store_get_scan_and_stat_read_a_store() {
    let temp = Temp::new("store");
    let dir = temp.0.join("store");
    let mut store = Store::open(Arc::new(RealFs::new()), &dir, StoreOptions::default()).unwrap();
    for i in 0..100u32 {
        store.put(format!("user-{i:03}").as_bytes(), &i.to_le_bytes()).unwrap();
    }
    store.put(b"name", b"alice").unwrap();
    store.delete(b"user-050").unwrap();
    store.write_snapshot().unwrap();
    store.put(b"after", b"the snapshot").unwrap();
    store.close().unwrap();

    let output = cairn(&["store", "get", path(&dir), "name"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "\"alice\"\n");
    let got = json(&cairn(&["store", "get", path(&dir), "user-007", "--json"]));
    assert_eq!(got["found"], true);
    assert_eq!(got["value"]["hex"], "07000000");
    let output = cairn(&["store", "get", path(&dir), "user-050"]);
    assert_exit(&output, 5);
    assert_exit(&cairn(&["store", "get", path(&dir), "0x757365722d303031", "--hex"]), 0);

    let output = cairn(&["store", "scan", path(&dir), "--from", "user-010", "--to", "user-013"]);
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output),
        "\"user-010\" = 0x0a000000\n\"user-011\" = 0x0b000000\n\"user-012\" = 0x0c000000\n"
    );
    let scanned =
        json_lines(&cairn(&["store", "scan", path(&dir), "--from", "user-098", "--json", "--keys-only"]));
    assert_eq!(scanned.len(), 2);
    assert_eq!(scanned[1]["key"]["utf8"], "user-099");
    assert!(scanned[0].get("value").is_none());

    let stat = json(&cairn(&["store", "stat", path(&dir), "--json"]));
    assert_eq!(stat["keys"], 101);
    assert_eq!(stat["restore"]["source"], "snapshot");
    assert_eq!(stat["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(stat["snapshots"][0]["used"], true);
    assert_eq!(stat["restore"]["records_replayed"], 1);
    assert_eq!(stat["changelog"]["clean"], true);
    let text = stdout(&cairn(&["store", "stat", path(&dir)]));
    assert!(text.contains("keys          101") && text.contains("from the snapshot at offset"), "{text}");

    // A directory that is not a store is refused and left as it was.
    let elsewhere = temp.0.join("not-a-store");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let output = cairn(&["store", "get", path(&elsewhere), "name"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("not a store directory"), "{}", stderr(&output));
    assert!(files(&elsewhere).is_empty() && std::fs::read_dir(&elsewhere).unwrap().next().is_none());
}

#[test]
fn every_command_has_help_and_bad_input_has_exit_codes() {
    for command in [
        &["log", "stat"][..],
        &["log", "dump"],
        &["log", "verify"],
        &["log", "repair"],
        &["log", "compact"],
        &["checkpoint", "show"],
        &["store", "get"],
        &["store", "scan"],
        &["store", "stat"],
        &["demo"],
    ] {
        let output = cairn(&[command, &["--help"]].concat());
        assert_exit(&output, 0);
        assert!(stdout(&output).contains("Usage: cairn"), "{command:?}: {}", stdout(&output));
    }
    assert!(stdout(&cairn(&["--help"])).contains("Exit codes"));
    // Missing argument: usage error.
    assert_exit(&cairn(&["log", "stat"]), 2);
    // Not a log, or no such directory: the command fails, naming it.
    let temp = Temp::new("not-a-log");
    let output = cairn(&["log", "verify", path(&temp.0)]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("not a log directory"), "{}", stderr(&output));
    let missing = temp.0.join("missing");
    let output = cairn(&["log", "stat", path(&missing)]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains(path(&missing)), "{}", stderr(&output));
    assert_exit(&cairn(&["log", "compact", path(&missing)]), 1);
    assert!(!missing.exists(), "compact created the directory");
}

#[test]
fn commands_that_open_a_log_refuse_a_torn_tail_unless_told_to_recover() {
    let temp = Temp::new("recover");
    let dir = temp.0.join("store");
    let mut store = Store::open(Arc::new(RealFs::new()), &dir, StoreOptions::default()).unwrap();
    store.put(b"name", b"alice").unwrap();
    store.close().unwrap();
    let changelog = dir.join("changelog");
    let last = segments(&changelog).pop().unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[0xC3; 50]).unwrap();
    drop(file);
    let before = files(&dir);

    for args in [
        &["store", "get", path(&dir), "name"][..],
        &["store", "scan", path(&dir)],
        &["store", "stat", path(&dir)],
        &["log", "compact", path(&changelog)],
    ] {
        let output = cairn(args);
        assert_exit(&output, 4);
        assert!(
            stderr(&output).contains("--recover") && stderr(&output).contains("torn tail"),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(files(&dir), before, "a refused command changed the store");

    let output = cairn(&["store", "get", path(&dir), "name", "--recover"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "\"alice\"\n");
    assert!(stderr(&output).contains("opening cut a torn tail"), "{}", stderr(&output));
    assert_exit(&cairn(&["log", "verify", path(&changelog)]), 0);
}

#[test]
fn repair_with_json_still_shows_its_plan_before_asking() {
    let temp = Temp::new("repair-json");
    let dir = temp.0.join("log");
    write_log(&dir);
    damage_sealed_segment(&dir);
    let output = cairn_with_input(&["log", "repair", path(&dir), "--json"], "no\n");
    assert_exit(&output, 6);
    assert!(stderr(&output).contains("the repair will:") && stderr(&output).contains("repair? [y/N]"));
    let report = json(&output);
    assert_eq!(report["applied"], false);
    assert!(report["plan"]["cut_file"].is_string(), "{report}");
    // The default save directory lies beside the log directory, even given as ".".
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["log", "repair", ".", "--yes", "--json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_exit(&output, 0);
    let saved = PathBuf::from(json(&output)["saved_to"].as_str().unwrap());
    assert_eq!(
        saved.parent(),
        Some(std::fs::canonicalize(&temp.0).unwrap().as_path()),
        "{}",
        saved.display()
    );
    assert!(saved.file_name().unwrap().to_str().unwrap().starts_with("log.repair-"));
}

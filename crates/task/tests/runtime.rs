//! The runtime end to end on the simulator: exactly-once state and outputs through crashes at
//! every sync point (DESIGN P8), the commit order, and bad inputs with typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cairn_fs::{FaultRule, Fs, Op, SimFs};
use cairn_store::RestoreSource;
use cairn_task::{Error, Runtime, Stopped, TaskRunner};
use common::{CountTask, Points, check_consistent, config, write_inputs};

fn sim() -> (SimFs, Arc<dyn Fs>) {
    let sim = SimFs::new(4);
    let fs: Arc<dyn Fs> = Arc::new(sim.clone());
    (sim, fs)
}

#[test]
fn a_run_reaches_the_reference_fold_and_reopens_where_it_stopped() {
    let (_sim, fs) = sim();
    write_inputs(&fs, 300);
    let mut runner = TaskRunner::open(Arc::clone(&fs), config(50), CountTask).unwrap();
    assert_eq!(runner.run_to_end(&AtomicBool::new(false)).unwrap(), Stopped::InputsExhausted);
    check_consistent(&runner).unwrap();
    assert!(runner.metrics().commits >= 12, "{:?}", runner.metrics());
    assert_eq!(runner.metrics().messages, 600);
    let checkpoint = runner.checkpoint().unwrap().clone();
    drop(runner);
    let runner = TaskRunner::open(Arc::clone(&fs), config(50), CountTask).unwrap();
    assert_eq!(runner.metrics().recovered_checkpoint, Some(checkpoint.id));
    assert_eq!(runner.positions()["in-0"], 300);
    check_consistent(&runner).unwrap();
}

#[test]
fn every_crash_image_recovers_the_last_commit_and_finishes_exactly_once() {
    match common::crash_sweep(60, 7, 2 * cairn_fs::sim::sweep_scale(), Points::Syncs) {
        Ok(images) => {
            eprintln!("{images} crash images (at syncs) recovered exactly");
            eprintln!("sim-images: {images}");
            assert!(images > 100, "only {images} images");
        }
        Err(failures) => panic!("{} images failed:\n{}", failures.len(), failures.join("\n")),
    }
}

#[test]
fn a_crash_before_any_file_system_step_recovers_exactly() {
    match common::crash_sweep(40, 5, cairn_fs::sim::sweep_scale(), Points::EveryMutation) {
        Ok(images) => {
            eprintln!("{images} crash images (at every mutation) recovered exactly");
            eprintln!("sim-images: {images}");
            assert!(images > 100, "only {images} images");
        }
        Err(failures) => panic!("{} images failed:\n{}", failures.len(), failures.join("\n")),
    }
}

#[test]
fn uncommitted_work_is_rolled_back_on_reopen() {
    let (_sim, fs) = sim();
    write_inputs(&fs, 100);
    let mut small_polls = config(1000);
    small_polls.poll_batch = 10;
    let mut runner = TaskRunner::open(Arc::clone(&fs), small_polls, CountTask).unwrap();
    runner.poll_once().unwrap();
    runner.commit().unwrap();
    let committed = runner.positions();
    runner.poll_once().unwrap();
    assert_ne!(runner.positions(), committed);
    // The process "dies" here: the runner is dropped without a commit.
    drop(runner);
    let runner = TaskRunner::open(Arc::clone(&fs), config(1000), CountTask).unwrap();
    assert_eq!(runner.positions(), committed);
    check_consistent(&runner).unwrap();
}

#[test]
fn a_missing_input_partition_is_a_typed_error() {
    let (_sim, fs) = sim();
    write_inputs(&fs, 5);
    let config = config(10).input_log("in-9", "/input/9");
    match TaskRunner::open(fs, config, CountTask) {
        Err(Error::InputMissing { input, path }) => {
            assert_eq!(input, "in-9");
            assert_eq!(path, std::path::Path::new("/input/9"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_checkpoint_past_the_input_end_is_a_typed_error() {
    let (sim, fs) = sim();
    write_inputs(&fs, 20);
    let mut runner = TaskRunner::open(Arc::clone(&fs), config(5), CountTask).unwrap();
    runner.run_to_end(&AtomicBool::new(false)).unwrap();
    drop(runner);
    // The input partition loses its tail (another input put in its place).
    for name in sim.list_dir(std::path::Path::new("/input/0")).unwrap() {
        fs.remove_file(&std::path::Path::new("/input/0").join(name)).unwrap();
    }
    let log = cairn_changelog::Log::open(Arc::clone(&fs), "/input/0", Default::default()).unwrap();
    log.append(cairn_changelog::Record::put(b"k", b"v")).unwrap();
    log.close().unwrap();
    drop(log);
    match TaskRunner::open(fs, config(5), CountTask) {
        Err(Error::CheckpointPastInputEnd { input, offset, end }) => {
            assert_eq!((input.as_str(), offset, end), ("in-0", 20, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_store_not_in_the_checkpoint_is_a_typed_error() {
    let (_sim, fs) = sim();
    write_inputs(&fs, 5);
    let mut runner = TaskRunner::open(Arc::clone(&fs), config(5), CountTask).unwrap();
    runner.run_to_end(&AtomicBool::new(false)).unwrap();
    drop(runner);
    let config = config(5).store("other", Default::default());
    match TaskRunner::open(fs, config, CountTask) {
        Err(Error::NotInCheckpoint { kind: "store", name, checkpoint }) => {
            assert_eq!(name, "other");
            assert_eq!(checkpoint, std::path::Path::new("/task/checkpoint"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_damaged_checkpoint_is_a_typed_error_not_a_fresh_start() {
    let (sim, fs) = sim();
    write_inputs(&fs, 5);
    let mut runner = TaskRunner::open(Arc::clone(&fs), config(5), CountTask).unwrap();
    runner.run_to_end(&AtomicBool::new(false)).unwrap();
    drop(runner);
    let path = std::path::Path::new("/task/checkpoint");
    let mut bytes = sim.contents(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    sim.set_contents(path, &bytes).unwrap();
    match TaskRunner::open(fs, config(5), CountTask) {
        Err(Error::Checkpoint(cairn_checkpoint::Error::Corruption { .. })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_names_are_refused() {
    let (_sim, fs) = sim();
    let config = config(5).store("counts", Default::default());
    assert!(matches!(TaskRunner::open(fs, config, CountTask), Err(Error::InvalidConfig(_))));
}

#[test]
fn a_task_error_stops_the_task_without_a_commit() {
    struct Failing(u64);
    impl cairn_task::StreamTask for Failing {
        fn process(
            &mut self,
            m: &cairn_task::Message<'_>,
            ctx: &mut cairn_task::Context<'_>,
        ) -> Result<(), cairn_task::TaskError> {
            if m.offset == self.0 {
                return Err("bad message".into());
            }
            ctx.store("counts")?.put(m.key, b"x")?;
            Ok(())
        }
    }
    let (_sim, fs) = sim();
    write_inputs(&fs, 30);
    let mut runner = TaskRunner::open(Arc::clone(&fs), config(10), Failing(25)).unwrap();
    let error = runner.run_to_end(&AtomicBool::new(false)).unwrap_err();
    assert!(matches!(error, Error::Task { .. }), "{error}");
    assert!(runner.is_poisoned());
    assert!(matches!(runner.commit(), Err(Error::Poisoned(_))));
    let committed = runner.checkpoint().unwrap().inputs["in-0"];
    assert!(committed <= 25, "{committed}");
}

#[test]
fn the_runtime_runs_tasks_on_threads_and_stops_them_with_a_commit() {
    let (_sim, fs) = sim();
    write_inputs(&fs, 50);
    let mut runtime = Runtime::new();
    let runner = TaskRunner::open(Arc::clone(&fs), config(1000), CountTask).unwrap();
    runtime.spawn(runner, false).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    runtime.stop();
    let outcomes = runtime.join();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(*outcomes[0].result.as_ref().unwrap(), Stopped::Signalled);
    let runner = TaskRunner::open(Arc::clone(&fs), config(1000), CountTask).unwrap();
    assert_eq!(runner.positions()["in-0"], 50, "the final commit covers everything processed");
    check_consistent(&runner).unwrap();
}

/// Asks for a shutdown at one offset and counts its window calls.
struct Stopper {
    at: u64,
    windows: u64,
}

impl cairn_task::StreamTask for Stopper {
    fn process(
        &mut self,
        m: &cairn_task::Message<'_>,
        ctx: &mut cairn_task::Context<'_>,
    ) -> Result<(), cairn_task::TaskError> {
        if m.input == "in-0" && m.offset == self.at {
            ctx.shutdown();
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
        Ok(())
    }

    fn window(&mut self, _ctx: &mut cairn_task::Context<'_>) -> Result<(), cairn_task::TaskError> {
        self.windows += 1;
        Ok(())
    }
}

#[test]
fn a_shutdown_request_stops_right_after_its_message_with_a_commit_and_windows_run() {
    let (_sim, fs) = sim();
    write_inputs(&fs, 40);
    let mut config = config(1000);
    config.window_interval = Some(std::time::Duration::from_millis(1));
    config.poll_batch = 100;
    let mut runner = TaskRunner::open(Arc::clone(&fs), config, Stopper { at: 30, windows: 0 }).unwrap();
    assert_eq!(runner.run(&AtomicBool::new(false)).unwrap(), Stopped::TaskRequested);
    assert_eq!(runner.positions()["in-0"], 31, "stopped right after the message that asked");
    assert_eq!(runner.checkpoint().unwrap().inputs["in-0"], 31, "and committed it");
    assert!(runner.task().windows > 0, "window was never called");
}

#[test]
fn snapshots_follow_their_cadence_on_or_off_the_task_thread_and_restores_start_from_them() {
    for background in [false, true] {
        snapshots_follow_their_cadence(background);
    }
}

fn snapshots_follow_their_cadence(background: bool) {
    let (_sim, fs) = sim();
    write_inputs(&fs, 300);
    let every_commit = || {
        let mut config = config(50);
        config.snapshot_every_commits = 1;
        config.background_snapshots = background;
        config
    };
    let mut runner = TaskRunner::open(Arc::clone(&fs), every_commit(), CountTask).unwrap();
    runner.run_to_end(&AtomicBool::new(false)).unwrap();
    // Each snapshot batch is waited for before the next one starts, and the last at the end.
    assert_eq!(runner.metrics().snapshots, runner.metrics().commits, "{:?}", runner.metrics());
    let end = runner.checkpoint().unwrap().changelogs["counts"];
    drop(runner);
    let runner = TaskRunner::open(Arc::clone(&fs), every_commit(), CountTask).unwrap();
    let report = runner.store("counts").unwrap().restore_report();
    assert!(matches!(report.source, RestoreSource::Snapshot { offset, .. } if offset == end), "{report:?}");
    assert_eq!(report.records_replayed, 0);
    check_consistent(&runner).unwrap();
}

#[test]
fn a_failed_snapshot_write_poisons_the_task_and_recovery_is_exact() {
    let (sim, fs) = sim();
    write_inputs(&fs, 300);
    let every_commit = || {
        let mut config = config(50);
        config.snapshot_every_commits = 1;
        config.background_snapshots = true;
        config
    };
    let mut runner = TaskRunner::open(Arc::clone(&fs), every_commit(), CountTask).unwrap();
    sim.inject(FaultRule::fail(Op::Rename).on_path(".snapshot"));
    // The first commit hands its snapshot to a thread; the next commit joins it before it
    // writes anything, and the failure poisons the runner.
    let error = runner.run_to_end(&AtomicBool::new(false)).unwrap_err();
    assert!(matches!(error, Error::Store { ref store, .. } if store == "counts"), "{error}");
    assert!(runner.is_poisoned());
    assert!(matches!(runner.commit(), Err(Error::Poisoned(_))));
    sim.clear_faults();
    drop(runner);
    let runner = TaskRunner::open(Arc::clone(&fs), every_commit(), CountTask).unwrap();
    check_consistent(&runner).unwrap();
}

#[test]
fn with_snapshots_on_compaction_stops_at_the_newest_written_snapshot() {
    let (_sim, fs) = sim();
    write_inputs(&fs, 300);
    let limit =
        |runner: &TaskRunner<CountTask>| runner.store("counts").unwrap().changelog().compaction_limit();
    let mut every_other = config(50);
    every_other.snapshot_every_commits = 2;
    let mut runner = TaskRunner::open(Arc::clone(&fs), every_other, CountTask).unwrap();
    runner.poll_once().unwrap();
    let first = runner.commit().unwrap();
    // No snapshot yet: nothing may be compacted, though commit 1 is durable.
    assert!(first.changelogs["counts"] > 0);
    assert_eq!(limit(&runner), 0);
    runner.poll_once().unwrap();
    let second = runner.commit().unwrap();
    assert_eq!(limit(&runner), second.changelogs["counts"]);
    runner.poll_once().unwrap();
    let third = runner.commit().unwrap();
    assert!(third.changelogs["counts"] > second.changelogs["counts"]);
    assert_eq!(limit(&runner), second.changelogs["counts"]);
    drop(runner);
    // Reopened from the snapshot of commit 2: the limit starts there.
    let mut every_other = config(50);
    every_other.snapshot_every_commits = 2;
    let runner = TaskRunner::open(Arc::clone(&fs), every_other, CountTask).unwrap();
    assert_eq!(limit(&runner), second.changelogs["counts"]);

    // Snapshots off: the limit follows every checkpoint.
    let mut never = config(50);
    never.snapshot_every_commits = 0;
    let (_sim, fs) = sim();
    write_inputs(&fs, 300);
    let mut runner = TaskRunner::open(Arc::clone(&fs), never, CountTask).unwrap();
    runner.poll_once().unwrap();
    let first = runner.commit().unwrap();
    assert_eq!(limit(&runner), first.changelogs["counts"]);
}

//! The `cairn` command-line tool.

mod cmd;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use cmd::{BoxError, Exit};

/// cairn: durable local state for stream processing.
///
/// Exit codes: 0 success (verify: nothing found); 1 the command failed (message on stderr);
/// 2 bad arguments; 3 damage (verify, dump, checkpoint show; store and compact refuse a damaged
/// log); 4 only damage that opening repairs by itself (verify; store and compact refuse a torn
/// tail without --recover); 5 not found (store get, checkpoint show); 6 repair not confirmed.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Look inside a changelog directory, check it, repair or compact it.
    #[command(subcommand)]
    Log(LogCommand),
    /// Show a task's checkpoint.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Read a store: a key, a range, or its size and snapshot state.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Runs a page-view counting task over a partitioned input, kills its worker process with
    /// SIGKILL at random moments, restarts it, and checks the final counts and outputs against
    /// the input: every view must be counted exactly once.
    Demo {
        /// Directory for the input and the tasks' state; a new temporary directory (removed
        /// afterwards) if not given. An input already there is reused.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Page views to generate.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Input partitions (one task, on its own thread, per partition).
        #[arg(long, default_value_t = 2)]
        partitions: u32,
        /// Distinct users.
        #[arg(long, default_value_t = 100_000)]
        users: u64,
        /// Times the worker is killed before it may finish.
        #[arg(long, default_value_t = 3)]
        crashes: u32,
        /// Seed of the input and of the kill times (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Keep the temporary directory instead of removing it.
        #[arg(long)]
        keep: bool,
    },
    /// The demo's worker process (run by `cairn demo`).
    #[command(hide = true)]
    DemoWorker {
        /// The demo's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Input partitions.
        #[arg(long)]
        partitions: u32,
    },
}

/// `--json`, shared by the operator commands.
#[derive(Debug, Args)]
struct Format {
    /// Print JSON for scripts instead of text (record listings: one JSON object per line).
    #[arg(long)]
    json: bool,
}

/// `--recover`, for the commands that open a log or store (and so recover it).
#[derive(Debug, Args)]
struct Recover {
    /// Let opening cut a torn tail it finds (without saving it). Without it, such a log is
    /// refused (exit 4): those bytes may hold records a task's checkpoint needs; `cairn log
    /// repair` cuts them after saving a copy. A damaged log is always refused (exit 3).
    #[arg(long)]
    recover: bool,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Segments, offsets, bytes, records, dirty ratio, last compaction. Read-only; reads the
    /// index headers of sealed segments instead of their data (see `verify`).
    Stat {
        /// The log directory.
        dir: PathBuf,
        #[command(flatten)]
        format: Format,
    },
    /// Records with offsets, timestamps, keys and values (text when printable, else 0x hex).
    /// Read-only; stops at the first invalid batch (exit 3 if it is damage).
    Dump {
        /// The log directory.
        dir: PathBuf,
        /// The first offset to show.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Show at most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// Keys only, no values.
        #[arg(long)]
        keys_only: bool,
        #[command(flatten)]
        format: Format,
    },
    /// Checks every batch, index and segment boundary, read-only and without the lock. Exit 0
    /// when clean, 3 when damaged, 4 when opening would repair everything found by itself;
    /// each problem is printed with its file, byte position and kind.
    Verify {
        /// The log directory.
        dir: PathBuf,
        #[command(flatten)]
        format: Format,
    },
    /// Cuts the log at its first damage (invalid batch, gap, missing segment), after copying
    /// every byte it removes into a new directory; removes damaged index files. Asks first
    /// unless --yes (exit 6 if not confirmed). Takes the log's lock.
    Repair {
        /// The log directory.
        dir: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Where to save the removed bytes (a new directory); default `DIR.repair-<unix time>`
        /// beside DIR.
        #[arg(long)]
        save_to: Option<PathBuf>,
        #[command(flatten)]
        format: Format,
    },
    /// One compaction pass (the latest record of each key below the limit kept) and its report.
    /// Opens the log (recovering it) and takes its lock.
    Compact {
        /// The log directory.
        dir: PathBuf,
        /// Compact below this offset (default: the log's end). For a task's store changelog,
        /// pass no more than the changelog offset in the task's checkpoint
        /// (`cairn checkpoint show`): the task rolls back to it after a crash.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        recover: Recover,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum CheckpointCommand {
    /// The checkpoint's id, time and offsets, read without changing anything. Exit 3 if it is
    /// damaged (with the byte position), 5 if there is none.
    Show {
        /// The checkpoint file, or a task directory holding one named `checkpoint`.
        path: PathBuf,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// The value of a key (exit 5 if there is none). Opens the store: recovers its changelog
    /// and takes its lock.
    Get {
        /// The store directory (holding `changelog/` and `snapshots/`).
        dir: PathBuf,
        /// The key: text, or hex with --hex.
        key: String,
        /// The key is hex.
        #[arg(long)]
        hex: bool,
        #[command(flatten)]
        recover: Recover,
        #[command(flatten)]
        format: Format,
    },
    /// Entries in key byte order, [--from, --to). Opens the store as `get` does.
    Scan {
        /// The store directory.
        dir: PathBuf,
        /// The first key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// The key to stop before (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Show at most this many entries.
        #[arg(long)]
        limit: Option<u64>,
        /// --from and --to are hex.
        #[arg(long)]
        hex: bool,
        /// Keys only, no values.
        #[arg(long)]
        keys_only: bool,
        #[command(flatten)]
        recover: Recover,
        #[command(flatten)]
        format: Format,
    },
    /// Keys, changelog size and dirty ratio, snapshots and how the restore went. Opens the
    /// store as `get` does.
    Stat {
        /// The store directory.
        dir: PathBuf,
        #[command(flatten)]
        recover: Recover,
        #[command(flatten)]
        format: Format,
    },
}

fn run_log(command: LogCommand) -> Result<Exit, BoxError> {
    match command {
        LogCommand::Stat { dir, format } => cmd::log::stat(&dir, format.json),
        LogCommand::Dump { dir, from, limit, keys_only, format } => {
            cmd::log::dump(&dir, &cmd::log::DumpOptions { from, limit, keys_only, json: format.json })
        }
        LogCommand::Verify { dir, format } => cmd::log::verify(&dir, format.json),
        LogCommand::Repair { dir, yes, save_to, format } => {
            cmd::log::repair(&dir, &cmd::log::RepairOptions { save_to, yes, json: format.json })
        }
        LogCommand::Compact { dir, limit, recover, format } => {
            cmd::log::compact(&dir, limit, recover.recover, format.json)
        }
    }
}

fn run_store(command: StoreCommand) -> Result<Exit, BoxError> {
    match command {
        StoreCommand::Get { dir, key, hex, recover, format } => {
            cmd::store::get(&dir, &cmd::store::parse_key(&key, hex)?, recover.recover, format.json)
        }
        StoreCommand::Scan { dir, from, to, limit, hex, keys_only, recover, format } => {
            let from = from.map(|k| cmd::store::parse_key(&k, hex)).transpose()?;
            let to = to.map(|k| cmd::store::parse_key(&k, hex)).transpose()?;
            let recover = recover.recover;
            let options = cmd::store::ScanOptions { from, to, limit, keys_only, recover, json: format.json };
            cmd::store::scan(&dir, &options)
        }
        StoreCommand::Stat { dir, recover, format } => cmd::store::stat(&dir, recover.recover, format.json),
    }
}

/// Whether the error is stdout having been closed by the reader (`cairn demo | head`): the
/// output was cut short on purpose, so there is nothing to report.
fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<Exit, BoxError> = match cli.command {
        Command::Log(command) => run_log(command),
        Command::Checkpoint(CheckpointCommand::Show { path, format }) => {
            cmd::checkpoint::show(&path, format.json)
        }
        Command::Store(command) => run_store(command),
        Command::Demo { dir, events, partitions, users, crashes, seed, keep } => {
            demo::run(&demo::DemoOptions { dir, events, partitions, users, crashes, seed, keep })
                .map(|()| Exit::Success)
        }
        Command::DemoWorker { dir, partitions } => demo::worker(&dir, partitions).map(|()| Exit::Success),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

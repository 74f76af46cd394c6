//! A task of your own: count words in lines of text, with the counts in a store and every new
//! count sent to an output, committed every 100 lines and recovered exactly after a crash.
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cairn::changelog::{Log, Record};
use cairn::fs::{Fs, RealFs};
use cairn::store::{StoreOptions, TypedStore};
use cairn::task::{Context, Message, StreamTask, TaskConfig, TaskError, TaskRunner};

struct WordCount;

impl StreamTask for WordCount {
    fn process(&mut self, line: &Message<'_>, ctx: &mut Context<'_>) -> Result<(), TaskError> {
        let text = std::str::from_utf8(line.value.unwrap_or_default())?;
        for word in text.split_whitespace() {
            let mut counts = ctx.typed_store::<String, u64>("counts")?;
            let count = counts.get(&word.to_string())?.unwrap_or(0) + 1;
            counts.put(&word.to_string(), &count)?;
            ctx.send("updates", word.as_bytes(), &count.to_le_bytes())?;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("cairn-words-{}", std::process::id()));
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    // The input: one partition of text lines.
    let input = Log::open(Arc::clone(&fs), dir.join("lines"), Default::default())?;
    for i in 0..1000 {
        input.append(Record::put(b"", format!("the quick fox {} jumps", i % 7).as_bytes()))?;
    }
    input.close()?;
    drop(input);

    let config = TaskConfig::new("words", dir.join("task"))
        .input_log("lines", dir.join("lines"))
        .store("counts", StoreOptions::default())
        .output_log("updates")
        .commit_every(100);
    // Opening recovers from the last checkpoint; run_to_end stops at the inputs' end and commits.
    let mut runner = TaskRunner::open(fs, config, WordCount)?;
    runner.run_to_end(&AtomicBool::new(false))?;
    let counts = TypedStore::<String, u64, _>::new(runner.store("counts").ok_or("no store")?);
    for entry in counts.iter()? {
        let (word, count) = entry?;
        println!("{word}: {count}");
    }
    println!("checkpoint: {:?}", runner.checkpoint());
    drop(runner);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

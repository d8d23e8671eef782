//! P5's memory per retained task, measured in a fresh child process: the bench's own process has freed
//! heap from earlier phases that a fill would reuse without growing RSS, which hides the true cost.

use crate::p1::sample_message;
use crate::sys;
use anyhow::{anyhow, Context, Result};
use cpe_actors::memory::MemoryStore;
use cpe_actors::ports::{StoreError, TaskStore};
use cpe_actors::registry::{Registry, RegistryHandle};
use cpe_actors::slot::Slot;
use cpe_actors::{EquipmentId, Outcome, TaskId, TaskMessage, TaskRecord, TaskStatus};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Concurrent callers filling the registry.
const FILLERS: u64 = 64;
/// The line the child prints: `MEMORY <rss before> <rss after> <fill milliseconds>`.
const TAG: &str = "MEMORY";

/// What one fill did to the child's resident memory.
pub struct Fill {
    pub before: u64,
    pub after: u64,
    pub elapsed: Duration,
}

/// A task as the registry keeps it, for a distinct device: completed through the real transitions
/// (which drop the parameters), or still queued with the template's parameters.
pub fn retained(seq: u64, template: &TaskMessage, unfinished: bool) -> TaskRecord {
    let mut record = TaskRecord::queued(
        TaskId::new(),
        EquipmentId::parse(&crate::load::device(seq)).expect("a valid id"),
        template.request.clone(),
    );
    if !unfinished {
        record.move_to(TaskStatus::Running);
        record.finish(&Outcome::Completed { attempts: 1 });
    }
    record
}

/// The child's whole job: fill a registry actor (memory store) with N tasks through
/// `RegistryHandle::create`, the path Service B uses, and print RSS before and after.
pub async fn child(n: u64, unfinished: bool) -> Result<()> {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let (actor, _) = ractor::Actor::spawn(None, Registry, store.clone())
        .await
        .map_err(|e| anyhow!("cannot start a registry: {e}"))?;
    let slot = Slot::default();
    slot.set(actor);
    let registry = RegistryHandle::new(slot, store);
    let template = Arc::new(sample_message());
    let before = sys::rss();
    let started = Instant::now();
    let fillers: Vec<_> = (0..FILLERS)
        .map(|k| {
            let (registry, template) = (registry.clone(), template.clone());
            tokio::spawn(async move {
                for seq in (k..n).step_by(FILLERS as usize) {
                    registry.create(retained(seq, &template, unfinished)).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for filler in fillers {
        filler.await??;
    }
    let elapsed = started.elapsed();
    println!("{TAG} {before} {} {}", sys::rss(), elapsed.as_millis());
    Ok(())
}

/// Runs [`child`] in a new process of this binary and reads its answer, killing it after `limit`.
pub async fn measure(n: u64, unfinished: bool, limit: Duration) -> Result<Fill> {
    tokio::task::spawn_blocking(move || {
        let exe = std::env::current_exe().context("cannot find this program to start a child")?;
        let mut command = Command::new(exe);
        command
            .arg(format!("--memory-child={n}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if unfinished {
            command.arg("--unfinished-tasks");
        }
        let mut child = command.spawn().context("cannot start the measuring child")?;
        let deadline = Instant::now() + limit;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(anyhow!("the measuring child did not finish within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        parse(&text).ok_or_else(|| anyhow!("the measuring child answered {text:?} ({})", output.status))
    })
    .await?
}

fn parse(text: &str) -> Option<Fill> {
    let line = text.lines().find_map(|l| l.strip_prefix(TAG))?;
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    match numbers[..] {
        [before, after, millis] => Some(Fill {
            before,
            after,
            elapsed: Duration::from_millis(millis),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_childs_answer_is_read_back() {
        let fill = parse("noise\nMEMORY 100 300 42\n").expect("an answer");
        assert_eq!((fill.before, fill.after, fill.elapsed.as_millis()), (100, 300, 42));
        assert!(parse("MEMORY 1 2").is_none());
    }
}

//! The reconciler: no task waits for ever. A device's next task is due once it is the device's
//! oldest unfinished task; its message may still be lost after that (dead-lettered at a quorum
//! queue's delivery limit, purged, dropped with a broker's disk). Every instance looks, at once if
//! it likes: a due task that is still queued, whose device nobody holds, whose last message the
//! queue confirmed more than a grace ago while the queue holds nothing waiting, is handed to the
//! queue again; one handed again [`HANDOVERS`] times fails with a message that says so and frees
//! its device. A message that was not lost after all only means one more delivery, which finds
//! the task held or final.

use super::connections::Connections;
use super::rows::{millis, task_id};
use super::{outbox, PgStore, FINAL_CHANNEL};
use cpe_actors::observe::{Finished, Observer};
use cpe_actors::ports::{StoreError, TaskPublisher};
use cpe_actors::TaskId;
use std::sync::Arc;
use std::time::Duration;

/// How often each instance looks.
pub const EVERY: Duration = Duration::from_secs(10);
/// Times a task is handed to the queue again before it fails.
pub const HANDOVERS: i32 = 3;

/// What one look did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Handed to the queue again.
    pub handed: Vec<TaskId>,
    /// Failed: their messages kept being lost.
    pub failed: Vec<TaskId>,
}

/// The reason a task fails with once its messages were lost [`HANDOVERS`] times.
pub fn lost_reason(queue: &str) -> String {
    format!(
        "its queue message was dead-lettered or lost {} times without the task starting \
         (see {queue}.dlq); not configured",
        HANDOVERS + 1
    )
}

/// Stranded tasks last confirmed on the queue before `cutoff` (ms): handed on again, or failed
/// with `reason` past [`HANDOVERS`]. One transaction; rows another instance is busy with are skipped.
pub fn reconcile(connections: &Connections, now: u64, cutoff: u64, reason: String) -> Result<Reconciled, StoreError> {
    let (now, cutoff) = (millis(now), millis(cutoff));
    connections.run("reconcile stranded tasks", move |client| {
        let mut txn = client.transaction()?;
        let stranded = txn.query(
            "SELECT t.id, t.handovers FROM cpe_tasks t WHERE t.id IN (
                 SELECT DISTINCT ON (equipment_id) id FROM cpe_tasks WHERE status < 2 ORDER BY equipment_id, seq)
               AND t.status = 0 AND t.publish_due IS NULL AND coalesce(t.handed_at, t.created_at) < $1
               AND NOT EXISTS (SELECT 1 FROM cpe_device_leases l
                               WHERE l.equipment_id = t.equipment_id AND l.expires_at > now())
             FOR UPDATE OF t SKIP LOCKED",
            &[&cutoff],
        )?;
        let (mut again, mut give_up) = (Vec::new(), Vec::new());
        for row in &stranded {
            let id: uuid::Uuid = row.get(0);
            if row.get::<_, i32>(1) < HANDOVERS {
                again.push(id);
            } else {
                give_up.push(id);
            }
        }
        txn.execute(
            "UPDATE cpe_tasks SET publish_due = $2, handovers = handovers + 1 WHERE id = ANY($1)",
            &[&again, &(now - 1)],
        )?;
        let failed = txn.query(
            "UPDATE cpe_tasks SET status = 3, last_error = $2, updated_at = $3, publish_due = NULL
             WHERE id = ANY($1) RETURNING id, equipment_id",
            &[&give_up, &reason, &now],
        )?;
        let devices: Vec<String> = failed.iter().map(|row| row.get(1)).collect();
        let finals: Vec<String> = failed
            .iter()
            .map(|row| row.get::<_, uuid::Uuid>(0).to_string())
            .collect();
        txn.execute(
            "SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id",
            &[&FINAL_CHANNEL, &finals],
        )?;
        outbox::make_next_due(&mut txn, &devices)?;
        txn.commit()?;
        Ok(Reconciled {
            handed: again.into_iter().map(task_id).collect(),
            failed: failed.iter().map(|row| task_id(row.get(0))).collect(),
        })
    })
}

/// Looks every [`EVERY`] until the returned task is aborted; a look is skipped while the queue
/// holds messages waiting (a backlog: a task's message may be among them).
pub fn run(
    store: Arc<PgStore>,
    publisher: Arc<dyn TaskPublisher>,
    grace: Duration,
    queue: String,
    observer: Arc<dyn Observer>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        loop {
            ticks.tick().await;
            match publisher.waiting().await {
                Ok(Some(0)) | Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(error) => {
                    tracing::debug!(%error, "reconciler could not read the queue's length; looks next time");
                    continue;
                }
            }
            let looking = store.clone();
            let reason = lost_reason(&queue);
            let now = cpe_actors::domain::now_millis();
            let cutoff = now.saturating_sub(grace.as_millis() as u64);
            let done = tokio::task::spawn_blocking(move || looking.reconcile(now, cutoff, reason)).await;
            match done {
                Ok(Ok(done)) => {
                    done.failed
                        .iter()
                        .for_each(|_| observer.task_finished(Finished::Failed));
                    report(&done, grace, &queue);
                }
                Ok(Err(error)) => tracing::warn!(%error, "reconciler could not look for stranded tasks"),
                Err(_) => {}
            }
        }
    })
}

fn report(done: &Reconciled, grace: Duration, queue: &str) {
    for id in &done.handed {
        tracing::warn!(task_id = %id, ?grace, "task was due without a message on {queue} (dead-lettered or lost?); handed to the queue again");
    }
    for id in &done.failed {
        tracing::warn!(task_id = %id, "task failed: {}", lost_reason(queue));
    }
}

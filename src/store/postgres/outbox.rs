//! The outbox: "accepted means kept" across two stores, the database and the queue. A queued task's
//! row is its own outbox entry (`publish_due`): cleared once the queue confirmed it, and otherwise
//! published by a relay in any instance once due, so a crash between the commit and the publish
//! loses nothing. A task published twice is harmless: its worker finds it held or final.

use super::connections::Connections;
use super::rows::{millis, record, uuid, COLUMNS};
use cpe_actors::ports::{StoreError, TaskPublisher};
use cpe_actors::{TaskId, TaskMessage, TaskRecord};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a create has to publish its task itself before the relay does it.
pub const PUBLISH_GRACE: Duration = Duration::from_secs(10);
/// How long a relay's claim on a task lasts: a relay that dies mid-publish leaves it to another.
const CLAIM: Duration = Duration::from_secs(60);
/// Tasks claimed (and notes of publication written) per statement.
const BATCH: usize = 500;

/// When a task stored now as queued is due for the relay.
pub fn due_for(created_at: u64) -> i64 {
    millis(created_at).saturating_add(PUBLISH_GRACE.as_millis() as i64)
}

/// A note that the queue confirmed a task's message: clears `publish_due` only if it still holds
/// the value the publisher saw (a create's [`due_for`], or the relay's claim), so a task made due
/// again meanwhile (its device's previous task ended) is published again, not forgotten.
type Mark = (uuid::Uuid, Option<i64>);

/// Notes of publication, written in batches by a thread of their own so the request path never waits.
pub struct Marks {
    notes: Mutex<Option<mpsc::Sender<Mark>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Marks {
    pub fn start(connections: Arc<Connections>) -> Self {
        let (notes, noted) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("postgres-outbox".into())
            .spawn(move || write_marks(&connections, &noted))
            .expect("a thread can be started");
        Self {
            notes: Mutex::new(Some(notes)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Tasks published by their create, while still due at their create's [`due_for`].
    pub fn note(&self, ids: &[TaskId]) {
        self.send(ids.iter().map(|id| (uuid(*id), None)));
    }

    /// Tasks the relay published under its claim `until`.
    fn note_relayed(&self, ids: &[TaskId], until: i64) {
        self.send(ids.iter().map(|id| (uuid(*id), Some(until))));
    }

    fn send(&self, marks: impl Iterator<Item = Mark>) {
        if let Some(notes) = self.notes.lock().expect("notes lock").as_ref() {
            for mark in marks {
                let _ = notes.send(mark);
            }
        }
    }

    /// Writes the notes already taken, then ends the thread.
    pub fn stop(&self) {
        self.notes.lock().expect("notes lock").take();
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
    }
}

fn write_marks(connections: &Connections, noted: &mpsc::Receiver<Mark>) {
    while let Ok(first) = noted.recv() {
        let marks: Vec<Mark> = std::iter::once(first).chain(noted.try_iter().take(BATCH - 1)).collect();
        let (ids, dues): (Vec<uuid::Uuid>, Vec<Option<i64>>) = marks.into_iter().unzip();
        let now = millis(cpe_actors::domain::now_millis());
        let grace = PUBLISH_GRACE.as_millis() as i64;
        let written = connections.run("note published tasks", move |client| {
            client.execute(
                "UPDATE cpe_tasks t SET publish_due = NULL, handed_at = $3
                 FROM unnest($1::uuid[], $2::int8[]) AS m(id, due)
                 WHERE t.id = m.id AND t.publish_due = coalesce(m.due, t.created_at + $4)",
                &[&ids, &dues, &now, &grace],
            )
        });
        // A note that could not be written costs one more publication of its task, nothing else.
        if let Err(error) = written {
            tracing::warn!(%error, "could not note tasks as published; the relay will publish them again");
        }
    }
}

/// Takes the queued tasks whose publication is due (for [`CLAIM`]), oldest first; instances
/// claiming at once get different tasks.
pub fn claim(connections: &Connections, now: u64) -> Result<Claimed, StoreError> {
    let (now, until) = (millis(now), millis(now).saturating_add(CLAIM.as_millis() as i64));
    let sql = format!(
        "UPDATE cpe_tasks SET publish_due = $2 WHERE id IN (
             SELECT id FROM cpe_tasks WHERE publish_due < $1 AND status = 0
             ORDER BY publish_due LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    );
    let rows = connections.run("claim unpublished tasks", move |client| {
        client.query(&sql, &[&now, &until, &(BATCH as i64)])
    })?;
    let tasks = rows.iter().map(record).collect::<Result<_, _>>()?;
    Ok(Claimed { tasks, until })
}

/// Tasks claimed for publication, and the claim's end (their `publish_due` meanwhile).
pub struct Claimed {
    pub tasks: Vec<TaskRecord>,
    until: i64,
}

/// Makes the next task of each device given due for publication now: its oldest unfinished task,
/// when that one is still queued and a worker let its delivery go (it was behind). Called in the transaction that ended the device's previous
/// task, so a crash after it leaves the relay of any instance to publish it. Returns how many.
pub fn make_next_due(txn: &mut postgres::Transaction<'_>, devices: &[String]) -> Result<u64, postgres::Error> {
    if devices.is_empty() {
        return Ok(0);
    }
    // Never the create's own due value: a late note of the create's publication must not clear it.
    let now = millis(cpe_actors::domain::now_millis()) - 1;
    // Only a task whose delivery was let go (`passed_over`): any other still has its message, and a
    // second one could reach a worker process whose reports Service B has not written yet.
    txn.execute(
        "UPDATE cpe_tasks t SET publish_due = CASE WHEN t.created_at + $3 = $2 THEN $2 - 1 ELSE $2 END,
                                passed_over = false
         FROM (SELECT DISTINCT ON (equipment_id) id, status FROM cpe_tasks
               WHERE equipment_id = ANY($1) AND status < 2 ORDER BY equipment_id, seq) head
         WHERE t.id = head.id AND head.status = 0 AND t.passed_over",
        &[&devices, &now, &(PUBLISH_GRACE.as_millis() as i64)],
    )
}

/// Publishes due tasks every `every`, and at once when a write made one due, until the returned
/// task is aborted.
pub fn relay(
    store: Arc<super::PgStore>,
    publisher: Arc<dyn TaskPublisher>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        let due = store.due.clone();
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = due.notified() => {}
            }
            let claiming = store.clone();
            let claimed =
                tokio::task::spawn_blocking(move || claiming.claim_unpublished(cpe_actors::domain::now_millis())).await;
            let claimed = match claimed {
                Ok(Ok(claimed)) => claimed,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "outbox relay could not read due tasks");
                    continue;
                }
                Err(_) => continue,
            };
            let mut published = Vec::with_capacity(claimed.tasks.len());
            for record in &claimed.tasks {
                let task = TaskMessage {
                    task_id: record.id,
                    equipment_id: record.equipment_id.clone(),
                    request: record.request.clone(),
                };
                match publisher.publish(&task).await {
                    Ok(()) => published.push(record.id),
                    // Left claimed: due again once the claim runs out.
                    Err(error) => {
                        tracing::warn!(task_id = %record.id, %error, "outbox relay could not publish a task");
                        break;
                    }
                }
            }
            if !published.is_empty() {
                tracing::debug!(tasks = published.len(), "outbox relay published due tasks");
                store.marks.note_relayed(&published, claimed.until);
            }
        }
    })
}

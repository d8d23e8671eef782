//! The PostgreSQL store: task state shared by every instance that points at the same database.
//!
//! Each instance's registry still decides alone (read, decide, write), so two instances could decide
//! on the same task at once. The database settles such a race: a write never changes a final task
//! into another status, never cancels a task that is no longer queued, and never reuses an
//! idempotency key; the loser's write fails as a whole and its caller tries again on fresh state.
//! A write that makes a task final also announces it (`NOTIFY cpe_config_final`), so a waiter on
//! any instance wakes at once (see `listen.rs`).

mod audit;
mod connections;
mod instances;
pub mod leases;
mod listen;
pub mod outbox;
pub mod reads;
pub mod reconcile;
mod rows;
mod schema;
pub mod scratch;

use connections::{prepared, Connections};
use cpe_actors::ports::{FinalListener, IdempotencyEntry, StoreCounts, StoreError, TaskReader, TaskStore, WriteOp};
use cpe_actors::{AuditPage, AuditQuery, AuditRecord, TaskId, TaskPage, TaskQuery, TaskRecord, TaskStatus};
use postgres::{Config, Transaction};
use rows::{millis, record, request_json, status_code, task_id, uuid, COLUMNS};
use std::str::FromStr;
use std::sync::Arc;

/// Connections per instance for writes (they share commits through the registry's group commit,
/// so a few are plenty); LISTEN and leases have their own.
const CONNECTIONS: usize = 4;
/// Connections per instance for reads of tasks (status, listings, search), so a read never waits
/// behind a write's transaction.
const READ_CONNECTIONS: usize = 4;

/// Rows removed per sweep statement, so a sweep of millions never holds one giant transaction.
const SWEEP_BATCH: i64 = 10_000;

/// The channel on which a write that makes a task final names it.
pub const FINAL_CHANNEL: &str = "cpe_config_final";

pub struct PgStore {
    config: Config,
    connections: Arc<Connections>,
    readers: Arc<Connections>,
    listener: std::sync::Mutex<Option<listen::Listener>>,
    marks: outbox::Marks,
    /// Told when a write made a task due for publication: the relay publishes it at once.
    due: Arc<tokio::sync::Notify>,
    membership: std::sync::Mutex<Option<instances::Membership>>,
}

impl PgStore {
    /// Connects, and brings the schema up to date (safe when several instances start at once).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let config = Config::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("the PostgreSQL URL is not valid: {e}")))?;
        let connections = Arc::new(Connections::start(&config, CONNECTIONS));
        let (applied, current) = connections.run("migrate the schema", |client| {
            Ok((schema::migrate(client)?, schema::current(client)?))
        })?;
        if current > schema::latest() {
            return Err(StoreError::Unavailable(format!(
                "PostgreSQL: the schema is at version {current}, newer than this binary knows ({}): run a newer cpe-config",
                schema::latest()
            )));
        }
        if !applied.is_empty() {
            tracing::info!(steps = ?applied, "PostgreSQL schema migrated");
        }
        Ok(Self {
            marks: outbox::Marks::start(connections.clone()),
            connections,
            readers: Arc::new(Connections::start(&config, READ_CONNECTIONS)),
            config,
            listener: std::sync::Mutex::new(None),
            due: Arc::new(tokio::sync::Notify::new()),
            membership: std::sync::Mutex::new(None),
        })
    }
}

impl PgStore {
    /// The reads outside the registry (status, listing, search), on connections of their own, so
    /// they never wait behind the registry's reads and writes, nor it behind them.
    pub fn reader(&self) -> Arc<dyn TaskReader> {
        Arc::new(reads::PgReads::new(self.readers.clone()))
    }

    /// Registers this instance for as long as the store is open: `alone` with the in-process
    /// queue, which no other instance may share; refused with the reason when the other
    /// instances on this database use the other kind of queue.
    pub fn join_instances(&self, alone: bool) -> Result<(), StoreError> {
        let membership = instances::Membership::join(&self.config, alone).map_err(StoreError::Unavailable)?;
        *self.membership.lock().expect("membership lock") = Some(membership);
        Ok(())
    }

    /// Queued tasks not yet confirmed by the queue past their grace, claimed for publication.
    pub fn claim_unpublished(&self, now_millis: u64) -> Result<outbox::Claimed, StoreError> {
        outbox::claim(&self.connections, now_millis)
    }

    /// Hands stranded tasks (due, queued, last on the queue before `cutoff`) to the queue again,
    /// or fails them once handed on too often; the relay is woken for what became due.
    pub fn reconcile(&self, now: u64, cutoff: u64, reason: String) -> Result<reconcile::Reconciled, StoreError> {
        let done = reconcile::reconcile(&self.connections, now, cutoff, reason)?;
        if !done.handed.is_empty() || !done.failed.is_empty() {
            self.due.notify_one();
        }
        Ok(done)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.membership.lock().expect("membership lock").take();
        if let Some(listener) = self.listener.lock().expect("listener lock").take() {
            listener.stop();
        }
        self.marks.stop();
        self.connections.close();
        self.readers.close();
    }
}

/// The registry's own reads (the task a change decides on), on the registry's connections.
impl TaskReader for PgStore {
    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        reads::task(&self.connections, id)
    }
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        reads::page(&self.connections, query)
    }
    fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        audit::page(&self.readers, query)
    }
}

impl TaskStore for PgStore {
    /// A write that ends a device's unfinished task (final, or removed) also makes the device's
    /// next task due in the same transaction, and wakes this instance's relay to publish it now.
    fn write_batch(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let ops = ops.to_vec();
        let handed_on = self.connections.run("write tasks", move |client| {
            let mut txn = client.transaction()?;
            let mut batch = Batch::default();
            for op in &ops {
                if let Err(refused) = apply(&mut txn, op, &mut batch)? {
                    return Ok(Err(refused));
                }
            }
            let Batch {
                puts,
                mut freed,
                audits,
            } = batch;
            if let Err(refused) = put_all(&mut txn, &puts)? {
                return Ok(Err(refused));
            }
            if let Err(refused) = audit::append(&mut txn, &audits)? {
                return Ok(Err(refused));
            }
            freed.extend(
                puts.iter()
                    .filter(|r| r.status.is_final())
                    .map(|r| r.equipment_id.to_string()),
            );
            let handed_on = outbox::make_next_due(&mut txn, &freed)?;
            txn.commit()?;
            Ok(Ok(handed_on))
        })??;
        if handed_on > 0 {
            self.due.notify_one();
        }
        Ok(())
    }

    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM cpe_tasks WHERE status < 2 ORDER BY seq");
        let rows = self
            .connections
            .run("list unfinished tasks", move |client| client.query(&sql, &[]))?;
        rows.iter().map(record).collect()
    }

    fn remove_final_before(&self, cutoff_millis: u64) -> Result<usize, StoreError> {
        let cutoff = millis(cutoff_millis);
        self.connections.run("sweep old tasks", move |client| {
            let mut removed = 0;
            loop {
                let step = client.execute(
                    "DELETE FROM cpe_tasks WHERE id IN (
                         SELECT id FROM cpe_tasks WHERE status >= 2 AND updated_at < $1 LIMIT $2)",
                    &[&cutoff, &SWEEP_BATCH],
                )?;
                removed += step as usize;
                if step < SWEEP_BATCH as u64 {
                    break;
                }
            }
            client.execute("DELETE FROM cpe_idempotency_keys WHERE created_at < $1", &[&cutoff])?;
            client.execute("DELETE FROM cpe_audit WHERE at < $1", &[&cutoff])?;
            Ok(removed)
        })
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyEntry>, StoreError> {
        let key = key.to_owned();
        let row = self.connections.run("read an idempotency key", move |client| {
            let statement = prepared(
                client,
                "SELECT task_id, fingerprint, created_at FROM cpe_idempotency_keys WHERE key = $1",
            )?;
            client.query_opt(&statement, &[&key])
        })?;
        Ok(row.map(|row| IdempotencyEntry {
            task_id: task_id(row.get(0)),
            fingerprint: row.get::<_, i64>(1) as u64,
            created_at: row.get::<_, i64>(2).max(0) as u64,
        }))
    }

    /// Counted at each scrape from the status index rather than kept in a tally row: one hot row
    /// that every write of every instance updates would serialize them all.
    fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.readers.run("count tasks", |client| {
            let mut counts = StoreCounts::default();
            for row in client.query("SELECT status, count(*) FROM cpe_tasks GROUP BY status", &[])? {
                let code: i16 = row.get(0);
                if let Some(status) = rows::status_from(code) {
                    counts.by_status[status as usize] = row.get::<_, i64>(1) as u64;
                }
            }
            let oldest: Option<i64> = client
                .query_one("SELECT min(created_at) FROM cpe_tasks WHERE status = 0", &[])?
                .get(0);
            counts.oldest_queued = oldest.map(|millis| millis.max(0) as u64);
            Ok(counts)
        })
    }

    fn mark_published(&self, ids: &[TaskId]) {
        self.marks.note(ids);
    }

    fn listen_for_finals(&self, listener: FinalListener) {
        let mut slot = self.listener.lock().expect("listener lock");
        if let Some(previous) = slot.take() {
            previous.stop();
        }
        *slot = Some(listen::Listener::start(&self.config, listener));
    }
}

/// Why a write was refused: another instance changed the same task or key first.
fn refused(what: String) -> Result<Result<(), StoreError>, postgres::Error> {
    Ok(Err(StoreError::Conflict(format!(
        "{what} was changed by another instance meanwhile; try again"
    ))))
}

/// What a batch writes at its end, one statement each, after its other changes.
#[derive(Default)]
struct Batch<'a> {
    puts: Vec<&'a TaskRecord>,
    /// Devices whose unfinished task went: their next task may be due.
    freed: Vec<String>,
    audits: Vec<&'a AuditRecord>,
}

/// One change inside the batch's transaction; the task and audit records it stores are added to
/// `batch`, written together at the end. `Ok(Err(_))` refuses the batch.
fn apply<'a>(
    txn: &mut Transaction<'_>,
    op: &'a WriteOp,
    batch: &mut Batch<'a>,
) -> Result<Result<(), StoreError>, postgres::Error> {
    match op {
        WriteOp::Put(record) => batch.puts.push(record),
        WriteOp::PutWithKey(record, key, entry) => {
            let inserted = txn.execute(
                "INSERT INTO cpe_idempotency_keys (key, task_id, fingerprint, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
                &[
                    key,
                    &uuid(entry.task_id),
                    &(entry.fingerprint as i64),
                    &millis(entry.created_at),
                ],
            )?;
            if inserted == 0 {
                return refused("the idempotency key".into());
            }
            batch.puts.push(record);
        }
        WriteOp::Remove(id) => batch.freed.extend(remove(txn, *id)?),
        WriteOp::RemoveWithKey(id, key) => {
            batch.freed.extend(remove(txn, *id)?);
            txn.execute(
                "DELETE FROM cpe_idempotency_keys WHERE key = $1 AND task_id = $2",
                &[key, &uuid(*id)],
            )?;
        }
        WriteOp::All(ops) => {
            for op in ops {
                if let Err(refused) = apply(txn, op, batch)? {
                    return Ok(Err(refused));
                }
            }
        }
        WriteOp::Audit(record) => batch.audits.push(record),
    }
    Ok(Ok(()))
}

/// Deletes a task; returns its device when it was unfinished (its device's next task may be due).
fn remove(txn: &mut Transaction<'_>, id: TaskId) -> Result<Option<String>, postgres::Error> {
    let removed = txn.query_opt(
        "DELETE FROM cpe_tasks WHERE id = $1 RETURNING equipment_id, status",
        &[&uuid(id)],
    )?;
    Ok(removed.filter(|row| row.get::<_, i16>(1) < 2).map(|row| row.get(0)))
}

/// Inserts the tasks, or updates each whose stored status allows the change: an unfinished task takes
/// any change except a cancel once it runs; a final one keeps its status (only its other fields,
/// such as `retried_as`, may change). One statement for all of them, so a batch costs a few round
/// trips however many tasks it holds. If any change is refused the batch is: the group commit then
/// writes each change alone, and only the refused one fails.
fn put_all(txn: &mut Transaction<'_>, records: &[&TaskRecord]) -> Result<Result<(), StoreError>, postgres::Error> {
    if records.is_empty() {
        return Ok(Ok(()));
    }
    let mut requests = Vec::with_capacity(records.len());
    for record in records {
        match request_json(record) {
            Ok(json) => requests.push(json),
            Err(e) => return Ok(Err(e)),
        }
    }
    let column = |field: fn(&TaskRecord) -> i64| records.iter().map(|r| field(r)).collect::<Vec<i64>>();
    let written = txn.execute(
        "INSERT INTO cpe_tasks
             (id, equipment_id, request, status, attempts, last_error, created_at, updated_at, retried_as,
              publish_due, requested_by)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int2[], $5::int4[], $6::text[],
                              $7::int8[], $8::int8[], $9::uuid[], $10::int8[], $11::text[])
         ON CONFLICT (id) DO UPDATE SET
             request = EXCLUDED.request, status = EXCLUDED.status, attempts = EXCLUDED.attempts,
             last_error = EXCLUDED.last_error, updated_at = EXCLUDED.updated_at, retried_as = EXCLUDED.retried_as,
             publish_due = CASE WHEN EXCLUDED.status = 0 THEN cpe_tasks.publish_due END
         WHERE (cpe_tasks.status < 2 AND NOT (EXCLUDED.status = 4 AND cpe_tasks.status <> 0))
            OR cpe_tasks.status = EXCLUDED.status",
        &[
            &records.iter().map(|r| uuid(r.id)).collect::<Vec<_>>(),
            &records.iter().map(|r| r.equipment_id.as_str()).collect::<Vec<_>>(),
            &requests,
            &records.iter().map(|r| status_code(r.status)).collect::<Vec<_>>(),
            &records
                .iter()
                .map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
            &records.iter().map(|r| r.last_error.as_deref()).collect::<Vec<_>>(),
            &column(|r| millis(r.created_at)),
            &column(|r| millis(r.updated_at)),
            &records.iter().map(|r| r.retried_as.map(uuid)).collect::<Vec<_>>(),
            &records
                .iter()
                .map(|r| (r.status == TaskStatus::Queued).then(|| outbox::due_for(r.created_at)))
                .collect::<Vec<_>>(),
            &records.iter().map(|r| r.requested_by.as_deref()).collect::<Vec<_>>(),
        ],
    )?;
    if written < records.len() as u64 {
        return match records {
            [one] => refused(format!("task {}", one.id)),
            _ => refused(format!("one of {} tasks", records.len())),
        };
    }
    let finals: Vec<String> = records
        .iter()
        .filter(|r| r.status.is_final())
        .map(|r| r.id.to_string())
        .collect();
    if !finals.is_empty() {
        txn.execute(
            "SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id",
            &[&FINAL_CHANNEL, &finals],
        )?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests;

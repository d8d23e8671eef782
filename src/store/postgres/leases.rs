//! Per-device leases in PostgreSQL: one configuration at a time per device across every instance,
//! in acceptance order (`cpe_tasks.seq`). A row per device holds the task, the holder, an expiry in
//! the database's clock and a fence that grows with every new holder; a released lease keeps its
//! row (expired), so the fence never starts again from one.

use super::connections::Connections;
use super::rows::uuid;
use cpe_actors::ports::{Acquired, DeviceLeases, Lease, LeaseError, StoreError};
use cpe_actors::{TaskId, TaskMessage};
use postgres::Config;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Connections for leases, apart from the store's, so a slow listing never delays a lease.
const CONNECTIONS: usize = 2;

pub struct PgLeases {
    connections: Arc<Connections>,
    /// This instance (and process start), named in each lease it holds.
    holder: String,
}

impl PgLeases {
    /// Leases in the database at `url` (its schema made by [`super::PgStore::open`]), held in the
    /// name of `holder`: unique to this process, so a restarted instance never acts under the
    /// leases of its previous life.
    pub fn open(url: &str, holder: String) -> Result<Self, StoreError> {
        let config = Config::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("the PostgreSQL URL is not valid: {e}")))?;
        Ok(Self {
            connections: Arc::new(Connections::start(&config, CONNECTIONS)),
            holder,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        doing: &'static str,
        work: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, LeaseError> {
        let connections = self.connections.clone();
        tokio::task::spawn_blocking(move || connections.run(doing, work))
            .await
            .map_err(|e| LeaseError::Unavailable(e.to_string()))?
            .map_err(|e| LeaseError::Unavailable(e.message().to_string()))
    }
}

/// Marks a task whose delivery is let go because its device is not its yet (see outbox::make_next_due).
fn pass_over(txn: &mut postgres::Transaction<'_>, id: TaskId) -> Result<(), postgres::Error> {
    txn.execute("UPDATE cpe_tasks SET passed_over = true WHERE id = $1", &[&uuid(id)])?;
    Ok(())
}

fn interval(ttl: Duration) -> String {
    format!("{} milliseconds", ttl.as_millis())
}

#[async_trait::async_trait]
impl DeviceLeases for PgLeases {
    async fn acquire(&self, task: &TaskMessage, ttl: Duration, adopt: bool) -> Result<Acquired, LeaseError> {
        let (equipment, id, holder) = (task.equipment_id.clone(), task.task_id, self.holder.clone());
        self.run("take a device lease", move |client| {
            let mut txn = client.transaction()?;
            let mine = txn.query_opt("SELECT status, seq FROM cpe_tasks WHERE id = $1", &[&uuid(id)])?;
            if mine.as_ref().is_some_and(|row| row.get::<_, i16>(0) >= 2) {
                return Ok(Acquired::Final);
            }
            // A task this database does not hold yet (its create is on its way) waits; one adopted
            // (another publisher's) has no place in the order.
            if mine.is_none() && !adopt {
                return Ok(Acquired::Unknown);
            }
            if let Some(row) = &mine {
                let seq: i64 = row.get(1);
                // Locked until this commits, so the write that ends the last of them waits and then
                // sees the mark below: the task is handed on, never left without a message.
                let older = txn.query(
                    "SELECT 1 FROM cpe_tasks WHERE equipment_id = $1 AND status < 2 AND seq < $2
                     ORDER BY seq FOR SHARE",
                    &[&equipment.as_str(), &seq],
                )?;
                if !older.is_empty() {
                    pass_over(&mut txn, id)?;
                    txn.commit()?;
                    return Ok(Acquired::Behind);
                }
            }
            // A lease runs out at its expiry, or as soon as its task is final: a holder reports its
            // outcome only under a confirmed lease and calls no more after it, so the device's next
            // task need not wait for the release.
            let taken = txn.query_opt(
                "INSERT INTO cpe_device_leases (equipment_id, task_id, holder, fence, expires_at)
                 VALUES ($1, $2, $3, 1, now() + $4::text::interval)
                 ON CONFLICT (equipment_id) DO UPDATE SET
                     task_id = EXCLUDED.task_id, holder = EXCLUDED.holder,
                     fence = cpe_device_leases.fence + 1, expires_at = EXCLUDED.expires_at
                 WHERE cpe_device_leases.expires_at < now()
                    OR EXISTS (SELECT 1 FROM cpe_tasks t WHERE t.id = cpe_device_leases.task_id AND t.status >= 2)
                 RETURNING fence",
                &[&equipment.as_str(), &uuid(id), &holder, &interval(ttl)],
            )?;
            let acquired = match taken {
                Some(row) => Acquired::Held(Lease {
                    equipment_id: equipment,
                    task_id: id,
                    fence: row.get(0),
                }),
                None => {
                    let holding: Option<uuid::Uuid> = txn
                        .query_opt(
                            "SELECT task_id FROM cpe_device_leases WHERE equipment_id = $1",
                            &[&equipment.as_str()],
                        )?
                        .map(|row| row.get(0));
                    let same_task = holding == Some(uuid(id));
                    if !same_task && mine.is_some() {
                        // Should this delivery be given up, the holder's final write hands it on.
                        pass_over(&mut txn, id)?;
                    }
                    Acquired::Busy { same_task }
                }
            };
            txn.commit()?;
            Ok(acquired)
        })
        .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), LeaseError> {
        let (lease, holder) = (lease.clone(), self.holder.clone());
        let renewed = self
            .run("renew a device lease", move |client| {
                client.execute(
                    "UPDATE cpe_device_leases SET expires_at = now() + $4::text::interval
                     WHERE equipment_id = $1 AND fence = $2 AND holder = $3",
                    &[&lease.equipment_id.as_str(), &lease.fence, &holder, &interval(ttl)],
                )
            })
            .await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(LeaseError::Lost)
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        let (lease, holder) = (lease.clone(), self.holder.clone());
        self.run("release a device lease", move |client| {
            client.execute(
                "UPDATE cpe_device_leases SET expires_at = '-infinity'
                 WHERE equipment_id = $1 AND fence = $2 AND holder = $3",
                &[&lease.equipment_id.as_str(), &lease.fence, &holder],
            )
        })
        .await?;
        Ok(())
    }
}

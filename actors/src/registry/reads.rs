//! Reads that go around the registry's mailbox: straight to the store, many at once, so a status
//! read never queues behind a change. A completed or cancelled task never changes again, so its
//! record is kept in memory for a while and answered from there.

use crate::ports::{StoreError, TaskReader};
use crate::{AuditPage, AuditQuery, TaskId, TaskPage, TaskQuery, TaskRecord, TaskStatus};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Most records kept; past it the memory starts again empty (a cheap bound, no eviction order).
const CAPACITY: usize = 65_536;
/// How long a record is answered from memory: the retention sweep may remove the task meanwhile,
/// and every instance must stop answering for it soon after.
const KEPT_FOR: Duration = Duration::from_secs(60);

/// Completed and cancelled records, each with when it was read.
type Finals = HashMap<TaskId, (Arc<TaskRecord>, Instant)>;

#[derive(Clone)]
pub struct Reads {
    store: Arc<dyn TaskReader>,
    finals: Arc<RwLock<Finals>>,
}

impl Reads {
    pub fn new(store: Arc<dyn TaskReader>) -> Self {
        Self {
            store,
            finals: Arc::default(),
        }
    }

    pub async fn get(&self, id: TaskId) -> Result<Option<Arc<TaskRecord>>, StoreError> {
        if let Some(record) = self.remembered(id) {
            return Ok(Some(record));
        }
        let store = self.store.clone();
        let found = blocking(move || store.get(id)).await?.map(Arc::new);
        if let Some(record) = &found {
            self.remember(record);
        }
        Ok(found)
    }

    pub async fn list(&self, query: TaskQuery) -> Result<TaskPage, StoreError> {
        let store = self.store.clone();
        blocking(move || store.list(&query)).await
    }

    pub async fn audit(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        let store = self.store.clone();
        blocking(move || store.audit(&query)).await
    }

    fn remembered(&self, id: TaskId) -> Option<Arc<TaskRecord>> {
        let finals = self.finals.read().expect("final records lock");
        let (record, at) = finals.get(&id)?;
        (at.elapsed() < KEPT_FOR).then(|| record.clone())
    }

    /// Only what can never change: a failed task still takes `retried_as`.
    fn remember(&self, record: &Arc<TaskRecord>) {
        if !matches!(record.status, TaskStatus::Completed | TaskStatus::Cancelled) {
            return;
        }
        let mut finals = self.finals.write().expect("final records lock");
        if finals.len() >= CAPACITY {
            finals.clear();
        }
        finals.insert(record.id, (record.clone(), Instant::now()));
    }
}

/// The store port is synchronous and may wait on the network: off the async threads.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("a read of the store panicked".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::ports::TaskStore;
    use crate::{ConfigRequest, EquipmentId, Outcome};

    fn stored(store: &MemoryStore, outcome: Option<Outcome>) -> TaskId {
        let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {}}"#).unwrap();
        let mut record = TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request);
        if let Some(outcome) = outcome {
            assert!(record.finish(&outcome));
        }
        store.put(&record).unwrap();
        record.id
    }

    #[tokio::test]
    async fn a_completed_task_is_answered_from_memory_and_an_unfinished_or_failed_one_from_the_store() {
        let store = Arc::new(MemoryStore::default());
        let reads = Reads::new(store.clone());
        let completed = stored(&store, Some(Outcome::Completed { attempts: 1 }));
        let failed = stored(
            &store,
            Some(Outcome::Failed {
                attempts: 1,
                reason: "no".into(),
            }),
        );
        let queued = stored(&store, None);
        for id in [completed, failed, queued] {
            assert!(reads.get(id).await.unwrap().is_some());
            store.remove(id).unwrap();
        }
        assert_eq!(
            reads.get(completed).await.unwrap().map(|r| r.status),
            Some(TaskStatus::Completed),
            "a completed task never changes: its record is kept"
        );
        assert!(
            reads.get(failed).await.unwrap().is_none(),
            "a failed task may still be retried"
        );
        assert!(reads.get(queued).await.unwrap().is_none());
    }
}

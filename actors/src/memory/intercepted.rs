//! For tests: a memory store whose writes pass through a hook first (to count, slow down or race
//! them); every other call is the memory store's own.

use super::MemoryStore;
use crate::ports::{IdempotencyEntry, StoreCounts, StoreError, TaskReader, TaskStore, WriteOp};
use crate::{AuditPage, AuditQuery, TaskId, TaskPage, TaskQuery, TaskRecord};

/// The hook sees the store and the batch; Some(answer) answers instead of writing.
pub struct Intercepted<H> {
    pub inner: MemoryStore,
    hook: H,
}

impl<H> Intercepted<H>
where
    H: Fn(&MemoryStore, &[WriteOp]) -> Option<Result<(), StoreError>> + Send + Sync + 'static,
{
    pub fn new(hook: H) -> Self {
        Self {
            inner: MemoryStore::default(),
            hook,
        }
    }
}

impl<H: Send + Sync + 'static> TaskReader for Intercepted<H> {
    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id)
    }
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        self.inner.list(query)
    }
    fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.audit(query)
    }
}

impl<H> TaskStore for Intercepted<H>
where
    H: Fn(&MemoryStore, &[WriteOp]) -> Option<Result<(), StoreError>> + Send + Sync + 'static,
{
    fn write_batch(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        (self.hook)(&self.inner, ops).unwrap_or_else(|| self.inner.write_batch(ops))
    }
    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.unfinished()
    }
    fn remove_final_before(&self, cutoff: u64) -> Result<usize, StoreError> {
        self.inner.remove_final_before(cutoff)
    }
    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyEntry>, StoreError> {
        self.inner.idempotency(key)
    }
    fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.inner.counts()
    }
}

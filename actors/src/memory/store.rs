//! A task store in a map: fast, and gone with the process (like the original system).

use crate::ports::{IdempotencyEntry, StoreError, TaskStore};
use crate::{TaskId, TaskRecord};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<TaskId, TaskRecord>>,
    keys: Mutex<HashMap<String, IdempotencyEntry>>,
}

impl MemoryStore {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, TaskRecord>> {
        // A panic elsewhere cannot leave a record half-written: every change is a single insert or remove.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, IdempotencyEntry>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TaskStore for MemoryStore {
    fn put(&self, record: &TaskRecord) -> Result<(), StoreError> {
        self.records().insert(record.id, record.clone());
        Ok(())
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.records().get(&id).cloned())
    }

    fn remove(&self, id: TaskId) -> Result<(), StoreError> {
        self.records().remove(&id);
        Ok(())
    }

    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let mut open: Vec<_> = self
            .records()
            .values()
            .filter(|r| !r.status.is_final())
            .cloned()
            .collect();
        open.sort_by_key(|r| r.created_at);
        Ok(open)
    }

    fn remove_final_before(&self, cutoff_millis: u64) -> Result<usize, StoreError> {
        let mut records = self.records();
        let before = records.len();
        records.retain(|_, r| !(r.status.is_final() && r.updated_at < cutoff_millis));
        self.keys().retain(|_, entry| entry.created_at >= cutoff_millis);
        Ok(before - records.len())
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyEntry>, StoreError> {
        Ok(self.keys().get(key).copied())
    }

    fn put_with_key(&self, record: &TaskRecord, key: &str, entry: &IdempotencyEntry) -> Result<(), StoreError> {
        self.records().insert(record.id, record.clone());
        self.keys().insert(key.to_owned(), *entry);
        Ok(())
    }
}

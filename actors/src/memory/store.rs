//! A task store in a map: fast, and gone with the process (like the original system).

use crate::ports::{IdempotencyEntry, StoreError, TaskStore, WriteOp};
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
    fn write_batch(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let (mut records, mut keys) = (self.records(), self.keys());
        for op in ops {
            match op {
                WriteOp::Put(record) => drop(records.insert(record.id, record.clone())),
                WriteOp::PutWithKey(record, key, entry) => {
                    records.insert(record.id, record.clone());
                    keys.insert(key.clone(), *entry);
                }
                WriteOp::Remove(id) => drop(records.remove(id)),
                WriteOp::RemoveWithKey(id, key) => {
                    records.remove(id);
                    keys.remove(key);
                }
            }
        }
        Ok(())
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.records().get(&id).cloned())
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
}

//! A task store in a map: fast, and gone with the process (like the original system).

use crate::ports::{IdempotencyEntry, StoreError, TaskStore, WriteOp};
use crate::{Cursor, TaskId, TaskPage, TaskQuery, TaskRecord};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
    keys: Mutex<HashMap<String, IdempotencyEntry>>,
}

/// The records and their creation-order index, changed together under one lock.
#[derive(Default)]
struct Records {
    by_id: HashMap<TaskId, TaskRecord>,
    by_created: BTreeSet<Cursor>,
}

impl Records {
    fn insert(&mut self, record: &TaskRecord) {
        if let Some(old) = self.by_id.insert(record.id, record.clone()) {
            self.by_created.remove(&Cursor::of(&old));
        }
        self.by_created.insert(Cursor::of(record));
    }

    fn remove(&mut self, id: &TaskId) {
        if let Some(old) = self.by_id.remove(id) {
            self.by_created.remove(&Cursor::of(&old));
        }
    }
}

impl MemoryStore {
    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
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
        apply(&mut records, &mut keys, ops);
        Ok(())
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.records().by_id.get(&id).cloned())
    }

    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let records = self.records();
        Ok(records
            .by_created
            .iter()
            .filter_map(|at| records.by_id.get(&at.id))
            .filter(|r| !r.status.is_final())
            .cloned()
            .collect())
    }

    fn remove_final_before(&self, cutoff_millis: u64) -> Result<usize, StoreError> {
        let mut records = self.records();
        let due: Vec<TaskId> = records
            .by_id
            .values()
            .filter(|r| r.status.is_final() && r.updated_at < cutoff_millis)
            .map(|r| r.id)
            .collect();
        due.iter().for_each(|id| records.remove(id));
        self.keys().retain(|_, entry| entry.created_at >= cutoff_millis);
        Ok(due.len())
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyEntry>, StoreError> {
        Ok(self.keys().get(key).copied())
    }

    /// Walks the creation index from the cursor: cheap for recent pages and common filters; a rare
    /// status deep in a large history costs a longer walk (the file store has an index per status).
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let records = self.records();
        let older = match query.before {
            Some(before) => records.by_created.range(..before),
            None => records.by_created.range(..),
        };
        let candidates = older
            .rev()
            .filter_map(|at| records.by_id.get(&at.id))
            .filter(|record| query.matches(record))
            .take(query.limit + 1)
            .cloned()
            .collect();
        Ok(TaskPage::from_candidates(candidates, query.limit))
    }
}

fn apply(records: &mut Records, keys: &mut HashMap<String, IdempotencyEntry>, ops: &[WriteOp]) {
    for op in ops {
        match op {
            WriteOp::Put(record) => records.insert(record),
            WriteOp::PutWithKey(record, key, entry) => {
                records.insert(record);
                keys.insert(key.clone(), *entry);
            }
            WriteOp::Remove(id) => records.remove(id),
            WriteOp::RemoveWithKey(id, key) => {
                records.remove(id);
                keys.remove(key);
            }
            WriteOp::All(ops) => apply(records, keys, ops),
        }
    }
}

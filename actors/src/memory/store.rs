//! A task store in a map: fast, and gone with the process (like the original system).

use crate::ports::{IdempotencyEntry, StoreCounts, StoreError, TaskStore, WriteOp};
use crate::{Cursor, TaskId, TaskPage, TaskQuery, TaskRecord, TaskStatus};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
    keys: Mutex<HashMap<String, IdempotencyEntry>>,
}

/// The records, their creation-order index and the tallies of [`StoreCounts`], changed together
/// under one lock.
#[derive(Default)]
struct Records {
    by_id: HashMap<TaskId, TaskRecord>,
    by_created: BTreeSet<Cursor>,
    /// Queued tasks in creation order: the first is the oldest, without a walk past older final ones.
    queued: BTreeSet<Cursor>,
    counts: [u64; 5],
}

impl Records {
    fn insert(&mut self, record: &TaskRecord) {
        if let Some(old) = self.by_id.insert(record.id, record.clone()) {
            self.by_created.remove(&Cursor::of(&old));
            self.untally(&old);
        }
        self.by_created.insert(Cursor::of(record));
        self.counts[record.status as usize] += 1;
        if record.status == TaskStatus::Queued {
            self.queued.insert(Cursor::of(record));
        }
    }

    fn remove(&mut self, id: &TaskId) {
        if let Some(old) = self.by_id.remove(id) {
            self.by_created.remove(&Cursor::of(&old));
            self.untally(&old);
        }
    }

    fn untally(&mut self, old: &TaskRecord) {
        self.counts[old.status as usize] -= 1;
        if old.status == TaskStatus::Queued {
            self.queued.remove(&Cursor::of(old));
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

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let records = self.records();
        Ok(StoreCounts {
            by_status: records.counts,
            oldest_queued: records.queued.first().map(|at| at.created_at),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigRequest, EquipmentId, Outcome};

    fn record(created_at: u64) -> TaskRecord {
        let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {}}"#).unwrap();
        let mut record = TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request);
        record.created_at = created_at;
        record
    }

    #[test]
    fn counts_follow_every_change() {
        let store = MemoryStore::default();
        let (mut a, b, c) = (record(10), record(20), record(30));
        for r in [&a, &b, &c] {
            store.put(r).unwrap();
        }
        let counts = store.counts().unwrap();
        assert_eq!((counts.of(TaskStatus::Queued), counts.oldest_queued), (3, Some(10)));

        assert!(a.move_to(TaskStatus::Running));
        store.put(&a).unwrap();
        assert!(a.finish(&Outcome::Completed { attempts: 1 }));
        store.put(&a).unwrap();
        store.remove(c.id).unwrap();
        let counts = store.counts().unwrap();
        assert_eq!(counts.by_status, [1, 0, 1, 0, 0]);
        assert_eq!(counts.oldest_queued, Some(20));

        store.remove_final_before(u64::MAX).unwrap();
        store.remove(b.id).unwrap();
        assert_eq!(store.counts().unwrap(), StoreCounts::default());
    }
}

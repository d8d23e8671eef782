//! A task store in a map: fast, and gone with the process (like the original system).

use crate::ports::{IdempotencyEntry, StoreCounts, StoreError, TaskReader, TaskStore, WriteOp};
use crate::{
    AuditPage, AuditQuery, AuditRecord, Cursor, EquipmentId, TaskId, TaskPage, TaskQuery, TaskRecord, TaskStatus,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
    keys: Mutex<HashMap<String, IdempotencyEntry>>,
    audit: Mutex<Trail>,
}

/// The audit trail, oldest first, and the id the next record gets (ids count up from 1 and are
/// never reused, so a cursor stays valid after a sweep).
#[derive(Default)]
struct Trail {
    records: VecDeque<AuditRecord>,
    last_id: u64,
}

/// The records, their indexes (creation order overall, per status and per device) and the tallies
/// of [`StoreCounts`], changed together under one lock.
#[derive(Default)]
struct Records {
    by_id: HashMap<TaskId, TaskRecord>,
    by_created: BTreeSet<Cursor>,
    /// One set per status, in creation order: a filtered page walks only its own tasks, and the
    /// first queued one is the oldest.
    by_status: [BTreeSet<Cursor>; 5],
    /// Per device, one set per status: a device's listing with `?status=` walks only those.
    by_device: HashMap<EquipmentId, [BTreeSet<Cursor>; 5]>,
    counts: [u64; 5],
}

impl Records {
    fn insert(&mut self, record: &TaskRecord) {
        if let Some(old) = self.by_id.insert(record.id, record.clone()) {
            self.unindex(&old);
        }
        let at = Cursor::of(record);
        self.by_created.insert(at);
        self.by_status[record.status as usize].insert(at);
        self.by_device.entry(record.equipment_id.clone()).or_default()[record.status as usize].insert(at);
        self.counts[record.status as usize] += 1;
    }

    fn remove(&mut self, id: &TaskId) {
        if let Some(old) = self.by_id.remove(id) {
            self.unindex(&old);
        }
    }

    fn unindex(&mut self, old: &TaskRecord) {
        let at = Cursor::of(old);
        self.by_created.remove(&at);
        self.by_status[old.status as usize].remove(&at);
        if let Some(tasks) = self.by_device.get_mut(&old.equipment_id) {
            tasks[old.status as usize].remove(&at);
            if tasks.iter().all(BTreeSet::is_empty) {
                self.by_device.remove(&old.equipment_id);
            }
        }
        self.counts[old.status as usize] -= 1;
    }

    /// Up to `wanted` entries of `index` older than `before`, newest first.
    fn newest(index: &BTreeSet<Cursor>, before: Option<Cursor>, wanted: usize) -> impl Iterator<Item = Cursor> + '_ {
        let range = match before {
            Some(before) => index.range(..before),
            None => index.range(..),
        };
        range.rev().take(wanted).copied()
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

    fn trail(&self) -> std::sync::MutexGuard<'_, Trail> {
        self.audit.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TaskReader for MemoryStore {
    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.records().by_id.get(&id).cloned())
    }
    /// Walks the narrowest index for the query (the device's, or each wanted status's), like the
    /// file store, so a page costs about the same however many tasks are kept.
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let records = self.records();
        let wanted = query.limit + 1;
        let mut ids: Vec<Cursor> = match (&query.equipment, query.statuses.as_slice()) {
            (Some(device), statuses) => match records.by_device.get(device) {
                Some(by_status) => TaskStatus::ALL
                    .iter()
                    .filter(|status| statuses.is_empty() || statuses.contains(status))
                    .flat_map(|status| Records::newest(&by_status[*status as usize], query.before, wanted))
                    .collect(),
                None => Vec::new(),
            },
            (None, []) => Records::newest(&records.by_created, query.before, wanted).collect(),
            (None, statuses) => statuses
                .iter()
                .flat_map(|status| Records::newest(&records.by_status[*status as usize], query.before, wanted))
                .collect(),
        };
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        let candidates = ids
            .iter()
            .filter_map(|at| records.by_id.get(&at.id))
            .filter(|record| query.matches(record))
            .take(wanted)
            .cloned()
            .collect();
        Ok(TaskPage::from_candidates(candidates, query.limit))
    }

    fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let trail = &self.trail().records;
        // Ids count up by one from the first record kept: the page's start is found by position.
        let end = match (query.before, trail.front()) {
            (Some(before), Some(first)) => (before.saturating_sub(first.id) as usize).min(trail.len()),
            _ => trail.len(),
        };
        Ok(AuditPage::walk(trail.range(..end).rev().cloned(), query))
    }
}

impl TaskStore for MemoryStore {
    fn write_batch(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let (mut records, mut keys, mut trail) = (self.records(), self.keys(), self.trail());
        apply(&mut records, &mut keys, &mut trail, ops);
        Ok(())
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
        let trail = &mut self.trail().records;
        // The trail is in write order; a record stamped late may sit behind a newer one: kept a
        // sweep longer.
        while trail.front().is_some_and(|r| r.at < cutoff_millis) {
            trail.pop_front();
        }
        Ok(due.len())
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyEntry>, StoreError> {
        Ok(self.keys().get(key).copied())
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let records = self.records();
        Ok(StoreCounts {
            by_status: records.counts,
            oldest_queued: records.by_status[TaskStatus::Queued as usize]
                .first()
                .map(|at| at.created_at),
        })
    }
}

fn apply(records: &mut Records, keys: &mut HashMap<String, IdempotencyEntry>, trail: &mut Trail, ops: &[WriteOp]) {
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
            WriteOp::All(ops) => apply(records, keys, trail, ops),
            WriteOp::Audit(record) => {
                trail.last_id += 1;
                let id = trail.last_id;
                trail.records.push_back(AuditRecord {
                    id,
                    ..(**record).clone()
                });
            }
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

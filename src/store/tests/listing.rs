//! The listing contract, run against every store: newest first, keyset pages that stay stable while
//! tasks are added, filters by device and status, and changes seen at once.

use crate::store::file::FileStore;
use cpe_actors::memory::MemoryStore;
use cpe_actors::ports::{TaskReader, TaskStore};
use cpe_actors::{ConfigRequest, Cursor, EquipmentId, TaskId, TaskQuery, TaskRecord, TaskStatus};

const DEVICES: [&str; 3] = ["abc123", "def456", "ghi789"];
const STATUSES: [TaskStatus; 4] = [
    TaskStatus::Queued,
    TaskStatus::Running,
    TaskStatus::Completed,
    TaskStatus::Failed,
];

fn record(n: u64, created_at: u64) -> TaskRecord {
    let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 5, "parameters": {"vlan": 10}}"#).unwrap();
    let mut record = TaskRecord::queued(
        TaskId::new(),
        EquipmentId::parse(DEVICES[n as usize % 3]).unwrap(),
        request,
    );
    record.status = STATUSES[n as usize % 4];
    (record.created_at, record.updated_at) = (created_at, created_at);
    record
}

/// Every page of `query`, followed by its cursors.
fn all_pages(store: &dyn TaskStore, mut query: TaskQuery) -> Vec<TaskRecord> {
    let mut seen = Vec::new();
    loop {
        let page = store.list(&query).unwrap();
        assert!(page.tasks.len() <= query.limit);
        seen.extend(page.tasks);
        match page.next {
            Some(next) => query.before = Some(next),
            None => return seen,
        }
    }
}

fn query(limit: usize) -> TaskQuery {
    TaskQuery {
        equipment: None,
        statuses: vec![],
        limit,
        before: None,
    }
}

/// Newest first by (created_at, id); two tasks share each timestamp, so ties are covered.
fn expected(records: &[TaskRecord], keep: impl Fn(&TaskRecord) -> bool) -> Vec<TaskId> {
    let mut kept: Vec<&TaskRecord> = records.iter().filter(|r| keep(r)).collect();
    kept.sort_by_key(|r| std::cmp::Reverse(Cursor::of(r)));
    kept.iter().map(|r| r.id).collect()
}

fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

fn listing_contract(store: &dyn TaskStore) {
    let records: Vec<TaskRecord> = (0..40).map(|n| record(n, 1_000 + n / 2)).collect();
    for record in &records {
        store.put(record).unwrap();
    }
    assert_eq!(ids(&all_pages(store, query(7))), expected(&records, |_| true));
    assert_eq!(
        store.list(&query(500)).unwrap().next,
        None,
        "one page holds all: no next cursor"
    );

    let device = EquipmentId::parse("def456").unwrap();
    let by_device = TaskQuery {
        equipment: Some(device.clone()),
        ..query(4)
    };
    assert_eq!(
        ids(&all_pages(store, by_device.clone())),
        expected(&records, |r| r.equipment_id == device)
    );
    let failed_or_queued = TaskQuery {
        statuses: vec![TaskStatus::Failed, TaskStatus::Queued],
        ..query(3)
    };
    assert_eq!(
        ids(&all_pages(store, failed_or_queued)),
        expected(&records, |r| matches!(
            r.status,
            TaskStatus::Failed | TaskStatus::Queued
        ))
    );
    let device_completed = TaskQuery {
        statuses: vec![TaskStatus::Completed],
        ..by_device.clone()
    };
    assert_eq!(
        ids(&all_pages(store, device_completed)),
        expected(&records, |r| r.equipment_id == device
            && r.status == TaskStatus::Completed)
    );

    // A page, then newer tasks, then the next page: the cursor goes on where it stopped.
    let first = store.list(&query(10)).unwrap();
    let newer: Vec<TaskRecord> = (0..5).map(|n| record(n, 5_000 + n)).collect();
    newer.iter().for_each(|r| store.put(r).unwrap());
    let rest = all_pages(
        store,
        TaskQuery {
            before: first.next,
            ..query(10)
        },
    );
    let mut resumed = ids(&first.tasks);
    resumed.extend(ids(&rest));
    assert_eq!(
        resumed,
        expected(&records, |_| true),
        "new tasks do not shift older pages"
    );

    // A status change moves the task between status filters; a removal takes it out.
    let mut moved = records[0].clone();
    assert_eq!(moved.status, TaskStatus::Queued);
    moved.status = TaskStatus::Completed;
    store.put(&moved).unwrap();
    let only_queued = TaskQuery {
        statuses: vec![TaskStatus::Queued],
        ..query(500)
    };
    assert!(!ids(&store.list(&only_queued).unwrap().tasks).contains(&moved.id));
    let only_completed = TaskQuery {
        statuses: vec![TaskStatus::Completed],
        ..query(500)
    };
    assert!(ids(&store.list(&only_completed).unwrap().tasks).contains(&moved.id));
    let of_its_device = |status| TaskQuery {
        equipment: Some(moved.equipment_id.clone()),
        statuses: vec![status],
        ..query(500)
    };
    assert!(ids(&store.list(&of_its_device(TaskStatus::Completed)).unwrap().tasks).contains(&moved.id));
    assert!(!ids(&store.list(&of_its_device(TaskStatus::Queued)).unwrap().tasks).contains(&moved.id));
    store.remove(moved.id).unwrap();
    for q in [
        query(500),
        only_completed,
        by_device,
        of_its_device(TaskStatus::Completed),
    ] {
        assert!(!ids(&store.list(&q).unwrap().tasks).contains(&moved.id));
    }
}

#[test]
fn the_memory_store_lists_by_the_contract() {
    listing_contract(&MemoryStore::default());
}

#[test]
fn the_file_store_lists_by_the_contract_and_after_reopening() {
    let dir = std::env::temp_dir().join(format!("cpe-listing-{}", uuid::Uuid::new_v4()));
    {
        let store = FileStore::open(&dir).unwrap();
        listing_contract(&store);
    }
    let reopened = FileStore::open(&dir).unwrap();
    assert_eq!(reopened.list(&query(500)).unwrap().tasks.len(), 44);
    drop(reopened);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_postgres_store_lists_by_the_contract() {
    let Some(schema) = crate::store::postgres::scratch::ScratchSchema::create() else {
        return;
    };
    listing_contract(&crate::store::postgres::PgStore::open(&schema.url).unwrap());
}

//! The tallies behind the task gauges, run against every store: each write moves them, a sweep
//! takes final tasks out of them, and the file store keeps them across a reopen.

use crate::store::file::FileStore;
use cpe_actors::memory::MemoryStore;
use cpe_actors::ports::{StoreCounts, TaskStore};
use cpe_actors::{ConfigRequest, EquipmentId, Outcome, TaskId, TaskQuery, TaskRecord, TaskStatus};

fn queued(created_at: u64) -> TaskRecord {
    let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 5, "parameters": {"vlan": 10}}"#).unwrap();
    let mut record = TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request);
    (record.created_at, record.updated_at) = (created_at, created_at);
    record
}

fn counts_contract(store: &dyn TaskStore) {
    assert_eq!(store.counts().unwrap(), StoreCounts::default());
    let mut tasks: Vec<TaskRecord> = (1..=5).map(|n| queued(1_000 * n)).collect();
    tasks.iter().for_each(|t| store.put(t).unwrap());
    assert_eq!(store.counts().unwrap().oldest_queued, Some(1_000));

    // 1: running; 2: completed; 3: failed; 4: cancelled; 5 stays queued.
    assert!(tasks[0].move_to(TaskStatus::Running));
    assert!(tasks[1].move_to(TaskStatus::Running) && tasks[1].finish(&Outcome::Completed { attempts: 1 }));
    let failed = Outcome::Failed {
        attempts: 1,
        reason: "no".into(),
    };
    assert!(tasks[2].move_to(TaskStatus::Running) && tasks[2].finish(&failed));
    assert!(tasks[3].cancel());
    tasks[..4].iter().for_each(|t| store.put(t).unwrap());
    let counts = store.counts().unwrap();
    assert_eq!(counts.by_status, [1, 1, 1, 1, 1]);
    assert_eq!(counts.oldest_queued, Some(5_000), "the oldest still queued");

    // Writing a record again without a change of status changes no tally.
    store.put(&tasks[4]).unwrap();
    assert_eq!(store.counts().unwrap().of(TaskStatus::Queued), 1);

    // The sweep removes the three final tasks (they were updated long before now).
    assert_eq!(store.remove_final_before(u64::MAX).unwrap(), 3);
    store.remove(tasks[4].id).unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.by_status, [0, 1, 0, 0, 0]);
    assert_eq!(counts.oldest_queued, None);
    // The sweep also emptied the browsing indexes: only the running task is listed.
    let all = TaskQuery {
        equipment: None,
        statuses: vec![],
        limit: 100,
        before: None,
    };
    assert_eq!(store.list(&all).unwrap().tasks.len(), 1);
}

#[test]
fn the_memory_store_keeps_its_tallies() {
    counts_contract(&MemoryStore::default());
}

#[test]
fn the_file_store_keeps_its_tallies_across_a_reopen() {
    let dir = std::env::temp_dir().join(format!("cpe-counts-{}", uuid::Uuid::new_v4()));
    {
        let store = FileStore::open(&dir).unwrap();
        counts_contract(&store);
        store.put(&queued(7_000)).unwrap();
    }
    let reopened = FileStore::open(&dir).unwrap();
    let counts = reopened.counts().unwrap();
    assert_eq!((counts.by_status, counts.oldest_queued), ([1, 1, 0, 0, 0], Some(7_000)));
    drop(reopened);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_postgres_store_counts_by_the_contract() {
    let Some(schema) = crate::store::postgres::scratch::ScratchSchema::create() else {
        return;
    };
    counts_contract(&crate::store::postgres::PgStore::open(&schema.url).unwrap());
}

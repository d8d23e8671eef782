//! Tests of the file store: encoding, durability across reopen, index upkeep, sweeps, locking, damage.

use super::*;
use cpe_actors::{AuditAction, AuditRecord, ConfigRequest, EquipmentId, TaskStatus};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory of its own under the system temp dir, removed when the test ends (even by a panic).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "cpe-file-store-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(json: &str) -> ConfigRequest {
    ConfigRequest::from_json(json.as_bytes()).unwrap()
}

fn record(status: TaskStatus, created_at: u64, updated_at: u64) -> TaskRecord {
    TaskRecord {
        id: TaskId::new(),
        equipment_id: EquipmentId::parse("abc123").unwrap(),
        request: request(r#"{"timeoutInSeconds": 5, "parameters": {"vlan": 10}}"#),
        status,
        attempts: 0,
        last_error: None,
        created_at,
        updated_at,
        retried_as: None,
        requested_by: None,
    }
}

fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

#[test]
fn a_record_round_trips_with_every_field() {
    let dir = TempDir::new("round-trip");
    let store = FileStore::open(&dir.0).unwrap();
    let full = TaskRecord {
        id: TaskId::new(),
        equipment_id: EquipmentId::parse("CPE0042serialXYZ").unwrap(),
        request: request(
            r#"{"timeoutInSeconds": 3600, "parameters": {"username": "admin", "password": "s3cr3t \"quoted\" ü",
                "apiToken": "t0k", "vlan": 4094, "interfaces": [1, 2, 1024], "mtu": -1, "empty": [], "note": ""}}"#,
        ),
        status: TaskStatus::Failed,
        attempts: 7,
        last_error: Some("Service A answered HTTP 503: busy ☹".into()),
        created_at: 1_700_000_000_123,
        updated_at: u64::MAX,
        retried_as: Some(TaskId::new()),
        requested_by: Some("ops-laptop".into()),
    };
    let listed = TaskRecord {
        request: request(r#"{"timeoutInSeconds": 0, "parameters": [{"password": "x"}, {"interfaces": [7]}]}"#),
        last_error: Some(String::new()),
        ..record(TaskStatus::Running, 0, 1)
    };
    for r in [&full, &listed] {
        store.put(r).unwrap();
        assert_eq!(store.get(r.id).unwrap().as_ref(), Some(r));
    }
    assert_eq!(store.get(TaskId::new()).unwrap(), None);
    assert_eq!(store.len().unwrap(), 2);
}

#[test]
fn records_survive_close_and_reopen() {
    let dir = TempDir::new("reopen");
    let open = record(TaskStatus::Queued, 10, 10);
    let done = TaskRecord {
        attempts: 2,
        ..record(TaskStatus::Completed, 5, 20)
    };
    {
        let store = FileStore::open(&dir.0).unwrap();
        store.put(&open).unwrap();
        store.put(&done).unwrap();
    }
    let store = FileStore::open(&dir.0).unwrap();
    assert_eq!(store.get(open.id).unwrap(), Some(open.clone()));
    assert_eq!(store.get(done.id).unwrap(), Some(done));
    assert_eq!(store.unfinished().unwrap(), vec![open]);
    assert_eq!(store.path(), dir.0.join(FILE_NAME));
}

#[test]
fn the_unfinished_index_follows_transitions_in_creation_order() {
    let dir = TempDir::new("unfinished");
    let store = FileStore::open(&dir.0).unwrap();
    let late = record(TaskStatus::Queued, 300, 300);
    let early = record(TaskStatus::Running, 100, 150);
    let mut task = record(TaskStatus::Queued, 200, 200);
    for r in [&late, &early, &task] {
        store.put(r).unwrap();
    }
    assert_eq!(ids(&store.unfinished().unwrap()), vec![early.id, task.id, late.id]);

    task.status = TaskStatus::Running;
    task.updated_at = 210;
    store.put(&task).unwrap();
    assert_eq!(ids(&store.unfinished().unwrap()), vec![early.id, task.id, late.id]);
    assert_eq!(store.unfinished().unwrap()[1].status, TaskStatus::Running);

    task.status = TaskStatus::Completed;
    task.updated_at = 220;
    store.put(&task).unwrap();
    assert_eq!(ids(&store.unfinished().unwrap()), vec![early.id, late.id]);
    assert_eq!(store.get(task.id).unwrap().unwrap().status, TaskStatus::Completed);

    store.remove(late.id).unwrap();
    store.remove(late.id).unwrap();
    assert_eq!(ids(&store.unfinished().unwrap()), vec![early.id]);
    assert_eq!(store.len().unwrap(), 2);
}

#[test]
fn a_sweep_removes_only_final_tasks_older_than_the_cutoff() {
    let dir = TempDir::new("sweep");
    let store = FileStore::open(&dir.0).unwrap();
    let old_done = record(TaskStatus::Completed, 1, 999);
    let old_failed = record(TaskStatus::Failed, 1, 500);
    let at_cutoff = record(TaskStatus::Completed, 1, 1000);
    let old_open = record(TaskStatus::Queued, 1, 1);
    let old_running = record(TaskStatus::Running, 2, 2);
    for r in [&old_done, &old_failed, &at_cutoff, &old_open, &old_running] {
        store.put(r).unwrap();
    }
    // Refreshing a final record moves its sweep entry: only its latest update time counts.
    let refreshed = TaskRecord {
        updated_at: 5000,
        ..old_failed.clone()
    };
    store.put(&refreshed).unwrap();

    assert_eq!(store.remove_final_before(1000).unwrap(), 1);
    assert_eq!(store.get(old_done.id).unwrap(), None);
    for kept in [&refreshed, &at_cutoff, &old_open, &old_running] {
        assert_eq!(store.get(kept.id).unwrap().as_ref(), Some(kept));
    }
    assert_eq!(store.remove_final_before(1000).unwrap(), 0);
    assert_eq!(store.remove_final_before(u64::MAX).unwrap(), 2);
    assert_eq!(ids(&store.unfinished().unwrap()), vec![old_open.id, old_running.id]);
    assert_eq!(store.len().unwrap(), 2);
}

#[test]
fn a_sweep_larger_than_one_batch_removes_everything_due() {
    let dir = TempDir::new("sweep-batches");
    let store = FileStore::open(&dir.0).unwrap();
    let due = SWEEP_BATCH * 2 + 17;
    // One transaction for the setup: a commit per record would spend the test's time in fsync.
    let txn = store.db.begin_write().unwrap();
    for n in 0..due as u64 {
        write_record(&txn, &record(TaskStatus::Completed, n, n)).unwrap();
    }
    write_record(&txn, &record(TaskStatus::Failed, 0, 1_000_000)).unwrap();
    txn.commit().unwrap();

    assert_eq!(store.remove_final_before(1_000_000).unwrap(), due);
    assert_eq!(store.len().unwrap(), 1);
}

#[test]
fn a_second_open_of_the_same_dir_is_a_clear_error() {
    let dir = TempDir::new("locked");
    let _first = FileStore::open(&dir.0).unwrap();
    let Err(StoreError::Unavailable(message)) = FileStore::open(&dir.0) else {
        panic!("a second open of a locked store succeeded");
    };
    assert!(message.contains("another cpe-config"), "{message}");
    assert!(
        message.contains(&dir.0.join(FILE_NAME).display().to_string()),
        "{message}"
    );
}

#[test]
fn an_unusable_directory_is_named_in_the_error() {
    let dir = TempDir::new("not-a-dir");
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let Err(StoreError::Unavailable(message)) = FileStore::open(&file.join("data")) else {
        panic!("opened a store below a plain file");
    };
    assert!(message.contains("plain-file"), "{message}");
}

#[test]
fn a_damaged_value_is_an_error_naming_the_task() {
    let dir = TempDir::new("damaged");
    let store = FileStore::open(&dir.0).unwrap();
    let good = record(TaskStatus::Queued, 1, 1);
    let queued = record(TaskStatus::Queued, 2, 2);
    store.put(&good).unwrap();
    store.put(&queued).unwrap();
    let valid = encode(&queued).unwrap();
    let bad_json = [&valid[..valid.len() - 1], b"!"].concat();

    let garbage = TaskId::new();
    for (id, value) in [
        (garbage, &b"\x09junk"[..]),
        (garbage, &valid[..30]),
        (queued.id, &bad_json[..]),
    ] {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(RECORDS).unwrap().insert(id.as_bytes(), value).unwrap();
        txn.commit().unwrap();
        let message = store.get(id).unwrap_err().to_string();
        assert!(message.contains(&id.to_string()), "{message}");
    }
    // The damaged record still holds its place in the index, so a restart must hear about it.
    let message = store.unfinished().unwrap_err().to_string();
    assert!(message.contains(&queued.id.to_string()), "{message}");

    // Writing a good record over a damaged one repairs it.
    store.put(&queued).unwrap();
    assert_eq!(ids(&store.unfinished().unwrap()), vec![good.id, queued.id]);
    store.remove(garbage).unwrap();
    assert_eq!(store.get(garbage).unwrap(), None);
}

#[test]
fn stale_index_entries_are_skipped() {
    let dir = TempDir::new("stale");
    let store = FileStore::open(&dir.0).unwrap();
    let open = record(TaskStatus::Queued, 1, 1);
    let done = record(TaskStatus::Completed, 1, 1);
    store.put(&open).unwrap();
    store.put(&done).unwrap();
    // Index entries whose record has gone, as an undecodable record's removal leaves behind.
    let txn = store.db.begin_write().unwrap();
    {
        let mut records = txn.open_table(RECORDS).unwrap();
        records.remove(open.id.as_bytes()).unwrap();
        records.remove(done.id.as_bytes()).unwrap();
    }
    txn.commit().unwrap();
    assert_eq!(store.unfinished().unwrap(), vec![]);
    assert_eq!(store.remove_final_before(u64::MAX).unwrap(), 0);
}

#[test]
fn the_audit_trail_survives_reopen_and_expires_with_the_retention() {
    let dir = TempDir::new("audit");
    let trail = |store: &FileStore| {
        let query = AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        };
        let page = store.audit(&query).unwrap();
        page.records
            .iter()
            .map(|r| (r.id, r.outcome.clone()))
            .collect::<Vec<_>>()
    };
    {
        let store = FileStore::open(&dir.0).unwrap();
        for (at, outcome) in [(100, "old"), (200, "kept")] {
            let mut record = AuditRecord::new("ops", "10.0.0.1", AuditAction::Refused, "POST /x".into());
            record.at = at;
            let op = WriteOp::Audit(Box::new(record.ended(401, outcome)));
            store.write_batch(&[WriteOp::Put(record_at(at)), op]).unwrap();
        }
    }
    let store = FileStore::open(&dir.0).unwrap();
    assert_eq!(trail(&store), [(2, "kept".to_string()), (1, "old".to_string())]);
    store.remove_final_before(150).unwrap();
    assert_eq!(trail(&store), [(2, "kept".to_string())]);
}

fn record_at(created_at: u64) -> TaskRecord {
    record(TaskStatus::Queued, created_at, created_at)
}

fn key_entry(task_id: TaskId, fingerprint: u64, created_at: u64) -> IdempotencyEntry {
    IdempotencyEntry {
        task_id,
        fingerprint,
        created_at,
    }
}

#[test]
fn idempotency_keys_are_stored_with_their_record_and_survive_reopen() {
    let dir = TempDir::new("keys");
    let task = record(TaskStatus::Queued, 100, 100);
    let entry = key_entry(task.id, u64::MAX - 1, 100);
    {
        let store = FileStore::open(&dir.0).unwrap();
        assert_eq!(store.idempotency("order-1").unwrap(), None);
        store.put_with_key(&task, "order-1", &entry).unwrap();
    }
    let store = FileStore::open(&dir.0).unwrap();
    assert_eq!(store.idempotency("order-1").unwrap(), Some(entry));
    assert_eq!(store.idempotency("order-2").unwrap(), None);
    assert_eq!(store.get(task.id).unwrap(), Some(task.clone()));
    assert_eq!(store.unfinished().unwrap(), vec![task]);
}

#[test]
fn a_sweep_expires_keys_created_before_the_cutoff_whatever_their_task() {
    let dir = TempDir::new("key-sweep");
    let store = FileStore::open(&dir.0).unwrap();
    let open = record(TaskStatus::Queued, 10, 10);
    let done = record(TaskStatus::Completed, 20, 2000);
    let young = record(TaskStatus::Completed, 1000, 1000);
    store
        .put_with_key(&open, "old-open", &key_entry(open.id, 1, 10))
        .unwrap();
    store
        .put_with_key(&done, "old-done", &key_entry(done.id, 2, 20))
        .unwrap();
    store
        .put_with_key(&young, "at-cutoff", &key_entry(young.id, 3, 1000))
        .unwrap();
    // Re-using a key with a later time moves its expiry.
    store
        .put_with_key(&open, "old-done", &key_entry(done.id, 2, 5000))
        .unwrap();

    assert_eq!(store.remove_final_before(1000).unwrap(), 0);
    assert_eq!(store.idempotency("old-open").unwrap(), None);
    assert_eq!(
        store.idempotency("old-done").unwrap(),
        Some(key_entry(done.id, 2, 5000))
    );
    assert_eq!(
        store.idempotency("at-cutoff").unwrap(),
        Some(key_entry(young.id, 3, 1000))
    );
    assert_eq!(store.get(open.id).unwrap(), Some(open));

    assert_eq!(store.remove_final_before(u64::MAX).unwrap(), 2);
    assert_eq!(store.idempotency("old-done").unwrap(), None);
    assert_eq!(store.idempotency("at-cutoff").unwrap(), None);
}

#[test]
fn a_key_sweep_larger_than_one_batch_expires_every_due_key() {
    let dir = TempDir::new("key-batches");
    let store = FileStore::open(&dir.0).unwrap();
    let due = SWEEP_BATCH + 3;
    let task = record(TaskStatus::Queued, 1, 1);
    let txn = store.db.begin_write().unwrap();
    {
        let mut keys = txn.open_table(KEYS).unwrap();
        let mut by_time = txn.open_table(KEYS_BY_TIME).unwrap();
        for n in 0..due as u64 {
            let key = format!("key-{n}");
            keys.insert(key.as_str(), encode_key_entry(&key_entry(task.id, n, n)))
                .unwrap();
            by_time.insert(key_time(n, &key).as_slice(), ()).unwrap();
        }
    }
    txn.commit().unwrap();
    assert_eq!(store.idempotency("key-7").unwrap(), Some(key_entry(task.id, 7, 7)));
    assert_eq!(store.remove_final_before(u64::MAX).unwrap(), 0);
    let txn = store.db.begin_read().unwrap();
    assert_eq!(txn.open_table(KEYS).unwrap().len().unwrap(), 0);
    assert_eq!(txn.open_table(KEYS_BY_TIME).unwrap().len().unwrap(), 0);
}

#[test]
fn the_store_file_and_a_new_data_directory_are_readable_by_their_owner_only() {
    let dir = TempDir::new("modes");
    let data = dir.0.join("data");
    let store = FileStore::open(&data).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(store.path()), 0o600);
}

#[test]
fn a_file_from_before_the_device_and_status_index_gets_it_at_open() {
    let dir = TempDir::new("device-status-index");
    let (queued, completed) = (record(TaskStatus::Queued, 1, 1), record(TaskStatus::Completed, 2, 2));
    {
        let store = FileStore::open(&dir.0).unwrap();
        store.put(&queued).unwrap();
        store.put(&completed).unwrap();
    }
    {
        // What an older release left: every table but this index.
        let db = Database::create(dir.0.join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        let index: TableDefinition<&[u8], ()> = TableDefinition::new("tasks_by_device_status");
        assert!(txn.delete_table(index).unwrap());
        txn.commit().unwrap();
    }
    let store = FileStore::open(&dir.0).unwrap();
    let of_device = |status| TaskQuery {
        equipment: Some(queued.equipment_id.clone()),
        statuses: vec![status],
        limit: 10,
        before: None,
    };
    assert_eq!(
        ids(&store.list(&of_device(TaskStatus::Completed)).unwrap().tasks),
        [completed.id]
    );
    assert_eq!(
        ids(&store.list(&of_device(TaskStatus::Queued)).unwrap().tasks),
        [queued.id]
    );
}

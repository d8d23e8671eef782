//! Tests of the file store: encoding, durability across reopen, index upkeep, sweeps, locking, damage.

use super::*;
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
    let Err(StoreError(message)) = FileStore::open(&dir.0) else {
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
    let Err(StoreError(message)) = FileStore::open(&file.join("data")) else {
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
        let StoreError(message) = store.get(id).unwrap_err();
        assert!(message.contains(&id.to_string()), "{message}");
    }
    // The damaged record still holds its place in the index, so a restart must hear about it.
    let StoreError(message) = store.unfinished().unwrap_err();
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
#[ignore]
fn zz_measure_throwaway() {
    use std::time::Instant;
    let dir = TempDir::new("measure");
    let store = FileStore::open(&dir.0).unwrap();
    let example = request(
        r#"{"timeoutInSeconds": 14, "parameters": {"username": "admin", "password": "admin", "vlan": 534, "interfaces": [1, 2, 3, 4]}}"#,
    );
    let make = |n: u64, status| TaskRecord {
        equipment_id: EquipmentId::parse("abc123def").unwrap(),
        request: example.clone(),
        attempts: 1,
        ..record(status, 1_700_000_000_000 + n, 1_700_000_000_000 + n)
    };
    println!(
        "encoded value bytes: {}",
        encode(&make(0, TaskStatus::Completed)).unwrap().len()
    );
    println!(
        "json-only request bytes: {}",
        serde_json::to_vec(&example).unwrap().len()
    );
    for round in 0..3 {
        let recs: Vec<_> = (0..1000).map(|n| make(n, TaskStatus::Queued)).collect();
        let t = Instant::now();
        for r in &recs {
            store.put(r).unwrap();
        }
        let e = t.elapsed();
        println!(
            "round {round}: 1000 puts (1 fsync'd txn each): {:?} -> {:.0} puts/s, {:.2} ms/put",
            e,
            1000.0 / e.as_secs_f64(),
            e.as_secs_f64()
        );
        let t = Instant::now();
        for r in &recs {
            let mut d = r.clone();
            d.status = TaskStatus::Completed;
            store.put(&d).unwrap();
        }
        let e = t.elapsed();
        println!(
            "round {round}: 1000 queued->completed updates: {:.0} /s",
            1000.0 / e.as_secs_f64()
        );
        let t = Instant::now();
        for r in &recs {
            store.get(r.id).unwrap().unwrap();
        }
        println!("round {round}: 1000 gets: {:.0} /s", 1000.0 / t.elapsed().as_secs_f64());
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir.0);
    let store = FileStore::open(&dir.0).unwrap();
    let total = 100_000u64;
    let t = Instant::now();
    for chunk in 0..total / 1000 {
        let txn = store.db.begin_write().unwrap();
        for n in chunk * 1000..(chunk + 1) * 1000 {
            let status = if n % 1000 == 0 {
                TaskStatus::Queued
            } else {
                TaskStatus::Completed
            };
            write_record(&txn, &make(n, status)).unwrap();
        }
        txn.commit().unwrap();
    }
    println!("100k records in 100 txns of 1000: {:?}", t.elapsed());
    let size = std::fs::metadata(store.path()).unwrap().len();
    println!(
        "records: {}, file: {} bytes, {:.0} bytes/record",
        store.len().unwrap(),
        size,
        size as f64 / total as f64
    );
    let t = Instant::now();
    let open = store.unfinished().unwrap();
    println!("unfinished() with {} open among 100k: {:?}", open.len(), t.elapsed());
    let t = Instant::now();
    let gone = store.remove_final_before(u64::MAX).unwrap();
    println!("sweep of {gone}: {:?}", t.elapsed());
    drop(store);
    let store = FileStore::open(&dir.0).unwrap();
    println!(
        "after sweep+reopen: records {}, file {} bytes",
        store.len().unwrap(),
        std::fs::metadata(store.path()).unwrap().len()
    );
    // Realistic one-by-one: 10k fsync'd puts to see file growth per record with single-record txns.
    drop(store);
    let _ = std::fs::remove_dir_all(&dir.0);
    let store = FileStore::open(&dir.0).unwrap();
    let t = Instant::now();
    for n in 0..5000 {
        store.put(&make(n, TaskStatus::Completed)).unwrap();
    }
    let e = t.elapsed();
    let size = std::fs::metadata(store.path()).unwrap().len();
    println!(
        "5000 single puts: {:.0} puts/s; file {} bytes, {:.0} bytes/record",
        5000.0 / e.as_secs_f64(),
        size,
        size as f64 / 5000.0
    );
}

//! The PostgreSQL store against a real database, each test in a schema of its own: migrations when
//! instances start together, the guards that settle races between instances, announcements of final
//! tasks, and the per-device leases.

use super::leases::PgLeases;
use super::scratch::ScratchSchema;
use super::*;
use cpe_actors::ports::{Acquired, DeviceLeases, LeaseError};
use cpe_actors::{AuditAction, AuditQuery, AuditRecord, ConfigRequest, EquipmentId, Outcome, TaskMessage};
use std::time::Duration;

fn queued(device: &str) -> TaskRecord {
    let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 5, "parameters": {"vlan": 10}}"#).unwrap();
    TaskRecord::queued(TaskId::new(), EquipmentId::parse(device).unwrap(), request)
}

fn message(record: &TaskRecord) -> TaskMessage {
    TaskMessage {
        task_id: record.id,
        equipment_id: record.equipment_id.clone(),
        request: record.request.clone(),
    }
}

#[test]
fn instances_starting_together_migrate_once_and_share_the_tasks() {
    let Some(schema) = ScratchSchema::create() else { return };
    let stores: Vec<PgStore> = std::thread::scope(|scope| {
        let opening: Vec<_> = (0..4).map(|_| scope.spawn(|| PgStore::open(&schema.url))).collect();
        opening.into_iter().map(|o| o.join().unwrap().unwrap()).collect()
    });
    let record = queued("abc123");
    stores[0].put(&record).unwrap();
    assert_eq!(stores[3].get(record.id).unwrap(), Some(record));
}

#[test]
fn a_url_that_does_not_parse_or_answer_is_a_clear_error() {
    let garbage = PgStore::open("postgres://host:notaport/db").err().unwrap();
    assert!(garbage.message().contains("URL is not valid"), "{garbage}");
    let nobody = PgStore::open("postgres://nobody@127.0.0.1:1/db?connect_timeout=2")
        .err()
        .unwrap();
    assert!(
        nobody.message().contains("cannot connect") && nobody.message().contains("refused"),
        "{nobody}"
    );
}

#[test]
fn a_final_task_keeps_its_status_and_a_running_one_cannot_be_cancelled() {
    let Some(schema) = ScratchSchema::create() else { return };
    let store = PgStore::open(&schema.url).unwrap();
    let mut record = queued("abc123");
    store.put(&record).unwrap();
    let queued_copy = record.clone();

    assert!(record.move_to(TaskStatus::Running));
    store.put(&record).unwrap();
    let mut cancelled = queued_copy.clone();
    assert!(cancelled.cancel());
    let refused = store.put(&cancelled).unwrap_err();
    assert!(
        refused.is_conflict() && refused.message().contains("changed by another instance"),
        "{refused}"
    );

    assert!(record.finish(&Outcome::Completed { attempts: 1 }));
    store.put(&record).unwrap();
    let stale = store.put(&queued_copy).unwrap_err();
    assert!(
        stale.is_conflict() && stale.message().contains("changed by another instance"),
        "{stale}"
    );
    assert_eq!(store.get(record.id).unwrap().unwrap().status, TaskStatus::Completed);
}

#[test]
fn an_idempotency_key_is_taken_once_and_a_refused_batch_changes_nothing() {
    let Some(schema) = ScratchSchema::create() else { return };
    let store = PgStore::open(&schema.url).unwrap();
    let (first, second) = (queued("abc123"), queued("abc123"));
    let entry = |record: &TaskRecord| IdempotencyEntry {
        task_id: record.id,
        fingerprint: 7,
        created_at: record.created_at,
    };
    store.put_with_key(&first, "campaign-1/abc123", &entry(&first)).unwrap();
    let refused = store
        .put_with_key(&second, "campaign-1/abc123", &entry(&second))
        .unwrap_err();
    assert!(refused.message().contains("idempotency key"), "{refused}");
    assert_eq!(store.get(second.id).unwrap(), None, "the refused batch left no task");
    assert_eq!(
        store.idempotency("campaign-1/abc123").unwrap().unwrap().task_id,
        first.id
    );
}

#[test]
fn a_task_made_final_is_announced_to_every_listener() {
    let Some(schema) = ScratchSchema::create() else { return };
    let (here, there) = (PgStore::open(&schema.url).unwrap(), PgStore::open(&schema.url).unwrap());
    let (tell, heard) = std::sync::mpsc::channel();
    let tell = std::sync::Mutex::new(tell);
    there.listen_for_finals(Arc::new(move |id| {
        let _ = tell.lock().unwrap().send(id);
    }));
    // LISTEN starts on its own thread: wait until it is in place before writing.
    let record = queued("abc123");
    here.put(&record).unwrap();
    let mut finished = record.clone();
    assert!(finished.move_to(TaskStatus::Running) && finished.finish(&Outcome::Completed { attempts: 1 }));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = queued("abc999");
        here.put(&probe).unwrap();
        assert!(probe.cancel());
        here.put(&probe).unwrap();
        if heard.recv_timeout(Duration::from_millis(300)) == Ok(Some(probe.id)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no announcement heard");
    }
    here.put(&finished).unwrap();
    let id = heard.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(id, Some(record.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_has_one_holder_and_tasks_take_it_in_acceptance_order() {
    let Some(schema) = ScratchSchema::create() else { return };
    let url = schema.url.clone();
    let store = tokio::task::spawn_blocking(move || PgStore::open(&url).unwrap())
        .await
        .unwrap();
    let (older, younger, elsewhere) = (queued("abc123"), queued("abc123"), queued("def456"));
    for record in [&older, &younger, &elsewhere] {
        store.put(record).unwrap();
    }
    store.mark_published(&[older.id, younger.id, elsewhere.id]);
    wait_noted(&schema.url, younger.id);
    let one = PgLeases::open(&schema.url, "instance one".into()).unwrap();
    let two = PgLeases::open(&schema.url, "instance two".into()).unwrap();
    let ttl = Duration::from_secs(30);

    assert_eq!(
        two.acquire(&message(&younger), ttl, false).await.unwrap(),
        Acquired::Behind,
        "the older task comes first"
    );
    let Acquired::Held(lease) = one.acquire(&message(&older), ttl, false).await.unwrap() else {
        panic!("the oldest task takes a free device");
    };
    assert_eq!(
        two.acquire(&message(&older), ttl, false).await.unwrap(),
        Acquired::Busy { same_task: true },
        "one holder at a time"
    );
    assert!(matches!(
        two.acquire(&message(&elsewhere), ttl, false).await.unwrap(),
        Acquired::Held(_)
    ));
    one.renew(&lease, ttl).await.unwrap();

    let mut done = older.clone();
    assert!(done.move_to(TaskStatus::Running) && done.finish(&Outcome::Completed { attempts: 1 }));
    store.put(&done).unwrap();
    assert!(
        handover_state(&schema.url, younger.id).0.is_some(),
        "the task let go as behind is handed to the queue again"
    );
    one.release(&lease).await.unwrap();
    assert_eq!(
        one.acquire(&message(&older), ttl, false).await.unwrap(),
        Acquired::Final
    );
    let Acquired::Held(next) = two.acquire(&message(&younger), ttl, false).await.unwrap() else {
        panic!("the younger task takes the device once the older one is final");
    };
    assert_eq!(next.fence, lease.fence + 1, "each new holder gets the next fence");
    assert_eq!(
        one.renew(&lease, ttl).await,
        Err(LeaseError::Lost),
        "an old fence renews nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_goes_to_the_next_holder_and_the_old_one_cannot_renew() {
    let Some(schema) = ScratchSchema::create() else { return };
    let url = schema.url.clone();
    let store = tokio::task::spawn_blocking(move || PgStore::open(&url).unwrap())
        .await
        .unwrap();
    let task = queued("abc123");
    store.put(&task).unwrap();
    let (paused, next) = (
        PgLeases::open(&schema.url, "paused".into()).unwrap(),
        PgLeases::open(&schema.url, "next".into()).unwrap(),
    );
    let Acquired::Held(old) = paused
        .acquire(&message(&task), Duration::from_millis(200), false)
        .await
        .unwrap()
    else {
        panic!("a free device is taken");
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let Acquired::Held(new) = next
        .acquire(&message(&task), Duration::from_secs(30), false)
        .await
        .unwrap()
    else {
        panic!("an expired lease is taken over");
    };
    assert_eq!(paused.renew(&old, Duration::from_secs(30)).await, Err(LeaseError::Lost));
    paused.release(&old).await.unwrap();
    next.renew(&new, Duration::from_secs(30)).await.unwrap();
}

#[test]
fn the_outbox_hands_out_each_due_unpublished_task_once() {
    let Some(schema) = ScratchSchema::create() else { return };
    let store = PgStore::open(&schema.url).unwrap();
    let grace = outbox::PUBLISH_GRACE.as_millis() as u64;
    let (stranded, confirmed, begun, fresh) = (queued("abc123"), queued("abc123"), queued("def456"), queued("ghi789"));
    for record in [&stranded, &confirmed, &begun, &fresh] {
        store.put(record).unwrap();
    }
    store.mark_published(&[confirmed.id]);
    let mut running = begun.clone();
    assert!(running.move_to(TaskStatus::Running));
    store.put(&running).unwrap();
    // The note of publication is written by a thread of its own: wait until it has been.
    let later = stranded.created_at + grace + 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.get(confirmed.id).unwrap().is_some()
        && outbox_due(&schema.url, confirmed.id).is_some()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let claimed: Vec<TaskId> = store
        .claim_unpublished(later)
        .unwrap()
        .tasks
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(claimed.len(), 2, "the stranded and the fresh task are due, no other");
    assert!(claimed.contains(&stranded.id) && claimed.contains(&fresh.id));
    assert!(
        store.claim_unpublished(later).unwrap().tasks.is_empty(),
        "a claimed task is not handed out again"
    );
    assert_eq!(
        store.claim_unpublished(later + 61_000).unwrap().tasks.len(),
        2,
        "an expired claim is"
    );
    assert!(
        store.claim_unpublished(stranded.created_at).unwrap().tasks.is_empty(),
        "nothing is due in its grace"
    );
}

/// The outbox column of one task, read directly.
fn outbox_due(url: &str, id: TaskId) -> Option<i64> {
    let (url, id) = (url.to_owned(), rows::uuid(id));
    std::thread::spawn(move || {
        let mut client = url.parse::<Config>().unwrap().connect(postgres::NoTls).unwrap();
        client
            .query_one("SELECT publish_due FROM cpe_tasks WHERE id = $1", &[&id])
            .unwrap()
            .get(0)
    })
    .join()
    .unwrap()
}

#[test]
fn a_batch_with_one_refused_change_writes_none_of_it() {
    let Some(schema) = ScratchSchema::create() else { return };
    let store = PgStore::open(&schema.url).unwrap();
    let mut done = queued("abc123");
    store.put(&done).unwrap();
    assert!(done.move_to(TaskStatus::Running) && done.finish(&Outcome::Completed { attempts: 1 }));
    store.put(&done).unwrap();
    let (new, mut stale) = (queued("def456"), done.clone());
    stale.status = TaskStatus::Running;
    let batch = [WriteOp::Put(new.clone()), WriteOp::Put(stale)];
    let refused = store.write_batch(&batch).unwrap_err();
    assert!(refused.message().contains("one of 2 tasks"), "{refused}");
    assert_eq!(store.get(new.id).unwrap(), None);
    assert_eq!(store.get(done.id).unwrap().unwrap().status, TaskStatus::Completed);
}

/// The outbox column and the reconciler's count of one task, read directly.
fn handover_state(url: &str, id: TaskId) -> (Option<i64>, i32) {
    let (url, id) = (url.to_owned(), rows::uuid(id));
    std::thread::spawn(move || {
        let mut client = url.parse::<Config>().unwrap().connect(postgres::NoTls).unwrap();
        let row = client
            .query_one("SELECT publish_due, handovers FROM cpe_tasks WHERE id = $1", &[&id])
            .unwrap();
        (row.get(0), row.get(1))
    })
    .join()
    .unwrap()
}

fn finished(record: &TaskRecord) -> TaskRecord {
    let mut done = record.clone();
    assert!(done.move_to(TaskStatus::Running) && done.finish(&Outcome::Completed { attempts: 1 }));
    done
}

/// What a worker's lease request leaves on a task that is behind an older one of its device.
fn pass_over(url: &str, id: TaskId) {
    let (url, id) = (url.to_owned(), rows::uuid(id));
    std::thread::spawn(move || {
        let mut client = url.parse::<Config>().unwrap().connect(postgres::NoTls).unwrap();
        client
            .execute("UPDATE cpe_tasks SET passed_over = true WHERE id = $1", &[&id])
            .unwrap();
    })
    .join()
    .unwrap()
}

/// Waits until the outbox thread has noted the task published (publish_due cleared).
fn wait_noted(url: &str, id: TaskId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handover_state(url, id).0.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the note of publication was written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_write_that_ends_a_task_makes_its_devices_next_task_due_and_a_late_note_does_not_undo_it() {
    let Some(schema) = ScratchSchema::create() else { return };
    let store = PgStore::open(&schema.url).unwrap();
    let (first, second, third, other) = (queued("abc123"), queued("abc123"), queued("abc123"), queued("def456"));
    for record in [&first, &second, &third, &other] {
        store.put(record).unwrap();
    }
    store.mark_published(&[first.id, third.id, other.id]);
    for id in [first.id, third.id, other.id] {
        wait_noted(&schema.url, id);
    }
    // A device whose next task still has its message: nothing to hand on.
    let (earlier, waiting) = (queued("ghi789"), queued("ghi789"));
    for record in [&earlier, &waiting] {
        store.put(record).unwrap();
    }
    store.mark_published(&[earlier.id, waiting.id]);
    wait_noted(&schema.url, waiting.id);
    store.put(&finished(&earlier)).unwrap();
    assert_eq!(
        handover_state(&schema.url, waiting.id).0,
        None,
        "its own message is on the queue"
    );

    // A worker let the second task's delivery go: it was behind the first.
    pass_over(&schema.url, second.id);
    store.put(&finished(&first)).unwrap();
    let now = cpe_actors::domain::now_millis() as i64;
    let (due, _) = handover_state(&schema.url, second.id);
    assert!(
        due.is_some_and(|due| due <= now),
        "the next task is due at once: {due:?}"
    );
    assert_eq!(handover_state(&schema.url, third.id).0, None, "not the one after it");
    // The create's own note of publication arrives late: the task stays due.
    store.mark_published(&[second.id]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        handover_state(&schema.url, second.id).0.is_some(),
        "still due for the relay"
    );
    let claimed: Vec<TaskId> = store
        .claim_unpublished(now as u64 + 1)
        .unwrap()
        .tasks
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(claimed, [second.id]);
}

#[test]
fn a_due_task_without_a_message_is_handed_on_again_then_fails_and_frees_its_device() {
    let Some(schema) = ScratchSchema::create() else { return };
    let store = PgStore::open(&schema.url).unwrap();
    let (stranded, next, other) = (queued("abc123"), queued("abc123"), queued("def456"));
    for record in [&stranded, &next, &other] {
        store.put(record).unwrap();
    }
    store.mark_published(&[stranded.id, next.id, other.id]);
    for id in [stranded.id, next.id, other.id] {
        wait_noted(&schema.url, id);
    }
    // The next task's delivery came, and was let go: it was behind the stranded one.
    pass_over(&schema.url, next.id);
    let now = cpe_actors::domain::now_millis();
    let reason = "lost; see q.dlq".to_owned();
    assert_eq!(
        store.reconcile(now, stranded.created_at, reason.clone()).unwrap(),
        reconcile::Reconciled::default(),
        "nothing was handed over before the cutoff"
    );
    let later = now + 1;
    for round in 1..=reconcile::HANDOVERS {
        let done = store.reconcile(later, later, reason.clone()).unwrap();
        assert_eq!(done.failed, []);
        assert!(
            done.handed.contains(&stranded.id) && done.handed.contains(&other.id),
            "round {round}"
        );
        assert!(
            !done.handed.contains(&next.id),
            "only the device's oldest unfinished task"
        );
        assert_eq!(handover_state(&schema.url, stranded.id).1, round);
        // The relay publishes it, and the message is lost again.
        clear_due(&schema.url);
    }
    let done = store.reconcile(later, later, reason.clone()).unwrap();
    assert!(done.failed.contains(&stranded.id), "{done:?}");
    let failed = store.get(stranded.id).unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.last_error.as_deref()),
        (TaskStatus::Failed, Some("lost; see q.dlq"))
    );
    assert!(
        handover_state(&schema.url, next.id).0.is_some(),
        "the device's next task is due"
    );
}

/// What a relay's note leaves after publishing: nothing due.
fn clear_due(url: &str) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = url.parse::<Config>().unwrap().connect(postgres::NoTls).unwrap();
        client.execute("UPDATE cpe_tasks SET publish_due = NULL", &[]).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn instances_share_a_database_only_through_rabbitmq() {
    let Some(schema) = ScratchSchema::create() else { return };
    let open = || PgStore::open(&schema.url).unwrap();
    let (one, two, three) = (open(), open(), open());
    one.join_instances(false).unwrap();
    two.join_instances(false).unwrap();
    let refused = three.join_instances(true).unwrap_err();
    assert!(refused.message().contains("--amqp-url"), "{refused}");
    drop((one, two));
    three.join_instances(true).unwrap();
    let refused = open().join_instances(true).unwrap_err();
    assert!(refused.message().contains("--amqp-url"), "{refused}");
    let refused = open().join_instances(false).unwrap_err();
    assert!(refused.message().contains("in-process queue"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_the_database_does_not_hold_takes_its_device_only_when_adopted() {
    let Some(schema) = ScratchSchema::create() else { return };
    let url = schema.url.clone();
    let _store = tokio::task::spawn_blocking(move || PgStore::open(&url).unwrap())
        .await
        .unwrap();
    let leases = PgLeases::open(&schema.url, "instance".into()).unwrap();
    let stranger = message(&queued("abc123"));
    let ttl = Duration::from_secs(30);
    assert_eq!(leases.acquire(&stranger, ttl, false).await.unwrap(), Acquired::Unknown);
    assert!(matches!(
        leases.acquire(&stranger, ttl, true).await.unwrap(),
        Acquired::Held(_)
    ));
}

#[test]
fn the_audit_trail_is_one_for_every_instance_and_goes_with_its_change_or_not_at_all() {
    let Some(schema) = ScratchSchema::create() else { return };
    let (one, two) = (PgStore::open(&schema.url).unwrap(), PgStore::open(&schema.url).unwrap());
    let audited = |store: &PgStore, record: &TaskRecord, actor: &str| {
        let mut audit = AuditRecord::new(actor, "10.0.0.1", AuditAction::Create, "POST /x".into());
        audit.equipment_ids.push(record.equipment_id.clone());
        audit.task_ids.push(record.id);
        let ops = [
            WriteOp::Put(record.clone()),
            WriteOp::Audit(Box::new(audit.ended(200, "accepted"))),
        ];
        store.write_batch(&ops)
    };
    let (a, b) = (queued("aaa111"), queued("bbb222"));
    audited(&one, &a, "ops").unwrap();
    audited(&two, &b, "wall").unwrap();
    // A change refused by the database takes its audit record with it.
    let mut finished = a.clone();
    assert!(finished.finish(&Outcome::Completed { attempts: 1 }));
    one.put(&finished).unwrap();
    assert!(audited(&two, &queued_again(&a), "ops").unwrap_err().is_conflict());

    let page = |store: &PgStore, query: AuditQuery| store.audit(&query).unwrap();
    let everything = AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    };
    let seen_by_one = page(&one, everything.clone());
    assert_eq!(seen_by_one, page(&two, everything.clone()));
    let tasks: Vec<Vec<TaskId>> = seen_by_one.records.iter().map(|r| r.task_ids.clone()).collect();
    assert_eq!(
        tasks,
        [vec![b.id], vec![a.id]],
        "newest first, and no record of the refused change"
    );
    let of_a = page(
        &two,
        AuditQuery {
            equipment: Some(a.equipment_id.clone()),
            ..everything.clone()
        },
    );
    assert_eq!(
        of_a.records.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>(),
        ["ops"]
    );
    let first = page(
        &one,
        AuditQuery {
            limit: 1,
            ..everything.clone()
        },
    );
    let rest = page(
        &two,
        AuditQuery {
            before: first.next,
            ..everything.clone()
        },
    );
    assert_eq!(rest.records.iter().map(|r| r.task_ids[0]).collect::<Vec<_>>(), [a.id]);
    one.remove_final_before(u64::MAX).unwrap();
    assert!(
        page(&two, everything).records.is_empty(),
        "the trail is kept as long as tasks are"
    );
}

/// The same task, queued again: a change the database refuses once the task is final.
fn queued_again(record: &TaskRecord) -> TaskRecord {
    TaskRecord {
        status: TaskStatus::Queued,
        ..record.clone()
    }
}

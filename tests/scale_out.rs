//! Three instances of the real binary on one RabbitMQ queue and one PostgreSQL schema, checked in the
//! manner of rabbitmq/jepsen: every accepted task and every call Service A received is recorded, then
//! the history is checked for lost tasks, overlapping or out-of-order calls per device, and duplicates.
//! One instance is killed with -9 and one is stopped for longer than its lease while tasks run.

// The api binary's helpers (tests/api/common); this binary uses only some of them, hence the allow.
#[allow(dead_code)]
#[path = "api/common/mod.rs"]
mod common;
// Helpers only the binaries kept apart use (scale_out, postgres_restart).
#[allow(dead_code)]
#[path = "alone/cluster.rs"]
mod cluster;

use cluster::*;
use common::call_log::CallLog;
use common::fault_proxy::{FaultProxy, Mode};
use common::process::{local_args, Process};
use common::{client, rabbitmq, send, url};
use cpe_actors::ports::TaskStore;
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskRecord};
use cpe_config::store::postgres::scratch::ScratchSchema;
use cpe_config::store::postgres::PgStore;
use cpe_test_support::{delete_queues, unique_queue};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_lose_nothing_and_never_overlap_a_device_through_a_kill_and_a_pause() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-scale");
    let service_a = CallLog::start_with(Duration::from_millis(300), by_vlan()).await;
    let Some(mut cluster) = cluster(&amqp, &queue, &service_a.url(), 3).await else {
        return;
    };
    let devices: Vec<String> = (0..100).map(|n| format!("cpe{n:04}")).collect();

    // Ten rounds of one task per device: within a device, acceptance order is the round order.
    let mut history = History::default();
    for round in 0..10 {
        // Tasks go to every instance still answering: the first is killed after round 3, the second
        // paused after round 5.
        let live = &cluster.service_b[round.min(6) / 3..];
        history
            .round(round, &devices, live, |b, device, number| async move {
                create(b, &device, number).await
            })
            .await;
        if round == 3 {
            cluster.instances[0].kill_hard();
        }
        if round == 5 {
            cluster.instances[1].signal(libc::SIGSTOP);
        }
    }
    // Longer than the lease (2 s call deadline + 5 s margin) and the broker's heartbeat timeout.
    tokio::time::sleep(Duration::from_secs(9)).await;
    cluster.instances[1].signal(libc::SIGCONT);

    let started = Instant::now();
    let report = history.check(cluster.service_b[2], &service_a).await;
    eprintln!("all 1000 tasks final {:?} after the pause ended", started.elapsed());
    assert_clean(&report);
    // A duplicate is a call whose caller died or paused before it could report: at most one per task
    // that was in flight at the kill or the pause.
    assert!(
        report.duplicated_calls.len() <= 2 * 16,
        "duplicated: {:?}",
        report.duplicated_calls
    );
    delete_queues(&amqp, &queue).await;
}

/// The contention run of a user's first try: 30 devices with 10 tasks each, created round-robin on
/// three instances, at the default call deadline. Only a device's oldest unfinished task is ever
/// handed to a worker, so no instance holds a younger task while an older one waits elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_keep_each_devices_order_without_stalls_at_the_default_deadline() {
    contention_run(None).await;
}

/// The same run with one instance killed (-9) a second in: its tasks are taken over once their
/// device leases (call deadline + 5 s) run out, and nothing else waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_keep_each_devices_order_through_a_kill_at_the_default_deadline() {
    contention_run(Some(Duration::from_secs(1))).await;
}

async fn contention_run(kill_after: Option<Duration>) {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-contention");
    let service_a = CallLog::start_with(Duration::from_millis(500), by_vlan()).await;
    let Some(mut cluster) = cluster_at_defaults(&amqp, &queue, &service_a.url(), 3).await else {
        return;
    };
    let devices: Vec<String> = (0..30).map(|n| format!("dev{n:04}")).collect();
    let started = Instant::now();
    let mut history = History::default();
    for round in 0..10 {
        history
            .round(round, &devices, &cluster.service_b, |b, device, number| async move {
                create(b, &device, number).await
            })
            .await;
    }
    if let Some(after) = kill_after {
        tokio::time::sleep(after.saturating_sub(started.elapsed())).await;
        cluster.instances[0].kill_hard();
    }
    let report = history.check(cluster.service_b[1], &service_a).await;
    eprintln!("all 300 tasks final {:?} after the first create", started.elapsed());
    assert_clean(&report);
    // A call cut off by the kill is made again by the task's next holder: at most one per worker.
    assert!(
        report.duplicated_calls.len() <= 16,
        "duplicated: {:?}",
        report.duplicated_calls
    );
    delete_queues(&amqp, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_instance_answers_for_a_task_and_a_wait_wakes_when_another_finishes_it() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-scale-wait");
    let service_a = CallLog::start_with(Duration::from_millis(1500), by_vlan()).await;
    let Some(cluster) = cluster(&amqp, &queue, &service_a.url(), 2).await else {
        return;
    };
    let (first, second) = (cluster.service_b[0], cluster.service_b[1]);
    let task = create(first, "abc123", 0).await;
    let waited = Instant::now();
    let wait = client().get(url(
        Some(second),
        &format!("/api/v1/equipment/cpe/abc123/task/{task}?wait=30s"),
    ));
    let (code, answer) = send(wait).await;
    assert_eq!((code, answer["code"].as_u64()), (200, Some(200)), "{answer}");
    assert!(
        waited.elapsed() < Duration::from_secs(10),
        "the wait ended with the task, not at its deadline"
    );
    let listed = client().get(url(Some(second), "/api/v1/equipment/cpe/abc123/tasks"));
    let (code, page) = send(listed).await;
    assert_eq!(code, 200);
    assert_eq!(page["tasks"][0]["taskId"].as_str(), Some(task.as_str()), "{page}");
    delete_queues(&amqp, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stored_but_never_queued_is_published_by_the_outbox_relay_and_runs() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    // What an instance killed between the commit and the publish leaves: the row, no message.
    let url = schema.url.clone();
    let stranded = tokio::task::spawn_blocking(move || {
        let request = r#"{"timeoutInSeconds": 14, "parameters": {"vlan": 42}}"#;
        let mut record = TaskRecord::queued(
            TaskId::new(),
            EquipmentId::parse("abc123").unwrap(),
            ConfigRequest::from_json(request.as_bytes()).unwrap(),
        );
        record.created_at -= 11_000;
        PgStore::open(&url).unwrap().put(&record).unwrap();
        record.id.to_string()
    })
    .await
    .unwrap();
    let queue = unique_queue("test-scale-outbox");
    let service_a = CallLog::start_with(Duration::from_millis(100), by_vlan()).await;
    let cluster = cluster_on(schema, &amqp, &queue, &service_a.url(), 1);
    let b = cluster.service_b[0];
    common::eventually(LIMIT, "the stranded task completes", || async {
        status(b, "abc123", &stranded).await.filter(|s| s == "completed")
    })
    .await;
    let calls: Vec<_> = service_a
        .calls()
        .into_iter()
        .filter(|c| c.task.as_deref() == Some("41"))
        .collect();
    assert_eq!(calls.len(), 1, "published once, called once");
    delete_queues(&amqp, &queue).await;
}

/// The grace a user gets with `--config-delay=1s`: twice the 32 s call deadline, plus 10 s.
const DEFAULT_RECONCILE_AFTER: Duration = Duration::from_secs(74);

/// Two tasks left as a delivery-limit dead-letter leaves them: stored, queued, confirmed on the
/// queue, and no message left. Past the default `--reconcile-after` the first is handed to the
/// queue again and runs; the second, whose messages were lost as often as the reconciler allows,
/// fails with a message naming `<queue>.dlq`. Each device's next task runs after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stranded_by_a_dead_letter_runs_or_fails_past_the_default_grace_and_its_device_goes_on() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    let stranded_at = Instant::now();
    let database = schema.url.clone();
    let (runs, fails) = tokio::task::spawn_blocking(move || {
        (
            strand(&database, "strand01", 0, 0),
            strand(
                &database,
                "strand02",
                1,
                cpe_config::store::postgres::reconcile::HANDOVERS,
            ),
        )
    })
    .await
    .unwrap();
    let queue = unique_queue("test-scale-strand");
    let service_a = CallLog::start_with(Duration::from_millis(100), by_vlan()).await;
    let cluster = cluster_at_defaults_on(schema, &amqp, &queue, &service_a.url(), 1);
    let b = cluster.service_b[0];
    let (next_run, next_fail) = (create(b, "strand01", 2).await, create(b, "strand02", 3).await);

    // One look of the reconciler (every 10 s) past the grace, and the calls.
    let limit = DEFAULT_RECONCILE_AFTER + Duration::from_secs(40);
    for (device, task) in [("strand01", &runs), ("strand01", &next_run), ("strand02", &next_fail)] {
        common::eventually(limit, "the device's tasks complete", || async {
            status(b, device, task).await.filter(|s| s == "completed")
        })
        .await;
    }
    eprintln!(
        "stranded tasks dealt with {:?} after they were stranded",
        stranded_at.elapsed()
    );
    let calls = service_a.calls();
    let of = |device: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|call| call.device == device)
            .filter_map(|call| call.task.clone())
            .collect()
    };
    assert_eq!(
        of("strand01"),
        ["0", "2"],
        "the stranded task once, then its device's next"
    );
    assert_eq!(
        of("strand02"),
        ["3"],
        "the failed task never; its device's next after it"
    );
    let first_call = calls.iter().map(|call| call.start).min().unwrap();
    assert!(
        first_call.duration_since(stranded_at) >= DEFAULT_RECONCILE_AFTER,
        "not handed on before the grace: {:?}",
        first_call.duration_since(stranded_at)
    );
    let listed = client().get(url(Some(b), "/api/v1/equipment/cpe/strand02/tasks"));
    let (code, page) = send(listed).await;
    assert_eq!(code, 200, "{page}");
    let failed = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["taskId"].as_str() == Some(fails.as_str()))
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["lastError"].as_str().unwrap();
    assert!(reason.contains(&format!("{queue}.dlq")), "{reason}");
    delete_queues(&amqp, &queue).await;
}

/// Stores a queued task of `device` (task `number`) that the queue confirmed and then lost,
/// already handed on `handovers` times; returns its id.
fn strand(url: &str, device: &str, number: usize, handovers: i32) -> String {
    let record = TaskRecord::queued(
        TaskId::new(),
        EquipmentId::parse(device).unwrap(),
        ConfigRequest::from_json(request_body(number).as_bytes()).unwrap(),
    );
    PgStore::open(url).unwrap().put(&record).unwrap();
    let mut database = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let id = uuid::Uuid::parse_str(&record.id.to_string()).unwrap();
    let changed = database
        .execute(
            "UPDATE cpe_tasks SET publish_due = NULL, handovers = $2 WHERE id = $1",
            &[&id, &handovers],
        )
        .unwrap();
    assert_eq!(changed, 1);
    record.id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_the_database_and_the_broker_cut_mid_run_lose_nothing() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    let (db_proxy, amqp_proxy) = (
        FaultProxy::start(address(&schema.url, 5432)).await,
        FaultProxy::start(address(&amqp, 5672)).await,
    );
    let links = vec![
        (via(&schema.url, db_proxy.addr()), amqp.clone()),
        (schema.url.clone(), via(&amqp, amqp_proxy.addr())),
    ];
    let queue = unique_queue("test-scale-faults");
    let service_a = CallLog::start_with(Duration::from_millis(200), by_vlan()).await;
    let cluster = cluster_linked(schema, &links, &queue, &service_a.url());
    let devices: Vec<String> = (0..30).map(|n| format!("cpe{n:04}")).collect();
    let mut history = History::default();
    for round in 0..6 {
        // The first instance's database connections and the second's broker connection are cut
        // (every connection reset, new ones too) for two seconds, then let through again.
        if round == 2 {
            db_proxy.set(Mode::Reset);
            amqp_proxy.set(Mode::Reset);
            tokio::time::sleep(Duration::from_secs(2)).await;
            db_proxy.set(Mode::Pass);
            amqp_proxy.set(Mode::Pass);
        }
        history
            .round(round, &devices, &cluster.service_b, |b, device, number| async move {
                create_retrying(b, &device, number).await
            })
            .await;
    }
    assert_clean(&history.check(cluster.service_b[1], &service_a).await);
    delete_queues(&amqp, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_on_its_own_never_runs_a_task_cancelled_while_queued() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    let queue = unique_queue("test-scale-split");
    let service_a = CallLog::start_with(Duration::from_millis(1500), by_vlan()).await;
    let shared = [
        format!("--amqp-url={amqp}"),
        format!("--store={}", schema.url),
        format!("--queue={queue}"),
        format!("--results-queue={queue}-results"),
        format!("--service-a-url={}", service_a.url()),
    ];
    let with = |role: &str| {
        let mut args: Vec<&str> = shared.iter().map(String::as_str).collect();
        args.extend([role, "--workers=4", "--shutdown-grace=1s"]);
        Process::spawn(&local_args(&args), "info")
    };
    let service_b = with("--role=service-b");
    let _worker = with("--role=worker");
    let b = service_b.wait_for_addr("Service B", LIMIT);

    let running = create(b, "split001", 0).await;
    let cancelled = create(b, "split001", 1).await;
    let cancel = client().delete(url(
        Some(b),
        &format!("/api/v1/equipment/cpe/split001/task/{cancelled}"),
    ));
    let (code, answer) = send(cancel).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("cancelled")), "{answer}");
    // A third task of the device runs only once the cancelled one's delivery was dealt with.
    let after = create(b, "split001", 2).await;
    for task in [&running, &after] {
        common::eventually(LIMIT, "the device's other tasks complete", || async {
            status(b, "split001", task).await.filter(|s| s == "completed")
        })
        .await;
    }
    let called: Vec<Option<String>> = service_a.calls().into_iter().map(|call| call.task).collect();
    assert_eq!(
        called,
        [Some("0".to_owned()), Some("2".to_owned())],
        "the cancelled task was never called"
    );
    delete_queues(&amqp, &queue).await;
}

//! Actor-level tests of the pool: per-device order, concurrency, panicking calls and drain
//! (killed workers are covered end to end in tests/api/supervision.rs).

use super::*;
use crate::consumer::{Consumer, ConsumerArgs};
use crate::memory::{InProcessQueue, MemoryStore};
use crate::ports::{DeliveryHandler, ProvisionError, Provisioner, QueueSource, Settle, TaskPublisher, TaskStore};
use crate::registry::{Registry, RegistryHandle};
use crate::retry::RetryPolicy;
use crate::{ConfigRequest, EquipmentId, TaskId, TaskMessage, TaskStatus};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A device stand-in that records overlaps per device and the order of calls.
#[derive(Default)]
struct Recorder {
    running: Mutex<HashMap<String, usize>>,
    overlaps: AtomicUsize,
    peak: AtomicUsize,
    order: Mutex<Vec<(String, u64)>>,
    /// Panic on the first call: a failed attempt, retried.
    panic_once: AtomicBool,
    /// Panic on every call for devices named `poison…`: tasks that can never succeed.
    poison: bool,
}

#[async_trait]
impl Provisioner for Recorder {
    async fn configure(&self, equipment: &EquipmentId, request: &ConfigRequest) -> Result<(), ProvisionError> {
        if self.panic_once.swap(false, Ordering::SeqCst) {
            panic!("simulated worker crash");
        }
        if self.poison && equipment.as_str().starts_with("poison") {
            panic!("simulated poison task");
        }
        {
            let mut running = self.running.lock().unwrap();
            let count = running.entry(equipment.to_string()).or_default();
            *count += 1;
            if *count > 1 {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            let total: usize = running.values().sum();
            self.peak.fetch_max(total, Ordering::SeqCst);
            self.order
                .lock()
                .unwrap()
                .push((equipment.to_string(), request.timeout_in_seconds));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        *self.running.lock().unwrap().get_mut(equipment.as_str()).unwrap() -= 1;
        Ok(())
    }
}

struct Rig {
    queue: InProcessQueue,
    registry: RegistryHandle,
    device: Arc<Recorder>,
    pool: ActorRef<PoolMsg>,
}

async fn rig(workers: usize, device: Recorder) -> Rig {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let (registry_actor, _) = Actor::spawn(None, Registry, store.clone()).await.unwrap();
    let registry_slot = Slot::default();
    registry_slot.set(registry_actor);
    let registry = RegistryHandle::new(registry_slot, store);
    let device = Arc::new(device);
    let deps = Arc::new(WorkerDeps {
        provisioner: device.clone(),
        sink: Arc::new(registry.clone()),
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        // Short: a task taken again after its worker died waits out this deadline first.
        call_timeout: Duration::from_millis(300),
        observer: Arc::new(crate::observe::Unobserved),
        leases: None,
        adopt_unknown: false,
    });
    let (pool, _) = Actor::spawn(None, Pool, PoolArgs { size: workers, deps })
        .await
        .unwrap();
    let pool_slot = Slot::default();
    pool_slot.set(pool.clone());
    let queue = InProcessQueue::default();
    Actor::spawn(
        None,
        Consumer,
        ConsumerArgs {
            source: Arc::new(queue.clone()),
            handler: Arc::new(PoolHandle::new(pool_slot, Arc::new(crate::observe::Unobserved))),
            connected: Arc::new(AtomicBool::new(false)),
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    Rig {
        queue,
        registry,
        device,
        pool,
    }
}

impl Rig {
    /// What Service B does with a new task: store it, then queue it.
    async fn accept(&self, task: &TaskMessage) {
        self.registry.create(crate::TaskRecord::from(task)).await.unwrap();
        self.queue.publish(task).await.unwrap();
    }
}

fn task(device: &str, sequence: u64) -> TaskMessage {
    let body = format!(r#"{{"timeoutInSeconds": {sequence}, "parameters": {{}}}}"#);
    TaskMessage {
        task_id: TaskId::new(),
        equipment_id: EquipmentId::parse(device).unwrap(),
        request: ConfigRequest::from_json(body.as_bytes()).unwrap(),
    }
}

async fn wait_until_final(rig: &Rig, tasks: &[TaskMessage]) {
    wait_until(rig, tasks, TaskStatus::Completed).await
}

async fn wait_until(rig: &Rig, tasks: &[TaskMessage], status: TaskStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for task in tasks {
        loop {
            let record = rig.registry.get(task.task_id).await.unwrap();
            if record.is_some_and(|r| r.status == status) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {} did not reach {status:?}",
                task.task_id
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn one_device_is_configured_one_task_at_a_time_in_order() {
    let rig = rig(8, Recorder::default()).await;
    let mut tasks = Vec::new();
    for sequence in 0..12 {
        tasks.push(task("devAAA1", sequence));
        tasks.push(task(&format!("other{sequence:03}"), 0));
    }
    for task in &tasks {
        rig.accept(task).await;
    }
    wait_until_final(&rig, &tasks).await;
    assert_eq!(
        rig.device.overlaps.load(Ordering::SeqCst),
        0,
        "two configurations of one device overlapped"
    );
    let order: Vec<u64> = rig
        .device
        .order
        .lock()
        .unwrap()
        .iter()
        .filter(|(d, _)| d == "devAAA1")
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(order, (0..12).collect::<Vec<_>>());
    assert!(
        rig.device.peak.load(Ordering::SeqCst) > 1,
        "different devices should run in parallel"
    );
}

#[tokio::test]
async fn a_call_that_panics_once_is_retried_and_the_task_still_completes() {
    let rig = rig(
        2,
        Recorder {
            panic_once: AtomicBool::new(true),
            ..Default::default()
        },
    )
    .await;
    let tasks = vec![task("abc123", 1), task("abc124", 2)];
    for task in &tasks {
        rig.accept(task).await;
    }
    wait_until_final(&rig, &tasks).await;
    let stats = rig.pool.call(PoolMsg::Stats, None).await.unwrap().unwrap();
    assert_eq!(
        stats,
        PoolStats {
            workers: 2,
            busy: 0,
            waiting: 0
        }
    );
}

#[tokio::test]
async fn drain_waits_for_running_work() {
    let rig = rig(2, Recorder::default()).await;
    let tasks: Vec<_> = (0..4).map(|i| task(&format!("drain{i:03}"), 0)).collect();
    for task in &tasks {
        rig.accept(task).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    rig.pool
        .call(PoolMsg::Drain, Some(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    let stats = rig.pool.call(PoolMsg::Stats, None).await.unwrap().unwrap();
    assert_eq!((stats.busy, stats.waiting), (0, 0));
}

/// Issue 7: twelve panicking tasks stopped a pool of ten for good. A panic in a call is one failed
/// attempt of its task; the task fails after its attempts and is dead-lettered, and the pool
/// serves on.
#[tokio::test]
async fn panicking_tasks_fail_and_are_dead_lettered_while_the_pool_serves_on() {
    let rig = rig(
        2,
        Recorder {
            poison: true,
            ..Default::default()
        },
    )
    .await;
    let poison: Vec<_> = (0..20).map(|i| task(&format!("poison{i:03}"), 0)).collect();
    let good: Vec<_> = (0..5).map(|i| task(&format!("good{i:03}"), 0)).collect();
    for task in poison.iter().chain(&good) {
        rig.accept(task).await;
    }
    wait_until(&rig, &poison, TaskStatus::Failed).await;
    wait_until_final(&rig, &good).await;
    for task in &poison {
        let record = rig.registry.get(task.task_id).await.unwrap().unwrap();
        assert_eq!(record.attempts, 3);
        assert_eq!(record.last_error.as_deref(), Some("the call to Service A panicked"));
    }
    assert_eq!(rig.queue.dead_letters().len(), 20);
    let later = task("later001", 0);
    rig.accept(&later).await;
    wait_until_final(&rig, std::slice::from_ref(&later)).await;
    let stats = rig.pool.call(PoolMsg::Stats, None).await.unwrap().unwrap();
    assert_eq!((stats.workers, stats.busy), (2, 0));
}

/// A body that is not a task is dead-lettered at the pool's door: it never reaches a worker.
#[tokio::test]
async fn garbage_is_dead_lettered_without_a_call() {
    let queue = InProcessQueue::default();
    queue.push_raw(b"{\"task_id\": 7}");
    let delivery = queue.subscribe().await.unwrap().next().await.unwrap();
    let garbage = Job::read(delivery).expect_err("not a task");
    assert!(matches!(garbage.dead_letter().await, Settlement::DeadLettered(_)));
    assert_eq!(queue.dead_letters().len(), 1);

    let rig = rig(1, Recorder::default()).await;
    rig.queue.push_raw(b"{\"task_id\": 7}");
    let good = task("after001", 0);
    rig.accept(&good).await;
    wait_until_final(&rig, std::slice::from_ref(&good)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rig.queue.dead_letters().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the garbage was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        rig.device.order.lock().unwrap().len(),
        1,
        "only the valid task was called"
    );
    assert_eq!(rig.queue.dead_letters().len(), 1);
}

/// Redeliveries are counted where deliveries enter, before they are read: garbage counts too.
#[tokio::test]
async fn the_door_counts_a_redelivery_even_of_garbage() {
    #[derive(Default)]
    struct CountsRedeliveries(AtomicUsize);
    impl crate::observe::Observer for CountsRedeliveries {
        fn redelivered(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let queue = InProcessQueue::default();
    queue.push_raw(b"nonsense");
    let mut subscription = queue.subscribe().await.unwrap();
    let first = subscription.next().await.unwrap();
    first.acker.settle(Settle::Requeue).await.unwrap();
    let again = subscription.next().await.unwrap();
    let counter = Arc::new(CountsRedeliveries::default());
    let door = PoolHandle::new(Slot::default(), counter.clone());
    door.handle(first);
    door.handle(again);
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
}

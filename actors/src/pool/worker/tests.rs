//! Actor-level tests of the worker: retries, deadlines, resumes, attempt counting and Retry-After.
use super::*;
use crate::memory::{InProcessQueue, MemoryStore};
use crate::ports::{QueueSource, TaskPublisher, TaskStore};
use crate::registry::{Registry, RegistryHandle};
use crate::slot::Slot;
use crate::{ConfigRequest, EquipmentId, TaskId, TaskStatus};
use async_trait::async_trait;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// A Service A stand-in that answers from a script, then succeeds.
#[derive(Default)]
pub(super) struct ScriptedDevice {
    script: Mutex<Vec<ProvisionError>>,
    pub(super) calls: AtomicU32,
}

#[async_trait]
impl Provisioner for ScriptedDevice {
    async fn configure(&self, _: &EquipmentId, _: &ConfigRequest) -> Result<(), ProvisionError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.script.lock().unwrap().pop() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

pub(super) struct Rig {
    pub(super) queue: InProcessQueue,
    pub(super) registry: RegistryHandle,
    pub(super) device: Arc<ScriptedDevice>,
    pub(super) deps: WorkerDeps,
}

pub(super) async fn rig(script: Vec<ProvisionError>) -> Rig {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
    let (actor, _) = Actor::spawn(None, Registry, store.clone()).await.unwrap();
    let slot = Slot::default();
    slot.set(actor);
    let registry = RegistryHandle::new(slot, store);
    let device = Arc::new(ScriptedDevice {
        script: Mutex::new(script),
        calls: AtomicU32::new(0),
    });
    let deps = WorkerDeps {
        provisioner: device.clone(),
        sink: Arc::new(registry.clone()),
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        call_timeout: Duration::from_secs(5),
        observer: Arc::new(crate::observe::Unobserved),
        leases: None,
        adopt_unknown: false,
    };
    Rig {
        queue: InProcessQueue::default(),
        registry,
        device,
        deps,
    }
}

pub(super) fn task() -> TaskMessage {
    TaskMessage {
        task_id: TaskId::new(),
        equipment_id: EquipmentId::parse("abc123").unwrap(),
        request: ConfigRequest::from_json(br#"{"timeoutInSeconds": 14, "parameters": {}}"#).unwrap(),
    }
}

/// Runs one delivery of `task`, stored first (as Service B does) unless the test stored it.
pub(super) async fn run_one(rig: &Rig, task: &TaskMessage) -> Settlement {
    if rig.registry.get(task.task_id).await.unwrap().is_none() {
        rig.registry.create(crate::TaskRecord::from(task)).await.unwrap();
    }
    rig.queue.publish(task).await.unwrap();
    process(&rig.deps, next_job(&rig.queue).await).await
}

/// The next delivery of the queue, read at the pool's door as it would be.
pub(super) async fn next_job(queue: &InProcessQueue) -> Job {
    let delivery = queue.subscribe().await.unwrap().next().await.unwrap();
    Job::read(delivery).expect("a valid task")
}

pub(super) async fn status(rig: &Rig, task: &TaskMessage) -> TaskStatus {
    rig.registry.get(task.task_id).await.unwrap().unwrap().status
}

#[tokio::test]
async fn success_is_recorded_then_acknowledged() {
    let rig = rig(vec![]).await;
    let task = task();
    assert_eq!(
        run_one(&rig, &task).await,
        Settlement::Acked(Some(Outcome::Completed { attempts: 1 }))
    );
    assert_eq!(status(&rig, &task).await, TaskStatus::Completed);
    assert!(rig.queue.is_empty());
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let rig = rig(vec![
        ProvisionError::Transport("reset".into()),
        ProvisionError::Status {
            status: 503,
            body: String::new(),
            retry_after: None,
        },
    ])
    .await;
    let task = task();
    assert_eq!(
        run_one(&rig, &task).await,
        Settlement::Acked(Some(Outcome::Completed { attempts: 3 }))
    );
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn not_found_fails_at_once() {
    let rig = rig(vec![ProvisionError::NotFound]).await;
    let task = task();
    let settled = run_one(&rig, &task).await;
    assert!(
        matches!(settled, Settlement::Acked(Some(Outcome::Failed { attempts: 1, .. }))),
        "{settled:?}"
    );
    assert_eq!(status(&rig, &task).await, TaskStatus::Failed);
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn exhausted_retries_fail_the_task_and_dead_letter_it() {
    let rig = rig((0..3)
        .map(|_| ProvisionError::Status {
            status: 500,
            body: "boom".into(),
            retry_after: None,
        })
        .collect())
    .await;
    let task = task();
    assert!(matches!(run_one(&rig, &task).await, Settlement::DeadLettered(_)));
    let record = rig.registry.get(task.task_id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (TaskStatus::Failed, 3));
    assert!(record.last_error.as_ref().unwrap().contains("500"));
    assert_eq!(rig.queue.dead_letters().len(), 1);
}

#[tokio::test]
async fn a_redelivered_final_task_is_acknowledged_without_a_call() {
    let rig = rig(vec![]).await;
    let task = task();
    run_one(&rig, &task).await;
    assert_eq!(run_one(&rig, &task).await, Settlement::Acked(None));
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_message_naming_a_stored_task_with_another_device_is_dead_lettered_and_the_task_runs_as_stored() {
    let rig = rig(vec![]).await;
    let real = task();
    rig.registry.create(crate::TaskRecord::from(&real)).await.unwrap();
    let mut forged = real.clone();
    forged.equipment_id = EquipmentId::parse("forged1").unwrap();
    let settled = run_one(&rig, &forged).await;
    assert!(
        matches!(&settled, Settlement::DeadLettered(why) if why.contains("forged1")),
        "{settled:?}"
    );
    assert_eq!(rig.queue.dead_letters().len(), 1);
    assert_eq!(
        rig.device.calls.load(Ordering::SeqCst),
        0,
        "Service A never called for it"
    );
    assert_eq!(
        status(&rig, &real).await,
        TaskStatus::Queued,
        "the real task is untouched"
    );
    assert_eq!(
        run_one(&rig, &real).await,
        Settlement::Acked(Some(Outcome::Completed { attempts: 1 }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_for_a_task_the_store_never_held_is_dead_lettered_after_the_grace() {
    let rig = rig(vec![]).await;
    let unknown = task();
    rig.queue.publish(&unknown).await.unwrap();
    let started = tokio::time::Instant::now();
    let settled = process(&rig.deps, next_job(&rig.queue).await).await;
    assert!(
        matches!(&settled, Settlement::DeadLettered(why) if why.contains("unknown")),
        "{settled:?}"
    );
    assert!(
        started.elapsed() >= UNKNOWN_GRACE - Duration::from_secs(2),
        "asked again meanwhile"
    );
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 0);
    assert_eq!(rig.registry.get(unknown.task_id).await.unwrap(), None, "nothing stored");
}

#[tokio::test]
async fn a_call_past_its_deadline_counts_as_a_transient_failure() {
    struct Hangs;
    #[async_trait]
    impl Provisioner for Hangs {
        async fn configure(&self, _: &EquipmentId, _: &ConfigRequest) -> Result<(), ProvisionError> {
            std::future::pending().await
        }
    }
    let mut rig = rig(vec![]).await;
    rig.deps.provisioner = Arc::new(Hangs);
    rig.deps.call_timeout = Duration::from_millis(20);
    let task = task();
    assert!(
        matches!(run_one(&rig, &task).await, Settlement::DeadLettered(reason) if reason.contains("did not answer"))
    );
}

/// Issue 7: a task whose call kills the process is taken again after each restart. Every
/// begin counts a call; once `max_attempts` were used without an outcome, the task fails and
/// is dead-lettered without calling Service A again.
#[tokio::test]
async fn a_task_that_used_up_its_attempts_in_crashes_fails_without_a_call() {
    let rig = rig(vec![]).await;
    let task = task();
    rig.registry.create(crate::TaskRecord::from(&task)).await.unwrap();
    // Three deliveries that each started a call and died (the process was killed).
    for expected in 1..=3 {
        let begin = rig.registry.begin(&task, true).await.unwrap();
        let attempt = match begin {
            Begin::Run { attempt } | Begin::Resume { attempt, .. } => attempt,
            other => panic!("not final yet, and known: {other:?}"),
        };
        assert_eq!(attempt, expected);
    }
    let settled = run_one(&rig, &task).await;
    assert!(
        matches!(&settled, Settlement::DeadLettered(reason) if reason == "attempt limit reached: the worker or process stopped during 3 attempts"),
        "{settled:?}"
    );
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 0);
    let record = rig.registry.get(task.task_id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (TaskStatus::Failed, 3));
    assert_eq!(rig.queue.dead_letters().len(), 1);
}

#[tokio::test]
async fn the_status_shows_calls_as_they_start() {
    let rig = rig(vec![ProvisionError::Transport("reset".into())]).await;
    let task = task();
    run_one(&rig, &task).await;
    let record = rig.registry.get(task.task_id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (TaskStatus::Completed, 2));
}

/// Counts without a registry, so time can be paused.
struct Counting;

#[async_trait]
impl StatusSink for Counting {
    async fn begin(&self, _: &TaskMessage, _: bool) -> Result<Begin, crate::ports::SinkError> {
        Ok(Begin::Run { attempt: 1 })
    }
    async fn renew(&self, _: &TaskMessage) -> Result<(), crate::ports::SinkError> {
        Ok(())
    }
    async fn next_attempt(&self, _: &TaskMessage, local: u32) -> Result<u32, crate::ports::SinkError> {
        Ok(local)
    }
    async fn finish(&self, _: &TaskMessage, _: Outcome) -> Result<(), crate::ports::SinkError> {
        Ok(())
    }
}

/// Answers 429 with `Retry-After` once, then succeeds; notes when it was called.
#[derive(Default)]
struct Busy(Mutex<Vec<tokio::time::Instant>>);

#[async_trait]
impl Provisioner for Busy {
    async fn configure(&self, _: &EquipmentId, _: &ConfigRequest) -> Result<(), ProvisionError> {
        let mut calls = self.0.lock().unwrap();
        calls.push(tokio::time::Instant::now());
        if calls.len() > 1 {
            return Ok(());
        }
        Err(ProvisionError::Status {
            status: 429,
            body: String::new(),
            retry_after: Some(Duration::from_secs(40)),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_instead_of_the_backoff() {
    let device = Arc::new(Busy::default());
    let deps = WorkerDeps {
        provisioner: device.clone(),
        sink: Arc::new(Counting),
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            max_delay: Duration::from_secs(60),
        },
        call_timeout: Duration::from_secs(50),
        observer: Arc::new(crate::observe::Unobserved),
        leases: None,
        adopt_unknown: false,
    };
    let queue = InProcessQueue::default();
    queue.publish(&task()).await.unwrap();
    assert_eq!(
        process(&deps, next_job(&queue).await).await,
        Settlement::Acked(Some(Outcome::Completed { attempts: 2 }))
    );
    let calls = device.0.lock().unwrap();
    let gap = calls[1] - calls[0];
    assert!(
        gap >= Duration::from_secs(40) && gap < Duration::from_secs(41),
        "{gap:?}"
    );
}

/// A sink that says the task was running elsewhere just now, and a device that notes when it is called.
struct ResumedJustNow;

#[async_trait]
impl StatusSink for ResumedJustNow {
    async fn begin(&self, _: &TaskMessage, _: bool) -> Result<Begin, crate::ports::SinkError> {
        Ok(Begin::Resume {
            since: crate::domain::now_millis(),
            attempt: 1,
        })
    }
    async fn renew(&self, _: &TaskMessage) -> Result<(), crate::ports::SinkError> {
        Ok(())
    }
    async fn next_attempt(&self, _: &TaskMessage, local: u32) -> Result<u32, crate::ports::SinkError> {
        Ok(local)
    }
    async fn finish(&self, _: &TaskMessage, _: Outcome) -> Result<(), crate::ports::SinkError> {
        Ok(())
    }
}

#[derive(Default)]
struct NotesTime(Mutex<Option<tokio::time::Instant>>);

#[async_trait]
impl Provisioner for NotesTime {
    async fn configure(&self, _: &EquipmentId, _: &ConfigRequest) -> Result<(), ProvisionError> {
        *self.0.lock().unwrap() = Some(tokio::time::Instant::now());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_resumed_task_waits_out_the_earlier_calls_deadline_before_calling() {
    let device = Arc::new(NotesTime::default());
    let deps = WorkerDeps {
        provisioner: device.clone(),
        sink: Arc::new(ResumedJustNow),
        retry: RetryPolicy::default(),
        call_timeout: Duration::from_secs(60),
        observer: Arc::new(crate::observe::Unobserved),
        leases: None,
        adopt_unknown: false,
    };
    let queue = InProcessQueue::default();
    queue.publish(&task()).await.unwrap();
    let job = next_job(&queue).await;
    let started = tokio::time::Instant::now();
    process(&deps, job).await;
    let called = device.0.lock().unwrap().expect("Service A was called");
    assert!(
        called - started >= Duration::from_secs(59),
        "called after {:?}",
        called - started
    );
}

/// Hangs on its first call, then answers 404.
#[derive(Default)]
struct HangsThenUnknown(AtomicU32);

#[async_trait]
impl Provisioner for HangsThenUnknown {
    async fn configure(&self, _: &EquipmentId, _: &ConfigRequest) -> Result<(), ProvisionError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            std::future::pending::<()>().await;
        }
        Err(ProvisionError::NotFound)
    }
}

/// Notes every event, in order.
#[derive(Default)]
struct Recording(Mutex<Vec<String>>);

impl crate::observe::Observer for Recording {
    fn call_ended(&self, outcome: crate::observe::CallOutcome, took: Duration) {
        self.0.lock().unwrap().push(format!("{outcome:?} {}s", took.as_secs()));
    }
    fn task_finished(&self, result: crate::observe::Finished) {
        self.0.lock().unwrap().push(format!("{result:?}"));
    }
}

#[tokio::test(start_paused = true)]
async fn calls_are_observed_by_outcome_and_a_dropped_call_as_a_timeout() {
    let observer = Arc::new(Recording::default());
    let deps = WorkerDeps {
        provisioner: Arc::new(HangsThenUnknown::default()),
        sink: Arc::new(Counting),
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
        call_timeout: Duration::from_secs(5),
        observer: observer.clone(),
        leases: None,
        adopt_unknown: false,
    };
    let queue = InProcessQueue::default();
    queue.publish(&task()).await.unwrap();
    assert!(matches!(
        process(&deps, next_job(&queue).await).await,
        Settlement::Acked(Some(Outcome::Failed { attempts: 2, .. }))
    ));
    // A 404 before the last attempt is a plain failure, not a dead letter.
    assert_eq!(*observer.0.lock().unwrap(), ["Timeout 5s", "Permanent 0s", "Failed"]);
}

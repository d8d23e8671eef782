//! A worker actor runs one delivery at a time: check, call Service A (with retries), record, then ack.

use crate::pool::PoolMsg;
use crate::ports::{Begin, Delivery, ProvisionError, Provisioner, StatusSink};
use crate::retry::RetryPolicy;
use crate::{Outcome, TaskMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::Duration;

/// What every worker shares: its ports and its limits.
pub struct WorkerDeps {
    pub provisioner: Arc<dyn Provisioner>,
    pub sink: Arc<dyn StatusSink>,
    pub retry: RetryPolicy,
    /// Deadline of one call to Service A.
    pub call_timeout: Duration,
}

/// How a delivery was settled: returned for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Acked(Option<Outcome>),
    Requeued,
    DeadLettered(String),
}

pub enum WorkerMsg {
    Run(Delivery),
}

pub struct Worker;

pub struct WorkerState {
    deps: Arc<WorkerDeps>,
    pool: ActorRef<PoolMsg>,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = (Arc<WorkerDeps>, ActorRef<PoolMsg>);

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        (deps, pool): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(WorkerState { deps, pool })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WorkerMsg::Run(delivery) = msg;
        process(&state.deps, delivery).await;
        // The pool may be gone during shutdown; nothing is lost, the delivery is settled already.
        let _ = state.pool.cast(PoolMsg::Done(myself.get_id()));
        Ok(())
    }
}

/// Runs one delivery to its end. The acknowledgement is always the last step, after the outcome
/// is durable, so a crash at any point leaves the message to be delivered again.
pub async fn process(deps: &WorkerDeps, delivery: Delivery) -> Settlement {
    let task = match TaskMessage::from_json(&delivery.body) {
        Ok(task) => task,
        Err(reason) => {
            tracing::warn!(bytes = delivery.body.len(), %reason, "queue message is not a valid task; dead-lettered");
            settle(&delivery, Acking::DeadLetter).await;
            return Settlement::DeadLettered(reason.to_string());
        }
    };
    match deps.sink.begin(&task, delivery.redelivered).await {
        Ok(Begin::Run) => {}
        Ok(Begin::Resume { since }) => wait_out_earlier_call(deps, &task, since).await,
        Ok(Begin::AlreadyFinal) => {
            tracing::info!(task_id = %task.task_id, "task is final already; acknowledged without calling Service A");
            settle(&delivery, Acking::Ack).await;
            return Settlement::Acked(None);
        }
        Err(error) => {
            tracing::warn!(task_id = %task.task_id, %error, "could not mark the task running; requeued");
            settle(&delivery, Acking::Requeue).await;
            return Settlement::Requeued;
        }
    }
    let outcome = configure_with_retries(deps, &task).await;
    if let Err(error) = record_outcome(deps, &task, &outcome).await {
        tracing::error!(task_id = %task.task_id, %error, "could not record the outcome; requeued");
        settle(&delivery, Acking::Requeue).await;
        return Settlement::Requeued;
    }
    match &outcome {
        Outcome::Failed { reason, attempts } if *attempts >= deps.retry.max_attempts => {
            settle(&delivery, Acking::DeadLetter).await;
            Settlement::DeadLettered(reason.clone())
        }
        _ => {
            settle(&delivery, Acking::Ack).await;
            Settlement::Acked(Some(outcome))
        }
    }
}

async fn configure_with_retries(deps: &WorkerDeps, task: &TaskMessage) -> Outcome {
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout(
            deps.call_timeout,
            deps.provisioner.configure(&task.equipment_id, &task.request),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ProvisionError::Timeout(deps.call_timeout)),
        };
        let error = match result {
            Ok(()) => {
                tracing::info!(task_id = %task.task_id, equipment_id = %task.equipment_id, attempt, "configured");
                return Outcome::Completed { attempts: attempt };
            }
            Err(error) => error,
        };
        if !error.is_transient() || attempt >= deps.retry.max_attempts {
            tracing::warn!(task_id = %task.task_id, equipment_id = %task.equipment_id, attempt, %error, "configuration failed");
            return Outcome::Failed {
                attempts: attempt,
                reason: error.to_string(),
            };
        }
        let wait = deps.retry.delay_after(attempt);
        tracing::info!(task_id = %task.task_id, attempt, %error, ?wait, "transient failure; retrying");
        tokio::time::sleep(wait).await;
        if let Err(error) = deps.sink.renew(task).await {
            tracing::warn!(task_id = %task.task_id, %error, "could not renew the task's lease");
        }
        attempt += 1;
    }
}

/// An earlier call for this task may still be running at the device (its worker died, or its
/// process was killed): no call outlives its deadline, so waiting that long from its start keeps
/// one device from being configured twice at once.
async fn wait_out_earlier_call(deps: &WorkerDeps, task: &TaskMessage, since: u64) {
    let free_at = since.saturating_add(deps.call_timeout.as_millis() as u64);
    let wait = Duration::from_millis(free_at.saturating_sub(crate::domain::now_millis()));
    if !wait.is_zero() {
        tracing::info!(task_id = %task.task_id, equipment_id = %task.equipment_id, ?wait, "task was running when its worker stopped; waiting out the earlier call's deadline");
        tokio::time::sleep(wait).await;
        // The next call starts now: a crash during it must be waited out from here.
        if let Err(error) = deps.sink.renew(task).await {
            tracing::warn!(task_id = %task.task_id, %error, "could not renew the task's lease");
        }
    }
}

/// A registry that is restarting answers again within moments: try a few times before giving the task back.
async fn record_outcome(
    deps: &WorkerDeps,
    task: &TaskMessage,
    outcome: &Outcome,
) -> Result<(), crate::ports::SinkError> {
    let mut tries = 0;
    loop {
        match deps.sink.finish(task, outcome.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if tries >= 3 => return Err(error),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
        }
    }
}

enum Acking {
    Ack,
    Requeue,
    DeadLetter,
}

async fn settle(delivery: &Delivery, how: Acking) {
    let result = match how {
        Acking::Ack => delivery.acker.ack().await,
        Acking::Requeue => delivery.acker.requeue().await,
        Acking::DeadLetter => delivery.acker.dead_letter().await,
    };
    if let Err(error) = result {
        // The channel is gone: the broker will deliver the message again, and promise 3 makes that harmless.
        tracing::warn!(%error, "could not settle a delivery; it will be redelivered");
    }
}

#[cfg(test)]
mod tests {
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
    struct ScriptedDevice {
        script: Mutex<Vec<ProvisionError>>,
        calls: AtomicU32,
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

    struct Rig {
        queue: InProcessQueue,
        registry: RegistryHandle,
        device: Arc<ScriptedDevice>,
        deps: WorkerDeps,
    }

    async fn rig(script: Vec<ProvisionError>) -> Rig {
        let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::default());
        let (actor, _) = Actor::spawn(None, Registry, store).await.unwrap();
        let slot = Slot::default();
        slot.set(actor);
        let registry = RegistryHandle::new(slot);
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
        };
        Rig {
            queue: InProcessQueue::default(),
            registry,
            device,
            deps,
        }
    }

    fn task() -> TaskMessage {
        TaskMessage {
            task_id: TaskId::new(),
            equipment_id: EquipmentId::parse("abc123").unwrap(),
            request: ConfigRequest::from_json(br#"{"timeoutInSeconds": 14, "parameters": {}}"#).unwrap(),
        }
    }

    async fn run_one(rig: &Rig, task: &TaskMessage) -> Settlement {
        rig.queue.publish(task).await.unwrap();
        let delivery = rig.queue.subscribe().await.unwrap().next().await.unwrap();
        process(&rig.deps, delivery).await
    }

    async fn status(rig: &Rig, task: &TaskMessage) -> TaskStatus {
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
            })
            .collect())
        .await;
        let task = task();
        assert!(matches!(run_one(&rig, &task).await, Settlement::DeadLettered(_)));
        let record = rig.registry.get(task.task_id).await.unwrap().unwrap();
        assert_eq!((record.status, record.attempts), (TaskStatus::Failed, 3));
        assert!(record.last_error.unwrap().contains("500"));
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
    async fn garbage_is_dead_lettered_without_a_call() {
        let rig = rig(vec![]).await;
        rig.queue.push_raw(b"{\"task_id\": 7}");
        let delivery = rig.queue.subscribe().await.unwrap().next().await.unwrap();
        assert!(matches!(
            process(&rig.deps, delivery).await,
            Settlement::DeadLettered(_)
        ));
        assert_eq!(rig.device.calls.load(Ordering::SeqCst), 0);
        assert_eq!(rig.queue.dead_letters().len(), 1);
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

    /// A sink that says the task was running elsewhere just now, and a device that notes when it is called.
    struct ResumedJustNow;

    #[async_trait]
    impl StatusSink for ResumedJustNow {
        async fn begin(&self, _: &TaskMessage, _: bool) -> Result<Begin, crate::ports::SinkError> {
            Ok(Begin::Resume {
                since: crate::domain::now_millis(),
            })
        }
        async fn renew(&self, _: &TaskMessage) -> Result<(), crate::ports::SinkError> {
            Ok(())
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
        };
        let queue = InProcessQueue::default();
        queue.publish(&task()).await.unwrap();
        let delivery = queue.subscribe().await.unwrap().next().await.unwrap();
        let started = tokio::time::Instant::now();
        process(&deps, delivery).await;
        let called = device.0.lock().unwrap().expect("Service A was called");
        assert!(
            called - started >= Duration::from_secs(59),
            "called after {:?}",
            called - started
        );
    }
}

//! The worker with per-device leases (several instances sharing a store): it calls Service A only
//! under a confirmed lease, and a holder that lost its lease neither calls nor reports.

use super::tests::{rig, run_one, status, task};
use super::*;
use crate::ports::{Acquired, Lease};
use crate::TaskStatus;
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Leases that answer from scripts and note every step taken.
#[derive(Default)]
struct ScriptedLeases {
    acquire: Mutex<Vec<Acquired>>,
    /// Answers to renewals, last first; Ok once empty.
    renew: Mutex<Vec<Result<(), LeaseError>>>,
    steps: Mutex<Vec<&'static str>>,
}

#[async_trait]
impl DeviceLeases for ScriptedLeases {
    async fn acquire(&self, task: &TaskMessage, _: Duration, _: bool) -> Result<Acquired, LeaseError> {
        self.steps.lock().unwrap().push("acquire");
        let held = Acquired::Held(Lease {
            equipment_id: task.equipment_id.clone(),
            task_id: task.task_id,
            fence: 1,
        });
        Ok(self.acquire.lock().unwrap().pop().unwrap_or(held))
    }

    async fn renew(&self, _: &Lease, _: Duration) -> Result<(), LeaseError> {
        self.steps.lock().unwrap().push("renew");
        self.renew.lock().unwrap().pop().unwrap_or(Ok(()))
    }

    async fn release(&self, _: &Lease) -> Result<(), LeaseError> {
        self.steps.lock().unwrap().push("release");
        Ok(())
    }
}

async fn leased_rig(leases: ScriptedLeases) -> (super::tests::Rig, Arc<ScriptedLeases>) {
    let mut rig = rig(vec![]).await;
    let leases = Arc::new(leases);
    rig.deps.leases = Some(leases.clone());
    rig.deps.call_timeout = Duration::from_millis(300);
    (rig, leases)
}

#[tokio::test]
async fn a_held_device_is_confirmed_before_the_call_and_the_report_then_released() {
    let (rig, leases) = leased_rig(ScriptedLeases::default()).await;
    let task = task();
    assert_eq!(
        run_one(&rig, &task).await,
        Settlement::Acked(Some(Outcome::Completed { attempts: 1 }))
    );
    assert_eq!(*leases.steps.lock().unwrap(), ["acquire", "renew", "renew", "release"]);
    assert_eq!(status(&rig, &task).await, TaskStatus::Completed);
}

#[tokio::test]
async fn a_device_held_for_another_task_past_the_patience_ends_the_delivery_untouched() {
    let busy = ScriptedLeases {
        acquire: Mutex::new(vec![Acquired::Busy { same_task: false }; 100]),
        ..Default::default()
    };
    let (rig, leases) = leased_rig(busy).await;
    let task = task();
    rig.registry.create(crate::TaskRecord::from(&task)).await.unwrap();
    assert_eq!(run_one(&rig, &task).await, Settlement::Deferred);
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        status(&rig, &task).await,
        TaskStatus::Queued,
        "not begun, so no attempt counted"
    );
    assert!(
        leases.steps.lock().unwrap().len() > 1,
        "tried more than once before giving up"
    );
    assert!(!leases.steps.lock().unwrap().contains(&"release"));
}

#[tokio::test]
async fn a_task_behind_an_older_one_or_held_elsewhere_takes_no_worker_time() {
    for answer in [Acquired::Behind, Acquired::Busy { same_task: true }] {
        let scripted = ScriptedLeases {
            acquire: Mutex::new(vec![answer.clone()]),
            ..Default::default()
        };
        let (rig, leases) = leased_rig(scripted).await;
        let task = task();
        rig.registry.create(crate::TaskRecord::from(&task)).await.unwrap();
        assert_eq!(run_one(&rig, &task).await, Settlement::Deferred, "{answer:?}");
        assert_eq!(
            *leases.steps.lock().unwrap(),
            ["acquire"],
            "asked once, no wait: {answer:?}"
        );
        assert_eq!(status(&rig, &task).await, TaskStatus::Queued);
        assert_eq!(rig.device.calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn a_lease_lost_before_the_call_means_no_call_and_no_report() {
    let lost = ScriptedLeases {
        renew: Mutex::new(vec![Err(LeaseError::Lost)]),
        ..Default::default()
    };
    let (rig, _) = leased_rig(lost).await;
    let task = task();
    assert_eq!(run_one(&rig, &task).await, Settlement::Requeued);
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        status(&rig, &task).await,
        TaskStatus::Running,
        "left to the lease's new holder"
    );
}

#[tokio::test]
async fn a_lease_lost_during_the_call_means_the_outcome_is_not_reported() {
    // Renewals are popped last first: the one before the call succeeds, the one before the report fails.
    let lost = ScriptedLeases {
        renew: Mutex::new(vec![Err(LeaseError::Lost), Ok(())]),
        ..Default::default()
    };
    let (rig, _) = leased_rig(lost).await;
    let task = task();
    assert_eq!(run_one(&rig, &task).await, Settlement::Requeued);
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 1);
    assert_eq!(status(&rig, &task).await, TaskStatus::Running);
}

#[tokio::test]
async fn a_task_already_final_is_acknowledged_without_a_call() {
    let done = ScriptedLeases {
        acquire: Mutex::new(vec![Acquired::Final]),
        ..Default::default()
    };
    let (rig, leases) = leased_rig(done).await;
    assert_eq!(run_one(&rig, &task()).await, Settlement::Acked(None));
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 0);
    assert_eq!(*leases.steps.lock().unwrap(), ["acquire"]);
}

#[tokio::test]
async fn a_database_that_does_not_answer_for_a_moment_delays_the_call_but_repeats_nothing() {
    let unavailable = || Err(LeaseError::Unavailable("connection closed".into()));
    let blip = ScriptedLeases {
        renew: Mutex::new(vec![unavailable(), Ok(()), unavailable(), unavailable()]),
        ..Default::default()
    };
    let (rig, leases) = leased_rig(blip).await;
    let task = task();
    assert_eq!(
        run_one(&rig, &task).await,
        Settlement::Acked(Some(Outcome::Completed { attempts: 1 }))
    );
    assert_eq!(rig.device.calls.load(Ordering::SeqCst), 1);
    let renewals = leases.steps.lock().unwrap().iter().filter(|s| **s == "renew").count();
    assert_eq!(renewals, 5, "each unanswered renewal is asked again");
}

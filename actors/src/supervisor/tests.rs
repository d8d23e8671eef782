//! Actor-level tests of the supervisor: restart, budget, retire.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A child that counts its starts and can be told to fail.
struct Flaky;

impl Actor for Flaky {
    type Msg = &'static str;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<Self::Msg>, msg: Self::Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        Err(msg.into())
    }
}

struct FlakySpec {
    starts: Arc<AtomicUsize>,
    id: ChildId,
}

#[async_trait]
impl ChildSpec for FlakySpec {
    fn name(&self) -> &str {
        "flaky"
    }

    fn id(&self) -> ChildId {
        self.id
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let (actor, _) = Actor::spawn_linked(None, Flaky, (), supervisor).await?;
        Ok(actor.get_cell())
    }
}

async fn supervisor(
    max_restarts: usize,
) -> (
    ActorRef<SupervisorMsg>,
    tokio::task::JoinHandle<()>,
    Arc<AtomicUsize>,
    Arc<Mutex<Option<String>>>,
) {
    supervisor_of_child(max_restarts, ChildId::fresh()).await
}

/// A supervisor of one flaky child that has the given id.
async fn supervisor_of_child(
    max_restarts: usize,
    id: ChildId,
) -> (
    ActorRef<SupervisorMsg>,
    tokio::task::JoinHandle<()>,
    Arc<AtomicUsize>,
    Arc<Mutex<Option<String>>>,
) {
    let starts = Arc::new(AtomicUsize::new(0));
    let gave_up = Arc::new(Mutex::new(None));
    let args = SupervisorArgs {
        children: vec![Box::new(FlakySpec {
            starts: starts.clone(),
            id,
        })],
        max_restarts,
        window: Duration::from_secs(60),
        backoff: Duration::from_millis(1),
        gave_up: gave_up.clone(),
    };
    let (actor, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
    (actor, handle, starts, gave_up)
}

async fn fail_child(supervisor: &ActorRef<SupervisorMsg>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(cell) = child_cell(supervisor, "flaky").await {
            cell.send_message::<&'static str>("boom").unwrap();
            return;
        }
        assert!(Instant::now() < deadline, "child was not restarted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn wait_for_starts(starts: &AtomicUsize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while starts.load(Ordering::SeqCst) < count {
        assert!(Instant::now() < deadline, "expected {count} starts");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_failed_child_is_restarted() {
    let (supervisor, _, starts, gave_up) = supervisor(3).await;
    fail_child(&supervisor).await;
    wait_for_starts(&starts, 2).await;
    assert!(gave_up.lock().unwrap().is_none());
}

#[tokio::test]
async fn a_child_that_keeps_failing_stops_the_supervisor_with_a_reason() {
    let (supervisor, handle, starts, gave_up) = supervisor(2).await;
    for round in 1..=2 {
        fail_child(&supervisor).await;
        wait_for_starts(&starts, round + 1).await;
    }
    fail_child(&supervisor).await;
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("supervisor should stop")
        .unwrap();
    let reason = gave_up.lock().unwrap().clone().expect("a reason is recorded");
    assert!(reason.contains("flaky") && reason.contains("giving up"), "{reason}");
}

#[tokio::test]
async fn a_retired_child_is_not_restarted() {
    let flaky = ChildId::fresh();
    let (supervisor, _, starts, _) = supervisor_of_child(3, flaky).await;
    supervisor
        .call(|reply| SupervisorMsg::Retire(flaky, reply), None)
        .await
        .unwrap()
        .unwrap();
    assert!(child_cell(&supervisor, "flaky").await.is_none());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

#[test]
fn the_budget_counts_restarts_within_its_window() {
    let mut budget = RestartBudget::new(2, Duration::from_secs(60));
    assert!(budget.allow() && budget.allow());
    assert!(!budget.allow());
    let mut short = RestartBudget::new(1, Duration::ZERO);
    assert!(short.allow());
    std::thread::sleep(Duration::from_millis(2));
    assert!(short.allow(), "old restarts leave the window");
}

/// A child that notes, in its `post_stop`, that it was stopped cleanly.
struct Noting(&'static str, Arc<Mutex<Vec<&'static str>>>);

impl Actor for Noting {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        self.1.lock().unwrap().push(self.0);
        Ok(())
    }
}

struct NotingSpec(&'static str, Arc<Mutex<Vec<&'static str>>>, ChildId);

#[async_trait]
impl ChildSpec for NotingSpec {
    fn name(&self) -> &str {
        self.0
    }

    fn id(&self) -> ChildId {
        self.2
    }

    async fn start(&self, supervisor: ActorCell) -> Result<ActorCell, ActorProcessingErr> {
        let child = Noting(self.0, self.1.clone());
        let (actor, _) = Actor::spawn_linked(None, child, (), supervisor).await?;
        Ok(actor.get_cell())
    }
}

#[tokio::test]
async fn stopping_the_supervisor_stops_its_children_cleanly_newest_first() {
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let args = SupervisorArgs {
        children: vec![
            Box::new(NotingSpec("registry", stopped.clone(), ChildId::fresh())),
            Box::new(NotingSpec("service-b", stopped.clone(), ChildId::fresh())),
        ],
        max_restarts: 1,
        window: Duration::from_secs(60),
        backoff: Duration::from_millis(1),
        gave_up: Arc::new(Mutex::new(None)),
    };
    let (actor, handle) = Actor::spawn(None, Supervisor, args).await.unwrap();
    actor.stop(None);
    handle.await.unwrap();
    assert_eq!(*stopped.lock().unwrap(), vec!["service-b", "registry"]);
}

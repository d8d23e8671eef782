//! LISTEN for tasks made final by any instance, on a connection and thread of its own, so a long-poll
//! waiter on this instance wakes when another instance finishes its task, without polling the table.

use super::FINAL_CHANNEL;
use cpe_actors::ports::FinalListener;
use cpe_actors::TaskId;
use postgres::{Client, Config, NoTls};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the thread looks up from waiting to see whether it should stop.
const TICK: Duration = Duration::from_millis(250);
/// Wait before connecting again after the connection broke.
const RECONNECT: Duration = Duration::from_secs(1);

pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    pub fn start(config: &Config, tell: FinalListener) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let config = super::connections::with_timeout(config);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("postgres-listen".into())
                .spawn(move || listen(&config, &tell, &stop))
                .expect("a thread can be started")
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn listen(config: &Config, tell: &FinalListener, stop: &AtomicBool) {
    let mut first = true;
    while !stop.load(Ordering::Acquire) {
        let mut client = match subscribe(config) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN on PostgreSQL; waiters on this instance wake only for its own tasks until it can");
                std::thread::sleep(RECONNECT);
                continue;
            }
        };
        // Announcements made while this connection was away are lost: waiters check again.
        if !first {
            tell(None);
        }
        first = false;
        if let Err(e) = relay(&mut client, tell, stop) {
            tracing::warn!(error = %e, "PostgreSQL LISTEN connection lost; reconnecting");
            std::thread::sleep(RECONNECT);
        }
    }
}

fn subscribe(config: &Config) -> Result<Client, postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {FINAL_CHANNEL}"))?;
    Ok(client)
}

fn relay(client: &mut Client, tell: &FinalListener, stop: &AtomicBool) -> Result<(), postgres::Error> {
    let mut notifications = client.notifications();
    while !stop.load(Ordering::Acquire) {
        let mut batch = notifications.timeout_iter(TICK);
        while let Some(notification) = fallible_next(&mut batch)? {
            match TaskId::parse(notification.payload()) {
                Some(id) => tell(Some(id)),
                None => tracing::warn!("ignored a {FINAL_CHANNEL} notification that names no task"),
            }
        }
    }
    Ok(())
}

fn fallible_next(
    iter: &mut postgres::notifications::TimeoutIter<'_>,
) -> Result<Option<postgres::Notification>, postgres::Error> {
    use postgres::fallible_iterator::FallibleIterator;
    iter.next()
}

//! A few PostgreSQL connections, each on a thread of its own: the store port is synchronous and the
//! `postgres` client blocks, which must never happen on a tokio worker thread (it would stall every
//! task scheduled there, and the client's own runtime refuses to start inside another one).

use cpe_actors::ports::StoreError;
use postgres::{Client, Config, NoTls, Statement};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Work for a connection: given the client, or why there is none (the connect error).
type Job = Box<dyn FnOnce(Result<&mut Client, &str>) + Send>;

/// How long a connection attempt may take before the call that needed it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs closures on one of `size` connections, waiting for the answer. A connection that broke (the
/// server restarted, the network cut it) is opened again for the next call.
pub struct Connections {
    jobs: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Connections {
    pub fn start(config: &Config, size: usize) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(size * 64);
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..size)
            .map(|n| {
                let (config, queue) = (with_timeout(config), queue.clone());
                std::thread::Builder::new()
                    .name(format!("postgres-{n}"))
                    .spawn(move || serve(&config, &queue))
                    .expect("a thread can be started")
            })
            .collect();
        Self {
            jobs: Mutex::new(Some(jobs)),
            threads: Mutex::new(threads),
        }
    }

    /// Runs `work` on a connection and returns its answer; errors name what was being done.
    pub fn run<T: Send + 'static>(
        &self,
        doing: &'static str,
        work: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let result = match client {
                Ok(client) => work(client).map_err(|e| error(doing, &e)),
                Err(reason) => Err(StoreError::Unavailable(format!(
                    "PostgreSQL: cannot {doing}: cannot connect: {reason}"
                ))),
            };
            let _ = answer.send(result);
        });
        let jobs = self.jobs.lock().expect("jobs lock").clone();
        let sent = jobs.map(|jobs| jobs.send(job).is_ok()).unwrap_or(false);
        if !sent {
            return Err(StoreError::Unavailable(format!(
                "PostgreSQL: cannot {doing}: the store is closed"
            )));
        }
        waiting_off_the_runtime(|| {
            answered.recv().unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "PostgreSQL: cannot {doing}: the connection thread stopped"
                )))
            })
        })
    }

    /// Lets the threads finish the calls already queued, then closes their connections.
    pub fn close(&self) {
        self.jobs.lock().expect("jobs lock").take();
        for thread in std::mem::take(&mut *self.threads.lock().expect("threads lock")) {
            let _ = thread.join();
        }
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        self.close();
    }
}

/// Runs a blocking wait. On a worker thread of tokio's multi-threaded runtime (the registry actor, a
/// metrics scrape), the thread's other tasks are handed to another thread first: a database that
/// takes seconds to answer (a restart, the connect timeout) must not stall the HTTP servers.
fn waiting_off_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// The message of a failed call: the server's own words when it gave some (they name the table,
/// the constraint or the reason), never the connection string.
pub fn error(doing: &str, e: &postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => with_causes(e),
    };
    StoreError::Unavailable(format!("PostgreSQL: cannot {doing}: {detail}"))
}

/// The error and what caused it ("error connecting to server: Connection refused ...").
pub fn with_causes(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

pub fn with_timeout(config: &Config) -> Config {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
}

thread_local! {
    /// The statements this thread's connection has prepared, by their SQL: a read costs one round
    /// trip instead of two (parse, then execute). Emptied whenever the connection is opened anew.
    static STATEMENTS: RefCell<HashMap<String, Statement>> = RefCell::default();
}

/// `sql` prepared on this connection, once: for statements run often (reads by id, listings).
pub fn prepared(client: &mut Client, sql: &str) -> Result<Statement, postgres::Error> {
    if let Some(statement) = STATEMENTS.with(|cached| cached.borrow().get(sql).cloned()) {
        return Ok(statement);
    }
    let statement = client.prepare(sql)?;
    STATEMENTS.with(|cached| cached.borrow_mut().insert(sql.to_owned(), statement.clone()));
    Ok(statement)
}

/// One connection's loop: takes the next job, connecting first when there is no live connection.
fn serve(config: &Config, queue: &Mutex<Receiver<Job>>) {
    let mut client: Option<Client> = None;
    loop {
        let job = match queue.lock().expect("queue lock").recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let mut failed = None;
        if client.as_ref().is_none_or(Client::is_closed) {
            STATEMENTS.with(|cached| cached.borrow_mut().clear());
            client = match config.connect(NoTls) {
                Ok(fresh) => Some(fresh),
                Err(e) => {
                    failed = Some(with_causes(&e));
                    None
                }
            };
        }
        match (client.as_mut(), failed) {
            (Some(client), _) => job(Ok(client)),
            (None, reason) => job(Err(reason.as_deref().unwrap_or("no connection"))),
        }
    }
}

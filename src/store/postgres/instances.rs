//! Which queue the instances on one database share. Several instances share tasks only through
//! RabbitMQ: an in-process queue is each instance's own, and each would requeue every unfinished
//! task at start and run it beside the others. So an instance with the in-process queue holds the
//! database alone (an exclusive session advisory lock) and one with RabbitMQ shares it (a shared
//! lock of the same key); a start that cannot take its lock is refused with the reason.

use postgres::{Config, NoTls};
use std::sync::mpsc;

/// An arbitrary, fixed first key ("cpei" in ASCII); the second is the schema's, so instances on
/// other schemas of the same database do not meet.
const INSTANCES_LOCK: i32 = 0x6370_6569;

/// The lock, held by a connection on a thread of its own until this is dropped.
pub struct Membership {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    /// `alone`: this instance uses the in-process queue.
    pub fn join(config: &Config, alone: bool) -> Result<Self, String> {
        let config = super::connections::with_timeout(config);
        let (answer, answered) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("postgres-membership".into())
            .spawn(move || {
                let taken = config.connect(NoTls).map_err(|e| e.to_string()).and_then(|mut client| {
                    let sql = if alone {
                        "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))"
                    } else {
                        "SELECT pg_try_advisory_lock_shared($1, hashtext(current_schema()))"
                    };
                    let row = client.query_one(sql, &[&INSTANCES_LOCK]).map_err(|e| e.to_string())?;
                    Ok((client, row.get::<_, bool>(0)))
                });
                match taken {
                    Ok((client, true)) => {
                        let _ = answer.send(Ok(true));
                        // Held until the store closes (or the process ends, which releases it too).
                        let _ = stopped.recv();
                        drop(client);
                    }
                    Ok((_, false)) => drop(answer.send(Ok(false))),
                    Err(error) => drop(answer.send(Err(error))),
                }
            })
            .map_err(|e| e.to_string())?;
        let membership = Self {
            stop: Some(stop),
            thread: Some(thread),
        };
        match answered.recv() {
            Ok(Ok(true)) => Ok(membership),
            Ok(Ok(false)) if alone => Err(
                "another instance uses this database: instances that share a PostgreSQL store share tasks \
                 only through RabbitMQ, so give each of them --amqp-url"
                    .into(),
            ),
            Ok(Ok(false)) => Err(
                "an instance with the in-process queue holds this database alone: give it --amqp-url too, \
                 or stop it"
                    .into(),
            ),
            Ok(Err(error)) => Err(format!("cannot register this instance with PostgreSQL: {error}")),
            Err(_) => Err("cannot register this instance with PostgreSQL".into()),
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

//! A worker's hold on its device when instances share a store: taken before the task is begun,
//! confirmed before every call and before the outcome is reported, released after it.
//!
//! Service A cannot check a fence itself, so the fence is kept on this side: a call starts only
//! right after the database extended the lease to outlast the call's deadline. A holder that was
//! paused or cut off past its lease finds the lease gone at its next step and stops there.

use crate::ports::{Acquired, DeviceLeases, Lease, LeaseError};
use crate::TaskMessage;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How much longer than a call's deadline a lease lasts: room for the renewal's round trip.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// First and longest pause between tries while another task holds the device.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

pub struct HeldDevice {
    leases: Arc<dyn DeviceLeases>,
    lease: Lease,
    call_timeout: Duration,
}

/// What trying to take the device came to.
pub enum Take {
    Held(HeldDevice),
    /// The task is final already.
    Final,
    /// An older task of the device comes first; this one is handed to the queue again once that
    /// one is final, so the delivery is done with (no worker waits for a busy device).
    Behind,
    /// Another holder has this task, or kept the device past `patience`: it ends its task, and
    /// the write that makes it final hands the device's next task to the queue.
    HeldElsewhere,
    /// The store has never seen the task.
    Unknown,
    /// The leases cannot be reached: give the delivery back.
    Unavailable(String),
}

/// How long a worker waits for a device held by another holder: one lease and a second, so the
/// lease of a holder that died runs out within the wait and its redelivered task is taken over.
pub fn patience(call_timeout: Duration) -> Duration {
    ttl(call_timeout) + Duration::from_secs(1)
}

fn ttl(call_timeout: Duration) -> Duration {
    call_timeout + LEASE_MARGIN
}

/// Takes the device for this task. Waits (up to [`patience`]) only where the wait can end with
/// this task running: a redelivered task whose lease another holder still has (that holder may
/// have died), or a device held for another task. A first delivery of a task held elsewhere is a
/// duplicate and ends at once.
pub async fn take(
    leases: &Arc<dyn DeviceLeases>,
    task: &TaskMessage,
    redelivered: bool,
    adopt: bool,
    call_timeout: Duration,
) -> Take {
    let give_up = Instant::now() + patience(call_timeout);
    let mut pause = FIRST_PAUSE;
    loop {
        match leases.acquire(task, ttl(call_timeout), adopt).await {
            Ok(Acquired::Held(lease)) => {
                return Take::Held(HeldDevice {
                    leases: leases.clone(),
                    lease,
                    call_timeout,
                })
            }
            Ok(Acquired::Final) => return Take::Final,
            Ok(Acquired::Behind) => return Take::Behind,
            Ok(Acquired::Unknown) => return Take::Unknown,
            Ok(Acquired::Busy { same_task: true }) if !redelivered => return Take::HeldElsewhere,
            Ok(Acquired::Busy { .. }) if Instant::now() + pause < give_up => {
                tokio::time::sleep(pause + Duration::from_millis(fastrand::u64(0..=pause.as_millis() as u64 / 2)))
                    .await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            Ok(Acquired::Busy { .. }) => return Take::HeldElsewhere,
            Err(error) => return Take::Unavailable(error.to_string()),
        }
    }
}

impl HeldDevice {
    /// Extends the lease to outlast a call started now; fails when the lease is lost, or when the
    /// extension took so long that the call could outlive it. A database that does not answer (a
    /// restart, a cut connection) is asked again for up to a call timeout: the fence, not the clock,
    /// says whether the lease is still this holder's, so a late answer is as good as a prompt one.
    /// Ok: the instant by which a call must have started to end before the lease does.
    pub async fn confirm(&self) -> Result<Instant, LeaseError> {
        let give_up = Instant::now() + self.call_timeout;
        let mut pause = FIRST_PAUSE;
        loop {
            let asked = Instant::now();
            let why = match self.leases.renew(&self.lease, ttl(self.call_timeout)).await {
                Ok(()) if asked.elapsed() < LEASE_MARGIN => return Ok(asked + LEASE_MARGIN),
                Ok(()) => LeaseError::Unavailable("renewing the device lease took too long".into()),
                Err(LeaseError::Lost) => return Err(LeaseError::Lost),
                Err(unavailable) => unavailable,
            };
            if Instant::now() + pause >= give_up {
                return Err(why);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    pub async fn release(self) {
        if let Err(error) = self.leases.release(&self.lease).await {
            tracing::warn!(task_id = %self.lease.task_id, %error, "could not release the device lease; it expires by itself");
        }
    }
}

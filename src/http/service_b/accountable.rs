//! Who asked for a write, for the audit trail and each task's `requestedBy`: the actor of a
//! request, the draft of its audit record, and the record of a write refused with 401 or 403.

use super::{cross_site, ServiceB};
use crate::http::HttpRequest;
use crate::tokens::{Holder, Scope};
use cpe_actors::{AuditAction, AuditRecord};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use warp::http::StatusCode;

/// The actor of a request without a token in force, from a loopback peer.
const LOOPBACK: &str = "loopback";
/// The actor of a request with no valid token, or from elsewhere without a token in force.
const ANONYMOUS: &str = "anonymous";

/// Refused writes recorded per second at most: each is a store write, and a flood of them must not
/// become one. Those past it are counted in the log instead.
const REFUSALS_PER_SECOND: u32 = 20;

/// The longest route kept in a record: a refused request's path is whatever the client sent.
const ROUTE_CHARS: usize = 200;

impl ServiceB {
    /// The token's name; without a token in force, `loopback` or `anonymous` by the peer.
    pub(super) fn actor(holder: Option<&Holder>, request: &HttpRequest) -> String {
        match holder {
            Some(holder) => holder.name.clone(),
            None if request.peer.is_some_and(|ip| ip.to_canonical().is_loopback()) => LOOPBACK.into(),
            None => ANONYMOUS.into(),
        }
    }

    /// The audit record of `request` by `actor`, to be completed with what the write does.
    pub(super) fn draft(actor: &str, request: &HttpRequest, action: AuditAction) -> AuditRecord {
        let source = request
            .peer
            .map_or_else(|| "unknown".into(), |ip| ip.to_canonical().to_string());
        let route: String = format!("{} {}", request.method, request.path)
            .chars()
            .take(ROUTE_CHARS)
            .collect();
        AuditRecord::new(actor, &source, action, route)
    }

    /// Records a write refused with 401 or 403 (not its body), once it is durable; within the
    /// per-second budget.
    pub(super) async fn record_refusal(&self, request: &HttpRequest, status: StatusCode) {
        if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) || !self.refusals.take() {
            return;
        }
        let holder = self.authorize(request, Scope::Read).ok().flatten();
        let why = self.refusal_reason(status, request, holder.as_ref());
        let actor = Self::actor(holder.as_ref(), request);
        let record = Self::draft(&actor, request, AuditAction::Refused).ended(status.as_u16(), why);
        if let Err(store_error) = self.registry.record(record).await {
            tracing::warn!(%store_error, "could not record a refused write in the audit trail");
        }
    }

    fn refusal_reason(&self, status: StatusCode, request: &HttpRequest, holder: Option<&Holder>) -> &'static str {
        if status == StatusCode::UNAUTHORIZED {
            "refused: no valid bearer token"
        } else if cross_site::refuse_cross_site(request).is_some() {
            "refused: a cross-site request"
        } else if holder.is_some_and(|h| h.scope < Scope::Operate) {
            "refused: the token's scope is too narrow"
        } else {
            "refused: writes are for loopback peers only without a token"
        }
    }
}

/// How many refused writes may still be recorded this second.
#[derive(Default)]
pub struct RefusalBudget {
    /// The second (since the epoch) being counted, and the records taken in it.
    window: Mutex<(u64, u32)>,
    /// Refusals not recorded since the last warning.
    skipped: AtomicU64,
}

impl RefusalBudget {
    fn take(&self) -> bool {
        let second = cpe_actors::domain::now_millis() / 1_000;
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.0 != second {
            let skipped = self.skipped.swap(0, Ordering::Relaxed);
            if skipped > 0 {
                tracing::warn!(skipped, "refused writes past the audit budget were not recorded");
            }
            *window = (second, 0);
        }
        if window.1 >= REFUSALS_PER_SECOND {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        window.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_records_twenty_refusals_a_second_and_counts_the_rest() {
        let budget = RefusalBudget::default();
        // Within one second (the window is the clock's second): a start near its end could roll over.
        while cpe_actors::domain::now_millis() % 1_000 > 500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let taken = (0..50).filter(|_| budget.take()).count();
        assert_eq!(taken, REFUSALS_PER_SECOND as usize);
        assert_eq!(budget.skipped.load(Ordering::Relaxed), 30);
    }
}

//! The audit trail: who changed which tasks (or tried to), from where, and how it ended. A record
//! is written in the same store write as the change it describes, and kept as long as tasks are.

use super::{EquipmentId, TaskId};
use serde::{Deserialize, Serialize};

/// What was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuditAction {
    Create,
    Cancel,
    Retry,
    BulkCancel,
    BulkRetry,
    /// A write refused before it ran (401 or 403): its body is not kept.
    Refused,
}

impl AuditAction {
    pub const ALL: [AuditAction; 6] = [
        Self::Create,
        Self::Cancel,
        Self::Retry,
        Self::BulkCancel,
        Self::BulkRetry,
        Self::Refused,
    ];

    /// The name in answers and query strings (`create`, `bulkCancel`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Cancel => "cancel",
            Self::Retry => "retry",
            Self::BulkCancel => "bulkCancel",
            Self::BulkRetry => "bulkRetry",
            Self::Refused => "refused",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.name() == name)
    }
}

/// One entry of the trail. `id` is given by the store when it writes the record (0 before): it
/// grows with every record, so it orders the trail and pages through it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    #[serde(default, skip_serializing)]
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// The token's name, `loopback` (no token configured, a loopback peer) or `anonymous` (no
    /// valid token).
    pub actor: String,
    /// The peer's IP address.
    pub source: String,
    pub action: AuditAction,
    /// The method and path asked for, like `DELETE /api/v1/equipment/cpe/abc123/task/...`.
    pub route: String,
    /// The tasks changed (a retry: the failed task, then the new one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_ids: Vec<TaskId>,
    /// The devices concerned (a bulk action: the devices its filter names, if any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equipment_ids: Vec<EquipmentId>,
    /// A bulk action's filter, as it was understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// A bulk action's counts: tasks done and skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<BulkCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// What happened, in words (`accepted`, `cancelled`, `retried as ...`, or why it was refused).
    pub outcome: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkCounts {
    pub done: u64,
    pub skipped: u64,
}

impl AuditRecord {
    /// A record of `action` on `route` by `actor` from `source`, now; the rest is filled in by
    /// whoever learns it (the tasks, the outcome).
    pub fn new(actor: &str, source: &str, action: AuditAction, route: String) -> Self {
        Self {
            id: 0,
            at: super::now_millis(),
            actor: actor.to_owned(),
            source: source.to_owned(),
            action,
            route,
            task_ids: Vec::new(),
            equipment_ids: Vec::new(),
            filter: None,
            counts: None,
            idempotency_key: None,
            status: 200,
            outcome: String::new(),
        }
    }

    /// The same record with its outcome.
    pub fn ended(mut self, status: u16, outcome: impl Into<String>) -> Self {
        self.status = status;
        self.outcome = outcome.into();
        self
    }
}

/// Which records to read, newest first. Each filter set narrows the page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub equipment: Option<EquipmentId>,
    /// Only records at or after this time (ms since the epoch).
    pub since: Option<u64>,
    pub limit: usize,
    /// Only records older than this id; None: from the newest.
    pub before: Option<u64>,
}

impl AuditQuery {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.actor.as_ref().is_none_or(|actor| *actor == record.actor)
            && self.action.is_none_or(|action| action == record.action)
            && self.equipment.as_ref().is_none_or(|e| record.equipment_ids.contains(e))
            && self.since.is_none_or(|since| record.at >= since)
            && self.before.is_none_or(|before| record.id < before)
    }
}

/// Up to `limit` records, newest first, and where the next page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<u64>,
}

impl AuditPage {
    /// Cuts `newest_first` (at most `limit + 1` matching records) into a page and its cursor.
    pub fn from_candidates(mut newest_first: Vec<AuditRecord>, limit: usize) -> Self {
        let more = newest_first.len() > limit;
        newest_first.truncate(limit);
        let next = more.then(|| newest_first.last().map(|r| r.id)).flatten();
        Self {
            records: newest_first,
            next,
        }
    }

    /// Reads a page from records newest first, from `query.before` on (the memory and file
    /// stores): stops once the page is full, or a minute past `since`: ids
    /// and times grow together, give or take the moments between stamping and writing a record.
    pub fn walk(newest_first: impl Iterator<Item = AuditRecord>, query: &AuditQuery) -> Self {
        const SLACK_MILLIS: u64 = 60_000;
        let candidates = newest_first
            .take_while(|r| {
                query
                    .since
                    .is_none_or(|since| r.at.saturating_add(SLACK_MILLIS) >= since)
            })
            .filter(|r| query.matches(r))
            .take(query.limit + 1)
            .collect();
        Self::from_candidates(candidates, query.limit)
    }
}

//! Listing tasks: which ones (device, statuses), how many, and where a page starts, newest first.

use super::{EquipmentId, TaskId, TaskRecord, TaskStatus};

/// Where the next page starts: the (created_at, id) of the last task of the page before. Keyset, not
/// an offset, so pages stay stable while new tasks arrive and cost the same deep in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub created_at: u64,
    pub id: TaskId,
}

impl Cursor {
    pub fn of(record: &TaskRecord) -> Self {
        Self {
            created_at: record.created_at,
            id: record.id,
        }
    }
}

/// A page request. Empty `statuses` means every status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskQuery {
    pub equipment: Option<EquipmentId>,
    pub statuses: Vec<TaskStatus>,
    pub limit: usize,
    /// Only tasks older than this (strictly); None: from the newest.
    pub before: Option<Cursor>,
}

impl TaskQuery {
    /// Whether `record` belongs in the answer (the indexes narrow the search; this decides).
    pub fn matches(&self, record: &TaskRecord) -> bool {
        self.equipment.as_ref().is_none_or(|e| *e == record.equipment_id)
            && (self.statuses.is_empty() || self.statuses.contains(&record.status))
            && self.before.is_none_or(|before| Cursor::of(record) < before)
    }
}

/// Up to `limit` tasks, newest first, and the cursor of the next page when there is one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    pub next: Option<Cursor>,
}

impl TaskPage {
    /// Cuts `newest_first` (at most `limit + 1` matching tasks) into a page and its next cursor.
    pub fn from_candidates(mut newest_first: Vec<TaskRecord>, limit: usize) -> Self {
        let more = newest_first.len() > limit;
        newest_first.truncate(limit);
        let next = more.then(|| newest_first.last().map(Cursor::of)).flatten();
        Self {
            tasks: newest_first,
            next,
        }
    }
}

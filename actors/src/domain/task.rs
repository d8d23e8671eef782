//! A task's identity, status, transitions and the record the registry keeps.

use super::{ConfigRequest, EquipmentId, TaskMessage};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the canonical hyphenated form only, so a path holds exactly one spelling of an id.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 36).then(|| Uuid::try_parse(raw).ok()).flatten().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
    /// Stopped by an operator before it ran: never sent to Service A.
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The name in answers and query strings (`queued`, `running`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.name() == name)
    }

    /// Final states are terminal; a running task may go back to queued when its delivery is requeued.
    pub fn can_move_to(self, next: TaskStatus) -> bool {
        !self.is_final() && self != next
    }
}

/// How one configuration ended, as a worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Completed { attempts: u32 },
    Failed { attempts: u32, reason: String },
}

impl Outcome {
    pub fn status(&self) -> TaskStatus {
        match self {
            Self::Completed { .. } => TaskStatus::Completed,
            Self::Failed { .. } => TaskStatus::Failed,
        }
    }
}

/// A task known only from its queue message (it was just accepted, or another system published
/// it): queued, created now.
impl From<&TaskMessage> for TaskRecord {
    fn from(task: &TaskMessage) -> Self {
        Self::queued(task.task_id, task.equipment_id.clone(), task.request.clone())
    }
}

/// Everything known about one task. Only the registry changes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    pub id: TaskId,
    pub equipment_id: EquipmentId,
    pub request: ConfigRequest,
    pub status: TaskStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub updated_at: u64,
    /// The task an operator's retry created from this failed one.
    pub retried_as: Option<TaskId>,
    /// Who created the task (a token's name, or `loopback`); None for a task adopted from its
    /// queue message or stored before the audit trail.
    pub requested_by: Option<String>,
}

impl TaskRecord {
    pub fn queued(id: TaskId, equipment_id: EquipmentId, request: ConfigRequest) -> Self {
        let now = super::now_millis();
        Self {
            id,
            equipment_id,
            request,
            status: TaskStatus::Queued,
            attempts: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
            retried_as: None,
            requested_by: None,
        }
    }

    /// Applies a transition; returns false (and changes nothing) when it is not allowed.
    pub fn move_to(&mut self, next: TaskStatus) -> bool {
        self.move_to_at(next, super::now_millis())
    }

    /// [`Self::move_to`] at a given time (milliseconds since the epoch), for decisions that are
    /// plain functions of their inputs.
    pub fn move_to_at(&mut self, next: TaskStatus, now: u64) -> bool {
        if !self.status.can_move_to(next) {
            return false;
        }
        self.status = next;
        self.updated_at = now;
        true
    }

    /// A worker (re)took a running task: its lease starts again.
    pub fn renew(&mut self) {
        self.renew_at(super::now_millis());
    }

    pub fn renew_at(&mut self, now: u64) {
        self.updated_at = now;
    }

    /// Cancels a task that has not started; the parameters go, as for any final task.
    pub fn cancel(&mut self) -> bool {
        self.cancel_at(super::now_millis())
    }

    pub fn cancel_at(&mut self, now: u64) -> bool {
        if self.status != TaskStatus::Queued || !self.move_to_at(TaskStatus::Cancelled, now) {
            return false;
        }
        self.request.parameters = Default::default();
        true
    }

    /// Records the outcome. A completed task's parameters go: it is never run again, and its
    /// status answer does not show them, so passwords are kept no longer than needed (and memory
    /// and disk per retained task stay small). A failed task keeps them until it is retried or
    /// swept: an operator's retry sends the same request again.
    pub fn finish(&mut self, outcome: &Outcome) -> bool {
        self.finish_at(outcome, super::now_millis())
    }

    pub fn finish_at(&mut self, outcome: &Outcome, now: u64) -> bool {
        if !self.move_to_at(outcome.status(), now) {
            return false;
        }
        match outcome {
            Outcome::Completed { attempts } => {
                self.attempts = *attempts;
                self.request.parameters = Default::default();
            }
            Outcome::Failed { attempts, reason } => {
                self.attempts = *attempts;
                self.last_error = Some(reason.clone());
            }
        }
        true
    }

    /// Whether an operator may run this task's request again as a new task.
    pub fn can_retry(&self) -> bool {
        self.status == TaskStatus::Failed && self.retried_as.is_none()
    }

    /// Notes the retry that replaced this failed task. Its parameters stay until it is swept, so
    /// a retry whose new task could not be queued can be undone.
    pub fn mark_retried(&mut self, new_task: TaskId) {
        self.mark_retried_at(new_task, super::now_millis());
    }

    pub fn mark_retried_at(&mut self, new_task: TaskId, now: u64) {
        self.retried_as = Some(new_task);
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigRequest;

    fn record() -> TaskRecord {
        let request =
            ConfigRequest::from_json(br#"{"timeoutInSeconds": 1, "parameters": {"password": "secret"}}"#).unwrap();
        TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request)
    }

    #[test]
    fn task_ids_parse_only_the_canonical_form() {
        let id = TaskId::new();
        assert_eq!(TaskId::parse(&id.to_string()), Some(id));
        assert_eq!(TaskId::parse(&id.to_string().replace('-', "")), None);
        assert_eq!(TaskId::parse("not-a-uuid"), None);
    }

    #[test]
    fn final_states_are_terminal() {
        let mut task = record();
        assert!(task.move_to(TaskStatus::Running));
        assert!(task.finish(&Outcome::Failed {
            attempts: 2,
            reason: "device said no".into()
        }));
        assert_eq!((task.status, task.attempts), (TaskStatus::Failed, 2));
        assert!(!task.finish(&Outcome::Completed { attempts: 3 }));
        assert!(!task.move_to(TaskStatus::Running));
        assert_eq!(task.last_error.as_deref(), Some("device said no"));
        assert!(
            !task.request.parameters.is_empty(),
            "a failed task keeps its request for a retry"
        );
        assert!(task.can_retry());
        let retry = TaskId::new();
        task.mark_retried(retry);
        assert_eq!(task.retried_as, Some(retry));
        assert!(!task.can_retry(), "a failed task is retried once");
    }

    #[test]
    fn a_completed_task_keeps_no_parameters() {
        let mut task = record();
        assert!(task.finish(&Outcome::Completed { attempts: 1 }));
        assert!(task.request.parameters.is_empty());
        assert!(!task.can_retry());
    }

    #[test]
    fn a_running_task_can_be_queued_again() {
        let mut task = record();
        assert!(task.move_to(TaskStatus::Running));
        assert!(task.move_to(TaskStatus::Queued));
        assert!(!task.move_to(TaskStatus::Queued));
    }
}

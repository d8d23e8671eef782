//! Queue wire formats: the task message (compatible with the original system) and status updates.

use super::{ConfigRequest, EquipmentId, Outcome, RequestError, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task on the queue: `{"task_id", "equipment_id", "task_payload": {"timeoutInSeconds", "parameters"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskMessage {
    pub task_id: TaskId,
    pub equipment_id: EquipmentId,
    pub request: ConfigRequest,
}

#[derive(Serialize)]
struct Wire<'a> {
    task_id: String,
    equipment_id: &'a str,
    task_payload: &'a ConfigRequest,
}

impl TaskMessage {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&Wire {
            task_id: self.task_id.to_string(),
            equipment_id: self.equipment_id.as_str(),
            task_payload: &self.request,
        })
        .expect("a task message always serialises")
    }

    /// Validates a message body as strictly as an HTTP request; the error says what is wrong.
    pub fn from_json(body: &[u8]) -> Result<Self, RequestError> {
        let value: Value = super::request::parse_json(body, "message")?;
        let field = |name: &str| {
            value
                .get(name)
                .ok_or_else(|| RequestError::Invalid(format!("message has no `{name}`")))
        };
        let task_id = field("task_id")?
            .as_str()
            .and_then(TaskId::parse)
            .ok_or_else(|| RequestError::Invalid("`task_id` must be a UUID string".into()))?;
        let equipment_id = field("equipment_id")?
            .as_str()
            .and_then(|raw| EquipmentId::parse(raw).ok())
            .ok_or_else(|| RequestError::Invalid("`equipment_id` is not a valid equipment id".into()))?;
        let request = ConfigRequest::from_value(field("task_payload")?)?;
        Ok(Self {
            task_id,
            equipment_id,
            request,
        })
    }
}

/// A status change travelling from a worker process back to Service B on the results queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum StatusUpdate {
    Running {
        task_id: TaskId,
        equipment_id: EquipmentId,
    },
    Finished {
        task_id: TaskId,
        equipment_id: EquipmentId,
        outcome: Outcome,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_message_of_the_original_system() {
        let body = br#"{"task_id": "2f1b6a4e-1c55-4e0c-9c7a-3f0d2b9d8e11", "equipment_id": "abc123", "task_payload": {"timeoutInSeconds": 14, "parameters": {"username": "admin", "password": "admin", "vlan": 534, "interfaces": [1, 2, 3, 4]}}}"#;
        let message = TaskMessage::from_json(body).unwrap();
        assert_eq!(message.equipment_id.as_str(), "abc123");
        assert_eq!(TaskMessage::from_json(&message.to_json()).unwrap(), message);
    }

    #[test]
    fn rejects_messages_that_are_not_tasks() {
        for body in [
            &b"nonsense"[..],
            br#"{}"#,
            br#"{"task_id": "x", "equipment_id": "abc123", "task_payload": {}}"#,
        ] {
            assert!(TaskMessage::from_json(body).is_err());
        }
        let bad_device = br#"{"task_id": "2f1b6a4e-1c55-4e0c-9c7a-3f0d2b9d8e11", "equipment_id": "a-b", "task_payload": {"timeoutInSeconds": 1, "parameters": {}}}"#;
        assert!(TaskMessage::from_json(bad_device).is_err());
    }

    #[test]
    fn status_updates_round_trip() {
        let update = StatusUpdate::Finished {
            task_id: TaskId::new(),
            equipment_id: EquipmentId::parse("abc123").unwrap(),
            outcome: Outcome::Failed {
                attempts: 1,
                reason: "HTTP 500".into(),
            },
        };
        let json = serde_json::to_vec(&update).unwrap();
        assert_eq!(serde_json::from_slice::<StatusUpdate>(&json).unwrap(), update);
    }
}

//! Reads of tasks by id and by page: the store's own (the registry's, on its connections) and its
//! read view's (status, listing and search outside the registry, on connections of their own).

use super::connections::{prepared, Connections};
use super::rows::{millis, record, status_code, uuid, COLUMNS};
use cpe_actors::ports::{StoreError, TaskReader};
use cpe_actors::{AuditPage, AuditQuery, TaskId, TaskPage, TaskQuery, TaskRecord};
use postgres::types::ToSql;
use std::sync::Arc;

/// The store as read outside the registry.
pub struct PgReads {
    readers: Arc<Connections>,
}

impl PgReads {
    pub(super) fn new(readers: Arc<Connections>) -> Self {
        Self { readers }
    }
}

impl TaskReader for PgReads {
    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        task(&self.readers, id)
    }
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        page(&self.readers, query)
    }
    fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        super::audit::page(&self.readers, query)
    }
}

/// One task by id: a prepared statement, one round trip.
pub(super) fn task(connections: &Connections, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
    let row = connections.run("read a task", move |client| {
        let statement = prepared(client, &format!("SELECT {COLUMNS} FROM cpe_tasks WHERE id = $1"))?;
        client.query_opt(&statement, &[&uuid(id)])
    })?;
    row.as_ref().map(record).transpose()
}

/// One page. Not prepared: a generic plan cannot know that a device's tasks of one status are few
/// among its thousands, and walked all of them (5.9 ms against 0.04 ms for 30,000 tasks).
pub(super) fn page(connections: &Connections, query: &TaskQuery) -> Result<TaskPage, StoreError> {
    let (sql, params) = list_sql(query);
    let limit = query.limit;
    let rows = connections.run("list tasks", move |client| {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        client.query(&sql, &params)
    })?;
    let tasks = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    Ok(TaskPage::from_candidates(tasks, limit))
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The page query for the filters given, so each shape of query gets a plan that walks its index.
fn list_sql(query: &TaskQuery) -> (String, Vec<Param>) {
    let mut conditions = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    if let Some(equipment) = &query.equipment {
        params.push(Box::new(equipment.as_str().to_owned()));
        conditions.push(format!("equipment_id = ${}", params.len()));
    }
    if !query.statuses.is_empty() {
        let codes: Vec<i16> = query.statuses.iter().map(|s| status_code(*s)).collect();
        params.push(Box::new(codes));
        conditions.push(format!("status = ANY(${})", params.len()));
    }
    if let Some(before) = query.before {
        params.push(Box::new(millis(before.created_at)));
        params.push(Box::new(uuid(before.id)));
        conditions.push(format!("(created_at, id) < (${}, ${})", params.len() - 1, params.len()));
    }
    params.push(Box::new((query.limit as i64).saturating_add(1)));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM cpe_tasks {filter} ORDER BY created_at DESC, id DESC LIMIT ${}",
        params.len()
    );
    (sql, params)
}

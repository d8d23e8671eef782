//! The audit trail in `cpe_audit`, shared by every instance on the database: appended in the
//! transaction of the change it records, read newest first by id (the database's order).

use super::connections::Connections;
use super::rows::millis;
use cpe_actors::ports::StoreError;
use cpe_actors::{AuditPage, AuditQuery, AuditRecord};
use postgres::types::ToSql;
use postgres::Transaction;

/// Appends the batch's records in one statement.
pub(super) fn append(
    txn: &mut Transaction<'_>,
    records: &[&AuditRecord],
) -> Result<Result<(), StoreError>, postgres::Error> {
    if records.is_empty() {
        return Ok(Ok(()));
    }
    let mut bodies = Vec::with_capacity(records.len());
    for record in records {
        match serde_json::to_string(record) {
            Ok(body) => bodies.push(body),
            Err(e) => {
                return Ok(Err(StoreError::Unavailable(format!(
                    "an audit record cannot be encoded: {e}"
                ))))
            }
        }
    }
    // The devices go in a column of their own, a `|`-joined list (an equipment id never holds one),
    // so `?equipmentId=` is answered without reading each record's JSON.
    let devices: Vec<String> = records.iter().map(|r| device_list(r)).collect();
    txn.execute(
        "INSERT INTO cpe_audit (at, actor, action, devices, record)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[])",
        &[
            &records.iter().map(|r| millis(r.at)).collect::<Vec<_>>(),
            &records.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>(),
            &records.iter().map(|r| r.action.name()).collect::<Vec<_>>(),
            &devices,
            &bodies,
        ],
    )?;
    Ok(Ok(()))
}

fn device_list(record: &AuditRecord) -> String {
    let names: Vec<&str> = record.equipment_ids.iter().map(|e| e.as_str()).collect();
    format!("|{}|", names.join("|"))
}

pub(super) fn page(connections: &Connections, query: &AuditQuery) -> Result<AuditPage, StoreError> {
    let mut conditions = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if let Some(actor) = &query.actor {
        params.push(Box::new(actor.clone()));
        conditions.push(format!("actor = ${}", params.len()));
    }
    if let Some(action) = query.action {
        params.push(Box::new(action.name()));
        conditions.push(format!("action = ${}", params.len()));
    }
    if let Some(equipment) = &query.equipment {
        params.push(Box::new(format!("%|{}|%", equipment.as_str())));
        conditions.push(format!("devices LIKE ${}", params.len()));
    }
    if let Some(since) = query.since {
        params.push(Box::new(millis(since)));
        conditions.push(format!("at >= ${}", params.len()));
    }
    if let Some(before) = query.before {
        params.push(Box::new(i64::try_from(before).unwrap_or(i64::MAX)));
        conditions.push(format!("id < ${}", params.len()));
    }
    params.push(Box::new((query.limit as i64).saturating_add(1)));
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conditions.join(" AND ")),
    };
    let sql = format!(
        "SELECT id, record FROM cpe_audit {filter} ORDER BY id DESC LIMIT ${}",
        params.len()
    );
    let rows = connections.run("read the audit trail", move |client| {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        client.query(&sql, &params)
    })?;
    let records = rows
        .iter()
        .map(|row| {
            let id: i64 = row.get(0);
            let mut record: AuditRecord = serde_json::from_str(row.get(1))
                .map_err(|e| StoreError::Unavailable(format!("audit record {id} cannot be decoded: {e}")))?;
            record.id = id.max(0) as u64;
            Ok(record)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(AuditPage::from_candidates(records, query.limit))
}

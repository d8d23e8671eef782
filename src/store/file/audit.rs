//! The file store's audit trail: table `audit`, record id (u64, counting up from 1) → the record
//! as JSON. Appended in the same transaction as the change it records; read newest first.

use super::db;
use cpe_actors::ports::StoreError;
use cpe_actors::{AuditPage, AuditQuery, AuditRecord};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

pub(super) fn prepare(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(AUDIT).map_err(db).map(drop)
}

/// Appends `record` under the id after the last one.
pub(super) fn append(txn: &WriteTransaction, record: &AuditRecord) -> Result<(), StoreError> {
    let value = serde_json::to_vec(record)
        .map_err(|e| StoreError::Unavailable(format!("an audit record cannot be encoded: {e}")))?;
    let mut table = txn.open_table(AUDIT).map_err(db)?;
    let id = table.last().map_err(db)?.map_or(1, |(id, _)| id.value() + 1);
    table.insert(id, value.as_slice()).map_err(db)?;
    Ok(())
}

pub(super) fn page(txn: &ReadTransaction, query: &AuditQuery) -> Result<AuditPage, StoreError> {
    let table = txn.open_table(AUDIT).map_err(db)?;
    let range = table.range(..query.before.unwrap_or(u64::MAX)).map_err(db)?;
    let mut damaged = None;
    let newest_first = range.rev().map_while(|entry| {
        let decoded = entry
            .map_err(db)
            .and_then(|(id, value)| decode(id.value(), value.value()));
        decoded.map_err(|e| damaged = Some(e)).ok()
    });
    let page = AuditPage::walk(newest_first, query);
    match damaged {
        Some(error) => Err(error),
        None => Ok(page),
    }
}

/// Removes up to `batch` of the oldest records stamped before `cutoff`; returns how many went.
pub(super) fn sweep_step(txn: &WriteTransaction, cutoff: u64, batch: usize) -> Result<usize, StoreError> {
    let mut table = txn.open_table(AUDIT).map_err(db)?;
    let mut due = Vec::new();
    for entry in table.iter().map_err(db)?.take(batch) {
        let (id, value) = entry.map_err(db)?;
        // A damaged record is swept by its neighbours' age: it never blocks the trail's expiry.
        let at = decode(id.value(), value.value()).map_or(0, |record| record.at);
        if at >= cutoff {
            break;
        }
        due.push(id.value());
    }
    for id in &due {
        table.remove(id).map_err(db)?;
    }
    Ok(due.len())
}

fn decode(id: u64, value: &[u8]) -> Result<AuditRecord, StoreError> {
    let mut record: AuditRecord = serde_json::from_slice(value)
        .map_err(|e| StoreError::Unavailable(format!("audit record {id} cannot be decoded: {e}")))?;
    record.id = id;
    Ok(record)
}

//! The browsing indexes of the file store, for task listing and search, newest first:
//! - `tasks_by_created`: created_at (big-endian) ++ task id → (), every task;
//! - `tasks_by_status`: status byte ++ created_at ++ task id → (), every task under its current status;
//! - `tasks_by_device`: equipment id ++ 0 ++ created_at ++ task id → (), every task of a device;
//! - `task_counts`: status byte → how many tasks have that status, for metrics.
//!
//! Changed in the same write transaction as the record. A page reads at most `limit + 1` entries per
//! index it walks, so it costs about the same at a million tasks as at a thousand.

use super::codec::Header;
use super::codec::{decode, status_byte};
use super::{db, index_key, split_key, IndexKey, RECORDS};
use cpe_actors::ports::{StoreCounts, StoreError};
use cpe_actors::{Cursor, TaskId, TaskPage, TaskQuery, TaskRecord, TaskStatus};
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

const BY_CREATED: TableDefinition<IndexKey, ()> = TableDefinition::new("tasks_by_created");
const BY_STATUS: TableDefinition<StatusKey, ()> = TableDefinition::new("tasks_by_status");
const BY_DEVICE: TableDefinition<&[u8], ()> = TableDefinition::new("tasks_by_device");
/// A device's tasks of one status: a listing with `?status=` reads only those.
const BY_DEVICE_STATUS: TableDefinition<&[u8], ()> = TableDefinition::new("tasks_by_device_status");
const COUNTS: TableDefinition<u8, u64> = TableDefinition::new("task_counts");

type StatusKey = [u8; 25];

/// Creates the tables, and fills them from the records when a file from before them has none yet.
pub(super) fn prepare(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut by_created = txn.open_table(BY_CREATED).map_err(db)?;
    txn.open_table(BY_STATUS).map_err(db)?;
    txn.open_table(BY_DEVICE).map_err(db)?;
    let mut by_device_status = txn.open_table(BY_DEVICE_STATUS).map_err(db)?;
    let records = txn.open_table(RECORDS).map_err(db)?;
    if !by_created.is_empty().map_err(db)? && by_device_status.is_empty().map_err(db)? {
        // A file from before the device-and-status index: filled once, from the records.
        for entry in records.iter().map_err(db)? {
            let (id, value) = entry.map_err(db)?;
            if let Ok(record) = decode(TaskId::from_bytes(id.value()), value.value()) {
                by_device_status
                    .insert(device_status_key(&record, record.status).as_slice(), ())
                    .map_err(db)?;
            }
        }
    }
    drop(by_device_status);
    if by_created.is_empty().map_err(db)? && !records.is_empty().map_err(db)? {
        for entry in records.iter().map_err(db)? {
            let (id, value) = entry.map_err(db)?;
            let id = TaskId::from_bytes(id.value());
            // An undecodable record stays out of the listing, as it stays out of every other read.
            if let Ok(record) = decode(id, value.value()) {
                by_created.insert(index_key(record.created_at, &id), ()).map_err(db)?;
                insert_status_and_device(txn, &record)?;
            }
        }
    }
    let mut counts = txn.open_table(COUNTS).map_err(db)?;
    if counts.is_empty().map_err(db)? && !records.is_empty().map_err(db)? {
        // A file from before the tallies: count once, from the records themselves.
        for entry in records.iter().map_err(db)? {
            if let Some(header) = Header::decode(entry.map_err(db)?.1.value()) {
                add(&mut counts, header.status, 1)?;
            }
        }
    }
    Ok(())
}

fn add(counts: &mut redb::Table<'_, u8, u64>, status: TaskStatus, delta: i64) -> Result<(), StoreError> {
    let key = status_byte(status);
    let now = counts.get(key).map_err(db)?.map_or(0, |v| v.value());
    counts.insert(key, now.saturating_add_signed(delta)).map_err(db)?;
    Ok(())
}

/// Takes a record that could not be decoded (so its index keys are unknown) out of the tallies.
pub(super) fn untally(txn: &WriteTransaction, status: TaskStatus) -> Result<(), StoreError> {
    tally(txn, status, -1)
}

/// Changes one status's tally inside the caller's transaction.
fn tally(txn: &WriteTransaction, status: TaskStatus, delta: i64) -> Result<(), StoreError> {
    add(&mut txn.open_table(COUNTS).map_err(db)?, status, delta)
}

/// The tallies, and the oldest queued task from the front of the status index.
pub(super) fn counts(txn: &ReadTransaction) -> Result<StoreCounts, StoreError> {
    let table = txn.open_table(COUNTS).map_err(db)?;
    let mut counts = StoreCounts::default();
    for status in TaskStatus::ALL {
        counts.by_status[status as usize] = table.get(status_byte(status)).map_err(db)?.map_or(0, |v| v.value());
    }
    let by_status = txn.open_table(BY_STATUS).map_err(db)?;
    let low = status_key(TaskStatus::Queued, 0, &TaskId::from_bytes([0; 16]));
    let high = prefixed(status_byte(TaskStatus::Queued), &[0xff; 24]);
    if let Some(first) = by_status.range(low..high).map_err(db)?.next() {
        counts.oldest_queued = Some(cursor_of(&first.map_err(db)?.0.value()[1..]).created_at);
    }
    Ok(counts)
}

/// Files a record the store did not hold before.
pub(super) fn insert(txn: &WriteTransaction, record: &TaskRecord) -> Result<(), StoreError> {
    let mut by_created = txn.open_table(BY_CREATED).map_err(db)?;
    by_created
        .insert(index_key(record.created_at, &record.id), ())
        .map_err(db)?;
    insert_status_and_device(txn, record)
}

fn insert_status_and_device(txn: &WriteTransaction, record: &TaskRecord) -> Result<(), StoreError> {
    tally(txn, record.status, 1)?;
    let mut by_status = txn.open_table(BY_STATUS).map_err(db)?;
    by_status
        .insert(status_key(record.status, record.created_at, &record.id), ())
        .map_err(db)?;
    let mut by_device = txn.open_table(BY_DEVICE).map_err(db)?;
    by_device
        .insert(
            device_key(record.equipment_id.as_str(), record.created_at, &record.id).as_slice(),
            (),
        )
        .map_err(db)?;
    let mut by_device_status = txn.open_table(BY_DEVICE_STATUS).map_err(db)?;
    by_device_status
        .insert(device_status_key(record, record.status).as_slice(), ())
        .map_err(db)?;
    Ok(())
}

/// Moves a record from its old status (`from`) to the one it has now.
pub(super) fn restatus(txn: &WriteTransaction, record: &TaskRecord, from: TaskStatus) -> Result<(), StoreError> {
    let (id, created_at, to) = (&record.id, record.created_at, record.status);
    if from != to {
        tally(txn, from, -1)?;
        tally(txn, to, 1)?;
        let mut by_status = txn.open_table(BY_STATUS).map_err(db)?;
        by_status.remove(status_key(from, created_at, id)).map_err(db)?;
        by_status.insert(status_key(to, created_at, id), ()).map_err(db)?;
        let mut by_device_status = txn.open_table(BY_DEVICE_STATUS).map_err(db)?;
        by_device_status
            .remove(device_status_key(record, from).as_slice())
            .map_err(db)?;
        by_device_status
            .insert(device_status_key(record, to).as_slice(), ())
            .map_err(db)?;
    }
    Ok(())
}

/// Takes a removed record out of every browsing index.
pub(super) fn remove(txn: &WriteTransaction, record: &TaskRecord) -> Result<(), StoreError> {
    tally(txn, record.status, -1)?;
    let mut by_created = txn.open_table(BY_CREATED).map_err(db)?;
    by_created
        .remove(index_key(record.created_at, &record.id))
        .map_err(db)?;
    let mut by_status = txn.open_table(BY_STATUS).map_err(db)?;
    by_status
        .remove(status_key(record.status, record.created_at, &record.id))
        .map_err(db)?;
    let mut by_device = txn.open_table(BY_DEVICE).map_err(db)?;
    by_device
        .remove(device_key(record.equipment_id.as_str(), record.created_at, &record.id).as_slice())
        .map_err(db)?;
    let mut by_device_status = txn.open_table(BY_DEVICE_STATUS).map_err(db)?;
    by_device_status
        .remove(device_status_key(record, record.status).as_slice())
        .map_err(db)?;
    Ok(())
}

/// One page: walks the narrowest index for the query, newest first, and checks each record.
pub(super) fn list(txn: &ReadTransaction, query: &TaskQuery) -> Result<TaskPage, StoreError> {
    let wanted = query.limit + 1;
    let upper = query.before.map(|c| index_key(c.created_at, &c.id));
    let mut ids: Vec<Cursor> = if let Some(device) = &query.equipment {
        let device = [device.as_str().as_bytes(), &[0]].concat();
        if query.statuses.is_empty() {
            newest_under(&txn.open_table(BY_DEVICE).map_err(db)?, &device, upper, wanted)?
        } else {
            // Up to `wanted` of each of the device's statuses, merged as below.
            let table = txn.open_table(BY_DEVICE_STATUS).map_err(db)?;
            let mut merged = Vec::new();
            for status in &query.statuses {
                let prefix = [&device[..], &[status_byte(*status)]].concat();
                merged.extend(newest_under(&table, &prefix, upper, wanted)?);
            }
            merged
        }
    } else if query.statuses.is_empty() {
        let table = txn.open_table(BY_CREATED).map_err(db)?;
        let range = match upper {
            Some(upper) => table.range(..upper).map_err(db)?,
            None => table.range::<IndexKey>(..).map_err(db)?,
        };
        range
            .rev()
            .take(wanted)
            .map(|entry| entry.map(|(key, _)| cursor_of(&key.value())).map_err(db))
            .collect::<Result<_, _>>()?
    } else {
        // Up to `wanted` of each status, merged: the newest `wanted` overall are among them.
        let table = txn.open_table(BY_STATUS).map_err(db)?;
        let mut merged = Vec::new();
        for status in &query.statuses {
            let low = status_key(*status, 0, &TaskId::from_bytes([0; 16]));
            let high = match upper {
                Some(upper) => prefixed(status_byte(*status), &upper),
                None => prefixed(status_byte(*status), &[0xff; 24]),
            };
            for entry in table.range(low..high).map_err(db)?.rev().take(wanted) {
                merged.push(cursor_of(&entry.map_err(db)?.0.value()[1..]));
            }
        }
        merged
    };
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let records = txn.open_table(RECORDS).map_err(db)?;
    let mut candidates = Vec::with_capacity(wanted);
    for at in ids {
        let Some(value) = records.get(at.id.as_bytes()).map_err(db)? else {
            continue;
        };
        let record = decode(at.id, value.value())?;
        if record.created_at == at.created_at && query.matches(&record) {
            candidates.push(record);
            if candidates.len() == wanted {
                break;
            }
        }
    }
    Ok(TaskPage::from_candidates(candidates, query.limit))
}

/// The newest `wanted` entries whose key is `prefix` then a time-and-id key, older than `upper`.
fn newest_under(
    table: &redb::ReadOnlyTable<&[u8], ()>,
    prefix: &[u8],
    upper: Option<IndexKey>,
    wanted: usize,
) -> Result<Vec<Cursor>, StoreError> {
    let low = [prefix, &[0; 24][..]].concat();
    let high = [prefix, &upper.unwrap_or([0xff; 24])[..]].concat();
    let mut found = Vec::new();
    for entry in table
        .range(low.as_slice()..high.as_slice())
        .map_err(db)?
        .rev()
        .take(wanted)
    {
        let key = entry.map_err(db)?.0.value().to_vec();
        found.push(cursor_of(&key[key.len() - 24..]));
    }
    Ok(found)
}

fn status_key(status: TaskStatus, created_at: u64, id: &TaskId) -> StatusKey {
    prefixed(status_byte(status), &index_key(created_at, id))
}

fn prefixed(byte: u8, key: &IndexKey) -> StatusKey {
    let mut out = [0; 25];
    out[0] = byte;
    out[1..].copy_from_slice(key);
    out
}

/// Equipment ids are ASCII letters and digits, so the 0 separator keeps each device's entries together.
fn device_key(device: &str, created_at: u64, id: &TaskId) -> Vec<u8> {
    [device.as_bytes(), &[0], &index_key(created_at, id)].concat()
}

/// The device, its 0 separator, the status, then time and id.
fn device_status_key(record: &TaskRecord, status: TaskStatus) -> Vec<u8> {
    let key = index_key(record.created_at, &record.id);
    [
        record.equipment_id.as_str().as_bytes(),
        &[0, status_byte(status)],
        &key[..],
    ]
    .concat()
}

fn cursor_of(key: &[u8]) -> Cursor {
    let key: IndexKey = key.try_into().expect("index keys end in 24 bytes of time and id");
    let (created_at, id) = split_key(&key);
    Cursor { created_at, id }
}

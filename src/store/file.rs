//! The embedded file store: task records in one redb file, `<data dir>/tasks.redb`, durable on every write.
//!
//! Five tables, changed together in one write transaction so that a crash never leaves them disagreeing:
//! - `records`: task id (16 bytes) → the encoded record (see [`encode`], in `file/codec.rs`);
//! - `unfinished`: created_at (big-endian) ++ task id → (), for queued and running tasks, so a restart
//!   reads only the open work, already in creation order, however many final tasks are kept;
//! - `final_by_update`: updated_at (big-endian) ++ task id → (), for completed and failed tasks, so a
//!   sweep reads only the entries it deletes;
//! - `idempotency_keys`: `Idempotency-Key` → task id, request fingerprint and created_at (32 bytes), and
//!   `idempotency_keys_by_time`: created_at (big-endian) ++ key → (), so keys expire without a scan;
//! - `audit`: the audit trail (see `file/audit.rs`).
//!
//! Readers double-check an index entry against its record and skip one that no longer matches, so an
//! index entry left behind by a record that could not be decoded can never resurrect or delete a task.

mod audit;
mod browse;
mod codec;

use codec::{decode, decode_key_entry, encode, encode_key_entry, Header};
use cpe_actors::ports::{IdempotencyEntry, StoreCounts, StoreError, TaskReader, TaskStore, WriteOp};
use cpe_actors::{AuditPage, AuditQuery, TaskId, TaskPage, TaskQuery, TaskRecord};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "tasks.redb";

type IndexKey = [u8; 24];

const RECORDS: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("records");
const UNFINISHED: TableDefinition<IndexKey, ()> = TableDefinition::new("unfinished");
const FINAL_BY_UPDATE: TableDefinition<IndexKey, ()> = TableDefinition::new("final_by_update");
const KEYS: TableDefinition<&str, [u8; 32]> = TableDefinition::new("idempotency_keys");
const KEYS_BY_TIME: TableDefinition<&[u8], ()> = TableDefinition::new("idempotency_keys_by_time");

/// Records removed per sweep transaction: a sweep of millions commits in steps instead of building one
/// giant transaction, and the registry's other writes get the file between steps.
const SWEEP_BATCH: usize = 10_000;

/// Page cache limit. redb's default is 1 GiB, too much to promise on the small machines this runs on; the
/// working set (open tasks and recent records) is far smaller.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A [`TaskStore`] that survives restarts: every `put`, `remove` and sweep step is committed with fsync
/// before it returns.
pub struct FileStore {
    db: Database,
    path: PathBuf,
}

impl FileStore {
    /// Opens `<dir>/tasks.redb`, creating the directory and the file if they are missing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create data directory {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        // Unfinished tasks hold their parameters (passwords included): owner only, like the TLS key.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Unavailable(format!("cannot restrict {} to its owner: {e}", path.display())))?;
        let store = Self { db, path };
        store
            .create_tables()
            .map_err(|e| store.wrap(format_args!("cannot prepare tables"), e))?;
        Ok(store)
    }

    /// Where the records live, for logs and error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records, final or not.
    pub fn len(&self) -> Result<u64, StoreError> {
        let count = || -> Result<u64, StoreError> {
            let txn = self.db.begin_read().map_err(db)?;
            txn.open_table(RECORDS).map_err(db)?.len().map_err(db)
        };
        count().map_err(|e| self.wrap(format_args!("cannot count records"), e))
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Creates the tables once, so read transactions never meet a missing table.
    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(RECORDS).map_err(db)?;
        txn.open_table(UNFINISHED).map_err(db)?;
        txn.open_table(FINAL_BY_UPDATE).map_err(db)?;
        txn.open_table(KEYS).map_err(db)?;
        txn.open_table(KEYS_BY_TIME).map_err(db)?;
        browse::prepare(&txn)?;
        audit::prepare(&txn)?;
        txn.commit().map_err(db)
    }

    fn wrap(&self, doing: fmt::Arguments<'_>, cause: StoreError) -> StoreError {
        StoreError::Unavailable(format!("{doing} in {}: {}", self.path.display(), cause.message()))
    }

    fn write_batch_inner(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        apply(&txn, ops)?;
        txn.commit().map_err(db)
    }

    fn get_inner(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let records = txn.open_table(RECORDS).map_err(db)?;
        let found = records.get(id.as_bytes()).map_err(db)?;
        found.map(|value| decode(id, value.value())).transpose()
    }

    fn unfinished_inner(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let records = txn.open_table(RECORDS).map_err(db)?;
        let index = txn.open_table(UNFINISHED).map_err(db)?;
        let mut open = Vec::new();
        for entry in index.iter().map_err(db)? {
            let (created_at, id) = split_key(&entry.map_err(db)?.0.value());
            let Some(value) = records.get(id.as_bytes()).map_err(db)? else {
                continue;
            };
            let record = decode(id, value.value())?;
            if !record.status.is_final() && record.created_at == created_at {
                open.push(record);
            }
        }
        Ok(open)
    }

    /// One sweep step: at most [`SWEEP_BATCH`] index entries; returns (entries seen, records removed).
    fn sweep_step(&self, cutoff_millis: u64) -> Result<(usize, usize), StoreError> {
        let upper = index_key(cutoff_millis, &TaskId::from_bytes([0; 16]));
        let txn = self.db.begin_write().map_err(db)?;
        let (seen, removed) = {
            let mut finals = txn.open_table(FINAL_BY_UPDATE).map_err(db)?;
            let mut records = txn.open_table(RECORDS).map_err(db)?;
            let keys = finals
                .range(..upper)
                .map_err(db)?
                .take(SWEEP_BATCH)
                .map(|entry| entry.map(|(key, _)| key.value()).map_err(db))
                .collect::<Result<Vec<IndexKey>, _>>()?;
            let mut removed = 0;
            for key in &keys {
                finals.remove(key).map_err(db)?;
                let (updated_at, id) = split_key(key);
                let current = records
                    .get(id.as_bytes())
                    .map_err(db)?
                    .map(|value| value.value().to_vec());
                let header = current.as_deref().and_then(Header::decode);
                if let Some(header) = header.filter(|h| h.status.is_final() && h.updated_at == updated_at) {
                    records.remove(id.as_bytes()).map_err(db)?;
                    // The browsing indexes and the tallies let go of it too.
                    match current.map(|value| decode(id, &value)) {
                        Some(Ok(record)) => browse::remove(&txn, &record)?,
                        _ => browse::untally(&txn, header.status)?,
                    }
                    removed += 1;
                }
            }
            (keys.len(), removed)
        };
        if seen == 0 {
            txn.abort().map_err(db)?;
        } else {
            txn.commit().map_err(db)?;
        }
        Ok((seen, removed))
    }

    /// One step of key expiry: at most [`SWEEP_BATCH`] keys created before the cutoff; returns how many.
    fn sweep_keys_step(&self, cutoff_millis: u64) -> Result<usize, StoreError> {
        let upper = cutoff_millis.to_be_bytes();
        let txn = self.db.begin_write().map_err(db)?;
        let seen = {
            let mut by_time = txn.open_table(KEYS_BY_TIME).map_err(db)?;
            let mut keys = txn.open_table(KEYS).map_err(db)?;
            // Every entry below the bare 8-byte prefix of the cutoff has an earlier time.
            let due = by_time
                .range(..upper.as_slice())
                .map_err(db)?
                .take(SWEEP_BATCH)
                .map(|entry| entry.map(|(k, _)| k.value().to_vec()).map_err(db))
                .collect::<Result<Vec<Vec<u8>>, _>>()?;
            for entry in &due {
                by_time.remove(entry.as_slice()).map_err(db)?;
                let (time, key) = entry.split_at(8);
                let Ok(key) = std::str::from_utf8(key) else { continue };
                let current = keys.get(key).map_err(db)?.map(|v| decode_key_entry(v.value()));
                if current.is_some_and(|c| c.created_at.to_be_bytes() == time) {
                    keys.remove(key).map_err(db)?;
                }
            }
            due.len()
        };
        if seen == 0 {
            txn.abort().map_err(db)?;
        } else {
            txn.commit().map_err(db)?;
        }
        Ok(seen)
    }
}

impl TaskReader for FileStore {
    fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.get_inner(id)
            .map_err(|e| self.wrap(format_args!("cannot read task {id}"), e))
    }
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let read = || browse::list(&self.db.begin_read().map_err(db)?, query);
        read().map_err(|e| self.wrap(format_args!("cannot list tasks"), e))
    }
    fn audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let read = || audit::page(&self.db.begin_read().map_err(db)?, query);
        read().map_err(|e| self.wrap(format_args!("cannot read the audit trail"), e))
    }
}

impl TaskStore for FileStore {
    fn write_batch(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        self.write_batch_inner(ops).map_err(|e| match ops {
            [WriteOp::Put(record) | WriteOp::PutWithKey(record, ..)] => {
                self.wrap(format_args!("cannot store task {}", record.id), e)
            }
            [WriteOp::Remove(id) | WriteOp::RemoveWithKey(id, _)] => {
                self.wrap(format_args!("cannot remove task {id}"), e)
            }
            _ => self.wrap(format_args!("cannot store a batch of {} changes", ops.len()), e),
        })
    }

    fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.unfinished_inner()
            .map_err(|e| self.wrap(format_args!("cannot list unfinished tasks"), e))
    }

    fn remove_final_before(&self, cutoff_millis: u64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let (seen, removed) = self
                .sweep_step(cutoff_millis)
                .map_err(|e| self.wrap(format_args!("cannot sweep final tasks ({total} removed so far)"), e))?;
            total += removed;
            if seen < SWEEP_BATCH {
                break;
            }
        }
        loop {
            let seen = self.sweep_keys_step(cutoff_millis).map_err(|e| {
                self.wrap(
                    format_args!("cannot expire idempotency keys ({total} records removed)"),
                    e,
                )
            })?;
            if seen < SWEEP_BATCH {
                break;
            }
        }
        loop {
            let sweep = || -> Result<usize, StoreError> {
                let txn = self.db.begin_write().map_err(db)?;
                let removed = audit::sweep_step(&txn, cutoff_millis, SWEEP_BATCH)?;
                txn.commit().map_err(db)?;
                Ok(removed)
            };
            let removed = sweep().map_err(|e| self.wrap(format_args!("cannot expire audit records"), e))?;
            if removed < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let read = || browse::counts(&self.db.begin_read().map_err(db)?);
        read().map_err(|e| self.wrap(format_args!("cannot count tasks"), e))
    }

    fn idempotency(&self, key: &str) -> Result<Option<IdempotencyEntry>, StoreError> {
        let read = || -> Result<Option<IdempotencyEntry>, StoreError> {
            let txn = self.db.begin_read().map_err(db)?;
            let keys = txn.open_table(KEYS).map_err(db)?;
            let found = keys.get(key).map_err(db)?;
            Ok(found.map(|value| decode_key_entry(value.value())))
        };
        read().map_err(|e| self.wrap(format_args!("cannot read an idempotency key"), e))
    }
}

/// Applies changes inside the caller's transaction.
fn apply(txn: &WriteTransaction, ops: &[WriteOp]) -> Result<(), StoreError> {
    for op in ops {
        match op {
            WriteOp::Put(record) => write_record(txn, record)?,
            WriteOp::PutWithKey(record, key, entry) => {
                write_record(txn, record)?;
                write_key(txn, key, entry)?;
            }
            WriteOp::Remove(id) => remove_record(txn, *id)?,
            WriteOp::RemoveWithKey(id, key) => {
                remove_record(txn, *id)?;
                remove_key(txn, key)?;
            }
            WriteOp::All(ops) => apply(txn, ops)?,
            WriteOp::Audit(record) => audit::append(txn, record)?,
        }
    }
    Ok(())
}

/// Writes one record and moves its index entries, inside the caller's transaction.
fn write_record(txn: &WriteTransaction, record: &TaskRecord) -> Result<(), StoreError> {
    let value = encode(record)?;
    let new = Header::of(record).index_entry(record.id);
    let mut records = txn.open_table(RECORDS).map_err(db)?;
    let old_header = records
        .insert(record.id.as_bytes(), value.as_slice())
        .map_err(db)?
        .and_then(|old| Header::decode(old.value()));
    drop(records);
    match old_header {
        Some(old) => browse::restatus(txn, record, old.status)?,
        None => browse::insert(txn, record)?,
    }
    let old = old_header.map(|header| header.index_entry(record.id));
    if old != Some(new) {
        let mut indexes = Indexes::open(txn)?;
        if let Some(old) = old {
            indexes.remove(old)?;
        }
        indexes.insert(new)?;
    }
    Ok(())
}

/// Points an idempotency key at its task and files it by creation time, inside the caller's transaction.
fn write_key(txn: &WriteTransaction, key: &str, entry: &IdempotencyEntry) -> Result<(), StoreError> {
    let mut keys = txn.open_table(KEYS).map_err(db)?;
    let mut by_time = txn.open_table(KEYS_BY_TIME).map_err(db)?;
    let old = keys.insert(key, encode_key_entry(entry)).map_err(db)?;
    if let Some(old) = old.map(|value| decode_key_entry(value.value())) {
        by_time.remove(key_time(old.created_at, key).as_slice()).map_err(db)?;
    }
    by_time
        .insert(key_time(entry.created_at, key).as_slice(), ())
        .map_err(db)?;
    Ok(())
}

/// Removes an idempotency key and its time index entry, inside the caller's transaction.
fn remove_key(txn: &WriteTransaction, key: &str) -> Result<(), StoreError> {
    let mut keys = txn.open_table(KEYS).map_err(db)?;
    let old = keys
        .remove(key)
        .map_err(db)?
        .map(|value| decode_key_entry(value.value()));
    if let Some(old) = old {
        let mut by_time = txn.open_table(KEYS_BY_TIME).map_err(db)?;
        by_time.remove(key_time(old.created_at, key).as_slice()).map_err(db)?;
    }
    Ok(())
}

/// Removes one record and its index entry, inside the caller's transaction; a missing one is no error.
fn remove_record(txn: &WriteTransaction, id: TaskId) -> Result<(), StoreError> {
    let old = {
        let mut records = txn.open_table(RECORDS).map_err(db)?;
        let removed = records.remove(id.as_bytes()).map_err(db)?;
        removed.map(|old| (Header::decode(old.value()), decode(id, old.value())))
    };
    // An undecodable record's index entries stay behind; readers skip them.
    if let Some((header, record)) = old {
        if let Some(header) = header {
            Indexes::open(txn)?.remove(header.index_entry(id))?;
        }
        if let Ok(record) = record {
            browse::remove(txn, &record)?;
        }
    }
    Ok(())
}

/// Turns a redb error into the port's error; callers add which task and which file.
fn db(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    let path = path.display();
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => StoreError::Unavailable(format!(
            "{path} is locked by another open store: is another cpe-config using this data dir?"
        )),
        other => StoreError::Unavailable(format!("cannot open {path}: {other}")),
    }
}

/// The two index tables, opened together because every change touches one or the other.
struct Indexes<'t> {
    unfinished: Table<'t, IndexKey, ()>,
    finals: Table<'t, IndexKey, ()>,
}

/// Where a record appears in the indexes: exactly one entry per record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IndexEntry {
    Unfinished(IndexKey),
    Final(IndexKey),
}

impl<'t> Indexes<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            unfinished: txn.open_table(UNFINISHED).map_err(db)?,
            finals: txn.open_table(FINAL_BY_UPDATE).map_err(db)?,
        })
    }

    fn insert(&mut self, entry: IndexEntry) -> Result<(), StoreError> {
        match entry {
            IndexEntry::Unfinished(key) => self.unfinished.insert(key, ()),
            IndexEntry::Final(key) => self.finals.insert(key, ()),
        }
        .map(drop)
        .map_err(db)
    }

    fn remove(&mut self, entry: IndexEntry) -> Result<(), StoreError> {
        match entry {
            IndexEntry::Unfinished(key) => self.unfinished.remove(key),
            IndexEntry::Final(key) => self.finals.remove(key),
        }
        .map(drop)
        .map_err(db)
    }
}

/// Big-endian time first, so the table's byte order is time order.
fn index_key(millis: u64, id: &TaskId) -> IndexKey {
    let mut key = [0; 24];
    key[..8].copy_from_slice(&millis.to_be_bytes());
    key[8..].copy_from_slice(id.as_bytes());
    key
}

fn split_key(key: &IndexKey) -> (u64, TaskId) {
    let mut millis = [0; 8];
    let mut id = [0; 16];
    millis.copy_from_slice(&key[..8]);
    id.copy_from_slice(&key[8..]);
    (u64::from_be_bytes(millis), TaskId::from_bytes(id))
}

/// Where a record's index entry goes, from its header: creation order while open, update order once final.
impl Header {
    fn index_entry(self, id: TaskId) -> IndexEntry {
        if self.status.is_final() {
            IndexEntry::Final(index_key(self.updated_at, &id))
        } else {
            IndexEntry::Unfinished(index_key(self.created_at, &id))
        }
    }
}

/// created_at (big-endian) ++ key: the expiry index's key.
fn key_time(created_at: u64, key: &str) -> Vec<u8> {
    [&created_at.to_be_bytes()[..], key.as_bytes()].concat()
}

/// Creates the directory with mode 0700. An existing one is the operator's and keeps its mode
/// (it may be shared on purpose), with a warning when others can enter it; the file is 0600 anyway.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), mode = format_args!("{:o}", mode & 0o777), "the data directory is open to other users; 0700 is advised");
        }
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests;

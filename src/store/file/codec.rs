//! How the file store encodes its values: task records (format 1, behind a fixed-size [`Header`]) and
//! idempotency key entries. Bytes in, bytes out: the tables and their keys live in `file.rs`.

use cpe_actors::ports::{IdempotencyEntry, StoreError};
use cpe_actors::{ConfigRequest, EquipmentId, TaskId, TaskRecord, TaskStatus};

/// First byte of every value, so the encoding can change without misreading old files.
const FORMAT_V1: u8 = 1;
/// Format 2 adds `retried_as` before the request; format 1 values still decode.
const FORMAT_V2: u8 = 2;
/// Format 3 adds `requested_by` after `retried_as`; older values still decode (without it).
const FORMAT_V3: u8 = 3;
/// Bytes before the variable-length fields: version, status, created_at, updated_at, attempts.
const HEADER_LEN: usize = 22;
/// Length prefix of an absent `last_error`.
const NO_ERROR: u32 = u32::MAX;

/// The fixed-size start of a value: all that index upkeep needs, readable even if the rest is damaged.
#[derive(Clone, Copy)]
pub(super) struct Header {
    pub(super) status: TaskStatus,
    pub(super) created_at: u64,
    pub(super) updated_at: u64,
}

impl Header {
    pub(super) fn of(record: &TaskRecord) -> Self {
        Self {
            status: record.status,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }

    pub(super) fn decode(value: &[u8]) -> Option<Self> {
        let mut r = Reader(value);
        matches!(r.u8()?, FORMAT_V1 | FORMAT_V2 | FORMAT_V3).then_some(())?;
        Some(Self {
            status: status_from(r.u8()?)?,
            created_at: r.u64()?,
            updated_at: r.u64()?,
        })
    }
}

pub(super) fn status_byte(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Queued => 0,
        TaskStatus::Running => 1,
        TaskStatus::Completed => 2,
        TaskStatus::Failed => 3,
        TaskStatus::Cancelled => 4,
    }
}

fn status_from(byte: u8) -> Option<TaskStatus> {
    Some(match byte {
        0 => TaskStatus::Queued,
        1 => TaskStatus::Running,
        2 => TaskStatus::Completed,
        3 => TaskStatus::Failed,
        4 => TaskStatus::Cancelled,
        _ => return None,
    })
}

/// Format 3: version u8, status u8, created_at u64, updated_at u64, attempts u32 (all big-endian);
/// equipment id (u16 length + bytes); last error (u32 length, `u32::MAX` for none, + bytes); retried
/// as (u8 0, or 1 and a 16-byte task id); requested by (u8 length, 0 for none, + bytes); then the
/// request as JSON to the end (format 2 has no requested-by field, format 1 no retried-as either):
/// 38 bytes plus the requester and the JSON for a typical record, with no field names and no
/// textual ids.
pub(super) fn encode(record: &TaskRecord) -> Result<Vec<u8>, StoreError> {
    let too_long = |what: &str| StoreError::Unavailable(format!("task {}: {what} is too long to store", record.id));
    let request = serde_json::to_vec(&record.request)
        .map_err(|e| StoreError::Unavailable(format!("task {}: request cannot be encoded: {e}", record.id)))?;
    let equipment = record.equipment_id.as_str().as_bytes();
    let error = record.last_error.as_deref().map(str::as_bytes);
    let mut out = Vec::with_capacity(HEADER_LEN + 6 + equipment.len() + error.map_or(0, <[u8]>::len) + request.len());
    out.push(FORMAT_V3);
    out.push(status_byte(record.status));
    out.extend_from_slice(&record.created_at.to_be_bytes());
    out.extend_from_slice(&record.updated_at.to_be_bytes());
    out.extend_from_slice(&record.attempts.to_be_bytes());
    let equipment_len = u16::try_from(equipment.len()).map_err(|_| too_long("equipment id"))?;
    out.extend_from_slice(&equipment_len.to_be_bytes());
    out.extend_from_slice(equipment);
    match error {
        None => out.extend_from_slice(&NO_ERROR.to_be_bytes()),
        Some(error) => {
            let len = u32::try_from(error.len())
                .ok()
                .filter(|n| *n != NO_ERROR)
                .ok_or_else(|| too_long("last error"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(error);
        }
    }
    match record.retried_as {
        None => out.push(0),
        Some(task) => {
            out.push(1);
            out.extend_from_slice(task.as_bytes());
        }
    }
    let requester = record.requested_by.as_deref().unwrap_or_default().as_bytes();
    out.push(u8::try_from(requester.len()).map_err(|_| too_long("requester"))?);
    out.extend_from_slice(requester);
    out.extend_from_slice(&request);
    Ok(out)
}

/// Reads a value back; any damage is an error naming the task, never a panic.
pub(super) fn decode(id: TaskId, value: &[u8]) -> Result<TaskRecord, StoreError> {
    let bad = |why: &str| StoreError::Unavailable(format!("task {id} cannot be decoded: {why}"));
    let header = Header::decode(value).ok_or_else(|| bad("unknown format or damaged header"))?;
    let mut r = Reader(value.get(HEADER_LEN - 4..).ok_or_else(|| bad("truncated header"))?);
    let attempts = r.u32().ok_or_else(|| bad("truncated header"))?;
    let equipment_len = r.u16().ok_or_else(|| bad("truncated equipment id"))?;
    let equipment = r
        .take(usize::from(equipment_len))
        .ok_or_else(|| bad("truncated equipment id"))?;
    let equipment_id = std::str::from_utf8(equipment)
        .ok()
        .and_then(|raw| EquipmentId::parse(raw).ok())
        .ok_or_else(|| bad("invalid equipment id"))?;
    let last_error = match r.u32().ok_or_else(|| bad("truncated last error"))? {
        NO_ERROR => None,
        len => {
            let raw = usize::try_from(len)
                .ok()
                .and_then(|n| r.take(n))
                .ok_or_else(|| bad("truncated last error"))?;
            Some(String::from_utf8(raw.to_vec()).map_err(|_| bad("last error is not UTF-8"))?)
        }
    };
    let retried_as = match value[0] {
        FORMAT_V1 => None,
        _ => match r.u8().ok_or_else(|| bad("truncated retried-as"))? {
            0 => None,
            1 => {
                let raw = r.take(16).ok_or_else(|| bad("truncated retried-as"))?;
                Some(TaskId::from_bytes(raw.try_into().expect("16 bytes")))
            }
            _ => return Err(bad("invalid retried-as flag")),
        },
    };
    let requested_by = match value[0] {
        FORMAT_V1 | FORMAT_V2 => None,
        _ => {
            let len = r.u8().ok_or_else(|| bad("truncated requester"))?;
            let raw = r.take(usize::from(len)).ok_or_else(|| bad("truncated requester"))?;
            let name = std::str::from_utf8(raw).map_err(|_| bad("requester is not UTF-8"))?;
            (!name.is_empty()).then(|| name.to_owned())
        }
    };
    let json: serde_json::Value = serde_json::from_slice(r.0).map_err(|e| bad(&format!("request is not JSON: {e}")))?;
    let request = ConfigRequest::from_value(&json).map_err(|e| bad(&format!("invalid request: {e}")))?;
    Ok(TaskRecord {
        id,
        equipment_id,
        request,
        status: header.status,
        attempts,
        last_error,
        created_at: header.created_at,
        updated_at: header.updated_at,
        retried_as,
        requested_by,
    })
}

/// Task id, fingerprint (big-endian), created_at (big-endian): fixed size, so it always decodes.
pub(super) fn encode_key_entry(entry: &IdempotencyEntry) -> [u8; 32] {
    let mut out = [0; 32];
    out[..16].copy_from_slice(entry.task_id.as_bytes());
    out[16..24].copy_from_slice(&entry.fingerprint.to_be_bytes());
    out[24..].copy_from_slice(&entry.created_at.to_be_bytes());
    out
}

/// Reads an idempotency key entry back (see [`encode_key_entry`]).
pub(super) fn decode_key_entry(raw: [u8; 32]) -> IdempotencyEntry {
    // The lengths are exact, so the conversions cannot fail; the defaults only satisfy the types.
    let (id, rest) = raw.split_at(16);
    let (fingerprint, created_at) = rest.split_at(8);
    let word = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().unwrap_or_default());
    IdempotencyEntry {
        task_id: TaskId::from_bytes(id.try_into().unwrap_or_default()),
        fingerprint: word(fingerprint),
        created_at: word(created_at),
    }
}

/// A cursor over a value's bytes that returns `None` instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests;

//! Unit tests of `store/file/codec.rs`.

use super::*;

#[test]
fn a_format_1_value_still_decodes_without_retried_as() {
    let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 5, "parameters": {"vlan": 10}}"#).unwrap();
    let mut record = TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request);
    record.last_error = Some("boom".into());
    let v2 = encode(&record).unwrap();
    // Format 1 is format 2 without the retried-as byte (0 here) before the request.
    let request_start = v2.len() - serde_json::to_vec(&record.request).unwrap().len();
    assert_eq!(v2[request_start - 1], 0);
    let mut v1 = [&v2[..request_start - 1], &v2[request_start..]].concat();
    v1[0] = FORMAT_V1;
    assert_eq!(decode(record.id, &v1).unwrap(), record);
    record.retried_as = Some(TaskId::new());
    assert_eq!(decode(record.id, &encode(&record).unwrap()).unwrap(), record);
}

//! Unit tests of `store/file/codec.rs`.

use super::*;

#[test]
fn formats_1_and_2_still_decode_without_the_fields_they_lack() {
    let request = ConfigRequest::from_json(br#"{"timeoutInSeconds": 5, "parameters": {"vlan": 10}}"#).unwrap();
    let mut record = TaskRecord::queued(TaskId::new(), EquipmentId::parse("abc123").unwrap(), request);
    record.last_error = Some("boom".into());
    let v3 = encode(&record).unwrap();
    // Format 2 is format 3 without the requester's length byte (0 here) before the request;
    // format 1 is format 2 without the retried-as byte (0 here) before that.
    let request_start = v3.len() - serde_json::to_vec(&record.request).unwrap().len();
    assert_eq!(v3[request_start - 2..request_start], [0, 0]);
    let mut v2 = [&v3[..request_start - 1], &v3[request_start..]].concat();
    v2[0] = FORMAT_V2;
    assert_eq!(decode(record.id, &v2).unwrap(), record);
    let mut v1 = [&v3[..request_start - 2], &v3[request_start..]].concat();
    v1[0] = FORMAT_V1;
    assert_eq!(decode(record.id, &v1).unwrap(), record);

    record.retried_as = Some(TaskId::new());
    record.requested_by = Some("ops-laptop".into());
    assert_eq!(decode(record.id, &encode(&record).unwrap()).unwrap(), record);
}

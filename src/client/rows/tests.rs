//! Unit tests of `client/rows.rs`.

use super::*;

#[test]
fn csv_rows_become_requests_and_bad_rows_keep_their_line_numbers() {
    let (rows, bad) = parse(
        b"serial,timeoutInSeconds,username,password,vlan,interfaces\n\
          abc123,20,admin,s3cret,534,1 2 3 4\n\
          bad-id,14,admin,x,1,1\n\
          def456,,ops,pw,77,\n\
          ghi789,soon,a,b,1,2\n",
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].line, 2);
    assert_eq!(
        rows[0].body,
        json!({"timeoutInSeconds": 20, "parameters": {"username": "admin", "password": "s3cret", "vlan": 534, "interfaces": [1, 2, 3, 4]}})
    );
    assert_eq!(rows[1].body["timeoutInSeconds"], 14);
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 5]);
    assert!(bad[0].why.contains("bad-id"), "{bad:?}");
    assert_eq!(
        bad[1].why,
        "column 2 (`timeoutInSeconds`): `soon` is not a whole number"
    );
}

#[test]
fn cells_stay_text_unless_typed_and_one_interface_is_a_list() {
    let (rows, bad) =
        parse("serial,password,pin:string,port:int,interfaces\nabc123,0012,007,0080,3\n".as_bytes()).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        rows[0].body["parameters"],
        json!({"password": "0012", "pin": "007", "port": 80, "interfaces": [3]})
    );
    let refused = parse(b"serial,vlan:string\nabc123,1\n").unwrap_err();
    assert!(format!("{refused:#}").contains("line 1, column 2"), "{refused:#}");
}

#[test]
fn a_byte_order_mark_is_skipped_and_a_bad_byte_spoils_only_its_line() {
    let mut file = b"\xEF\xBB\xBF{\"serial\": \"abc123\", \"parameters\": {}}\n".to_vec();
    file.extend_from_slice(b"{\"serial\": \"def456\", \"parameters\": {\"x\": \"\xFF\"}}\n");
    file.extend_from_slice(b"{\"serial\": \"ghi789\", \"parameters\": {}}\n");
    let (rows, bad) = parse(&file).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        [1, 3],
        "JSON lines despite the mark"
    );
    assert_eq!((bad[0].line, bad[0].why.starts_with("not UTF-8")), (2, true), "{bad:?}");

    let csv = b"\xEF\xBB\xBFserial,note\nabc123,ok\ndef456,\xFF\n";
    let (rows, bad) = parse(csv).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((bad[0].line, bad[0].why.as_str()), (3, "column 2 (`note`): not UTF-8"));
}

#[test]
fn json_lines_work_too() {
    let (rows, bad) =
        parse(b"{\"serial\": \"abc123\", \"timeoutInSeconds\": 5, \"parameters\": {\"vlan\": 1}}\n\n{\"serial\": 7}\n")
            .unwrap();
    assert_eq!(rows[0].body, json!({"timeoutInSeconds": 5, "parameters": {"vlan": 1}}));
    assert_eq!(
        bad,
        vec![BadRow {
            line: 3,
            why: "no `serial` string".into()
        }]
    );
}

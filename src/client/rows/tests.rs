//! Unit tests of `client/rows.rs`.

use super::*;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("cpe-rows-{}-{name}", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn csv_rows_become_requests_and_bad_rows_keep_their_line_numbers() {
    let path = write(
        "devices.csv",
        "serial,timeoutInSeconds,username,password,vlan,interfaces\n\
         abc123,20,admin,s3cret,534,1 2 3 4\n\
         bad-id,14,admin,x,1,1\n\
         def456,,ops,pw,77,\n\
         ghi789,soon,a,b,1,2\n",
    );
    let (rows, bad) = read(&path).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].line, 2);
    assert_eq!(
        rows[0].body,
        json!({"timeoutInSeconds": 20, "parameters": {"username": "admin", "password": "s3cret", "vlan": 534, "interfaces": [1, 2, 3, 4]}})
    );
    assert_eq!(rows[1].body["timeoutInSeconds"], 14);
    assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 5]);
    assert!(bad[0].why.contains("bad-id") && bad[1].why.contains("soon"), "{bad:?}");
    std::fs::remove_file(path).unwrap();
}

#[test]
fn json_lines_work_too() {
    let path = write(
        "devices.jsonl",
        "{\"serial\": \"abc123\", \"timeoutInSeconds\": 5, \"parameters\": {\"vlan\": 1}}\n\n{\"serial\": 7}\n",
    );
    let (rows, bad) = read(&path).unwrap();
    assert_eq!(rows[0].body, json!({"timeoutInSeconds": 5, "parameters": {"vlan": 1}}));
    assert_eq!(
        bad,
        vec![BadRow {
            line: 3,
            why: "no `serial` string".into()
        }]
    );
    std::fs::remove_file(path).unwrap();
}

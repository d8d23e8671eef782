//! `cpe-config campaign` against the real binary and a recording fake Service A (issue 18): cells
//! arrive as text unless typed, a device's rows run in file order, the rows' keys are the file's
//! content (a renamed copy creates nothing), a second run reports the tasks' real statuses, results
//! are written in input order and never through a symlink, and no server is exit code 2.

use crate::client_cli::{client, client_command, everything};
use crate::common::fake_a::{self, answer, Answer, SUCCESS};
use crate::common::process::{local_args, Process};
use serde_json::Value;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

fn campaign(url: &str, file: &std::path::Path, extra: &[&str]) -> Output {
    client(url, &[&["campaign", file.to_str().unwrap()], extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_order_keys_results_and_exit_codes_are_what_the_file_says() {
    let fake = fake_a::start(Arc::new(|_| Answer::Close(answer("HTTP/1.1 200 OK", &[], SUCCESS)))).await;
    let args = local_args(&[&format!("--service-a-url={}", fake.url())]);
    let server = Process::spawn(&args, "info");
    let b = server.wait_for_addr("Service B", Duration::from_secs(30));
    let url = format!("https://localhost:{}", b.port());

    let dir = std::env::temp_dir().join(format!("cpe-campaign-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("devices.csv");
    let mut text = String::from("serial,pin,port:int,interfaces\n");
    for step in 1..=5 {
        text.push_str(&format!("order001,000{step},80,3\n"));
    }
    text.push_str("other0001,0012,443,1 2\n");
    std::fs::write(&file, &text).unwrap();
    // A symlink already where the results go: replaced, never written through.
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let results = file.with_extension("results.csv");
    std::os::unix::fs::symlink(&victim, &results).unwrap();

    let first = campaign(&url, &file, &["--wait", "--concurrency", "4"]);
    assert_eq!(first.status.code(), Some(0), "{}", everything(&first));
    let bodies: Vec<(String, Value)> = fake
        .requests()
        .iter()
        .map(|seen| (seen.path.clone(), serde_json::from_str(&seen.body).unwrap()))
        .collect();
    assert_eq!(bodies.len(), 6, "{bodies:?}");
    let pins: Vec<&str> = bodies
        .iter()
        .filter(|(path, _)| path.ends_with("/order001"))
        .map(|(_, body)| body["parameters"]["pin"].as_str().expect("a pin is text"))
        .collect();
    assert_eq!(
        pins,
        ["0001", "0002", "0003", "0004", "0005"],
        "one device's rows in file order"
    );
    let other = &bodies.iter().find(|(path, _)| path.ends_with("/other0001")).unwrap().1;
    assert_eq!(
        other["parameters"],
        serde_json::json!({"pin": "0012", "port": 443, "interfaces": [1, 2]}),
        "typed cells"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!std::fs::symlink_metadata(&results).unwrap().file_type().is_symlink());
    let written = std::fs::read_to_string(&results).unwrap();
    let lines: Vec<&str> = written.lines().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(lines, ["line", "2", "3", "4", "5", "6", "7"], "input order: {written}");

    // The same content under another name: the same tasks, reported as they are now.
    let renamed = dir.join("copy-of-devices.csv");
    std::fs::write(&renamed, &text).unwrap();
    let again = campaign(&url, &renamed, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", everything(&again));
    assert_eq!(fake.requests().len(), 6, "nothing was configured twice");
    let summary = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        summary.contains("completed") && !summary.contains("queued"),
        "{summary}"
    );

    // No server: exit code 2, as documented.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = campaign(
        &format!("https://localhost:{closed}"),
        &file,
        &["--results", dir.join("none.csv").to_str().unwrap()],
    );
    assert_eq!(nobody.status.code(), Some(2), "{}", everything(&nobody));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C while `--wait` watches: the results so far are written (accepted rows with their task, in
/// input order), exit code 1, and the same command run again goes on without creating anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_writes_the_results_so_far_and_a_second_run_goes_on() {
    let args = local_args(&["--config-delay=30s", "--call-timeout=60s", "--shutdown-grace=1s"]);
    let server = Process::spawn(&args, "info");
    let b = server.wait_for_addr("Service B", Duration::from_secs(30));
    let url = format!("https://localhost:{}", b.port());
    let dir = std::env::temp_dir().join(format!("cpe-campaign-int-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("devices.csv");
    std::fs::write(&file, "serial,pin\nstop00001,1\nstop00002,2\nstop00003,3\n").unwrap();
    let watching = client_command(&url, &["campaign", file.to_str().unwrap(), "--wait"])
        .spawn()
        .unwrap();
    let tasks = || async {
        let listing = crate::common::client()
            .get(format!("{url}/api/v1/tasks"))
            .send()
            .await
            .unwrap();
        let page: Value = listing.json().await.unwrap();
        page["tasks"].as_array().unwrap().len()
    };
    crate::common::eventually(Duration::from_secs(30), "every row accepted", || async {
        (tasks().await == 3).then_some(())
    })
    .await;
    unsafe { libc::kill(watching.id() as i32, libc::SIGINT) };
    let stopped = watching.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(1), "{}", everything(&stopped));
    assert!(everything(&stopped).contains("interrupted"), "{}", everything(&stopped));
    let written = std::fs::read_to_string(file.with_extension("results.csv")).unwrap();
    let rows: Vec<Vec<&str>> = written.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
        ["2", "3", "4"],
        "{written}"
    );
    assert!(
        rows.iter().all(|r| r[2].len() == 36 && r[3] != "not sent"),
        "accepted rows keep their task: {written}"
    );

    let again = campaign(&url, &file, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", everything(&again));
    assert_eq!(tasks().await, 3, "nothing was created twice");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

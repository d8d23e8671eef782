//! A poison task: every call to Service A for one device kills the whole process (the test sends
//! kill -9 when the fake Service A sees that call). Each call is counted in the file store before
//! it is made, so after `--max-attempts` such crashes the task fails with its reason instead of
//! killing every restart, and the other tasks complete.

use crate::common::fake_a::{self, answer, Answer, Script, SUCCESS};
use crate::common::process::Process;
use crate::common::*;
use std::sync::Arc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: usize = 3;

#[tokio::test]
async fn a_task_that_kills_the_process_on_every_try_fails_after_its_attempts() {
    let (calls_tx, mut poison_calls) = tokio::sync::mpsc::unbounded_channel();
    let script: Script = Arc::new(move |seen| {
        if seen.path.ends_with("/poison01") {
            let _ = calls_tx.send(());
            // Holds the call open: the test kills the process meanwhile.
            return Answer::Stall(Vec::new());
        }
        Answer::Close(answer("HTTP/1.1 200 OK", &[], SUCCESS))
    });
    let fake = fake_a::start(script).await;
    let data = std::env::temp_dir().join(format!("cpe-chaos-poison-{}", uuid::Uuid::new_v4()));
    let args = vec![
        "--service-a-addr=127.0.0.1:0".to_string(),
        "--service-b-addr=127.0.0.1:0".into(),
        format!("--service-a-url={}", fake.url()),
        "--store=file".into(),
        format!("--data-dir={}", data.display()),
        "--workers=4".into(),
        format!("--max-attempts={MAX_ATTEMPTS}"),
        "--retry-base=50ms".into(),
        // Short, so a task resumed after a crash waits out its earlier call quickly.
        "--call-timeout=1s".into(),
        format!("--certs-dir={}", certs_dir().display()),
    ];
    let spawn = || {
        let process = Process::spawn(&args, "info");
        let b = Some(process.wait_for_addr("Service B", LIMIT));
        (process, b)
    };
    let (mut process, mut b) = spawn();
    let poison = create_task(b, "poison01").await;
    let mut good = Vec::new();
    for n in 0..5 {
        let device = format!("good{n:04}");
        good.push((device.clone(), create_task(b, &device).await));
    }

    let mut calls = 0;
    let status = loop {
        tokio::select! {
            _ = poison_calls.recv() => {
                calls += 1;
                assert!(calls <= MAX_ATTEMPTS, "Service A was called {calls} times for the poison task");
                process.kill_hard();
                (process, b) = spawn();
            }
            status = wait_completed(b, "poison01", &poison, LIMIT) => break status,
        }
    };
    eprintln!("poison task after {calls} crashes: {status}");
    assert_eq!(calls, MAX_ATTEMPTS);
    assert_eq!(status["code"], 500, "{status}");
    assert_eq!(status["attempts"], MAX_ATTEMPTS, "{status}");
    assert_eq!(
        status["lastError"],
        format!("attempt limit reached: the worker or process stopped during {MAX_ATTEMPTS} attempts")
    );
    for (device, task) in &good {
        let status = wait_completed(b, device, task, LIMIT).await;
        assert_eq!(status["message"], "Completed", "{device}: {status}");
    }
    assert!(poison_calls.try_recv().is_err(), "called again after failing");
    drop(process);
    let _ = std::fs::remove_dir_all(data);
}

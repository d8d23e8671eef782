//! The test harness itself: the history checker on hand-made call lists, the recording fake
//! Service A against the real Service A client, and each mode of the TCP fault proxy against a tiny
//! echo server.

use crate::common::call_log::{Call, CallLog, Checker, Disorder, TASK_HEADER};
use crate::common::fault_proxy::{FaultProxy, Mode};
use crate::common::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---- the checker ----

fn accepted(list: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    list.iter()
        .map(|(task, device, seq)| (task.to_string(), device.to_string(), *seq))
        .collect()
}

/// A call for `task` on `device` from `from` to `to` milliseconds after `zero`.
fn call(zero: Instant, device: &str, task: &str, from: u64, to: u64) -> Call {
    let at = |ms| zero + Duration::from_millis(ms);
    Call::answered(device, Some(task), at(from), at(to))
}

#[test]
fn a_clean_history_reports_nothing() {
    let zero = Instant::now();
    let tasks = accepted(&[("t1", "dev1", 1), ("t2", "dev1", 2), ("t3", "dev2", 3)]);
    let calls = [
        call(zero, "dev1", "t1", 0, 10),
        call(zero, "dev2", "t3", 5, 20),
        call(zero, "dev1", "t2", 10, 30),
    ];
    let report = Checker::report(&tasks, &calls);
    assert!(report.is_clean(), "{report:?}");
    let statuses: HashMap<String, String> = ["t1", "t2", "t3"]
        .iter()
        .map(|t| (t.to_string(), "completed".to_string()))
        .collect();
    let report = Checker::report_with_statuses(&tasks, &calls, &statuses);
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn a_task_without_an_answered_call_is_lost() {
    let zero = Instant::now();
    let tasks = accepted(&[("t1", "dev1", 1), ("t2", "dev2", 2), ("t3", "dev3", 3)]);
    let mut cut_off = call(zero, "dev3", "t3", 0, 5);
    cut_off.answered = false;
    let calls = [call(zero, "dev1", "t1", 0, 10), cut_off];
    let report = Checker::report(&tasks, &calls);
    assert_eq!(report.lost.keys().collect::<Vec<_>>(), ["t2", "t3"], "{report:?}");
    assert!(report.duplicated_calls.is_empty() && report.overlapping_per_device.is_empty());
}

#[test]
fn with_statuses_a_configured_task_the_service_does_not_report_completed_is_lost() {
    let zero = Instant::now();
    let tasks = accepted(&[("t1", "dev1", 1), ("t2", "dev2", 2), ("t3", "dev3", 3)]);
    let calls = [
        call(zero, "dev1", "t1", 0, 10),
        call(zero, "dev2", "t2", 0, 10),
        call(zero, "dev3", "t3", 0, 10),
    ];
    let statuses: HashMap<String, String> = [("t1", "completed"), ("t2", "failed")]
        .iter()
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect();
    let report = Checker::report_with_statuses(&tasks, &calls, &statuses);
    assert_eq!(report.lost.keys().collect::<Vec<_>>(), ["t2", "t3"], "{report:?}");
    assert!(report.lost["t2"].contains("failed"), "{report:?}");
}

#[test]
fn two_calls_for_one_task_are_a_duplicate() {
    let zero = Instant::now();
    let tasks = accepted(&[("t1", "dev1", 1), ("t2", "dev2", 2)]);
    let calls = [
        call(zero, "dev1", "t1", 0, 10),
        call(zero, "dev2", "t2", 0, 10),
        call(zero, "dev1", "t1", 20, 30),
    ];
    let report = Checker::report(&tasks, &calls);
    assert_eq!(report.duplicated_calls, BTreeMap::from([("t1".to_string(), 2)]));
    assert!(
        report.lost.is_empty() && report.overlapping_per_device.is_empty(),
        "{report:?}"
    );
    assert!(!report.is_clean());
}

#[test]
fn calls_for_one_device_that_overlap_are_found() {
    let zero = Instant::now();
    let tasks = accepted(&[
        ("t1", "dev1", 1),
        ("t2", "dev1", 2),
        ("t3", "dev2", 3),
        ("t4", "dev2", 4),
    ]);
    let calls = [
        call(zero, "dev1", "t1", 0, 100),
        call(zero, "dev1", "t2", 50, 150),
        // Back to back on another device: no overlap.
        call(zero, "dev2", "t3", 0, 100),
        call(zero, "dev2", "t4", 100, 200),
    ];
    let report = Checker::report(&tasks, &calls);
    assert_eq!(
        report.overlapping_per_device,
        BTreeMap::from([("dev1".to_string(), vec![(0, 1)])]),
        "{report:?}"
    );
    assert!(report.out_of_order_per_device.is_empty(), "{report:?}");
    // A call still in progress overlaps whatever starts after it.
    let mut running = call(zero, "dev2", "t3", 0, 0);
    running.end = None;
    let report = Checker::report(&tasks, &[running, call(zero, "dev2", "t4", 500, 600)]);
    assert_eq!(report.overlapping_per_device["dev2"], vec![(0, 1)]);
}

#[test]
fn calls_that_start_out_of_acceptance_order_are_found() {
    let zero = Instant::now();
    let tasks = accepted(&[
        ("t1", "dev1", 1),
        ("t2", "dev1", 2),
        ("t3", "dev1", 3),
        ("t4", "dev2", 4),
    ]);
    let calls = [
        call(zero, "dev1", "t2", 0, 10),
        call(zero, "dev1", "t1", 10, 20),
        call(zero, "dev1", "t3", 20, 30),
        call(zero, "dev2", "t4", 0, 10),
    ];
    let report = Checker::report(&tasks, &calls);
    assert_eq!(
        report.out_of_order_per_device,
        BTreeMap::from([(
            "dev1".to_string(),
            Disorder {
                accepted: vec!["t1".into(), "t2".into(), "t3".into()],
                called: vec!["t2".into(), "t1".into(), "t3".into()],
            }
        )]),
    );
    assert!(
        report.overlapping_per_device.is_empty() && report.lost.is_empty(),
        "{report:?}"
    );
}

#[test]
fn a_call_without_a_task_belongs_to_its_device_only_when_the_device_has_one_task() {
    let zero = Instant::now();
    let tasks = accepted(&[("t1", "dev1", 1), ("t2", "dev2", 2), ("t3", "dev2", 3)]);
    let mut anonymous = [call(zero, "dev1", "x", 0, 10), call(zero, "dev2", "x", 0, 10)];
    for call in &mut anonymous {
        call.task = None;
    }
    let report = Checker::report(&tasks, &anonymous);
    assert!(!report.lost.contains_key("t1"), "{report:?}");
    assert_eq!(report.unattributed_calls, vec![1]);
    assert!(!report.is_clean());
}

// ---- the recording fake Service A ----

#[tokio::test]
async fn the_call_log_answers_what_the_workers_take_for_success_and_records_each_call() {
    let log = CallLog::start(Duration::from_millis(200)).await;
    let trust = cpe_config::tls::client_trust(&certs_dir()).unwrap();
    let service_a = cpe_config::provisioner::ServiceAClient::new(&log.url(), trust, 4).unwrap();
    let device = cpe_actors::EquipmentId::parse("abc123").unwrap();
    let request = cpe_actors::ConfigRequest::from_json(EXAMPLE.as_bytes()).unwrap();
    let started = Instant::now();
    cpe_actors::ports::Provisioner::configure(&service_a, &device, &request)
        .await
        .expect("the workers' client takes the answer for success");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let calls = log.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (call.device.as_str(), call.task.as_deref(), call.answered),
        ("abc123", None, true)
    );
    assert!(call.body.contains("\"vlan\":534"), "{}", call.body);
    assert!(call.end.unwrap() - call.start >= Duration::from_millis(200));

    // The task header, when sent, names the call's task; another path is the contract's 404.
    let (status, body) = send(
        client()
            .post(format!("{}/api/v1/equipment/cpe/dev999", log.url()))
            .header(TASK_HEADER, "task-7")
            .body(EXAMPLE),
    )
    .await;
    assert_eq!((status, body["message"].as_str()), (200, Some("success")));
    assert_eq!(log.calls()[1].task.as_deref(), Some("task-7"));
    let (status, _) = send(client().post(format!("{}/api/v1/other", log.url())).body(EXAMPLE)).await;
    assert_eq!(status, 404);
    assert_eq!(log.calls().len(), 2, "a call off the contract is not logged");
}

#[tokio::test]
async fn a_call_the_caller_leaves_is_ended_but_not_answered() {
    let log = CallLog::start(Duration::from_secs(5)).await;
    let impatient = client_built(|b| b.timeout(Duration::from_millis(200)));
    let gone = impatient
        .post(format!("{}/api/v1/equipment/cpe/abc123", log.url()))
        .body(EXAMPLE)
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let call = eventually(Duration::from_secs(3), "the abandoned call to end", || async {
        log.calls().pop().filter(|call| call.end.is_some())
    })
    .await;
    assert!(!call.answered);
    let report = Checker::report(&[("t1".into(), "abc123".into(), 1)], &[call]);
    assert!(report.lost.contains_key("t1"), "{report:?}");
}

// ---- the fault proxy ----

/// An echo server that counts the bytes it received.
async fn echo() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                    if stream.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Sends `message` and reads as many bytes back, within `limit`.
async fn round_trip(stream: &mut TcpStream, message: &[u8], limit: Duration) -> std::io::Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(limit, stream.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no echo in time"))??;
    Ok(back)
}

#[tokio::test]
async fn pass_forwards_both_ways_and_counts_connections() {
    let (upstream, _) = echo().await;
    let proxy = FaultProxy::start(upstream).await;
    for n in 1..=2 {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut stream, b"hello", Duration::from_secs(2)).await.unwrap(),
            b"hello"
        );
        assert_eq!(proxy.connections(), n);
    }
}

#[tokio::test]
async fn delay_holds_each_chunk_both_ways() {
    let (upstream, _) = echo().await;
    let proxy = FaultProxy::start(upstream).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let fast = Instant::now();
    round_trip(&mut stream, b"ping", Duration::from_secs(2)).await.unwrap();
    assert!(fast.elapsed() < Duration::from_millis(150), "{:?}", fast.elapsed());
    proxy.set(Mode::Delay(Duration::from_millis(150)));
    let slow = Instant::now();
    assert_eq!(
        round_trip(&mut stream, b"ping", Duration::from_secs(2)).await.unwrap(),
        b"ping"
    );
    assert!(
        slow.elapsed() >= Duration::from_millis(300),
        "one delay each way: {:?}",
        slow.elapsed()
    );
}

#[tokio::test]
async fn blackhole_forwards_nothing_until_it_heals() {
    let (upstream, received) = echo().await;
    let proxy = FaultProxy::start(upstream).await;
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut open, b"before", Duration::from_secs(2)).await.unwrap();
    proxy.set(Mode::Blackhole);
    let held = round_trip(&mut open, b"during", Duration::from_millis(300)).await;
    assert_eq!(held.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    // New connections are accepted, and get nothing either.
    let mut new = TcpStream::connect(proxy.addr())
        .await
        .expect("accepted while blackholed");
    let held = round_trip(&mut new, b"new", Duration::from_millis(300)).await;
    assert_eq!(held.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(
        received.load(Ordering::SeqCst),
        b"before".len(),
        "nothing reached the upstream"
    );
    // Healed: what was held arrives, in order, on both connections.
    proxy.set(Mode::Pass);
    let mut back = [0u8; 6];
    open.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"during");
    let mut back = [0u8; 3];
    new.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"new");
}

#[tokio::test]
async fn reset_resets_open_connections_and_every_new_one() {
    let (upstream, _) = echo().await;
    let proxy = FaultProxy::start(upstream).await;
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut open, b"hi", Duration::from_secs(2)).await.unwrap();
    proxy.set(Mode::Reset);
    let mut buffer = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buffer))
        .await
        .expect("at once");
    assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    let mut new = TcpStream::connect(proxy.addr())
        .await
        .expect("the connect itself succeeds");
    let read = tokio::time::timeout(Duration::from_secs(2), new.read(&mut buffer))
        .await
        .expect("at once");
    assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    eventually(Duration::from_secs(2), "no connection left open", || async {
        (proxy.open_connections() == 0).then_some(())
    })
    .await;
    // Back to Pass, connections work again.
    proxy.set(Mode::Pass);
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut again, b"ok", Duration::from_secs(2)).await.unwrap(),
        b"ok"
    );
    assert_eq!(proxy.connections(), 3);
}

#[tokio::test]
async fn close_after_cuts_a_connection_at_its_byte_budget() {
    let (upstream, received) = echo().await;
    let proxy = FaultProxy::start(upstream).await;
    proxy.set(Mode::CloseAfter(5));
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"0123456789").await.unwrap();
    let mut back = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut back)).await;
    read.expect("the connection is closed")
        .expect("with a FIN, not a reset");
    assert!(back.is_empty(), "the echo did not fit in the budget: {back:?}");
    eventually(Duration::from_secs(2), "the budget to reach the upstream", || async {
        (received.load(Ordering::SeqCst) == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        5,
        "exactly the budget went through, no more"
    );
}

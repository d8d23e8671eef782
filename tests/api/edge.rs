//! The edge of both services under requests no ordinary client sends (issue 8): targets without
//! a path, errors the HTTP layer answers itself, oversized and stalled bodies, over HTTP/1.1 and
//! HTTP/2. Every answer is a JSON error or a clean close, never a panic.

use crate::common::raw::{self, assert_json_error, closed, h1, h2, h2_answer, read_answer};
use crate::common::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn post(path: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn targets_without_a_path_get_a_json_answer_on_both_protocols() {
    let app = start(&[]).await;
    for service in [app.service_a_addr.unwrap(), app.service_b_addr.unwrap()] {
        for (request, status) in [
            (
                &b"POST abc HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"[..],
                400,
            ),
            (b"GET abc:80 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
            (b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
            (b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n", 405),
        ] {
            let what = String::from_utf8_lossy(request).lines().next().unwrap().to_owned();
            let answer = h1(service, request).await;
            assert_eq!(answer.status, status, "{what}: {answer:?}");
            assert_json_error(&what, status, &answer.body);
        }
        let (mut sender, _driver) = h2(service).await;
        let connect = warp::http::Request::builder()
            .method("CONNECT")
            .uri("localhost:443")
            .body(())
            .unwrap();
        let (response, _) = sender.send_request(connect, true).unwrap();
        let (status, body) = h2_answer(response).await;
        assert_eq!(status, 405, "HTTP/2 CONNECT: {body}");
        assert_json_error("HTTP/2 CONNECT", status, &body);
        // The connection still serves: nothing panicked under it.
        let (status, _) = send(client().get(url(Some(service), "/healthz"))).await;
        assert_eq!(status, 200);
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_the_http_layer_answers_itself_carry_a_json_body() {
    let app = start(&[]).await;
    let service = app.service_b_addr.unwrap();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(70 * 1024));
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        (0..101).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
    );
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nx-big: {}\r\n\r\n",
        "b".repeat(1024 * 1024)
    );
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("bad request line", b"HELLO\r\n\r\n".to_vec(), 400),
        (
            "HTTP/9.9",
            b"GET /healthz HTTP/9.9\r\nHost: localhost\r\n\r\n".to_vec(),
            400,
        ),
        (
            "non-UTF-8 path",
            b"GET /api/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            400,
        ),
        ("70 KB target", long_target.into_bytes(), 414),
        ("101 headers", many_headers.into_bytes(), 431),
        ("1 MB header", big_header.into_bytes(), 431),
    ];
    for (what, request, status) in cases {
        let answer = raw::h1_pushing(service, request).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert_json_error(what, status, &answer.body);
        assert!(answer.head.contains("application/json"), "{what}: {}", answer.head);
    }
    app.shutdown().await.unwrap();
}

/// A body over the limit is read (within bounds) before the 413, so a client still sending when
/// the answer comes (as curl does) can finish its upload and read it: on HTTP/1.1 the connection
/// is not closed under it (a reset fails its writes), on HTTP/2 the stream is not reset.
#[tokio::test]
async fn oversized_bodies_get_their_413_on_both_protocols() {
    let app = start(&[]).await;
    let service = app.service_b_addr.unwrap();
    let path = "/api/v1/equipment/cpe/abc123";
    // More than the socket buffers hold, so a reset arrives while the client still writes.
    let big = "x".repeat(900 * 1024);

    // HTTP/1.1, chunked, sent in pieces as an uploading client would, answer read after the last.
    let mut stream = raw::tls(service, b"http/1.1").await;
    let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in big.as_bytes().chunks(16 * 1024) {
        let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        stream.write_all(&chunk).await.expect("the upload is taken in full");
        stream.flush().await.expect("the upload is taken in full");
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_json_error("HTTP/1.1 chunked", 413, &answer.body);
    // The body was read to its end, so the connection is still in a known state and serves on;
    // closing it with the upload unread would reset it under a client still writing.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut stream).await.status,
        200,
        "the connection serves on after the 413"
    );

    // HTTP/1.1 with a declared length, the whole upload written before the answer is read.
    let mut stream = raw::tls(service, b"http/1.1").await;
    for piece in post(path, &big, "").chunks(16 * 1024) {
        stream.write_all(piece).await.expect("the upload is taken in full");
        stream.flush().await.expect("the upload is taken in full");
    }
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut stream).await.status,
        200,
        "the connection serves on after the 413"
    );

    // HTTP/2 through a normal client.
    let (status, body) = send(reqwest_h2().post(url(Some(service), path)).body(big.clone())).await;
    assert_eq!(status, 413, "{body}");
    assert_json_error("HTTP/2 with length", status, &body);

    // HTTP/2 frame by frame, as flow control lets them through: the stream is never reset.
    let (mut sender, _driver) = h2(service).await;
    let request = warp::http::Request::post(format!("https://localhost{path}"))
        .body(())
        .unwrap();
    let (response, mut upload) = sender.send_request(request, false).unwrap();
    let mut left = big.as_bytes();
    while !left.is_empty() {
        upload.reserve_capacity(left.len().min(64 * 1024));
        let room = std::future::poll_fn(|cx| upload.poll_capacity(cx))
            .await
            .expect("the stream stays open")
            .expect("the stream is not reset");
        let (now, rest) = left.split_at(room.min(left.len()));
        upload
            .send_data(bytes::Bytes::copy_from_slice(now), false)
            .expect("the stream is not reset");
        left = rest;
    }
    upload
        .send_data(bytes::Bytes::new(), true)
        .expect("the stream is not reset");
    let (status, body) = h2_answer(response).await;
    assert_eq!(status, 413, "{body}");
    assert_json_error("HTTP/2 streamed", status, &body);
    // The stream ended as a whole: no RST_STREAM, which curl reports as a failure (exit 92).
    let reset = std::future::poll_fn(|cx| std::task::Poll::Ready(upload.poll_reset(cx))).await;
    assert!(reset.is_pending(), "the stream was reset: {reset:?}");
    app.shutdown().await.unwrap();
}

fn reqwest_h2() -> reqwest::Client {
    client_built(|builder| builder.http2_prior_knowledge())
}

#[tokio::test]
async fn stalled_bodies_get_408_and_idle_http2_connections_are_closed() {
    let app = start(&["--body-timeout=1s", "--idle-timeout=1s"]).await;
    let service = app.service_a_addr.unwrap();
    let path = "/api/v1/equipment/cpe/abc123";

    // HTTP/1.1: 1000 bytes promised, one sent; then the connection is closed.
    let mut stream = raw::tls(service, b"http/1.1").await;
    let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{{");
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_json_error("HTTP/1.1 stalled body", 408, &answer.body);
    assert!(closed(&mut stream).await, "the stalled HTTP/1.1 connection is closed");

    // HTTP/2: one DATA frame and no end; then, idle, the connection is closed.
    let (mut sender, driver) = h2(service).await;
    let request = warp::http::Request::post(format!("https://localhost{path}"))
        .body(())
        .unwrap();
    let (response, mut upload) = sender.send_request(request, false).unwrap();
    upload.send_data(bytes::Bytes::from_static(b"{"), false).unwrap();
    let (status, body) = h2_answer(response).await;
    assert_eq!(status, 408, "{body}");
    assert_json_error("HTTP/2 stalled body", status, &body);
    tokio::time::timeout(raw::DEADLINE, driver)
        .await
        .expect("the idle HTTP/2 connection is closed by the server")
        .unwrap();
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_chunks_and_repeated_keys_are_named_in_a_400() {
    let app = start(&[]).await;
    let service = app.service_b_addr.unwrap();
    let path = "/api/v1/equipment/cpe/abc123";
    let bad_chunk =
        format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n");
    let answer = h1(service, bad_chunk.as_bytes()).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let message = answer.body["message"].as_str().unwrap();
    assert!(message.contains("chunk"), "{message}");

    for http2 in [false, true] {
        let client = if http2 { reqwest_h2() } else { client() };
        let (status, body) = send(
            client
                .post(url(Some(service), path))
                .header("Idempotency-Key", "first-key")
                .header("Idempotency-Key", "second-key")
                .body(EXAMPLE),
        )
        .await;
        assert_eq!(status, 400, "http2={http2}: {body}");
        assert!(body["message"].as_str().unwrap().contains("more than once"), "{body}");

        let beyond = r#"{"timeoutInSeconds": 14, "parameters": {"serial": 9223372036854775808}}"#;
        let (status, body) = send(client.post(url(Some(service), path)).body(beyond)).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["message"].as_str().unwrap().contains("beyond"), "{body}");
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_on_both_protocols() {
    let token = "0123456789abcdef-token";
    let app = start(&[&format!("--api-token={token}")]).await;
    let path = "/api/v1/equipment/cpe/abc123";
    for http2 in [false, true] {
        let client = if http2 { reqwest_h2() } else { client() };
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let (status, body) = send(
                client
                    .post(url(app.service_b_addr, path))
                    .header("Authorization", format!("{scheme} {token}"))
                    .body(EXAMPLE),
            )
            .await;
            assert_eq!(status, 200, "{scheme}, http2={http2}: {body}");
        }
        let (status, body) = send(
            client
                .post(url(app.service_b_addr, path))
                .header("Authorization", format!("bearer {token}x"))
                .body(EXAMPLE),
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert_json_error("wrong token", status, &body);
    }
    app.shutdown().await.unwrap();
}

/// The real binary with JSON logs: hostile targets leave no panic and no line that is not JSON.
#[tokio::test]
async fn hostile_targets_leave_no_panic_in_a_json_log() {
    let args = crate::common::process::local_args(&["--config-delay=0s"]);
    let process = crate::common::process::Process::spawn(&args, "info");
    let a = process.wait_for_addr("Service A", Duration::from_secs(30));
    let b = process.wait_for_addr("Service B", Duration::from_secs(30));
    for service in [a, b] {
        for request in [
            &b"POST abc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..],
            b"GET abc:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let answer = h1(service, request).await;
            assert!((400..500).contains(&answer.status), "{answer:?}");
        }
        let (mut sender, _driver) = h2(service).await;
        let connect = warp::http::Request::builder()
            .method("CONNECT")
            .uri("x:443")
            .body(())
            .unwrap();
        let (response, _) = sender.send_request(connect, true).unwrap();
        assert_eq!(h2_answer(response).await.0, 405);
    }
    // The log is read up to a request served after the probes, so their lines are in.
    let (status, _) = send(client().get(url(Some(b), "/healthz"))).await;
    assert_eq!(status, 200);
    let lines = process.seen.lock().unwrap().clone();
    for line in &lines {
        assert!(line.is_object(), "a log line that is not JSON: {line}");
        assert!(!line.to_string().contains("panicked"), "a panic was logged: {line}");
    }
}

/// Over `--max-connections` a new connection waits, with a warning, and is served once one closes.
#[tokio::test]
async fn over_the_connection_cap_new_connections_wait_with_a_warning() {
    let args = crate::common::process::local_args(&["--role=service-a", "--max-connections=2"]);
    let process = crate::common::process::Process::spawn(&args, "info");
    let a = process.wait_for_addr("Service A", Duration::from_secs(30));
    let first = raw::tls(a, b"http/1.1").await;
    let _second = raw::tls(a, b"http/1.1").await;
    let third = tokio::spawn(async move { h1(a, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await });
    eventually(Duration::from_secs(20), "the cap warning", || async {
        let lines = process.seen.lock().unwrap().clone();
        lines
            .iter()
            .any(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("connection cap reached"))
            })
            .then_some(())
    })
    .await;
    drop(first);
    let answer = tokio::time::timeout(raw::DEADLINE, third).await.unwrap().unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// SIGTERM to Service A with configurations in flight: both callers (HTTP/1.1 and HTTP/2) get
/// their answer, and the process exits 0.
#[tokio::test]
async fn a_stop_lets_service_a_finish_its_configurations() {
    let args = crate::common::process::local_args(&["--role=service-a", "--config-delay=2s", "--shutdown-grace=20s"]);
    let mut process = crate::common::process::Process::spawn(&args, "info,cpe_config::http::service_a=debug");
    let a = process.wait_for_addr("Service A", Duration::from_secs(30));
    let target = url(Some(a), "/api/v1/equipment/cpe/abc123");
    let calls: Vec<_> = [client(), reqwest_h2()]
        .into_iter()
        .map(|client| {
            let request = client.post(target.clone()).body(EXAMPLE);
            tokio::spawn(async move { send(request).await })
        })
        .collect();
    eventually(Duration::from_secs(20), "both configurations running", || async {
        let lines = process.seen.lock().unwrap().clone();
        let running = lines
            .iter()
            .filter(|l| l["message"].as_str() == Some("configuring device"))
            .count();
        (running == 2).then_some(())
    })
    .await;
    let code = tokio::task::spawn_blocking(move || process.terminate()).await.unwrap();
    assert_eq!(code, Some(0));
    for call in calls {
        let (status, body): (u16, Value) = call.await.unwrap();
        assert_eq!((status, body["message"].as_str()), (200, Some("success")));
    }
}

/// A `#fragment` never reaches the routes: the `http` crate drops it while parsing the target, so
/// the request is served as if it had none (docs/api.md says so; refusing it needs the raw target).
#[tokio::test]
async fn a_fragment_is_dropped_before_routing() {
    let app = start(&[]).await;
    let answer = h1(
        app.service_b_addr.unwrap(),
        b"GET /healthz#fragment HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    app.shutdown().await.unwrap();
}

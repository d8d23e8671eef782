//! Hostile input over real HTTPS: random and mutated bodies, odd paths and headers never produce a
//! 5xx or a dropped connection, only a 4xx in the JSON error shape.

use crate::common::*;

/// The example body with some bytes flipped, cut or repeated: close to valid, so it reaches deep.
fn mutate(seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut body = EXAMPLE.as_bytes().to_vec();
    for _ in 0..rng.usize(1..6) {
        let at = rng.usize(0..body.len());
        match rng.u8(0..4) {
            0 => body[at] = rng.u8(..),
            1 => body.truncate(at),
            2 => body.insert(at, b"{}[]\",:-0e9"[rng.usize(0..11)]),
            _ => body.extend_from_within(at..),
        }
        if body.is_empty() {
            break;
        }
    }
    body
}

#[tokio::test]
async fn random_and_mutated_bodies_get_a_json_4xx() {
    let app = start(&["--config-delay=0s"]).await;
    let client = client();
    for seed in 0..150u64 {
        let body = if seed % 3 == 0 {
            fastrand::Rng::with_seed(seed)
                .u8(..)
                .to_be_bytes()
                .repeat(seed as usize)
        } else {
            mutate(seed)
        };
        for service in [app.service_a_addr, app.service_b_addr] {
            let (status, reply) = send(
                client
                    .post(url(service, "/api/v1/equipment/cpe/abc123"))
                    .body(body.clone()),
            )
            .await;
            let valid = status == 200;
            assert!(
                valid || (400..500).contains(&status),
                "seed {seed}: HTTP {status} {reply}"
            );
            if !valid {
                assert_eq!(reply["code"], status, "seed {seed}: {reply}");
                assert!(
                    reply["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "seed {seed}: {reply}"
                );
            }
        }
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn odd_paths_and_methods_get_a_json_4xx() {
    let app = start(&[]).await;
    let client = client();
    // `/` is Service B's dashboard page (tests/dashboard.rs), so a near miss of it stands in here.
    let paths = [
        "/index.html",
        "/api",
        "/api/v1/equipment/cpe",
        "/api/v1/equipment/cpe/",
        "/api/v1/equipment/cpe/abc123/",
        "/api/v1/equipment/cpe/abc123/task",
        "/api/v1/equipment/cpe/abc123/task/",
        "/api/v1/equipment/cpe/abc123/task/x/y",
        "/api/v1/equipment/cpe/..%2f..%2fetc",
        "/API/V1/EQUIPMENT/CPE/abc123",
        "//api/v1/equipment/cpe/abc123",
    ];
    for path in paths {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::PATCH,
        ] {
            for service in [app.service_a_addr, app.service_b_addr] {
                let (status, reply) = send(client.request(method.clone(), url(service, path)).body(EXAMPLE)).await;
                assert!((400..500).contains(&status), "{method} {path}: HTTP {status}");
                assert_eq!(reply["code"], status, "{method} {path}: {reply}");
            }
        }
    }
    app.shutdown().await.unwrap();
}

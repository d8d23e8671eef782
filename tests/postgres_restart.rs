//! The PostgreSQL server itself restarted (`pg_ctlcluster ... restart`) while two instances run tasks:
//! a binary of its own, since the restart breaks every connection to the server, other tests' included.

// The api binary's helpers (tests/api/common); this binary uses only some of them, hence the allow.
#[allow(dead_code)]
#[path = "api/common/mod.rs"]
mod common;
// Helpers only the binaries kept apart use (scale_out, postgres_restart).
#[allow(dead_code)]
#[path = "alone/cluster.rs"]
mod cluster;

use cluster::*;
use common::call_log::CallLog;
use common::rabbitmq;
use cpe_config::store::postgres::scratch::ScratchSchema;
use cpe_test_support::unique_queue;
use std::process::Command;
use std::time::Duration;

/// The Debian cluster serving 127.0.0.1:5432 (version and name), from `pg_lsclusters`.
fn local_cluster() -> Option<(String, String)> {
    let listed = Command::new("pg_lsclusters").arg("--no-header").output().ok()?;
    String::from_utf8_lossy(&listed.stdout).lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&"5432")).then(|| (fields[0].to_owned(), fields[1].to_owned()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_run_loses_nothing_and_overlaps_nothing() {
    let Some(amqp) = rabbitmq().await else { return };
    let Some(schema) = ScratchSchema::create() else { return };
    let Some((version, name)) = local_cluster() else {
        assert!(
            std::env::var("REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "REQUIRE_POSTGRES=1 but no pg_lsclusters cluster serves port 5432 to restart"
        );
        eprintln!("skipping: no Debian PostgreSQL cluster on port 5432 to restart");
        return;
    };
    let queue = unique_queue("test-pg-restart");
    let service_a = CallLog::start_with(Duration::from_millis(200), by_vlan()).await;
    let cluster = cluster_on(schema, &amqp, &queue, &service_a.url(), 2);
    let devices: Vec<String> = (0..30).map(|n| format!("cpe{n:04}")).collect();
    let mut history = History::default();
    for round in 0..6 {
        if round == 2 {
            let restarted = Command::new("pg_ctlcluster")
                .args([version.as_str(), name.as_str(), "restart"])
                .status()
                .expect("pg_ctlcluster runs");
            assert!(restarted.success(), "pg_ctlcluster {version} {name} restart failed");
        }
        history
            .round(round, &devices, &cluster.service_b, |b, device, number| async move {
                create_retrying(b, &device, number).await
            })
            .await;
    }
    assert_clean(&history.check(cluster.service_b[0], &service_a).await);
    cpe_test_support::delete_queues(&amqp, &queue).await;
}

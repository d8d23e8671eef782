//! What operators load into their tools (deploy/): the Prometheus alert rules pass `promtool check
//! rules`, and every metric family the rules and the Grafana dashboard name is one a real scrape has.

use crate::common::*;
use std::collections::BTreeSet;

const RULES: &str = include_str!("../../deploy/prometheus/cpe-config.rules.yml");
const DASHBOARD: &str = include_str!("../../deploy/grafana/cpe-config.json");

/// The `cpe_config_*` names an expression uses, without a histogram's `_bucket`.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("cpe_config_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name.trim_end_matches("_bucket").to_owned());
    }
    out
}

/// The families of a scrape of an app with every role and a broker, by their `# TYPE` lines (a
/// counter's name there ends in `_total`).
async fn scraped_families() -> BTreeSet<String> {
    let Some(amqp) = rabbitmq().await else {
        return BTreeSet::new();
    };
    let queue = cpe_test_support::unique_queue("test-deploy");
    // One worker busy for a while and a second task behind it: the oldest-queued gauge is present.
    let app = start(&[
        &format!("--amqp-url={amqp}"),
        &format!("--queue={queue}"),
        &format!("--results-queue={queue}-results"),
        "--workers=1",
        "--config-delay=5s",
        "--call-timeout=10s",
        "--shutdown-grace=1s",
    ])
    .await;
    let b = app.service_b_addr;
    create_task(b, "deploy01").await;
    create_task(b, "deploy01").await;
    let text = crate::metrics::scrape(b).await.text;
    app.shutdown().await.unwrap();
    cpe_test_support::delete_queues(&amqp, &queue).await;
    let mut families = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name)) = (words.next(), words.next(), words.next()) {
            families.insert(name.to_owned());
        }
    }
    families
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_name_is_scraped() {
    let families = scraped_families().await;
    if families.is_empty() {
        return; // No broker here: `rabbitmq()` said so (and fails the test when REQUIRE_RABBITMQ=1).
    }
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| target["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for (what, text) in [
        ("the alert rules", RULES.to_owned()),
        ("the dashboard", exprs.join("\n")),
    ] {
        let used = names(&text);
        assert!(used.len() >= 5, "{what}: {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|name| !families.contains(*name)).collect();
        assert!(
            unknown.is_empty(),
            "{what} name metrics no scrape has: {unknown:?}\nscraped: {families:?}"
        );
    }
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let checked = std::process::Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/cpe-config.rules.yml"),
        ])
        .output();
    let Ok(out) = checked else {
        assert_ne!(
            std::env::var("REQUIRE_PROMTOOL").as_deref(),
            Ok("1"),
            "promtool is required (REQUIRE_PROMTOOL=1) but not installed; apt-get install prometheus"
        );
        eprintln!("skipping: promtool not installed (set REQUIRE_PROMTOOL=1 to make this a failure)");
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! `--queue-type quorum` against a real RabbitMQ: the queues and their arguments, the broker's own
//! dead-lettering past the delivery limit, tasks end to end, the clear refusal over a classic queue of
//! the same name, and the default classic queue the original system can still declare.
//! Skips (with a note) without a broker unless REQUIRE_RABBITMQ=1.

use crate::common::broker::{message_count, publish_raw};
use crate::common::*;
use clap::Parser;
use cpe_config::config::Cli;
use cpe_config::queue::amqp::{
    declare_quorum_task_topology, declare_task_topology, quorum_task_arguments, QueueType, DELIVERY_LIMIT,
};
use cpe_config::startup::App;
use cpe_test_support::{delete_queues, unique_queue};
use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn options(amqp: &str, queue: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("--amqp-url={amqp}"),
        format!("--queue={queue}"),
        format!("--results-queue={queue}-results"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Builds the app as `crate::common::start` does, but hands back a failed start instead of panicking.
async fn build(args: &[String]) -> anyhow::Result<App> {
    let mut all = vec![
        "cpe-config".to_string(),
        "--service-a-addr=127.0.0.1:0".into(),
        "--service-b-addr=127.0.0.1:0".into(),
        format!("--certs-dir={}", certs_dir().display()),
        "--config-delay=200ms".into(),
        "--retry-base=50ms".into(),
        "--call-timeout=1s".into(),
        "--store=memory".into(),
    ];
    all.extend(args.iter().cloned());
    let cli = Cli::try_parse_from(all).expect("test options parse");
    cli.config.validate().expect("test options are valid");
    App::build(cli.config).await
}

async fn ready(app: &App) {
    eventually(LIMIT, "readiness", || async {
        let (status, _) = send(client().get(url(app.service_b_addr, "/readyz"))).await;
        (status == 200).then_some(())
    })
    .await;
}

async fn connect(amqp: &str) -> Connection {
    Connection::connect(amqp, ConnectionProperties::default())
        .await
        .expect("the broker answers")
}

/// Declares `queue` durable with `arguments` on a channel of its own (a refusal closes the channel).
async fn declare(connection: &Connection, queue: &str, arguments: FieldTable) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .map(drop)
}

fn quorum_type() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments
}

#[test]
fn the_delivery_limit_stays_above_every_allowed_max_attempts() {
    // Workers need up to max_attempts + 1 deliveries to reach their own verdict, whatever the value.
    let accepted = |n: u32| Cli::try_parse_from(["cpe-config".to_string(), format!("--max-attempts={n}")]).is_ok();
    let top = (1..=10_000)
        .take_while(|&n| accepted(n))
        .last()
        .expect("some --max-attempts is accepted");
    assert!(!accepted(top + 1));
    assert!(
        DELIVERY_LIMIT > top + 1,
        "x-delivery-limit {DELIVERY_LIMIT}, --max-attempts up to {top}"
    );
}

#[test]
fn quorum_is_an_option_of_rabbitmq_only_and_classic_is_the_default() {
    let cli = Cli::try_parse_from(["cpe-config"]).unwrap();
    assert_eq!(cli.config.broker.queue_type, QueueType::Classic);
    let cli = Cli::try_parse_from(["cpe-config", "--queue-type=quorum"]).unwrap();
    let error = cli.config.validate().unwrap_err();
    assert!(error.contains("--queue-type quorum needs --amqp-url"), "{error}");
    let cli = Cli::try_parse_from(["cpe-config", "--queue-type=quorum", "--amqp-url=amqp://127.0.0.1"]).unwrap();
    assert!(cli.config.validate().is_ok());
    let error = Cli::try_parse_from(["cpe-config", "--queue-type=stream"]).unwrap_err();
    assert!(error.to_string().contains("--queue-type"), "{error}");
}

#[tokio::test]
async fn the_quorum_queues_carry_their_arguments() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-quorum-args");
    let connection = connect(&amqp).await;
    declare_quorum_task_topology(&connection, &queue)
        .await
        .expect("declared");
    // The broker compares arguments on every declaration: the same ones pass, others are refused.
    declare(&connection, &queue, quorum_task_arguments(&queue))
        .await
        .expect("the same arguments again");
    let original = declare(&connection, &queue, FieldTable::default()).await;
    assert!(
        original.is_err(),
        "a declaration with no arguments is refused by a quorum queue"
    );
    let classic_type = {
        let mut arguments = quorum_task_arguments(&queue);
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
        arguments
    };
    assert!(
        declare(&connection, &queue, classic_type).await.is_err(),
        "it is not classic"
    );
    let dead_letters = format!("{queue}.dlq");
    declare(&connection, &dead_letters, quorum_type())
        .await
        .expect("the dead-letter queue is a quorum queue");
    assert!(declare(&connection, &dead_letters, FieldTable::default())
        .await
        .is_err());
    // Declaring the topology again changes nothing; a classic start over it is refused.
    declare_quorum_task_topology(&connection, &queue)
        .await
        .expect("idempotent");
    assert!(declare_task_topology(&connection, &queue).await.is_err());
    let _ = connection.close(200, "done".into()).await;
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn a_message_returned_past_the_delivery_limit_is_dead_lettered_by_the_broker() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-quorum-limit");
    let connection = connect(&amqp).await;
    declare_quorum_task_topology(&connection, &queue)
        .await
        .expect("declared");
    publish_raw(&amqp, &queue, b"\"poison\"").await;
    let channel = connection.create_channel().await.unwrap();
    let mut returned = 0;
    // A reject with requeue counts as a failed delivery on every RabbitMQ version (a nack does not
    // from 4.3 on), so this drives the count the way crashed consumers would.
    while let Some(message) = eventually(LIMIT, "the message back on the queue or dead-lettered", || async {
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic.get");
        match got {
            Some(message) => Some(Some(message)),
            None if message_count(&amqp, &format!("{queue}.dlq")).await == 1 => Some(None),
            None => None,
        }
    })
    .await
    {
        returned += 1;
        assert!(
            returned <= DELIVERY_LIMIT + 1,
            "still delivered after {returned} returns"
        );
        message
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
    assert!(
        returned >= DELIVERY_LIMIT,
        "dead-lettered after only {returned} returns"
    );
    let dead = channel
        .basic_get(format!("{queue}.dlq").as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the message is in the dead-letter queue");
    assert_eq!(dead.delivery.data, b"\"poison\"");
    let headers = dead.delivery.properties.headers().clone().unwrap_or_default();
    let reason = match headers.inner().get("x-first-death-reason") {
        Some(AMQPValue::LongString(text)) => text.to_string(),
        other => format!("{other:?}"),
    };
    assert_eq!(reason, "delivery_limit");
    let _ = connection.close(200, "done".into()).await;
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn tasks_flow_end_to_end_through_a_quorum_queue_and_garbage_is_dead_lettered() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-quorum-e2e");
    let app = build(&options(&amqp, &queue, &["--queue-type=quorum"]))
        .await
        .expect("starts");
    ready(&app).await;
    let connection = connect(&amqp).await;
    declare(&connection, &queue, quorum_task_arguments(&queue))
        .await
        .expect("the task queue is the quorum queue");
    let tasks = [
        create_task(app.service_b_addr, "quorum01").await,
        create_task(app.service_b_addr, "quorum02").await,
    ];
    for (task, device) in tasks.iter().zip(["quorum01", "quorum02"]) {
        let done = wait_completed(app.service_b_addr, device, task, LIMIT).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    // The workers' own dead-lettering (publish to <queue>.dlq, then ack) works on quorum queues too.
    publish_raw(&amqp, &queue, b"this is not a task").await;
    eventually(LIMIT, "the garbage in the dead-letter queue", || async {
        (message_count(&amqp, &format!("{queue}.dlq")).await == 1).then_some(())
    })
    .await;
    app.shutdown().await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn start_fails_clearly_over_a_classic_queue_of_the_same_name() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-quorum-over-classic");
    let connection = connect(&amqp).await;
    // As the original system declares config_tasks.
    declare(&connection, &queue, FieldTable::default())
        .await
        .expect("a classic queue");
    publish_raw(&amqp, &queue, b"\"waiting\"").await;
    let error = build(&options(&amqp, &queue, &["--queue-type=quorum"]))
        .await
        .err()
        .expect("start fails");
    let text = format!("{error:#}");
    for needed in [
        queue.as_str(),
        "quorum queue",
        "classic queue",
        "another --queue",
        "drain",
        "docs/scaling.md",
    ] {
        assert!(text.contains(needed), "the message lacks `{needed}`: {text}");
    }
    // The classic queue and its message are left as they were.
    declare(&connection, &queue, FieldTable::default())
        .await
        .expect("still classic with no arguments");
    assert_eq!(message_count(&amqp, &queue).await, 1);
    // Nothing was created beside it: a quorum `.dlq` would refuse the classic start that follows.
    let channel = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let dead_letters = format!("{queue}.dlq");
    let exists = channel
        .queue_declare(dead_letters.as_str().into(), passive, FieldTable::default())
        .await;
    assert!(exists.is_err(), "{dead_letters} was created");
    let app = build(&options(&amqp, &queue, &[]))
        .await
        .expect("a classic start still works");
    ready(&app).await;
    app.shutdown().await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    delete_queues(&amqp, &queue).await;
}

#[tokio::test]
async fn by_default_the_original_systems_declare_works_against_the_queues_cpe_config_made() {
    let Some(amqp) = rabbitmq().await else { return };
    let queue = unique_queue("test-default-classic");
    let app = build(&options(&amqp, &queue, &[])).await.expect("starts");
    ready(&app).await;
    let task = create_task(app.service_b_addr, "classic01").await;
    wait_completed(app.service_b_addr, "classic01", &task, LIMIT).await;
    let connection = connect(&amqp).await;
    // What the original Service B does before every publish: durable, no arguments.
    for name in [queue.clone(), format!("{queue}.dlq")] {
        declare(&connection, &name, FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("{name} refused the original declaration: {e}"));
    }
    app.shutdown().await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    delete_queues(&amqp, &queue).await;
}

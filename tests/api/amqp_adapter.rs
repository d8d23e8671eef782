//! The RabbitMQ adapter against the broker at `AMQP_URL`: confirms, wire format, requeue, dead letters,
//! stale acks, prefetch, reconnection and connect failures. Without a broker the tests say so and
//! skip, unless `REQUIRE_RABBITMQ=1`.

use cpe_actors::ports::{Delivery, DeliveryStream, QueueSource, Settle, TaskPublisher};
use cpe_actors::{TaskId, TaskMessage};
use cpe_config::queue::amqp::{
    declare_task_topology, redact_url, AmqpConfig, AmqpLink, AmqpPublisher, AmqpSource, Declared, QueueSpec,
};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::time::{Duration, Instant};

/// Longest wait for anything the broker should do promptly.
const DEADLINE: Duration = Duration::from_secs(10);

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A unique scratch queue on a reachable broker, with a raw lapin channel to inspect it; `None` when
/// there is no broker and none is required.
async fn scratch() -> Option<Scratch> {
    let url = amqp_url();
    let connect = Connection::connect(&url, ConnectionProperties::default());
    let why = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(connection)) => {
            let channel = connection.create_channel().await.expect("a channel");
            let queue = format!("test-{}", uuid::Uuid::new_v4());
            return Some(Scratch {
                url,
                queue,
                connection,
                channel,
            });
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no answer within 5 s".into(),
    };
    let shown = redact_url(&url);
    if std::env::var("REQUIRE_RABBITMQ").as_deref() == Ok("1") {
        panic!("RabbitMQ not reachable at {shown} ({why}) and REQUIRE_RABBITMQ=1");
    }
    eprintln!("skipping: RabbitMQ not reachable at {shown} ({why})");
    None
}

struct Scratch {
    url: String,
    queue: String,
    connection: Connection,
    channel: Channel,
}

impl Scratch {
    fn link(&self) -> AmqpLink {
        AmqpLink::new(&AmqpConfig {
            url: self.url.clone(),
            queue: self.queue.clone(),
            prefetch: 4,
            connect_timeout: Duration::from_secs(5),
        })
        .expect("a valid URL")
    }

    fn publisher(&self) -> AmqpPublisher {
        AmqpPublisher::new(self.link(), QueueSpec::tasks(&self.queue))
    }

    async fn subscribe(&self, prefetch: u16) -> Box<dyn DeliveryStream> {
        let source = AmqpSource::new(self.link(), QueueSpec::tasks(&self.queue), prefetch);
        source.subscribe().await.expect("a subscription")
    }

    /// (ready messages, consumers) of a queue, as the broker counts them.
    async fn counts(&self, queue: &str) -> (u32, u32) {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = self.channel.queue_declare(queue.into(), passive, FieldTable::default());
        let declared = declared.await.expect("the queue exists");
        (declared.message_count(), declared.consumer_count())
    }

    async fn wait_for_counts(&self, queue: &str, expected: (u32, u32)) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let counts = self.counts(queue).await;
            if counts == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{queue}: (ready, consumers) stayed {counts:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes one message from `queue` through the raw channel, waiting for it to arrive.
    async fn get(&self, queue: &str) -> lapin::message::Delivery {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let got = self
                .channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .expect("basic.get");
            if let Some(message) = got {
                return message.delivery;
            }
            assert!(Instant::now() < deadline, "no message arrived in {queue}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Scratch {
    /// Deletes the scratch queues even when the test failed, on a runtime of its own (Drop is sync).
    fn drop(&mut self) {
        let (url, queue) = (self.url.clone(), self.queue.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
                let channel = connection.create_channel().await?;
                for name in [queue.clone(), format!("{queue}.dlq")] {
                    channel
                        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await?;
                }
                let exchange = format!("{queue}.dlx");
                channel
                    .exchange_delete(exchange.as_str().into(), Default::default())
                    .await?;
                connection.close(200, "OK".into()).await
            })
        });
        if let Ok(Err(error)) = cleanup.join() {
            eprintln!("could not delete the scratch queues {}: {error}", self.queue);
        }
    }
}

fn task() -> TaskMessage {
    let body = format!(
        r#"{{"task_id": "{}", "equipment_id": "abc123", "task_payload": {{"timeoutInSeconds": 14,
        "parameters": {{"username": "admin", "password": "admin", "vlan": 534, "interfaces": [1, 2, 3, 4]}}}}}}"#,
        TaskId::new()
    );
    TaskMessage::from_json(body.as_bytes()).expect("a valid task")
}

async fn next(stream: &mut Box<dyn DeliveryStream>) -> Delivery {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("a delivery in time")
        .expect("an open stream")
}

#[tokio::test]
async fn a_confirmed_publish_keeps_the_original_wire_format_and_is_consumed() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let publisher = scratch.publisher();
    let task = task();
    publisher.publish(&task).await.expect("a confirmed publish");
    publisher.publish(&task).await.expect("a confirmed publish");

    let raw = scratch.get(&scratch.queue).await;
    assert_eq!(
        (raw.exchange.as_str(), raw.routing_key.as_str()),
        ("", scratch.queue.as_str())
    );
    assert_eq!(raw.properties.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        raw.properties.content_type().as_ref().map(|t| t.as_str()),
        Some("application/json")
    );
    let json: serde_json::Value = serde_json::from_slice(&raw.data).expect("JSON");
    assert_eq!(json["task_id"], task.task_id.to_string());
    assert_eq!(json["equipment_id"], "abc123");
    assert_eq!(json["task_payload"]["timeoutInSeconds"], 14);
    assert_eq!(json["task_payload"]["parameters"]["vlan"], 534);
    raw.acker.ack(BasicAckOptions::default()).await.expect("ack");

    let source = AmqpSource::new(scratch.link(), QueueSpec::tasks(&scratch.queue), 4);
    let description = source.describe();
    assert!(
        description.starts_with(&format!("RabbitMQ queue {} at ", scratch.queue)),
        "{description}"
    );
    let mut stream = source.subscribe().await.expect("a subscription");
    let delivery = next(&mut stream).await;
    assert!(!delivery.redelivered);
    assert_eq!(TaskMessage::from_json(&delivery.body).expect("a task"), task);
    delivery.acker.settle(Settle::Ack).await.expect("ack");
    delivery
        .acker
        .settle(Settle::Ack)
        .await
        .expect("a second answer is a no-op");
}

#[tokio::test]
async fn a_requeued_delivery_comes_back_redelivered() {
    let Some(scratch) = scratch().await else {
        return;
    };
    scratch.publisher().publish_json(b"{\"n\":1}").await.expect("published");
    let mut stream = scratch.subscribe(1).await;
    let first = next(&mut stream).await;
    assert!(!first.redelivered);
    first.acker.settle(Settle::Requeue).await.expect("requeue");
    let again = next(&mut stream).await;
    assert!(again.redelivered);
    assert_eq!(&*again.body, b"{\"n\":1}");
    again.acker.settle(Settle::Ack).await.expect("ack");
}

#[tokio::test]
async fn a_dead_lettered_delivery_lands_in_the_dead_letter_queue() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let outcome = declare_task_topology(&scratch.connection, &scratch.queue)
        .await
        .expect("declared");
    assert_eq!(outcome, Declared::Plain);
    scratch
        .publisher()
        .publish_json(b"{\"poison\":true}")
        .await
        .expect("published");
    let mut stream = scratch.subscribe(1).await;
    next(&mut stream)
        .await
        .acker
        .settle(Settle::DeadLetter)
        .await
        .expect("dead letter");

    let dead = scratch.get(&format!("{}.dlq", scratch.queue)).await;
    assert_eq!(dead.data, b"{\"poison\":true}");
    assert_eq!(
        dead.properties.delivery_mode(),
        &Some(2),
        "kept across a broker restart"
    );
    scratch.wait_for_counts(&scratch.queue, (0, 1)).await;
}

#[tokio::test]
async fn an_ack_after_the_connection_closed_is_an_error_and_the_next_publish_reconnects() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let link = scratch.link();
    let publisher = AmqpPublisher::new(link.clone(), QueueSpec::tasks(&scratch.queue));
    let source = AmqpSource::new(link.clone(), QueueSpec::tasks(&scratch.queue), 4);
    assert!(!link.is_connected(), "connects lazily");
    publisher.publish_json(b"\"first\"").await.expect("published");
    let mut stream = source.subscribe().await.expect("a subscription");
    let held = next(&mut stream).await;
    assert!(link.is_connected());

    link.close().await;
    assert!(!link.is_connected());
    let error = held.acker.settle(Settle::Ack).await.expect_err("the channel is gone");
    assert!(error.0.contains("stale"), "{error}");
    let ended = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the stream ends in time");
    assert!(ended.is_none());

    publisher
        .publish_json(b"\"second\"")
        .await
        .expect("the publisher reconnects");
    assert!(link.is_connected());
    let mut stream = source.subscribe().await.expect("a new subscription");
    let (a, b) = (next(&mut stream).await, next(&mut stream).await);
    let first = if &*a.body == b"\"first\"" { &a } else { &b };
    assert!(first.redelivered, "the unacknowledged message came back");
    a.acker.settle(Settle::Ack).await.expect("ack");
    b.acker.settle(Settle::Ack).await.expect("ack");
}

#[tokio::test]
async fn prefetch_limits_unacknowledged_deliveries() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let publisher = scratch.publisher();
    for n in 0..5 {
        publisher
            .publish_json(format!("{n}").as_bytes())
            .await
            .expect("published");
    }
    let mut stream = scratch.subscribe(2).await;
    let first = next(&mut stream).await;
    let _second = next(&mut stream).await;
    scratch.wait_for_counts(&scratch.queue, (3, 1)).await;
    let third = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(third.is_err(), "a third delivery arrived while two were unacknowledged");

    first.acker.settle(Settle::Ack).await.expect("ack");
    let _third = next(&mut stream).await;
    scratch.wait_for_counts(&scratch.queue, (2, 1)).await;
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_consumer_and_hands_back_prefetched_messages() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let publisher = scratch.publisher();
    for n in 0..3 {
        publisher
            .publish_json(format!("{n}").as_bytes())
            .await
            .expect("published");
    }
    let mut stream = scratch.subscribe(3).await;
    let held = next(&mut stream).await;
    scratch.wait_for_counts(&scratch.queue, (0, 1)).await;

    drop(stream);
    scratch.wait_for_counts(&scratch.queue, (2, 0)).await;
    held.acker
        .settle(Settle::Ack)
        .await
        .expect("a held delivery can still be acknowledged");
}

#[tokio::test]
async fn a_delivery_dropped_without_an_answer_goes_back_on_the_queue() {
    let Some(scratch) = scratch().await else {
        return;
    };
    scratch.publisher().publish_json(b"1").await.expect("published");
    let mut stream = scratch.subscribe(1).await;
    drop(next(&mut stream).await);
    assert!(next(&mut stream).await.redelivered);
}

#[tokio::test]
async fn the_original_systems_declare_works_against_the_queue_cpe_config_made() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let outcome = declare_task_topology(&scratch.connection, &scratch.queue)
        .await
        .expect("declared");
    assert_eq!(outcome, Declared::Plain);
    // What the original Service B does before every publish: durable, no arguments.
    let original = scratch.connection.create_channel().await.expect("a channel");
    original
        .queue_declare(
            scratch.queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("no PRECONDITION_FAILED: the queue carries no arguments");
    scratch.publisher().publish_json(b"\"kept\"").await.expect("published");
    let mut stream = scratch.subscribe(1).await;
    let delivery = next(&mut stream).await;
    assert_eq!(&*delivery.body, b"\"kept\"");
    delivery.acker.settle(Settle::Ack).await.expect("ack");
}

#[tokio::test]
async fn a_queue_an_earlier_version_declared_with_arguments_is_kept_and_still_dead_letters() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        lapin::types::AMQPValue::LongString(format!("{}.dlx", scratch.queue).as_str().into()),
    );
    let earlier =
        scratch
            .channel
            .queue_declare(scratch.queue.as_str().into(), QueueDeclareOptions::durable(), arguments);
    earlier.await.expect("a queue as an earlier cpe-config declared it");
    let outcome = declare_task_topology(&scratch.connection, &scratch.queue)
        .await
        .expect("no failure");
    assert_eq!(outcome, Declared::Kept);
    scratch
        .publisher()
        .publish_json(b"\"poison\"")
        .await
        .expect("published");
    let mut stream = scratch.subscribe(1).await;
    next(&mut stream)
        .await
        .acker
        .settle(Settle::DeadLetter)
        .await
        .expect("dead letter");
    let dead = scratch.get(&format!("{}.dlq", scratch.queue)).await;
    assert_eq!(dead.data, b"\"poison\"");
}

#[tokio::test]
async fn concurrent_publishes_are_all_confirmed() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let publisher = scratch.publisher();
    let started = Instant::now();
    let publishes = (0..300).map(|n| {
        let publisher = publisher.clone();
        async move { publisher.publish_json(format!("{n}").as_bytes()).await }
    });
    let results = futures_util::future::join_all(publishes).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    eprintln!("300 concurrent confirmed publishes took {:?}", started.elapsed());
    scratch.wait_for_counts(&scratch.queue, (300, 0)).await;
}

#[tokio::test]
async fn a_plain_queue_round_trips_without_a_dead_letter_queue() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let spec = QueueSpec::plain(&scratch.queue);
    let publisher = AmqpPublisher::new(scratch.link(), spec.clone());
    publisher
        .publish_json(b"{\"status\":\"running\"}")
        .await
        .expect("published");
    let mut stream = AmqpSource::new(scratch.link(), spec, 8)
        .subscribe()
        .await
        .expect("a subscription");
    let delivery = next(&mut stream).await;
    assert_eq!(&*delivery.body, b"{\"status\":\"running\"}");
    delivery.acker.settle(Settle::Ack).await.expect("ack");

    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let fresh = scratch.connection.create_channel().await.expect("a channel");
    let dlq = format!("{}.dlq", scratch.queue);
    assert!(fresh
        .queue_declare(dlq.as_str().into(), passive, FieldTable::default())
        .await
        .is_err());
}

#[tokio::test]
async fn a_queue_deleted_under_the_publisher_fails_one_publish_then_is_declared_again() {
    let Some(scratch) = scratch().await else {
        return;
    };
    let publisher = scratch.publisher();
    publisher.publish_json(b"1").await.expect("published");
    let deleted = scratch
        .channel
        .queue_delete(scratch.queue.as_str().into(), QueueDeleteOptions::default());
    deleted.await.expect("deleted");

    let error = publisher.publish_json(b"2").await.expect_err("no queue takes it");
    assert!(error.0.contains("returned"), "{error}");
    publisher.publish_json(b"3").await.expect("declared again");
    scratch.wait_for_counts(&scratch.queue, (1, 0)).await;
}

#[tokio::test]
async fn a_closed_port_fails_within_the_connect_timeout_without_showing_the_password() {
    let config = AmqpConfig {
        url: "amqp://guest:s3cret@127.0.0.1:1/%2f".into(),
        queue: "config_tasks".into(),
        prefetch: 1,
        connect_timeout: Duration::from_secs(2),
    };
    let link = AmqpLink::new(&config).expect("a valid URL");
    let started = Instant::now();
    let error = AmqpPublisher::new(link.clone(), QueueSpec::tasks("config_tasks"))
        .publish(&task())
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error.0.contains("127.0.0.1:1") && !error.0.contains("s3cret"),
        "{error}"
    );
    let source = AmqpSource::new(link.clone(), QueueSpec::tasks("config_tasks"), 1);
    assert_eq!(source.describe(), "RabbitMQ queue config_tasks at 127.0.0.1:1");
    assert!(source.subscribe().await.is_err());
    assert!(!link.is_connected());
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let config = AmqpConfig {
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        queue: "config_tasks".into(),
        prefetch: 1,
        connect_timeout: Duration::from_millis(300),
    };
    let started = Instant::now();
    let error = AmqpLink::new(&config)
        .expect("a valid URL")
        .ensure_connected()
        .await
        .expect_err("no handshake");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error.0.contains("within 300ms") && error.0.contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    silent.abort();
}

//! Direct broker access for tests: publish as another system would, count queues. Deleting them is
//! `cpe_test_support::delete_queues`, shared with the benchmark.

/// Publishes raw bytes on a queue, as another system would.
pub async fn publish_raw(amqp: &str, queue: &str, body: &[u8]) {
    let connection = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let properties = lapin::BasicProperties::default().with_delivery_mode(2);
    channel
        .basic_publish("".into(), queue.into(), Default::default(), body, properties)
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
}

pub async fn message_count(amqp: &str, queue: &str) -> u32 {
    let connection = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let options = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let count = channel
        .queue_declare(queue.into(), options, Default::default())
        .await
        .map(|q| q.message_count())
        .unwrap_or(0);
    let _ = connection.close(200, "done".into()).await;
    count
}

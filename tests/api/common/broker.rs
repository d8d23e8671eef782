//! Direct broker access for tests: publish as another system would, count and delete queues.

pub async fn delete_queues(amqp: &str, queue: &str) {
    let Ok(connection) = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default()).await else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for name in [queue.to_string(), format!("{queue}.dlq"), format!("{queue}-results")] {
            let _ = channel.queue_delete(name.as_str().into(), Default::default()).await;
        }
        let _ = channel
            .exchange_delete(format!("{queue}.dlx").as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}

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

//! Unit tests of `http/edge.rs`.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_connection_is_idle_only_with_no_request_in_flight_for_the_whole_period() {
    let activity = Activity::new();
    let first = Duration::from_secs(10);
    let idle = Duration::from_secs(60);
    let started = tokio::time::Instant::now();
    activity.idle(first, idle).await;
    assert_eq!(started.elapsed(), first);

    let busy = activity.begin();
    let watching = activity.clone();
    let watcher = tokio::spawn(async move { watching.idle(first, idle).await });
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(!watcher.is_finished(), "a request in flight keeps the connection open");
    drop(busy);
    let ended = tokio::time::Instant::now();
    watcher.await.unwrap();
    assert!(ended.elapsed() >= idle);
}

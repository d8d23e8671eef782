//! Unit tests of `http/connections.rs`.

use super::*;

#[tokio::test]
async fn a_stop_waits_for_open_connections_and_closes_the_rest_after_the_grace() {
    let connections = Connections::new(2);
    let first = connections.slot("test").await;
    assert_eq!(connections.open_count(), 1);
    let stopping = connections.clone();
    let stop = tokio::spawn(async move { stopping.stop(Duration::from_secs(30)).await });
    let mut phase = connections.phase();
    phase.wait_for(|p| *p == Phase::Draining).await.unwrap();
    drop(first);
    assert_eq!(stop.await.unwrap(), 0);

    let connections = Connections::new(1);
    let held = connections.slot("test").await;
    let mut phase = connections.phase();
    let stopping = connections.clone();
    let stop = tokio::spawn(async move { stopping.stop(Duration::from_millis(10)).await });
    phase.wait_for(|p| *p == Phase::Closing).await.unwrap();
    drop(held);
    assert_eq!(stop.await.unwrap(), 1);
}

#[tokio::test]
async fn over_the_cap_a_new_slot_waits_for_a_free_one() {
    let connections = Connections::new(1);
    let held = connections.slot("test").await;
    let waiting = connections.clone();
    let next = tokio::spawn(async move { waiting.slot("test").await });
    tokio::task::yield_now().await;
    assert!(!next.is_finished());
    drop(held);
    let _second = next.await.unwrap();
    assert_eq!(connections.open_count(), 1);
}

//! The example adapter (examples/ws_publisher) against a real server: it waits out a
//! server that is not up yet with backoff, and delivers every tick exactly once.

#[path = "../../examples/ws_publisher/adapter.rs"]
mod adapter;

use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app_with, PUBLISHER_KEY};
use crate::support::RefusedPort;

#[actix_web::test]
async fn the_example_adapter_backs_off_until_the_server_is_up_and_delivers_exactly_once() {
    // Refused until the server takes the port over; no other test can take it.
    let reserved = RefusedPort::for_a_later_server();
    let port = reserved.port;
    let url = format!("ws://127.0.0.1:{port}/ws/ingest");
    let mut publisher = adapter::Publisher::new(url, PUBLISHER_KEY, 1);
    for batch in 0..5u64 {
        publisher.enqueue(
            (0..4)
                .map(|i| json!({"symbol":"AAPL","price":100 + batch,"size":10 + i}))
                .collect(),
        );
    }

    // The server comes up only after the adapter has started retrying.
    let deliver = actix_web::rt::spawn(async move {
        let result = publisher.flush(Duration::from_secs(20)).await;
        (result, publisher)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = spawn_app_with(|s| s.server.port = port).await;
    let (result, publisher) = deliver.await.unwrap();
    result.expect("every batch acknowledged");
    assert_eq!(publisher.totals.accepted, 20);
    assert!(publisher.totals.connections >= 1);
    // 5 batches x (10 + 11 + 12 + 13)
    assert_eq!(app.rest_quote("AAPL").await["v"], 230);

    // Re-sending batches the server already applied (as after a lost ack) adds nothing.
    let mut replayer =
        adapter::Publisher::new(format!("ws://127.0.0.1:{port}/ws/ingest"), PUBLISHER_KEY, 1);
    for batch in 0..5u64 {
        replayer.enqueue(
            (0..4)
                .map(|i| json!({"symbol":"AAPL","price":100 + batch,"size":10 + i}))
                .collect(),
        );
    }
    replayer.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (replayer.totals.accepted, replayer.totals.duplicates),
        (0, 20)
    );
    assert_eq!(app.rest_quote("AAPL").await["v"], 230);
    assert_eq!(publisher.pending(), 0);
    assert!(adapter::backoff(30) <= Duration::from_secs(10));

    // One socket carried all five batches.
    assert_eq!(replayer.totals.connections, 1);
}

#[actix_web::test]
async fn a_batch_the_server_refuses_whole_is_dropped_not_retried_forever() {
    let app = spawn_app_with(|s| s.ingest.max_batch_ticks = 2).await;
    let mut publisher = adapter::Publisher::new(
        format!("ws://127.0.0.1:{}/ws/ingest", app.port),
        PUBLISHER_KEY,
        1,
    );
    publisher.enqueue(
        (0..3)
            .map(|_| json!({"symbol":"AAPL","price":1,"size":1}))
            .collect(),
    );
    publisher.enqueue(vec![json!({"symbol":"AAPL","price":2,"size":5})]);
    publisher
        .flush(Duration::from_secs(5))
        .await
        .expect("no batch left behind");
    assert_eq!(
        (publisher.totals.refused_batches, publisher.totals.accepted),
        (1, 1)
    );
    assert_eq!(app.rest_quote("AAPL").await["v"], 5);
}

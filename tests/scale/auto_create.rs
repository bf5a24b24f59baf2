//! A symbol auto-created from a publisher's tick exists on every instance, with the
//! same quote: the creation and the ticks travel through Redis in the one order, so
//! another instance's REST and viewers see the new symbol as the accepting one does.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Instance, Redis};
use crate::viewer::Viewer;

const CONVERGE: Duration = Duration::from_secs(10);
const AUTO_CREATE: (&str, &str) = ("TICKSTREAM__INGEST__AUTO_CREATE_SYMBOLS", "true");

/// Polls `instance`'s REST until it serves a quote of `symbol` equal to `expected`.
async fn serves(instance: &Instance, symbol: &str, expected: &Value) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let (status, quote) = instance.get(&format!("/api/v1/quotes/{symbol}")).await;
        if status == 200 && quote == *expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} serves {status} {quote} for {symbol}, expected {expected}",
            instance.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_symbol_auto_created_on_one_instance_reaches_the_others_rest_and_viewers() {
    // Arrange: two instances over one Redis, both creating unknown symbols on ingest.
    let redis = Redis::start();
    let a = Instance::start("a", &redis, &[AUTO_CREATE]);
    let b = Instance::start("b", &redis, &[AUTO_CREATE]);
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;
    let (status, _) = b.get("/api/v1/quotes/NEWCO").await;
    assert_eq!(status, 404, "NEWCO is in no universe");

    // Act: the first ticks of NEWCO anywhere go to A.
    let report = a
        .publish(json!([{"symbol": "NEWCO", "price": 12.34, "size": 100}]))
        .await;

    // Assert: A created it and applied the trade (read your writes) ...
    assert_eq!(report["accepted"], 1, "{report}");
    let on_a = a.quote("NEWCO").await;
    assert_eq!(
        (on_a["p"].as_f64(), on_a["v"].as_u64()),
        (Some(12.34), Some(100))
    );
    // ... and B serves the same quote, and gives it to a viewer that asks.
    serves(&b, "NEWCO", &on_a).await;
    let mut viewer = Viewer::connect(&format!("ws://127.0.0.1:{}/ws", b.port), &["NEWCO"]).await;
    assert_eq!(
        viewer.view.get("NEWCO"),
        Some(&on_a),
        "the snapshot on B carries A's quote"
    );

    // Act again: more ticks to A update B's viewer.
    a.publish(json!([{"symbol": "NEWCO", "price": 12.5, "size": 50}]))
        .await;
    let on_a = a.quote("NEWCO").await;
    assert_eq!(
        (on_a["p"].as_f64(), on_a["v"].as_u64()),
        (Some(12.5), Some(150))
    );
    viewer.converge("NEWCO", &on_a, CONVERGE).await;
    serves(&b, "NEWCO", &on_a).await;
    assert!(
        viewer.is_connected() && viewer.reconnects == 0,
        "one connection throughout"
    );
}

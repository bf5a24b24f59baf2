//! History bars, run-time universe changes, and trading-session rollover.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tickstream::sources::trading_day::Clock;

use crate::helpers::{spawn_app, spawn_app_with_clock, WsClient, ADMIN_KEY};

#[actix_web::test]
async fn history_bars_match_a_hand_computed_series() {
    let app = spawn_app().await;
    // Minute 0: seconds 0 (10, 12) and 1 (11); minute 1: second 60 (9).
    app.publish(json!([
        {"symbol":"AAPL","price":10,"size":1,"ts":0},
        {"symbol":"AAPL","price":12,"size":2,"ts":400},
        {"symbol":"AAPL","price":11,"size":3,"ts":1500},
        {"symbol":"AAPL","price":9.5,"size":4,"ts":60_000},
        {"symbol":"AAPL","bid":9.4,"ask":9.6,"ts":60_001}
    ]))
    .await;

    let (status, body) = app.get("/api/v1/history/aapl?interval=1s").await;
    assert_eq!(status, 200);
    let seconds: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        seconds,
        json!({"s":"AAPL","interval":"1s","bars":[
            {"t":0,"o":10,"h":12,"l":10,"c":12,"v":3},
            {"t":1000,"o":11,"h":11,"l":11,"c":11,"v":3},
            {"t":60000,"o":9.5,"h":9.5,"l":9.5,"c":9.5,"v":4}
        ],"more":false})
    );
    let (_, body) = app.get("/api/v1/history/AAPL").await;
    let minutes: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(minutes["interval"], "1m", "1m is the default");
    assert_eq!(
        minutes["bars"],
        json!([{"t":0,"o":10,"h":12,"l":10,"c":11,"v":6},{"t":60000,"o":9.5,"h":9.5,"l":9.5,"c":9.5,"v":4}])
    );
    let (_, body) = app.get("/api/v1/history/AAPL?interval=1s&limit=1").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["bars"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(body.contains(r#""o":9.5"#), "exact decimals: {body}");
    assert!(
        body.contains(r#""more":true"#),
        "an older bar was left out: {body}"
    );

    // A range: `from` inclusive, `to` exclusive, in ms or RFC 3339.
    for query in [
        "interval=1s&from=1000&to=60000",
        "interval=1s&from=1970-01-01T00:00:01Z&to=1970-01-01T00:01:00Z",
    ] {
        let (_, body) = app.get(&format!("/api/v1/history/AAPL?{query}")).await;
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"s":"AAPL","interval":"1s","bars":[
                {"t":1000,"o":11,"h":11,"l":11,"c":11,"v":3}
            ],"more":false}),
            "{query}"
        );
    }

    for (path, status, code) in [
        ("/api/v1/history/AAPL?interval=5m", 400, "bad_request"),
        ("/api/v1/history/AAPL?from=yesterday", 400, "bad_request"),
        ("/api/v1/history/AAPL?from=10&to=5", 400, "bad_request"),
        ("/api/v1/history/AAPL?limit=0", 400, "bad_request"),
        ("/api/v1/history/AAPL?limit=x", 400, "bad_request"),
        ("/api/v1/history/NOSUCH", 404, "unknown_symbol"),
        ("/api/v1/history/bad$", 400, "invalid_symbol"),
    ] {
        let (got, body) = app.get(path).await;
        assert_eq!(got, status, "{path}");
        assert!(
            body.contains(&format!(r#""code":"{code}""#)),
            "{path}: {body}"
        );
    }
}

#[actix_web::test]
async fn admin_routes_need_the_admin_key() {
    let app = spawn_app().await;
    for key in [None, Some("wrong")] {
        let (status, body) = app
            .send("PUT", "/api/v1/admin/symbols/NEWCO", key, None, "")
            .await;
        assert_eq!(status, 401, "{body}");
        let (status, _) = app
            .send("DELETE", "/api/v1/admin/symbols/AAPL", key, None, "")
            .await;
        assert_eq!(status, 401);
    }
    let unconfigured =
        crate::helpers::spawn_app_with(|s| s.admin.api_key = Default::default()).await;
    let (status, _) = unconfigured
        .send(
            "PUT",
            "/api/v1/admin/symbols/NEWCO",
            Some(ADMIN_KEY),
            None,
            "",
        )
        .await;
    assert_eq!(status, 401, "no admin key configured: admin refused");
}

#[actix_web::test]
async fn universe_changes_reach_live_subscribers() {
    let app = spawn_app().await;
    let mut wildcard = WsClient::connect(&app, "?symbols=*").await;
    let mut viewer = WsClient::connect(&app, "?symbols=AAPL,MSFT").await;
    wildcard.recv_type("snapshot").await;
    viewer.recv_type("snapshot").await;

    // Create: 201, listed, followed by "*", subscribable.
    let (status, body) = app
        .send(
            "PUT",
            "/api/v1/admin/symbols/newco",
            Some(ADMIN_KEY),
            Some("application/json"),
            r#"{"name":"New Co","pc":12.34}"#,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"s":"NEWCO","name":"New Co","pc":12.34})
    );
    let (_, symbols) = app.get("/api/v1/symbols").await;
    assert!(
        symbols.contains(r#"{"s":"NEWCO","name":"New Co","pc":12.34}"#),
        "{symbols}"
    );
    let update = wildcard.recv_type("update").await;
    assert_eq!(update["quotes"], json!([{"s":"NEWCO","pc":12.34}]));

    // Update: 200; subscribers see the new reference price and change.
    app.publish(json!([{"symbol":"MSFT","price":420,"size":1}]))
        .await;
    viewer.recv_type("update").await;
    let (status, _) = app
        .send(
            "PUT",
            "/api/v1/admin/symbols/MSFT",
            Some(ADMIN_KEY),
            None,
            r#"{"pc":400}"#,
        )
        .await;
    assert_eq!(status, 200);
    let update = viewer.recv_type("update").await;
    assert_eq!(
        update["quotes"],
        json!([{"s":"MSFT","pc":400,"d":20,"dp":5}])
    );

    // Delete: 204; the subscriber is told and the symbol leaves its set.
    let (status, _) = app
        .send(
            "DELETE",
            "/api/v1/admin/symbols/AAPL",
            Some(ADMIN_KEY),
            None,
            "",
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        viewer.recv_type("subscriptions").await["symbols"],
        json!(["MSFT"])
    );
    let error = viewer.recv().await;
    assert_eq!(
        (error["code"].as_str(), error["symbols"].clone()),
        (Some("unknown_symbol"), json!(["AAPL"]))
    );
    let (status, body) = app.get("/api/v1/quotes/AAPL").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app
        .send(
            "DELETE",
            "/api/v1/admin/symbols/AAPL",
            Some(ADMIN_KEY),
            None,
            "",
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = app.publish(json!([{"symbol":"AAPL","price":1}])).await;
    assert_eq!(
        (status, body["rejected"][0]["code"].as_str()),
        (200, Some("unknown_symbol"))
    );

    // Bad input to admin routes.
    let (status, _) = app
        .send(
            "PUT",
            "/api/v1/admin/symbols/bad$",
            Some(ADMIN_KEY),
            None,
            "",
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .send(
            "PUT",
            "/api/v1/admin/symbols/X1",
            Some(ADMIN_KEY),
            None,
            r#"{"pc":-1}"#,
        )
        .await;
    assert_eq!(status, 400);
}

/// A wall clock that starts at a chosen instant and runs at real speed.
struct ShiftedClock {
    start: DateTime<Utc>,
    began: std::time::Instant,
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.began.elapsed()).unwrap()
    }
}

#[actix_web::test]
async fn the_session_rolls_over_at_the_configured_time() {
    // Arrange: 09:29:59 in New York, so the rollover comes a second after start.
    let clock = Arc::new(ShiftedClock {
        start: DateTime::parse_from_rfc3339("2026-11-25T09:29:59.000-05:00")
            .unwrap()
            .with_timezone(&Utc),
        began: std::time::Instant::now(),
    });
    let app = spawn_app_with_clock(|_| {}, clock).await;
    app.publish(json!([{"symbol":"AAPL","price":190.5,"size":100,"ts":1}]))
        .await;
    let mut viewer = WsClient::connect(&app, "?symbols=AAPL").await;
    let before = viewer.recv_type("snapshot").await;
    assert_eq!(before["quotes"][0]["o"], 190.5);

    // Act: wait for the rollover; cleared fields arrive as a full snapshot.
    let after = tokio::time::timeout(Duration::from_secs(5), viewer.recv_type("snapshot"))
        .await
        .expect("rollover within 5 s");

    // Assert
    let quote = &after["quotes"][0];
    assert_eq!(quote["pc"], 190.5, "the last price is the new reference");
    assert_eq!(
        (
            quote["v"].as_i64(),
            quote["d"].as_i64(),
            quote["dp"].as_i64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(
        quote.get("o").is_none() && quote.get("h").is_none() && quote.get("l").is_none(),
        "{quote}"
    );
    let (_, bars) = app.get("/api/v1/history/AAPL?interval=1s").await;
    assert!(bars.contains(r#""c":190.5"#), "bars keep flowing: {bars}");
    assert_eq!(app.rest_quote("AAPL").await, *quote);
    // The day that ended (Tuesday 2026-11-24, the day before the 09:30 rollover) is a
    // daily bar dated 00:00 UTC; the new day has no trade yet.
    let (_, days) = app.get("/api/v1/history/AAPL?interval=1d").await;
    let tuesday = DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&days).unwrap()["bars"],
        json!([{"t":tuesday.timestamp_millis(),"o":190.5,"h":190.5,"l":190.5,"c":190.5,"v":100}])
    );
    // A trade makes the day in progress the newest daily bar.
    app.publish(json!([{"symbol":"AAPL","price":191.25,"size":7,"ts":2}]))
        .await;
    let (_, days) = app.get("/api/v1/history/AAPL?interval=1d").await;
    let days: Value = serde_json::from_str(&days).unwrap();
    assert_eq!(
        days["bars"][1],
        json!({"t":tuesday.timestamp_millis() + 86_400_000,"o":191.25,"h":191.25,"l":191.25,"c":191.25,"v":7})
    );
}

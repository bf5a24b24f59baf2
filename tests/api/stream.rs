//! The viewer stream's happy paths: every message type, conflation, batching, seq,
//! compression, timers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{merge, spawn_app, spawn_app_with, WsClient};

fn symbols_of(message: &Value) -> Vec<String> {
    message["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["s"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn welcome_describes_the_connection() {
    let app = spawn_app().await;
    let client = WsClient::connect(&app, "?compression=deflate").await;
    let welcome = &client.welcome;
    assert_eq!(welcome["compression"], "deflate");
    assert_eq!(welcome["max_hz"], 50);
    assert_eq!(welcome["heartbeat_ms"], 5000);
    assert!(welcome["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(welcome["t"].as_i64().unwrap() > 1_700_000_000_000);
    let plain = WsClient::connect(&app, "").await;
    assert_eq!(plain.welcome["compression"], "none");
}

#[actix_web::test]
async fn five_symbols_get_a_snapshot_then_live_updates_from_the_simulator() {
    // Arrange: the default feed, as a user runs it.
    let app = spawn_app_with(|s| {
        s.simulator.enabled = true;
        s.simulator.ticks_per_second = 2000;
        s.stream.max_hz = 10.0;
    })
    .await;
    let mut client = WsClient::connect(&app, "").await;

    // Act
    client
        .send(json!({"op":"subscribe","symbols":["AAPL","MSFT","NVDA","AMZN","GOOGL"],"req_id":1}))
        .await;

    // Assert
    let subscriptions = client.recv().await;
    assert_eq!(
        subscriptions,
        json!({"type":"subscriptions","req_id":1,"symbols":["AAPL","AMZN","GOOGL","MSFT","NVDA"]})
    );
    let snapshot = client.recv().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["seq"], 1);
    assert_eq!(symbols_of(&snapshot).len(), 5);
    let update = client.recv_type("update").await;
    assert!(!symbols_of(&update).is_empty());
    for quote in update["quotes"].as_array().unwrap() {
        assert!(
            quote.as_object().unwrap().len() >= 2,
            "a partial quote carries s and a change"
        );
    }
}

#[actix_web::test]
async fn initial_symbols_come_from_the_query_string() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "?symbols=aapl,msft").await;
    assert_eq!(client.recv().await["symbols"], json!(["AAPL", "MSFT"]));
    let snapshot = client.recv().await;
    assert_eq!(symbols_of(&snapshot), vec!["AAPL", "MSFT"]);
    assert_eq!(snapshot["quotes"][0]["pc"].to_string(), "189.12");
}

#[actix_web::test]
async fn updates_conflate_batch_and_carry_only_changed_fields() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "?symbols=AAPL,MSFT").await;
    client.recv_type("snapshot").await;

    // Three trades on AAPL and one book change on MSFT arrive between two flushes.
    app.apply(&[
        app.trade("AAPL", "189.10", 100, 1_000),
        app.trade("AAPL", "189.20", 50, 1_001),
        app.trade("AAPL", "189.12", 25, 1_002),
        app.book("MSFT", "415.01", "415.03", 1_003),
    ]);

    let update = client.recv_type("update").await;
    assert_eq!(
        symbols_of(&update),
        vec!["AAPL", "MSFT"],
        "one message, each symbol once"
    );
    let aapl = &update["quotes"][0];
    assert_eq!(
        aapl["p"].to_string(),
        "189.12",
        "latest price, exact decimals"
    );
    assert_eq!(aapl["v"], 175, "every trade's volume counted once");
    assert_eq!(aapl["h"].to_string(), "189.2");
    let msft = update["quotes"][1].as_object().unwrap();
    let mut keys: Vec<&str> = msft.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec!["ap", "as", "bp", "bs", "s", "t"],
        "only changed fields"
    );

    // A later tick that changes only the volume and time sends only those.
    app.apply(&[app.trade("AAPL", "189.12", 10, 1_004)]);
    let update = client.recv_type("update").await;
    assert_eq!(update["quotes"], json!([{"s":"AAPL","v":185,"t":1004}]));
    assert!(app.metric("tickstream_updates_conflated_total").await >= 2);
}

#[actix_web::test]
async fn prices_keep_their_decimals_and_changes_carry_no_float_noise() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "?symbols=AAPL&compression=deflate").await;
    let snapshot = client.recv_type("snapshot").await;
    let pc = snapshot["quotes"][0]["pc"].to_string();
    assert_eq!(pc, "189.12", "the universe's previous close");

    app.apply(&[app.trade("AAPL", "191.33", 1, 5)]);
    let update = client.recv_type("update").await;
    // Compare the raw text, not parsed floats: the contract is about the digits.
    let text = update["quotes"][0].to_string();
    assert!(text.contains(r#""p":191.33"#), "{text}");
    assert!(text.contains(r#""d":2.21"#), "{text}");
    assert!(text.contains(r#""dp":1.17"#), "{text}");
    let rest = app.rest_quote("AAPL").await;
    assert_eq!(rest["p"].to_string(), "191.33");
}

#[actix_web::test]
async fn unsubscribe_stops_updates_and_replies_with_the_whole_set() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "?symbols=AAPL,MSFT").await;
    client.recv_type("snapshot").await;
    client
        .send(json!({"op":"unsubscribe","symbols":["aapl"],"req_id":"u1"}))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"type":"subscriptions","req_id":"u1","symbols":["MSFT"]})
    );
    app.apply(&[app.trade("AAPL", "1", 1, 1), app.trade("MSFT", "2", 1, 2)]);
    let update = client.recv_type("update").await;
    assert_eq!(symbols_of(&update), vec!["MSFT"]);
}

#[actix_web::test]
async fn snapshot_op_resends_full_quotes_and_restarts_the_baseline() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "?symbols=AAPL").await;
    client.recv_type("snapshot").await;
    app.apply(&[app.trade("AAPL", "190", 10, 1)]);
    client.recv_type("update").await;

    client.send(json!({"op":"snapshot","req_id":3})).await;
    let snapshot = client.recv_type("snapshot").await;
    assert_eq!(snapshot["req_id"], 3, "the reply echoes req_id");
    let quote = &snapshot["quotes"][0];
    assert_eq!(quote["p"], 190);
    assert_eq!(quote["pc"].to_string(), "189.12");
    assert_eq!(quote["v"], 10);
}

#[actix_web::test]
async fn set_clamps_to_the_server_bounds() {
    let app = spawn_app_with(|s| {
        s.stream.max_hz = 10.0;
        s.stream.min_hz = 0.5;
    })
    .await;
    let mut client = WsClient::connect(&app, "").await;
    client.send(json!({"op":"set","max_hz":2,"req_id":4})).await;
    assert_eq!(
        client.recv().await,
        json!({"type":"settings","req_id":4,"max_hz":2})
    );
    client.send(json!({"op":"set","max_hz":1000})).await;
    assert_eq!(client.recv().await, json!({"type":"settings","max_hz":10}));
    client.send(json!({"op":"set","max_hz":0.01})).await;
    assert_eq!(client.recv().await, json!({"type":"settings","max_hz":0.5}));
}

#[actix_web::test]
async fn max_hz_bounds_the_update_rate_under_a_busy_feed() {
    let app = spawn_app_with(|s| {
        s.simulator.enabled = true;
        s.simulator.ticks_per_second = 5000;
        s.simulator.batch_interval_ms = 10;
    })
    .await;
    let mut client = WsClient::connect(&app, "?symbols=*").await;
    client.send(json!({"op":"set","max_hz":2})).await;
    client.recv_type("settings").await;
    let mut updates = 0;
    let window = tokio::time::Instant::now() + Duration::from_millis(2000);
    while tokio::time::Instant::now() < window {
        if let Ok(message) = tokio::time::timeout_at(window, client.recv()).await {
            if message["type"] == "update" {
                updates += 1;
            }
        }
    }
    // 2 Hz over 2 s: 4, plus one that may start the window right after `set`. Fewer
    // would only mean a starved machine; more would break the contract.
    assert!(
        (1..=5).contains(&updates),
        "{updates} updates in 2 s at max_hz 2"
    );
}

#[actix_web::test]
async fn ping_gets_pong_with_req_id() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    client.send(json!({"op":"ping","req_id":5})).await;
    let pong = client.recv().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["req_id"], 5);
    assert!(pong["t"].as_i64().unwrap() > 0);
}

#[actix_web::test]
async fn wildcard_subscribes_to_everything_including_symbols_added_later() {
    let app = spawn_app().await;
    let universe = app.store.len();
    let mut client = WsClient::connect(&app, "").await;
    client
        .send(json!({"op":"subscribe","symbols":["*"],"req_id":1}))
        .await;
    assert_eq!(client.recv().await["symbols"], json!(["*"]));
    assert_eq!(symbols_of(&client.recv().await).len(), universe);

    let symbol = tickstream::domain::Symbol::parse("NEWCO").unwrap();
    let id = app.store.add_symbol(symbol, "New Co", None).unwrap();
    app.apply(&[tickstream::domain::Tick {
        symbol: id,
        price: tickstream::domain::Price::parse("12.5").ok(),
        size: Some(7),
        ts: 9,
        ..Default::default()
    }]);
    let update = client.recv_type("update").await;
    assert_eq!(
        update["quotes"],
        json!([{"s":"NEWCO","p":12.5,"v":7,"o":12.5,"h":12.5,"l":12.5,"t":9}])
    );

    client
        .send(json!({"op":"unsubscribe","symbols":["NEWCO"]}))
        .await;
    let set = client.recv().await;
    assert_eq!(
        set["symbols"].as_array().unwrap().len(),
        universe,
        "explicit set without NEWCO"
    );
    client
        .send(json!({"op":"unsubscribe","symbols":["*"]}))
        .await;
    assert_eq!(client.recv().await["symbols"], json!([]));
}

#[actix_web::test]
async fn heartbeats_fill_silence_and_count_in_seq() {
    let app = spawn_app_with(|s| s.stream.heartbeat_ms = 100).await;
    let mut client = WsClient::connect(&app, "?symbols=AAPL").await;
    assert_eq!(client.recv_type("snapshot").await["seq"], 1);
    let heartbeat = client.recv().await;
    assert_eq!(heartbeat["type"], "heartbeat");
    assert_eq!(heartbeat["seq"], 2);
    assert!(heartbeat["t"].as_i64().unwrap() > 0);
    let next = client.recv().await;
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("heartbeat"), Some(3))
    );
}

#[actix_web::test]
async fn server_pings_and_a_silent_client_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|s| {
        s.stream.ping_interval_ms = 100;
        s.stream.idle_timeout_ms = 400;
    })
    .await;
    // A client that reads answers pings (tungstenite pongs automatically): it stays.
    let mut live = WsClient::connect(&app, "").await;
    let mut silent = WsClient::connect(&app, "").await;
    let until = tokio::time::Instant::now() + Duration::from_millis(900);
    while tokio::time::Instant::now() < until {
        live.send(json!({"op":"ping"})).await;
        live.recv_type("pong").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The silent one never read, so never answered a ping.
    let (code, reason) = silent.expect_close().await;
    assert_eq!(code, 1000);
    assert!(reason.contains("idle"), "{reason}");
    live.send(json!({"op":"ping","req_id":1})).await;
    assert_eq!(live.recv_type("pong").await["req_id"], 1);
}

#[actix_web::test]
async fn deflate_stream_decodes_with_one_inflater_and_saves_bytes() {
    let app = spawn_app().await;
    let mut plain = WsClient::connect(&app, "?symbols=*").await;
    let mut deflate = WsClient::connect(&app, "?symbols=*&compression=deflate").await;
    let mut views = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..2 {
        merge(&mut views.0, &plain.recv().await);
        merge(&mut views.1, &deflate.recv().await);
    }
    for round in 0..20 {
        let ticks: Vec<_> = ["AAPL", "MSFT", "NVDA"]
            .iter()
            .map(|s| app.trade(s, &format!("{}.{:02}", 100 + round, round), 10, round))
            .collect();
        app.apply(&ticks);
        merge(&mut views.0, &plain.recv_type("update").await);
        merge(&mut views.1, &deflate.recv_type("update").await);
    }
    assert_eq!(views.0, views.1, "both encodings deliver the same quotes");
    assert_eq!(views.1["AAPL"], app.rest_quote("AAPL").await);
}

#[actix_web::test]
async fn a_quiet_deflate_connection_gives_its_encoder_back_and_streams_on() {
    // Every heartbeat (100 ms here) follows a quiet interval, so the app-level encoder
    // gives its state back each time; one inflater must read the whole stream.
    let app = spawn_app_with(|s| s.stream.heartbeat_ms = 100).await;
    let mut client = WsClient::connect(&app, "?symbols=AAPL,MSFT&compression=deflate").await;
    let mut view = BTreeMap::new();
    merge(&mut view, &client.recv_type("snapshot").await);
    for round in 0..4 {
        client.recv_type("heartbeat").await;
        client.recv_type("heartbeat").await;
        let ticks = [
            app.trade("AAPL", &format!("{}.{:02}", 180 + round, round), 10, round),
            app.trade("MSFT", &format!("{}.5", 400 + round), 3, round),
        ];
        app.apply(&ticks);
        let mut updates = 0;
        while view.get("AAPL") != Some(&app.rest_quote("AAPL").await)
            || view.get("MSFT") != Some(&app.rest_quote("MSFT").await)
        {
            let message = client.recv().await;
            if message["type"] == "update" {
                updates += 1;
            }
            merge(&mut view, &message);
        }
        assert!(updates >= 1, "round {round}: the ticks came as updates");
    }
}

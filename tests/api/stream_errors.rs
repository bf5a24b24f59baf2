//! Every error code and close code the viewer stream produces.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app, spawn_app_with, WsClient};

#[actix_web::test]
async fn malformed_messages_get_bad_request_and_the_connection_stays() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    for (text, req_id) in [
        ("not json", json!(null)),
        ("[1,2]", json!(null)),
        (r#"{"op":"ping","req_id":7,"extra":1}"#, json!(7)),
        (
            r#"{"op":"subscribe","symbols":"AAPL","req_id":8}"#,
            json!(8),
        ),
        (r#"{"op":"set","max_hz":-1,"req_id":9}"#, json!(9)),
        (r#"{"req_id":10}"#, json!(10)),
    ] {
        client.send_raw(Message::Text(text.into())).await;
        let error = client.recv().await;
        assert_eq!(error["type"], "error", "{text}");
        assert_eq!(error["code"], "bad_request", "{text}");
        assert_eq!(
            error.get("req_id").cloned().unwrap_or(json!(null)),
            req_id,
            "{text}"
        );
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    client.send(json!({"op":"ping","req_id":11})).await;
    assert_eq!(client.recv().await["type"], "pong", "still open");
}

#[actix_web::test]
async fn unknown_op_is_reported() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    client.send(json!({"op":"teleport","req_id":2})).await;
    let error = client.recv().await;
    assert_eq!(
        (error["code"].as_str(), error["req_id"].as_i64()),
        (Some("unknown_op"), Some(2))
    );
}

#[actix_web::test]
async fn invalid_and_unknown_symbols_are_listed_while_valid_ones_subscribe() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    client
        .send(json!({"op":"subscribe","symbols":["AAPL","no way","ZZZZ9"],"req_id":1}))
        .await;
    assert_eq!(client.recv().await["symbols"], json!(["AAPL"]));
    assert_eq!(client.recv().await["type"], "snapshot");
    let invalid = client.recv().await;
    assert_eq!(invalid["code"], "invalid_symbol");
    assert_eq!(invalid["symbols"], json!(["no way"]));
    assert_eq!(invalid["req_id"], 1);
    let unknown = client.recv().await;
    assert_eq!(unknown["code"], "unknown_symbol");
    assert_eq!(unknown["symbols"], json!(["ZZZZ9"]));

    // Wholly unknown: only the error.
    client
        .send(json!({"op":"subscribe","symbols":["QQQQQ1"],"req_id":2}))
        .await;
    let error = client.recv().await;
    assert_eq!(
        (error["code"].as_str(), error["req_id"].as_i64()),
        (Some("unknown_symbol"), Some(2))
    );
    client.send(json!({"op":"ping"})).await;
    assert_eq!(client.recv().await["type"], "pong", "nothing else was sent");
}

#[actix_web::test]
async fn too_many_symbols_changes_nothing_and_counts_unknown_names_too() {
    let app = spawn_app_with(|s| s.stream.max_symbols_per_connection = 3).await;
    let mut client = WsClient::connect(&app, "").await;
    client
        .send(json!({"op":"subscribe","symbols":["AAPL","MSFT"]}))
        .await;
    client.recv_type("snapshot").await;

    // Two more would make four, even though one of them does not exist.
    client
        .send(json!({"op":"subscribe","symbols":["NVDA","NOSUCH1"],"req_id":5}))
        .await;
    let error = client.recv().await;
    assert_eq!(
        (error["code"].as_str(), error["req_id"].as_i64()),
        (Some("too_many_symbols"), Some(5))
    );
    // Re-naming already subscribed symbols adds nothing, so it fits.
    client
        .send(json!({"op":"subscribe","symbols":["MSFT","AAPL","NVDA"]}))
        .await;
    assert_eq!(
        client.recv().await["symbols"],
        json!(["AAPL", "MSFT", "NVDA"])
    );
    // "*" is exempt from the limit.
    client.send(json!({"op":"subscribe","symbols":["*"]})).await;
    assert_eq!(
        client.recv_type("subscriptions").await["symbols"],
        json!(["*"])
    );
}

#[actix_web::test]
async fn a_binary_frame_closes_with_1003() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    client.send_raw(Message::Binary(vec![1, 2, 3])).await;
    assert_eq!(client.expect_close().await.0, 1003);
}

#[actix_web::test]
async fn a_frame_over_the_limit_closes_with_1009() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    let big = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(5000));
    client.send_raw(Message::Text(big)).await;
    assert_eq!(client.expect_close().await.0, 1009);
}

#[actix_web::test]
async fn a_fragmented_message_over_the_limit_closes_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    let part = || vec![b'x'; 3000];
    let mut first = Frame::message(part(), OpCode::Data(Data::Text), false);
    first.header_mut().is_final = false;
    client.send_raw(Message::Frame(first)).await;
    let rest = Frame::message(part(), OpCode::Data(Data::Continue), true);
    client.send_raw(Message::Frame(rest)).await;
    assert_eq!(client.expect_close().await.0, 1009);
}

#[actix_web::test]
async fn a_fragmented_message_within_the_limit_is_reassembled() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    let text = br#"{"op":"ping","req_id":42}"#;
    let first = Frame::message(text[..10].to_vec(), OpCode::Data(Data::Text), false);
    client.send_raw(Message::Frame(first)).await;
    let last = Frame::message(text[10..].to_vec(), OpCode::Data(Data::Continue), true);
    client.send_raw(Message::Frame(last)).await;
    assert_eq!(client.recv().await["req_id"], 42);
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_with_4008() {
    // Arrange: a busy feed to "*" at a high rate, and a client with a tiny receive
    // buffer that stops reading.
    let app = spawn_app_with(|s| {
        s.simulator.enabled = true;
        s.simulator.ticks_per_second = 20_000;
        s.simulator.batch_interval_ms = 10;
        s.stream.max_hz = 100.0;
        s.stream.slow_consumer_timeout_ms = 1000;
        s.stream.idle_timeout_ms = 60_000;
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{}", app.port).parse().unwrap())
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/ws?symbols=*", app.port);
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let mut client = WsClient::from_stream(ws).await;

    // Act: do not read until the server has given up on the socket.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.metric("tickstream_slow_consumer_closes_total").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never detected as slow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Assert: draining now reveals the close frame behind the queued data.
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 4008, "{reason}");
    // Other viewers are unaffected.
    let mut other = WsClient::connect(&app, "?symbols=AAPL").await;
    other.recv_type("update").await;
}

#[actix_web::test]
async fn bad_query_and_plain_http_get_json_errors_before_the_upgrade() {
    let app = spawn_app().await;
    let (status, body) = app.get("/ws?compression=gzip").await;
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, body) = app.get("/ws").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_request"));
}

#[actix_web::test]
async fn names_beside_the_wildcard_and_unknown_unsubscribes_are_reported() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "").await;
    client
        .send(json!({"op":"subscribe","symbols":["*","AAPL","bad name","NOSUCH2"],"req_id":1}))
        .await;
    assert_eq!(client.recv().await["symbols"], json!(["*"]));
    let snapshot = client.recv().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["req_id"].as_i64()),
        (Some("snapshot"), Some(1))
    );
    assert_eq!(client.recv().await["symbols"], json!(["bad name"]));
    assert_eq!(client.recv().await["symbols"], json!(["NOSUCH2"]));

    client
        .send(json!({"op":"unsubscribe","symbols":["NOSUCH3"],"req_id":2}))
        .await;
    assert_eq!(
        client.recv().await["symbols"],
        json!(["*"]),
        "nothing removed"
    );
    let error = client.recv().await;
    assert_eq!(
        (error["code"].as_str(), error["req_id"].as_i64()),
        (Some("unknown_symbol"), Some(2))
    );
    assert_eq!(error["symbols"], json!(["NOSUCH3"]));
}

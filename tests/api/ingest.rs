//! Feed adapters: POST /api/v1/ticks and /ws/ingest (contract §3).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app, spawn_app_with, WsClient, OTHER_PUBLISHER_KEY, PUBLISHER_KEY};

#[actix_web::test]
async fn a_tick_published_over_http_reaches_a_subscriber_with_its_exact_decimals() {
    let app = spawn_app().await;
    let mut viewer = WsClient::connect(&app, "?symbols=AAPL&compression=deflate").await;
    viewer.recv_type("snapshot").await;

    let (status, reply) = app
        .publish(json!([{"symbol":"aapl","price":1234.567891,"size":100,"bid":1234.5,"bid_size":3,"ask":1234.600001,"ask_size":4,"ts":1764072000123_i64}]))
        .await;

    assert_eq!(status, 200);
    assert_eq!(reply, json!({"accepted":1,"duplicates":0,"rejected":[]}));
    let update = viewer.recv_type("update").await;
    let text = update["quotes"][0].to_string();
    for exact in [
        r#""p":1234.567891"#,
        r#""bp":1234.5"#,
        r#""ap":1234.600001"#,
        r#""t":1764072000123"#,
    ] {
        assert!(text.contains(exact), "{exact} in {text}");
    }
    let (_, body) = app.get("/api/v1/quotes/AAPL").await;
    assert!(body.contains(r#""p":1234.567891"#), "{body}");
}

#[actix_web::test]
async fn publishing_needs_a_valid_key() {
    let app = spawn_app().await;
    let body = json!([{"symbol":"AAPL","price":1}]).to_string();
    for key in [None, Some("wrong"), Some("")] {
        let (status, reply) = app
            .send("POST", "/api/v1/ticks", key, None, body.clone())
            .await;
        assert_eq!(status, 401, "{key:?}");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["error"]["code"], "unauthorized");
    }
    let unconfigured = spawn_app_with(|s| s.ingest.publisher_keys = Default::default()).await;
    let (status, _) = unconfigured
        .send("POST", "/api/v1/ticks", Some(PUBLISHER_KEY), None, body)
        .await;
    assert_eq!(status, 401, "no keys configured: ingest refused");
}

#[actix_web::test]
async fn an_unparseable_body_is_a_400() {
    let app = spawn_app().await;
    for body in ["", "not json", r#"{"symbol":"AAPL","price":1}"#, "[1,"] {
        let (status, reply) = app
            .send(
                "POST",
                "/api/v1/ticks",
                Some(PUBLISHER_KEY),
                Some("application/json"),
                body,
            )
            .await;
        assert_eq!(status, 400, "{body:?}");
        assert!(reply.contains(r#""code":"bad_request""#), "{reply}");
    }
}

#[actix_web::test]
async fn bodies_and_batches_over_the_limits_are_413() {
    let app = spawn_app_with(|s| {
        s.ingest.max_body_bytes = 1024;
        s.ingest.max_batch_ticks = 2;
    })
    .await;
    let big = json!([{"symbol":"AAPL","price":1,"pad":"x".repeat(2000)}]).to_string();
    let (status, reply) = app
        .send(
            "POST",
            "/api/v1/ticks",
            Some(PUBLISHER_KEY),
            Some("application/json"),
            big,
        )
        .await;
    assert_eq!(status, 413, "{reply}");
    let three = json!([{"symbol":"AAPL","price":1},{"symbol":"AAPL","price":2},{"symbol":"AAPL","price":3}]);
    let (status, _) = app.publish(three).await;
    assert_eq!(status, 413);
    assert_eq!(
        app.metric("tickstream_ingest_ticks_accepted_total").await,
        0
    );
}

#[actix_web::test]
async fn each_bad_tick_is_rejected_with_its_index_and_code_while_the_rest_apply() {
    let app = spawn_app().await;
    let (status, reply) = app
        .publish(json!([
            {"symbol":"AAPL","price":100,"size":10},
            {"symbol":"no way","price":1},
            {"symbol":"NOSUCH","price":1},
            {"symbol":"AAPL","price":1.0000001},
            {"symbol":"AAPL"},
            {"symbol":"AAPL","bid":1,"size":5},
            {"symbol":"AAPL","price":1,"volume":5},
            {"symbol":"AAPL","price":-3},
            "AAPL",
            {"symbol":"AAPL","price":101,"size":5}
        ]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["accepted"], 2);
    let codes: Vec<(u64, &str)> = reply["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (1, "invalid_symbol"),
            (2, "unknown_symbol"),
            (3, "bad_request"),
            (4, "bad_request"),
            (5, "bad_request"),
            (6, "bad_request"),
            (7, "bad_request"),
            (8, "bad_request"),
        ]
    );
    for rejected in reply["rejected"].as_array().unwrap() {
        assert!(!rejected["message"].as_str().unwrap().is_empty());
    }
    let quote = app.rest_quote("AAPL").await;
    assert_eq!(
        (quote["p"].as_i64(), quote["v"].as_i64()),
        (Some(101), Some(15))
    );
}

#[actix_web::test]
async fn ndjson_bodies_are_accepted_line_by_line() {
    let app = spawn_app().await;
    let body = "{\"symbol\":\"MSFT\",\"price\":415.5,\"size\":7}\n\nnot json\n{\"symbol\":\"MSFT\",\"price\":416,\"size\":3}\n";
    let (status, reply) = app
        .send(
            "POST",
            "/api/v1/ticks",
            Some(PUBLISHER_KEY),
            Some("application/x-ndjson"),
            body,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["accepted"], 2);
    assert_eq!(
        reply["rejected"][0]["index"], 1,
        "indexes count ticks, not blank lines"
    );
    assert_eq!(app.rest_quote("MSFT").await["v"], 10);
}

#[actix_web::test]
async fn a_retried_batch_never_counts_volume_twice() {
    let app = spawn_app().await;
    let batch = json!([
        {"symbol":"NVDA","price":120.01,"size":100,"seq":1},
        {"symbol":"NVDA","price":120.02,"size":200,"seq":2},
        {"symbol":"NVDA","price":120.03,"size":300,"seq":3}
    ]);
    assert_eq!(app.publish(batch.clone()).await.1["accepted"], 3);
    // The adapter did not see the reply and sends the same batch again.
    let (_, retry) = app.publish(batch).await;
    assert_eq!(
        (retry["accepted"].as_u64(), retry["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    // A partially new retry applies only the new part.
    let (_, partial) = app
        .publish(json!([
            {"symbol":"NVDA","price":120.03,"size":300,"seq":3},
            {"symbol":"NVDA","price":120.04,"size":400,"seq":4}
        ]))
        .await;
    assert_eq!(
        (partial["accepted"].as_u64(), partial["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    // Another publisher's seq is its own.
    let (status, other) = app
        .send(
            "POST",
            "/api/v1/ticks",
            Some(OTHER_PUBLISHER_KEY),
            None,
            json!([{"symbol":"NVDA","price":120.05,"size":5,"seq":1}]).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(other.contains(r#""accepted":1"#), "{other}");
    let quote = app.rest_quote("NVDA").await;
    assert_eq!(quote["v"], 1005);
    assert_eq!(quote["p"].to_string(), "120.05");
    assert_eq!(
        app.metric("tickstream_ingest_ticks_duplicate_total").await,
        4
    );
}

#[actix_web::test]
async fn out_of_order_ticks_add_volume_but_do_not_move_prices() {
    let app = spawn_app().await;
    app.publish(json!([{"symbol":"TSLA","price":200,"size":10,"ts":2000}]))
        .await;
    app.publish(json!([{"symbol":"TSLA","price":150,"size":5,"ts":1000,"bid":149,"ask":151}]))
        .await;
    let quote = app.rest_quote("TSLA").await;
    assert_eq!(quote["p"], 200);
    assert_eq!(quote["l"], 200);
    assert_eq!(quote["v"], 15);
    assert_eq!(quote["t"], 2000);
    assert!(
        quote.get("bp").is_none(),
        "an old book does not replace the newer state"
    );
}

#[actix_web::test]
async fn unknown_symbols_are_created_when_auto_create_is_on() {
    let app = spawn_app_with(|s| s.ingest.auto_create_symbols = true).await;
    let (_, reply) = app
        .publish(json!([{"symbol":"newco","price":12.5,"size":1}]))
        .await;
    assert_eq!(reply["accepted"], 1);
    let (_, symbols) = app.get("/api/v1/symbols").await;
    assert!(symbols.contains(r#""s":"NEWCO""#));
    assert_eq!(app.rest_quote("NEWCO").await["p"], 12.5);
}

#[actix_web::test]
async fn the_ingest_socket_acks_every_batch() {
    let app = spawn_app().await;
    let mut viewer = WsClient::connect(&app, "?symbols=AMZN").await;
    viewer.recv_type("snapshot").await;
    let mut socket = app.ingest_socket(PUBLISHER_KEY).await;
    for (request, expected) in [
        (
            json!({"op":"publish","req_id":1,"ticks":[{"symbol":"AMZN","price":186.5,"size":10,"seq":10},{"symbol":"ZZZQ","price":1}]}),
            json!({"type":"ack","req_id":1,"accepted":1,"duplicates":0,"rejected":[{"index":1,"code":"unknown_symbol","message":"unknown symbol ZZZQ"}]}),
        ),
        (
            json!({"op":"publish","req_id":"again","ticks":[{"symbol":"AMZN","price":186.5,"size":10,"seq":10}]}),
            json!({"type":"ack","req_id":"again","accepted":0,"duplicates":1,"rejected":[]}),
        ),
    ] {
        socket
            .send(Message::Text(request.to_string()))
            .await
            .unwrap();
        let reply = next_text(&mut socket).await;
        assert_eq!(reply, expected);
    }
    let update = viewer.recv_type("update").await;
    assert_eq!(update["quotes"][0]["p"], 186.5);

    for (text, code) in [
        ("nope", "bad_request"),
        (r#"{"op":"subscribe","req_id":3}"#, "unknown_op"),
        (r#"{"op":"publish","req_id":4}"#, "bad_request"),
        (
            r#"{"op":"publish","req_id":4,"ticks":[],"extra":1}"#,
            "bad_request",
        ),
    ] {
        socket.send(Message::Text(text.into())).await.unwrap();
        let reply = next_text(&mut socket).await;
        if text.contains("req_id") {
            assert!(reply.get("req_id").is_some(), "req_id echoed: {reply}");
        }
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some(code)),
            "{text}"
        );
    }
    socket.send(Message::Binary(vec![1])).await.unwrap();
    assert_eq!(close_code(&mut socket).await, 1003);
}

#[actix_web::test]
async fn the_ingest_socket_refuses_bad_keys_before_the_upgrade() {
    let app = spawn_app().await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{}/ws/ingest", app.port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", "Bearer wrong".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    // The query form works for clients that cannot set headers.
    let url = format!("ws://127.0.0.1:{}/ws/ingest?key={PUBLISHER_KEY}", app.port);
    assert!(tokio_tungstenite::connect_async(url).await.is_ok());
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let frame = tokio::time::timeout(crate::helpers::RECV_TIMEOUT, socket.next())
            .await
            .expect("reply in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn close_code(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> u16 {
    loop {
        match tokio::time::timeout(crate::helpers::RECV_TIMEOUT, socket.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// With a data directory, a publisher's socket applies each batch as it arrives and
/// answers once it is stored: every batch sent back to back, errors among them, gets
/// its own answer in the order sent, and nothing is counted twice.
#[actix_web::test]
async fn the_ingest_socket_answers_pipelined_batches_in_order_once_stored() {
    let dir = crate::support::TempDir::new("pipelined");
    let data_dir = dir.join("data").display().to_string();
    let app = spawn_app_with(|settings| settings.store.data_dir = data_dir).await;
    let mut socket = app.ingest_socket(PUBLISHER_KEY).await;
    let batches: u64 = 40;
    for n in 1..=batches {
        let request = if n == 20 {
            json!({"op":"nope","req_id":n}).to_string()
        } else {
            json!({"op":"publish","req_id":n,"ticks":[{"symbol":"AMZN","price":100 + n,"size":1,"seq":n}]})
                .to_string()
        };
        socket.send(Message::Text(request)).await.unwrap();
    }
    for n in 1..=batches {
        let reply = next_text(&mut socket).await;
        assert_eq!(reply["req_id"], n, "in the order sent: {reply}");
        if n == 20 {
            assert_eq!(reply["code"], "unknown_op", "{reply}");
        } else {
            assert_eq!(
                (reply["type"].as_str(), &reply["accepted"]),
                (Some("ack"), &json!(1)),
                "{reply}"
            );
        }
    }
    let quote = app.rest_quote("AMZN").await;
    assert_eq!(
        (&quote["v"], &quote["p"]),
        (&json!(batches - 1), &json!(100 + batches))
    );
}

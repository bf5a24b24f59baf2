//! REST routes, health, metrics and the static page.

use serde_json::Value;

use crate::helpers::{spawn_app, WsClient};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[actix_web::test]
async fn symbols_lists_the_universe_with_names_and_previous_close() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/symbols").await;
    assert_eq!(status, 200);
    let symbols = json(&body)["symbols"].as_array().unwrap().clone();
    assert_eq!(symbols.len(), app.store.len());
    let aapl = symbols.iter().find(|s| s["s"] == "AAPL").unwrap();
    assert_eq!(aapl["name"], "Apple Inc.");
    assert!(body.contains(r#""pc":189.12"#), "exact previous close");
}

#[actix_web::test]
async fn quotes_serves_all_or_the_named_symbols_in_order() {
    let app = spawn_app().await;
    app.apply(&[app.trade("MSFT", "415.5", 3, 1)]);
    let (status, body) = app.get("/api/v1/quotes").await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["quotes"].as_array().unwrap().len(),
        app.store.len()
    );

    let (status, body) = app.get("/api/v1/quotes?symbols=msft,AAPL,msft").await;
    assert_eq!(status, 200);
    let quotes = json(&body)["quotes"].as_array().unwrap().clone();
    assert_eq!(quotes.len(), 2);
    assert_eq!(quotes[0]["s"], "MSFT");
    assert_eq!(quotes[0]["p"].to_string(), "415.5");
    assert_eq!(quotes[0]["v"], 3);
    assert_eq!(quotes[1]["s"], "AAPL");
    assert!(
        quotes[1].get("p").is_none(),
        "no trade yet: absent, never null"
    );
}

#[actix_web::test]
async fn quote_errors_use_the_contract_codes() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/quotes/NOPE1").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "unknown_symbol");
    assert!(json(&body)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NOPE1"));
    let (status, body) = app.get("/api/v1/quotes/bad$sym").await;
    assert_eq!(status, 400);
    assert_eq!(json(&body)["error"]["code"], "invalid_symbol");
    let (status, body) = app.get("/api/v1/quotes?symbols=AAPL,NOPE1").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "unknown_symbol");
    let (status, body) = app.get("/api/v1/quotes?symbols=").await;
    assert_eq!(status, 400);
    assert_eq!(json(&body)["error"]["code"], "bad_request");
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "not_found");
}

#[actix_web::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/healthz").await,
        (200, r#"{"status":"ok"}"#.to_string())
    );
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "ready");
}

#[actix_web::test]
async fn metrics_count_connections_messages_and_ticks() {
    let app = spawn_app().await;
    let mut client = WsClient::connect(&app, "?symbols=AAPL").await;
    client.recv_type("snapshot").await;
    app.apply(&[
        app.trade("AAPL", "190", 1, 1),
        app.trade("AAPL", "191", 1, 2),
    ]);
    client.recv_type("update").await;

    let (status, body, content_type) = app.get_with_type("/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(body.contains("# TYPE tickstream_connections gauge"));
    assert_eq!(app.metric("tickstream_connections").await, 1);
    assert_eq!(app.metric("tickstream_ticks_applied_total").await, 2);
    assert_eq!(app.metric("tickstream_symbol_updates_sent_total").await, 1);
    assert!(app.metric("tickstream_messages_sent_total").await >= 4);
    assert!(app.metric("tickstream_bytes_sent_total").await > 100);
}

#[actix_web::test]
async fn the_dashboard_page_is_served_at_the_root() {
    let app = spawn_app().await;
    let (status, body, content_type) = app.get_with_type("/").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.contains("tickstream"));
}

#[actix_web::test]
async fn the_client_module_is_served_but_its_tests_are_not() {
    let app = spawn_app().await;
    let (status, body, content_type) = app.get_with_type("/ticker-client.js").await;
    assert_eq!(status, 200);
    assert!(content_type.contains("javascript"), "{content_type}");
    assert!(body.contains("export class TickerClient"));
    let (status, _) = app.get("/tests/ticker-client.test.mjs").await;
    assert_eq!(status, 404);
}

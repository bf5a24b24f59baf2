//! Security: tokens, entitlements, origins, TLS, rate and connection limits, kicks.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tickstream::config::{AuthMode, Secret};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app, spawn_app_with, TestApp, WsClient, ADMIN_KEY};

const JWT_SECRET: &str = "test-jwt-secret";

fn token(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn exp_in(seconds: i64) -> i64 {
    chrono::Utc::now().timestamp() + seconds
}

async fn jwt_app(configure: impl FnOnce(&mut tickstream::config::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.auth.mode = AuthMode::Jwt;
        s.auth.jwt_secret = Secret::new(JWT_SECRET);
        configure(s);
    })
    .await
}

/// Opens `/ws{query}` with extra handshake headers; the HTTP status on refusal.
async fn open(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> Result<WsClient, u16> {
    let mut request = format!("ws://127.0.0.1:{}/ws{query}", app.port)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(WsClient::from_stream(ws).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

#[actix_web::test]
async fn viewers_need_a_valid_token_when_auth_is_on() {
    let app = jwt_app(|_| {}).await;
    let valid = token(json!({"sub":"ann","exp":exp_in(3600)}));
    let forged = encode(
        &Header::default(),
        &json!({"sub":"eve","exp":exp_in(3600)}),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let expired = token(json!({"sub":"ann","exp":exp_in(-10)}));
    assert_eq!(open(&app, "", &[]).await.err(), Some(401), "no token");
    assert_eq!(
        open(&app, &format!("?token={forged}"), &[]).await.err(),
        Some(401),
        "forged"
    );
    assert_eq!(
        open(&app, &format!("?token={expired}"), &[]).await.err(),
        Some(401),
        "expired"
    );
    assert_eq!(open(&app, "?token=garbage", &[]).await.err(), Some(401));
    assert!(
        open(&app, &format!("?token={valid}"), &[]).await.is_ok(),
        "query token"
    );
    let bearer = format!("Bearer {valid}");
    assert!(
        open(&app, "", &[("Authorization", &bearer)]).await.is_ok(),
        "header token"
    );
    assert_eq!(app.metric("tickstream_auth_failures_total").await, 4);
    // With auth off (the default), no token is needed.
    assert!(open(&spawn_app().await, "", &[]).await.is_ok());
}

#[actix_web::test]
async fn a_session_is_closed_with_1008_when_its_token_expires() {
    let app = jwt_app(|_| {}).await;
    let short = token(json!({"sub":"ann","exp":exp_in(2)}));
    let mut client = open(&app, &format!("?token={short}&symbols=AAPL"), &[])
        .await
        .unwrap();
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("expired"), "{reason}");
}

#[actix_web::test]
async fn entitlements_limit_what_a_viewer_can_subscribe() {
    let app = jwt_app(|_| {}).await;
    let entitled = token(json!({"sub":"ann","exp":exp_in(3600),"symbols":["AAPL","MSFT"]}));
    let mut client = open(&app, &format!("?token={entitled}"), &[])
        .await
        .unwrap();
    client
        .send(json!({"op":"subscribe","symbols":["AAPL","NVDA","NOSUCH1"],"req_id":1}))
        .await;
    assert_eq!(client.recv().await["symbols"], json!(["AAPL"]));
    client.recv_type("snapshot").await;
    let unknown = client.recv().await;
    assert_eq!(unknown["code"], "unknown_symbol");
    let forbidden = client.recv().await;
    assert_eq!(
        (forbidden["code"].as_str(), forbidden["req_id"].as_i64()),
        (Some("forbidden"), Some(1))
    );
    assert_eq!(forbidden["symbols"], json!(["NVDA"]));

    client.send(json!({"op":"subscribe","symbols":["*"]})).await;
    assert_eq!(client.recv().await["symbols"], json!(["*"]));
    let snapshot = client.recv_type("snapshot").await;
    assert_eq!(
        snapshot["quotes"].as_array().unwrap().len(),
        1,
        "only MSFT is new"
    );
    assert_eq!(snapshot["quotes"][0]["s"], "MSFT");
    // Updates never carry anything outside the entitlements.
    app.apply(&[app.trade("NVDA", "1", 1, 1), app.trade("AAPL", "2", 1, 2)]);
    let update = client.recv_type("update").await;
    assert_eq!(update["quotes"].as_array().unwrap().len(), 1);
    assert_eq!(update["quotes"][0]["s"], "AAPL");
}

#[actix_web::test]
async fn foreign_origins_are_refused_with_403() {
    let app =
        spawn_app_with(|s| s.security.allowed_origins = "https://dash.example.org".into()).await;
    let own = format!("http://127.0.0.1:{}", app.port);
    assert!(
        open(&app, "", &[("Origin", own.as_str())]).await.is_ok(),
        "same origin"
    );
    assert!(
        open(&app, "", &[("Origin", "https://dash.example.org")])
            .await
            .is_ok(),
        "listed"
    );
    assert!(open(&app, "", &[]).await.is_ok(), "non-browser client");
    assert_eq!(
        open(&app, "", &[("Origin", "https://evil.test")])
            .await
            .err(),
        Some(403)
    );
    let mut request = format!("ws://127.0.0.1:{}/ws/ingest", app.port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://evil.test".parse().unwrap());
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", crate::helpers::PUBLISHER_KEY)
            .parse()
            .unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(app.metric("tickstream_origin_refused_total").await, 2);
}

#[actix_web::test]
async fn a_flooding_client_is_limited_then_closed_while_another_streams_undisturbed() {
    let app = spawn_app_with(|s| {
        s.simulator.enabled = true;
        s.simulator.ticks_per_second = 2000;
        s.stream.max_hz = 10.0;
        s.limits.abuse_close_after = 60;
    })
    .await;
    let mut calm = WsClient::connect(&app, "?symbols=*").await;
    calm.recv_type("snapshot").await;
    let mut flood = WsClient::connect(&app, "").await;

    for i in 0..200 {
        flood.send(json!({"op":"ping","req_id":i})).await;
    }

    // The first 40 (the burst) are answered; then rate_limited errors; then 1008.
    let mut pongs = 0;
    let mut limited = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), async {
            flood_next(&mut flood).await
        })
        .await
        .unwrap()
        {
            Frame::Json(m) if m["type"] == "pong" => pongs += 1,
            Frame::Json(m) if m["code"] == "rate_limited" => {
                assert!(
                    m["req_id"].is_i64(),
                    "the refused message's req_id is echoed: {m}"
                );
                limited += 1
            }
            Frame::Json(m) => panic!("unexpected {m}"),
            Frame::Close(code) => break code,
        }
    };
    assert!((40..=45).contains(&pongs), "{pongs} pongs");
    assert!(limited >= 60, "{limited} refusals");
    assert_eq!(close, 1008);
    assert_eq!(app.metric("tickstream_abuse_closes_total").await, 1);

    // Meanwhile the calm client kept getting its updates.
    for _ in 0..3 {
        calm.recv_type("update").await;
    }
}

enum Frame {
    Json(Value),
    Close(u16),
}

async fn flood_next(client: &mut WsClient) -> Frame {
    // WsClient::recv panics on close; read raw frames here instead.
    match client.next_frame().await {
        Message::Text(text) => Frame::Json(serde_json::from_str(&text).unwrap()),
        Message::Close(Some(frame)) => Frame::Close(u16::from(frame.code)),
        other => panic!("unexpected frame {other:?}"),
    }
}

#[actix_web::test]
async fn connection_caps_per_address_and_in_total() {
    let app = spawn_app_with(|s| s.limits.max_connections_per_ip = 2).await;
    let first = open(&app, "", &[]).await.unwrap();
    let _second = open(&app, "", &[]).await.unwrap();
    assert_eq!(open(&app, "", &[]).await.err(), Some(429));
    drop(first);
    // The slot frees when the server notices the close.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(client) = open(&app, "", &[]).await {
            reopened = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed connection frees its slot");

    let full = spawn_app_with(|s| s.limits.max_connections = 1).await;
    let _only = open(&full, "", &[]).await.unwrap();
    let url = format!("ws://127.0.0.1:{}/ws", full.port);
    let (mut refused, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgraded, then closed");
    let frame = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut refused),
    )
    .await
    .unwrap();
    match frame {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(u16::from(close.code), 1013),
        other => panic!("expected close 1013, got {other:?}"),
    }
    assert!(full.metric("tickstream_connections_refused_total").await >= 1);
}

#[actix_web::test]
async fn connection_attempts_and_rest_requests_are_rate_limited_per_address() {
    let app = spawn_app_with(|s| {
        s.limits.connects_per_second_per_ip = 1.0;
        s.limits.connect_burst_per_ip = 2.0;
        s.limits.rest_requests_per_second_per_ip = 1.0;
        s.limits.rest_burst_per_ip = 3.0;
    })
    .await;
    let _a = open(&app, "", &[]).await.unwrap();
    let _b = open(&app, "", &[]).await.unwrap();
    assert_eq!(open(&app, "", &[]).await.err(), Some(429));

    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/symbols").await.0, 200);
    }
    let client = awc::Client::new();
    let response = client
        .get(app.http("/api/v1/symbols"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(app.get("/healthz").await.0, 200, "probes are not limited");
    let (status, _) = app.publish(json!([{"symbol":"AAPL","price":1}])).await;
    assert_eq!(
        status, 200,
        "authenticated publishers are not limited by address"
    );
}

#[actix_web::test]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let trusted = spawn_app_with(|s| {
        s.limits.max_connections_per_ip = 1;
        s.security.trusted_proxies = "127.0.0.1".into();
    })
    .await;
    let _a = open(&trusted, "", &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .unwrap();
    let _b = open(&trusted, "", &[("X-Forwarded-For", "203.0.113.2")])
        .await
        .unwrap();
    assert_eq!(
        open(&trusted, "", &[("X-Forwarded-For", "203.0.113.1")])
            .await
            .err(),
        Some(429)
    );

    let untrusted = spawn_app_with(|s| s.limits.max_connections_per_ip = 1).await;
    let _c = open(&untrusted, "", &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .unwrap();
    assert_eq!(
        open(&untrusted, "", &[("X-Forwarded-For", "203.0.113.2")])
            .await
            .err(),
        Some(429),
        "a spoofed header does not buy a new address"
    );
}

#[actix_web::test]
async fn admins_see_sessions_and_can_kick_one() {
    let app = jwt_app(|_| {}).await;
    let ann = token(json!({"sub":"ann","exp":exp_in(3600)}));
    let mut client = open(
        &app,
        &format!("?token={ann}&symbols=AAPL,MSFT&compression=deflate"),
        &[],
    )
    .await
    .unwrap();
    client.recv_type("snapshot").await;
    let id = client.welcome["session"].as_str().unwrap().to_owned();

    let (status, _) = app
        .send("GET", "/api/v1/admin/sessions", None, None, "")
        .await;
    assert_eq!(status, 401);
    let (status, body) = app
        .send("GET", "/api/v1/admin/sessions", Some(ADMIN_KEY), None, "")
        .await;
    assert_eq!(status, 200);
    let sessions: Value = serde_json::from_str(&body).unwrap();
    let session = &sessions["sessions"][0];
    assert_eq!(session["id"], id.as_str());
    assert_eq!(session["user"], "ann");
    assert_eq!(session["peer"], "127.0.0.1");
    assert_eq!(session["symbols"], 2);
    assert_eq!(session["compression"], "deflate");
    assert!(session["messages_sent"].as_u64().unwrap() >= 2);
    assert!(session["bytes_sent"].as_u64().unwrap() > 0);
    assert!(session["since"].as_i64().unwrap() > 0);
    assert!(session.get("updates_conflated").is_some());

    let path = format!("/api/v1/admin/sessions/{id}");
    let (status, _) = app.send("DELETE", &path, Some(ADMIN_KEY), None, "").await;
    assert_eq!(status, 204);
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 1008);
    assert!(reason.contains("admin"), "{reason}");
    assert_eq!(app.metric("tickstream_kicks_total").await, 1);
    let (status, _) = app.send("DELETE", &path, Some(ADMIN_KEY), None, "").await;
    assert_eq!(status, 404, "gone");
}

#[actix_web::test]
async fn the_dashboard_is_served_with_security_headers() {
    let app = spawn_app().await;
    let response = awc::Client::new().get(app.http("/")).send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let csp = header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
}

#[actix_web::test]
async fn wss_works_with_a_certificate_made_at_test_time() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("tickstream-tls-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let app = spawn_app_with(|s| {
        s.tls.cert_file = cert_path.display().to_string();
        s.tls.key_file = key_path.display().to_string();
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let url = format!(
        "wss://localhost:{}/ws?symbols=AAPL&compression=deflate",
        app.port
    );
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))),
    )
    .await
    .expect("wss handshake with the test certificate");
    let mut client = WsClient::from_stream(ws).await;
    assert_eq!(client.recv_type("snapshot").await["quotes"][0]["s"], "AAPL");

    // Plain ws to the TLS port does not get a WebSocket.
    let plain = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", app.port)).await;
    assert!(plain.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

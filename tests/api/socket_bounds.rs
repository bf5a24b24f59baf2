//! The connection driver's bounds, tried as a hostile or unlucky client would, over raw
//! TCP: ping floods with and without reading, a session blocked in a write that an
//! admin kicks, publishers that stop reading their acks or say nothing, and frames
//! that break RFC 6455 in their header.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{spawn_app_with, TestApp, ADMIN_KEY, PUBLISHER_KEY};
use crate::socket::{client_frame, handshake, Raw, KEY};

/// A raw client whose receive buffer is tiny, so that not reading fills it fast.
async fn tiny_buffer_stream(app: &TestApp) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(format!("127.0.0.1:{}", app.port).parse().unwrap())
        .await
        .unwrap()
}

/// A viewer past its handshake and welcome, on a tiny receive buffer.
async fn tiny_viewer(app: &TestApp) -> Raw {
    let mut raw = Raw {
        stream: tiny_buffer_stream(app).await,
        buf: Vec::new(),
    };
    raw.write(handshake("/ws").as_bytes()).await;
    assert_eq!(raw.http_response().await.0, 101);
    assert_eq!(raw.json().await["type"], "welcome");
    raw
}

/// Writes `bytes` for at most `limit`: a server that stops reading makes the write
/// block, and that is the point.
async fn write_for(stream: &mut TcpStream, bytes: &[u8], limit: Duration) {
    let _ = tokio::time::timeout(limit, stream.write_all(bytes)).await;
}

/// The live viewer sessions as admins see them.
async fn sessions(app: &TestApp) -> Vec<Value> {
    let (status, body) = app
        .send("GET", "/api/v1/admin/sessions", Some(ADMIN_KEY), None, "")
        .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["sessions"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most `limit`) until no viewer session is listed.
async fn wait_for_no_sessions(app: &TestApp, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !sessions(app).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session is still listed after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads what the server still sends until it closes the connection (EOF or reset).
/// Returns the close code if a close frame arrived first. Fails if the connection is
/// still open and silent for 5 s.
async fn drain_to_close(raw: &mut Raw) -> Option<u16> {
    loop {
        if raw.buf.len() >= 2 {
            let (opcode, payload) = raw.frame().await;
            if opcode == 0x8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
            continue;
        }
        if !raw.fill().await {
            return None;
        }
    }
}

#[actix_web::test]
async fn a_ping_flood_that_never_reads_is_closed_and_leaves_the_session_list() {
    let app = spawn_app_with(|s| {
        s.stream.slow_consumer_timeout_ms = 1000;
    })
    .await;
    let mut raw = tiny_viewer(&app).await;
    assert_eq!(sessions(&app).await.len(), 1);

    // 20,000 pings of 125 bytes, never reading a pong.
    let flood: Vec<u8> = (0..20_000)
        .flat_map(|_| client_frame(0x9, &[b'x'; 125]))
        .collect();
    write_for(&mut raw.stream, &flood, Duration::from_secs(5)).await;

    wait_for_no_sessions(&app, Duration::from_secs(10)).await;
    if let Some(code) = drain_to_close(&mut raw).await {
        assert!(code == 1008 || code == 4008, "closed with {code}");
    }
    // The server is fine: a new viewer streams.
    let mut other = Raw::viewer(&app).await;
    other
        .write(&client_frame(0x1, br#"{"op":"ping","req_id":1}"#))
        .await;
    assert_eq!(other.json().await["type"], "pong");
}

#[actix_web::test]
async fn a_ping_flood_from_a_reading_client_is_answered_within_budget_then_closed_with_1008() {
    let app = spawn_app_with(|_| {}).await;
    let mut raw = Raw::viewer(&app).await;
    let flood: Vec<u8> = (0..1000).flat_map(|_| client_frame(0x9, b"p")).collect();
    raw.write(&flood).await;
    let mut pongs = 0;
    let code = loop {
        let (opcode, payload) = raw.frame().await;
        match opcode {
            0xA => pongs += 1,
            0x8 => break u16::from_be_bytes([payload[0], payload[1]]),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(code, 1008);
    // The burst (40) plus what the rate (20/s) refilled meanwhile; never all 1000.
    assert!((40..200).contains(&pongs), "{pongs} pongs");
}

#[actix_web::test]
async fn an_admin_kick_reaches_a_session_blocked_writing_pongs() {
    // A generous control budget and a long write deadline: only the kick can end it.
    let app = spawn_app_with(|s| {
        s.stream.slow_consumer_timeout_ms = 600_000;
        s.stream.idle_timeout_ms = 600_000;
        s.limits.control_frames_per_second = 1e9;
        s.limits.control_frame_burst = 1e9;
    })
    .await;
    let mut raw = tiny_viewer(&app).await;
    let flood: Vec<u8> = (0..20_000)
        .flat_map(|_| client_frame(0x9, &[b'x'; 125]))
        .collect();
    write_for(&mut raw.stream, &flood, Duration::from_secs(3)).await;

    let listed = sessions(&app).await;
    assert_eq!(listed.len(), 1, "the session is still live: it is blocked");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .send(
            "DELETE",
            &format!("/api/v1/admin/sessions/{id}"),
            Some(ADMIN_KEY),
            None,
            "",
        )
        .await;
    assert_eq!(status, 204, "{body}");
    wait_for_no_sessions(&app, Duration::from_secs(5)).await;
    assert_eq!(app.metric("tickstream_kicks_total").await, 1);
}

/// A publisher socket past its handshake, on a tiny receive buffer.
async fn tiny_publisher(app: &TestApp) -> Raw {
    let mut raw = Raw {
        stream: tiny_buffer_stream(app).await,
        buf: Vec::new(),
    };
    let request = format!(
        "GET /ws/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {PUBLISHER_KEY}\r\n\r\n"
    );
    raw.write(request.as_bytes()).await;
    let (status, head) = raw.http_response().await;
    assert_eq!(status, 101, "{head}");
    raw
}

#[actix_web::test]
async fn a_publisher_that_stops_reading_its_acks_is_closed_at_the_ingest_write_deadline() {
    let app = spawn_app_with(|s| {
        s.ingest.write_timeout_ms = 1000;
        // The viewers' deadline is long: the publisher must be on its own.
        s.stream.slow_consumer_timeout_ms = 600_000;
    })
    .await;
    let mut raw = tiny_publisher(&app).await;
    // Each batch is 100 rejected ticks, so each ack is several KiB.
    let ticks: Vec<Value> = (0..100).map(|_| json!({"symbol": "NOPE"})).collect();
    let message = json!({"op": "publish", "ticks": ticks, "req_id": 1}).to_string();
    let frame = client_frame(0x1, message.as_bytes());

    // Publish without ever reading: once the acks fill the socket, the server gives up
    // on it and drops the connection, so our writes start failing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let closed = loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break false;
        }
        match tokio::time::timeout(deadline - now, raw.stream.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the publisher's socket was never closed");
    // Accepted work stays accepted and ingest still works for others.
    let (status, _) = app
        .publish(json!([{"symbol": "AAPL", "price": 190.5, "size": 1}]))
        .await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn a_silent_publisher_is_pinged_then_closed_at_the_ingest_idle_timeout() {
    let app = spawn_app_with(|s| {
        s.ingest.ping_interval_ms = 200;
        s.ingest.idle_timeout_ms = 700;
    })
    .await;
    let mut raw = tiny_publisher(&app).await;
    let (opcode, _) = raw.frame().await;
    assert_eq!(opcode, 0x9, "a ping first");
    let mut code = None;
    while code.is_none() {
        let (opcode, payload) = raw.frame().await;
        if opcode == 0x8 {
            code = Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
    assert_eq!(code, Some(1000));
    assert!(raw.server_closed().await);
}

#[actix_web::test]
async fn reserved_bits_reserved_opcodes_and_bad_control_frames_close_with_1002() {
    let app = spawn_app_with(|_| {}).await;
    let with_first_byte = |first: u8, payload: &[u8]| {
        let mut frame = client_frame(first & 0x0F, payload);
        frame[0] = first;
        frame
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("RSV1 on text", with_first_byte(0xC1, br#"{"op":"ping"}"#)),
        ("RSV2 on a ping", with_first_byte(0xA9, b"")),
        (
            "RSV3 on a close",
            with_first_byte(0x98, &1000u16.to_be_bytes()),
        ),
        ("reserved opcode 3", with_first_byte(0x83, b"x")),
        ("reserved opcode 0xB", with_first_byte(0x8B, b"")),
        ("fragmented ping", with_first_byte(0x09, b"x")),
        ("ping of 126 bytes", client_frame(0x9, &[0; 126])),
        (
            "continuation with nothing to continue",
            client_frame(0x0, b"x"),
        ),
        ("close code 1005", client_frame(0x8, &1005u16.to_be_bytes())),
    ];
    for (name, frame) in cases {
        let mut raw = Raw::viewer(&app).await;
        raw.write(&frame).await;
        assert_eq!(raw.close_code().await, 1002, "{name}");
        assert!(raw.server_closed().await, "{name}");
    }
}

#[actix_web::test]
async fn an_unsupported_websocket_version_gets_426_naming_version_13() {
    let app = spawn_app_with(|_| {}).await;
    let mut raw = Raw::connect(&app).await;
    let request = handshake("/ws").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    raw.write(request.as_bytes()).await;
    let (status, head) = raw.http_response().await;
    assert_eq!(status, 426, "{head}");
    assert!(head.contains("sec-websocket-version: 13"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
}

//! RFC 7692 permessage-deflate, byte by byte: the negotiation answer, compressed server
//! messages (RSV1, context takeover, the sync-flush tail removed), compressed client
//! messages, a deflate bomb, and the app-level mode winning when both are asked for.

use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp, PUBLISHER_KEY};
use crate::socket::{Raw, KEY};

const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

fn upgrade_request(path: &str, extensions: &str, more: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {extensions}\r\n{more}\r\n"
    )
}

/// One server frame with its RSV1 bit: (rsv1, opcode, payload).
async fn frame(raw: &mut Raw) -> (bool, u8, Vec<u8>) {
    loop {
        if raw.buf.len() >= 2 {
            let first = raw.buf[0];
            let (len, header) = match raw.buf[1] & 0x7F {
                126 if raw.buf.len() >= 4 => {
                    (u16::from_be_bytes([raw.buf[2], raw.buf[3]]) as usize, 4)
                }
                127 if raw.buf.len() >= 10 => (
                    u64::from_be_bytes(raw.buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => (usize::MAX, 0),
                n => (n as usize, 2),
            };
            if header > 0 && raw.buf.len() >= header + len {
                assert_eq!(first & 0x30, 0, "RSV2 and RSV3 are never set");
                let payload = raw.buf[header..header + len].to_vec();
                raw.buf.drain(..header + len);
                return (first & 0x40 != 0, first & 0x0F, payload);
            }
        }
        assert!(raw.fill().await, "connection ended inside a frame");
    }
}

/// A client of a negotiated connection: one inflater for the server's stream
/// (context takeover), each of its own messages compressed alone.
struct Client {
    raw: Raw,
    inflater: Decompress,
}

impl Client {
    async fn connect(app: &TestApp, path: &str, extensions: &str, more: &str) -> (Client, String) {
        let mut raw = Raw::connect(app).await;
        raw.write(upgrade_request(path, extensions, more).as_bytes())
            .await;
        let (status, head) = raw.http_response().await;
        assert_eq!(status, 101, "{head}");
        (
            Client {
                raw,
                inflater: Decompress::new(false),
            },
            head,
        )
    }

    /// The next data message as JSON; asserts it came compressed as a text frame.
    async fn recv(&mut self) -> Value {
        loop {
            let (rsv1, opcode, payload) = frame(&mut self.raw).await;
            if opcode == 0x9 || opcode == 0xA {
                continue;
            }
            assert_eq!(opcode, 0x1, "a text frame");
            assert!(rsv1, "compressed: RSV1 set");
            assert!(!payload.ends_with(&TAIL), "the sync-flush tail is removed");
            let text = inflate(&mut self.inflater, &[&payload[..], &TAIL[..]].concat());
            return serde_json::from_slice(&text).expect("one JSON message, no newline");
        }
    }

    async fn send(&mut self, message: &Value) {
        let compressed = deflate_alone(message.to_string().as_bytes());
        self.raw.write(&client_frame(0xC1, &compressed)).await;
    }
}

fn inflate(inflater: &mut Decompress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 20 + 4096);
    inflater
        .decompress_vec(input, &mut out, FlushDecompress::Sync)
        .expect("valid DEFLATE");
    out
}

/// A message compressed on its own (client_no_context_takeover), tail removed.
fn deflate_alone(plain: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(plain.len() + 64);
    compressor
        .compress_vec(plain, &mut out, FlushCompress::Sync)
        .unwrap();
    out.truncate(out.len() - 4);
    out
}

/// A masked client frame with the given first byte (FIN, RSV1, opcode).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = crate::socket::client_frame(first & 0x0F, payload);
    frame[0] = first;
    frame
}

#[actix_web::test]
async fn a_browser_style_offer_is_accepted_and_every_message_travels_compressed() {
    let app = spawn_app().await;
    let (mut client, head) = Client::connect(
        &app,
        "/ws",
        "permessage-deflate; client_max_window_bits",
        "",
    )
    .await;
    assert!(
        head.contains(
            "sec-websocket-extensions: permessage-deflate; client_no_context_takeover\r\n"
        ),
        "{head}"
    );
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["compression"], "none", "no app-level stream");
    client
        .send(&json!({"op": "subscribe", "symbols": ["AAPL", "MSFT"], "req_id": 1}))
        .await;
    assert_eq!(client.recv().await["type"], "subscriptions");
    let snapshot = client.recv().await;
    assert_eq!(snapshot["type"], "snapshot");
    // Updates ride the same stream (context takeover): one inflater reads them all.
    for (i, price) in ["190.01", "190.02", "190.03"].iter().enumerate() {
        app.apply(&[app.trade("AAPL", price, 10, 1_700_000_000_000 + i as i64)]);
        let update = client.recv().await;
        assert_eq!(update["type"], "update");
        assert_eq!(update["quotes"][0]["p"].to_string(), *price);
    }
    // An uncompressed client message is fine too (RSV1 unset).
    client
        .raw
        .write(&client_frame(0x81, br#"{"op":"ping","req_id":2}"#))
        .await;
    assert_eq!(client.recv().await["type"], "pong");
    let (status, sessions) = app
        .send(
            "GET",
            "/api/v1/admin/sessions",
            Some(crate::helpers::ADMIN_KEY),
            None,
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        sessions.contains(r#""compression":"permessage-deflate""#),
        "{sessions}"
    );
}

#[actix_web::test]
async fn server_window_and_no_context_takeover_are_honoured_and_echoed() {
    let app = spawn_app().await;
    let (mut client, head) = Client::connect(
        &app,
        "/ws?symbols=AAPL",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
        "",
    )
    .await;
    assert!(
        head.contains(
            "sec-websocket-extensions: permessage-deflate; client_no_context_takeover; \
             server_no_context_takeover; server_max_window_bits=9\r\n"
        ),
        "{head}"
    );
    // Without context takeover every message inflates on a fresh inflater.
    for expected in ["welcome", "subscriptions", "snapshot"] {
        client.inflater = Decompress::new(false);
        assert_eq!(client.recv().await["type"], expected);
    }
}

#[actix_web::test]
async fn bad_offers_are_declined_and_the_connection_goes_on_uncompressed() {
    let app = spawn_app().await;
    let (mut client, head) = Client::connect(
        &app,
        "/ws",
        "permessage-deflate; server_max_window_bits=20, permessage-deflate; mystery=1",
        "",
    )
    .await;
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    let (rsv1, opcode, payload) = frame(&mut client.raw).await;
    assert!(!rsv1);
    assert_eq!(opcode, 0x1);
    let welcome: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(welcome["type"], "welcome");
}

#[actix_web::test]
async fn the_app_level_mode_wins_when_both_are_asked_for() {
    let app = spawn_app().await;
    let (mut client, head) = Client::connect(
        &app,
        "/ws?compression=deflate&symbols=AAPL",
        "permessage-deflate; client_max_window_bits",
        "",
    )
    .await;
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    let (rsv1, opcode, payload) = frame(&mut client.raw).await;
    assert!(!rsv1 && opcode == 0x1);
    let welcome: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(welcome["compression"], "deflate");
    let (rsv1, opcode, _) = frame(&mut client.raw).await;
    assert!(
        !rsv1 && opcode == 0x2,
        "app-level binary frames, as documented"
    );
}

#[actix_web::test]
async fn a_compressed_message_that_inflates_past_the_limit_closes_with_1009() {
    let app = spawn_app().await;
    let (mut client, _) = Client::connect(&app, "/ws", "permessage-deflate", "").await;
    assert_eq!(client.recv().await["type"], "welcome");
    // 1 MiB of spaces compresses to about 1 KiB: within the 4 KiB limit as sent,
    // 256 times over it inflated. It is refused while inflating.
    let bomb = deflate_alone(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < 4096, "the bomb is {} bytes", bomb.len());
    client.raw.write(&client_frame(0xC1, &bomb)).await;
    let code = loop {
        let (_, opcode, payload) = frame(&mut client.raw).await;
        if opcode == 0x8 {
            break u16::from_be_bytes([payload[0], payload[1]]);
        }
    };
    assert_eq!(code, 1009);
    // Garbage that is not DEFLATE closes with 1007.
    let (mut client, _) = Client::connect(&app, "/ws", "permessage-deflate", "").await;
    assert_eq!(client.recv().await["type"], "welcome");
    client
        .raw
        .write(&client_frame(0xC1, &[0xff, 0xff, 0xff, 0xff, 0xff]))
        .await;
    let code = loop {
        let (_, opcode, payload) = frame(&mut client.raw).await;
        if opcode == 0x8 {
            break u16::from_be_bytes([payload[0], payload[1]]);
        }
    };
    assert_eq!(code, 1007);
}

#[actix_web::test]
async fn publishers_negotiate_it_too_and_their_compressed_batches_are_acked() {
    let app = spawn_app_with(|_| {}).await;
    let (mut client, head) = Client::connect(
        &app,
        "/ws/ingest",
        "permessage-deflate; client_max_window_bits",
        &format!("Authorization: Bearer {PUBLISHER_KEY}\r\n"),
    )
    .await;
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
    client
        .send(&json!({"op": "publish", "req_id": 7, "ticks": [
            {"symbol": "AAPL", "price": 191.25, "size": 300}
        ]}))
        .await;
    let ack = tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .expect("an ack");
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["accepted"], 1);
    assert_eq!(app.rest_quote("AAPL").await["p"].to_string(), "191.25");
}

#[actix_web::test]
async fn a_quiet_connection_gives_its_encoder_back_and_its_stream_stays_whole() {
    // Heartbeats every 100 ms: each one rests the encoder (its history is gone), and
    // the updates after it must still inflate on the client's one inflater.
    let app = spawn_app_with(|s| s.stream.heartbeat_ms = 100).await;
    let (mut client, _) = Client::connect(&app, "/ws?symbols=AAPL", "permessage-deflate", "").await;
    assert_eq!(client.recv().await["type"], "welcome");
    assert_eq!(client.recv().await["type"], "subscriptions");
    assert_eq!(client.recv().await["type"], "snapshot");
    for round in 0..3i64 {
        let mut heartbeats = 0;
        while heartbeats < 2 {
            let message = client.recv().await;
            assert_eq!(message["type"], "heartbeat", "{message}");
            heartbeats += 1;
        }
        for i in 0..3 {
            // No trailing zero: the contract writes 190.1, not 190.10.
            let price = format!("190.{}{}", round + 1, i + 1);
            app.apply(&[app.trade("AAPL", &price, 10, 1_700_000_000_000 + round * 10 + i)]);
            let update = loop {
                let message = client.recv().await;
                if message["type"] != "heartbeat" {
                    break message;
                }
            };
            assert_eq!(update["type"], "update");
            assert_eq!(update["quotes"][0]["p"].to_string(), price);
        }
    }
}

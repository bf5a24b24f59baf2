//! The WebSocket layer itself, spoken byte by byte over raw TCP: the handshake and its
//! refusals, bytes pipelined behind the handshake, oversized frame headers, unmasked
//! frames, and the close handshake ending with the server's FIN.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, TestApp};

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn handshake(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A masked client frame (FIN set) of `opcode` carrying `payload`.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw connection that reads server frames (unmasked, unfragmented).
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(app: &TestApp) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// A viewer socket past its handshake and welcome.
    pub async fn viewer(app: &TestApp) -> Raw {
        let mut raw = Raw::connect(app).await;
        raw.write(handshake("/ws").as_bytes()).await;
        assert_eq!(raw.http_response().await.0, 101);
        assert_eq!(raw.json().await["type"], "welcome");
        raw
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; false at EOF.
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
            .await
            .expect("server answers within 5 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The HTTP response's status and head (lower-cased); what follows stays buffered.
    pub async fn http_response(&mut self) -> (u16, String) {
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(
                self.fill().await,
                "connection ended before the response head"
            );
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end);
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase())
    }

    /// The next server frame: (opcode, payload).
    pub async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
                assert_eq!(self.buf[0] & 0x80, 0x80, "server frames are final");
                let (len, header) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if header > 0 && self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0F;
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return (opcode, payload);
                }
            }
            assert!(self.fill().await, "connection ended inside a frame");
        }
    }

    pub async fn json(&mut self) -> Value {
        let (opcode, payload) = self.frame().await;
        assert_eq!(opcode, 0x1, "a text frame");
        serde_json::from_slice(&payload).unwrap()
    }

    /// Expects a close frame; returns its code.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.frame().await;
            if opcode == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }

    /// True once the server has closed its side (EOF), within 5 s.
    pub async fn server_closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

#[actix_web::test]
async fn a_request_pipelined_behind_the_handshake_is_answered() {
    let app = spawn_app().await;
    let mut raw = Raw::connect(&app).await;
    let mut bytes = handshake("/ws").into_bytes();
    bytes.extend(client_frame(
        0x1,
        br#"{"op":"subscribe","symbols":["AAPL"],"req_id":1}"#,
    ));
    raw.write(&bytes).await;
    let (status, head) = raw.http_response().await;
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="));
    assert_eq!(raw.json().await["type"], "welcome");
    let subscriptions = raw.json().await;
    assert_eq!(subscriptions["type"], "subscriptions");
    assert_eq!(subscriptions["symbols"], serde_json::json!(["AAPL"]));
    assert_eq!(raw.json().await["type"], "snapshot");
}

#[actix_web::test]
async fn a_frame_header_declaring_too_much_closes_with_1009_before_the_payload_arrives() {
    let app = spawn_app().await;
    let mut raw = Raw::viewer(&app).await;
    // A header for a 1 GiB text frame, and none of its payload.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.write(&header).await;
    assert_eq!(raw.close_code().await, 1009);
    assert!(raw.server_closed().await);
}

#[actix_web::test]
async fn an_unmasked_client_frame_is_a_protocol_error() {
    let app = spawn_app().await;
    let mut raw = Raw::viewer(&app).await;
    let text = br#"{"op":"ping"}"#;
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text);
    raw.write(&frame).await;
    assert_eq!(raw.close_code().await, 1002);
}

#[actix_web::test]
async fn the_close_handshake_ends_with_the_servers_fin() {
    let app = spawn_app().await;
    let mut raw = Raw::viewer(&app).await;
    raw.write(&client_frame(0x8, &1000u16.to_be_bytes())).await;
    assert_eq!(raw.close_code().await, 1000, "the close is echoed");
    assert!(
        raw.server_closed().await,
        "then the server closes the TCP connection"
    );
}

#[actix_web::test]
async fn refused_and_misdirected_upgrades_get_json_errors_and_a_closed_connection() {
    let app = spawn_app().await;
    for (path, status, code) in [
        ("/ws?compression=brotli", 400, "bad_request"),
        ("/nowhere", 404, "not_found"),
        ("/ws/ingest", 401, "unauthorized"),
    ] {
        let mut raw = Raw::connect(&app).await;
        raw.write(handshake(path).as_bytes()).await;
        let (got, head) = raw.http_response().await;
        assert_eq!(got, status, "{path}: {head}");
        assert!(head.contains("connection: close"), "{path}: {head}");
        while raw.fill().await {}
        let body: Value = serde_json::from_slice(&raw.buf).expect("a JSON body");
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    // A request that is not a WebSocket handshake at all still gets the 400.
    let mut raw = Raw::connect(&app).await;
    raw.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let (status, head) = raw.http_response().await;
    assert_eq!(status, 400, "{head}");
}

//! Test harness: build the application exactly as `main` does, on port 0, with the
//! simulator off so tests feed the store themselves.

use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tickstream::config::Settings;
use tickstream::domain::{Price, Symbol, SymbolId, Tick};
use tickstream::startup::Application;
use tickstream::store::SnapshotStore;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one expected message before failing.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub port: u16,
    /// The application's store: tests feed it directly as a fake source.
    pub store: SnapshotStore,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn test_settings() -> Settings {
    let mut settings =
        Settings::from_sources(&[], Vec::<(String, String)>::new()).expect("defaults load");
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.server.shutdown_timeout_ms = 2000;
    settings.simulator.enabled = false;
    settings.stream.max_hz = 50.0;
    // Memory only: a test that wants the durable state names its own temp directory.
    settings.store.data_dir = String::new();
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Publisher keys and the admin key every test app is configured with.
pub const PUBLISHER_KEY: &str = "test-publisher-key";
pub const OTHER_PUBLISHER_KEY: &str = "second-publisher-key";
pub const ADMIN_KEY: &str = "test-admin-key";

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(
        configure,
        std::sync::Arc::new(tickstream::sources::trading_day::SystemClock),
    )
    .await
}

pub async fn spawn_app_with_clock(
    configure: impl FnOnce(&mut Settings),
    clock: std::sync::Arc<dyn tickstream::sources::trading_day::Clock>,
) -> TestApp {
    let mut settings = test_settings();
    settings.ingest.publisher_keys =
        tickstream::config::Secret::new(format!("{PUBLISHER_KEY},{OTHER_PUBLISHER_KEY}"));
    settings.admin.api_key = tickstream::config::Secret::new(ADMIN_KEY);
    configure(&mut settings);
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("application builds");
    let port = app.port();
    let store = app.store().clone();
    let shutdown = app.shutdown_token().clone();
    let server = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        port,
        store,
        shutdown,
        server,
    }
}

impl TestApp {
    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn id(&self, symbol: &str) -> SymbolId {
        self.store
            .lookup(&Symbol::parse(symbol).unwrap())
            .unwrap_or_else(|| panic!("{symbol} is in the universe"))
    }

    /// Applies ticks as one batch, as a feed would.
    pub fn apply(&self, ticks: &[Tick]) {
        self.store.apply_batch(ticks);
    }

    pub fn trade(&self, symbol: &str, price: &str, size: u64, ts: i64) -> Tick {
        Tick {
            symbol: self.id(symbol),
            price: Some(Price::parse(price).unwrap()),
            size: Some(size),
            ts,
            ..Tick::default()
        }
    }

    pub fn book(&self, symbol: &str, bid: &str, ask: &str, ts: i64) -> Tick {
        Tick {
            symbol: self.id(symbol),
            bid: Some(Price::parse(bid).unwrap()),
            bid_size: Some(100),
            ask: Some(Price::parse(ask).unwrap()),
            ask_size: Some(200),
            ts,
            ..Tick::default()
        }
    }

    /// The server's full quote of `symbol`, as REST serves it.
    pub async fn rest_quote(&self, symbol: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/quotes/{symbol}")).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let (status, body, _) = self.get_with_type(path).await;
        (status, body)
    }

    pub async fn get_with_type(&self, path: &str) -> (u16, String, String) {
        let client = awc::Client::new();
        let mut response = client
            .get(self.http(path))
            .send()
            .await
            .expect("HTTP request succeeds");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        let body = response.body().await.expect("body arrives");
        (
            response.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
            content_type,
        )
    }

    /// Sends a request with an optional bearer key and body; returns status and body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<String>,
    ) -> (u16, String) {
        let client = awc::Client::new();
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, self.http(path));
        if let Some(key) = key {
            request = request.insert_header(("Authorization", format!("Bearer {key}")));
        }
        if let Some(content_type) = content_type {
            request = request.insert_header(("Content-Type", content_type));
        }
        let mut response = request
            .send_body(body.into())
            .await
            .expect("request succeeds");
        let body = response.body().limit(16 << 20).await.expect("body arrives");
        (
            response.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// `POST /api/v1/ticks` as the test publisher; returns status and parsed reply.
    pub async fn publish(&self, ticks: Value) -> (u16, Value) {
        let (status, body) = self
            .send(
                "POST",
                "/api/v1/ticks",
                Some(PUBLISHER_KEY),
                Some("application/json"),
                ticks.to_string(),
            )
            .await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// A publisher's `/ws/ingest` socket authenticated with `key`.
    pub async fn ingest_socket(&self, key: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://127.0.0.1:{}/ws/ingest", self.port)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {key}").parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .expect("ingest upgrade succeeds")
            .0
    }

    /// One counter from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        crate::support::metric(self.port, name).await
    }

    /// Cancels the shutdown token and waits for the server to stop.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("server stops in time")
            .expect("server task joins")
    }
}

/// A viewer: a real WebSocket client with one inflater per connection.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inflater: Option<Decompress>,
    pub welcome: Value,
    /// Every data message's seq, to check they grow by exactly one.
    pub last_seq: u64,
}

impl WsClient {
    pub async fn connect(app: &TestApp, query: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}/ws{query}", app.port);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket upgrade succeeds");
        WsClient::from_stream(ws).await
    }

    pub async fn from_stream(mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        let first = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("welcome arrives")
            .expect("stream open")
            .expect("no protocol error");
        let Message::Text(text) = first else {
            panic!("the welcome must be a text frame, got {first:?}");
        };
        let welcome: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(welcome["type"], "welcome");
        let inflater = (welcome["compression"] == "deflate").then(|| Decompress::new(false));
        WsClient {
            ws,
            inflater,
            welcome,
            last_seq: 0,
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string()))
            .await
            .expect("send succeeds");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send succeeds");
    }

    /// The next server message (pings and pongs skipped), decoded per the connection's
    /// compression. Checks the framing rules and the seq rule on the way.
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("a message arrives in time")
                .expect("the stream is open")
                .expect("no protocol error");
            let text = match frame {
                Message::Text(text) => {
                    assert!(
                        self.inflater.is_none(),
                        "text frame on a deflate connection: {text}"
                    );
                    text
                }
                Message::Binary(bytes) => {
                    let inflater = self
                        .inflater
                        .as_mut()
                        .expect("binary frame on a plain connection");
                    assert!(
                        bytes.ends_with(&[0, 0, 0xff, 0xff]),
                        "each message ends with a sync flush"
                    );
                    let plain = inflate(inflater, &bytes);
                    assert_eq!(
                        plain.last(),
                        Some(&b'\n'),
                        "each message ends with a newline"
                    );
                    String::from_utf8(plain).expect("UTF-8 JSON")
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a message, got {other:?}"),
            };
            let value: Value = serde_json::from_str(text.trim_end())
                .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {text}"));
            if let Some(seq) = value.get("seq").and_then(Value::as_u64) {
                assert_eq!(seq, self.last_seq + 1, "seq grows by exactly 1: {value}");
                self.last_seq = seq;
            }
            return value;
        }
    }

    /// Reads until a message of type `kind` (others are discarded).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let message = self.recv().await;
            if message["type"] == kind {
                return message;
            }
        }
    }

    /// The next raw frame (pings and pongs skipped), without decoding.
    pub async fn next_frame(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("a frame arrives in time")
                .expect("the stream is open")
                .expect("no protocol error");
            if !matches!(frame, Message::Ping(_) | Message::Pong(_)) {
                return frame;
            }
        }
    }

    /// Reads until the server's close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("close arrives in time");
            match frame {
                Some(Ok(Message::Close(Some(close)))) => {
                    return (u16::from(close.code), close.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => {
                    return (u16::from(CloseCode::Status), String::new())
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed instead of closing: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}

pub fn inflate(inflater: &mut Decompress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 6 + 256);
    let start = inflater.total_in();
    loop {
        let consumed = (inflater.total_in() - start) as usize;
        if consumed == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(4096);
        inflater
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .expect("valid DEFLATE stream");
    }
}

#[path = "../common/merge.rs"]
mod merge;
pub use merge::merge;

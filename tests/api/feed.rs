//! The built-in feed connectors against local servers that speak each vendor's
//! protocol as its documentation shows it (docs/FEEDS.md cites the pages): greeting,
//! auth success and failure, subscription ack, batched trades and quotes, heartbeats,
//! errors, junk, and server-initiated disconnects. Loopback only.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tickstream::config::{FeedKind, Secret, Settings};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::helpers::{spawn_app_with, TestApp, RECV_TIMEOUT};

/// One accepted connection to a fake vendor; every text frame the connector sends is
/// recorded in the vendor's log.
struct Conn {
    ws: WebSocketStream<TcpStream>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned()))
            .await
            .expect("fake vendor sends");
    }

    /// The connector's next text frame (control frames skipped).
    async fn recv(&mut self) -> String {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("the connector sends in time")
                .expect("connection open")
                .expect("no protocol error");
            if let Message::Text(text) = frame {
                self.log.lock().unwrap().push(text.clone());
                return text;
            }
        }
    }

    /// Sends a WebSocket ping and waits for the connector's pong.
    async fn ping_expecting_pong(&mut self) {
        self.ws.send(Message::Ping(b"hb".to_vec())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("a pong in time")
                .expect("connection open")
                .expect("no protocol error");
            match frame {
                Message::Pong(payload) if payload == b"hb" => return,
                Message::Text(text) => self.log.lock().unwrap().push(text),
                _ => {}
            }
        }
    }

    /// The vendor drops the connection (a close frame, then the TCP connection).
    async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Keeps the connection open, recording frames, until the connector leaves.
    async fn hold(mut self) {
        while let Some(Ok(frame)) = self.ws.next().await {
            if let Message::Text(text) = frame {
                self.log.lock().unwrap().push(text);
            }
        }
    }
}

struct FakeVendor {
    url: String,
    connections: Arc<AtomicUsize>,
    /// Connections whose script is still running.
    open: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

/// Counts a connection as open while its script runs.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeVendor {
    /// Listens on 127.0.0.1; `accept(uri)` decides the handshake (false = HTTP 401, as
    /// Finnhub does for a bad token); `script(n, conn)` plays connection number `n`.
    async fn start<A, S, F>(accept: A, script: S) -> FakeVendor
    where
        A: Fn(&str) -> bool + Send + Sync + 'static,
        S: Fn(usize, Conn) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (accept, script) = (Arc::new(accept), Arc::new(script));
        let (count, shared_open, shared_log) = (connections.clone(), open.clone(), log.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                shared_open.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard(shared_open.clone());
                let (accept, script, log) = (accept.clone(), script.clone(), shared_log.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    // The handshake callback's error type is tungstenite's own.
                    #[allow(clippy::result_large_err)]
                    let callback = |request: &Request, response: Response| {
                        if accept(&request.uri().to_string()) {
                            Ok(response)
                        } else {
                            let mut refusal = ErrorResponse::new(Some("unauthorized".into()));
                            *refusal.status_mut() = StatusCode::UNAUTHORIZED;
                            Err(refusal)
                        }
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
                        script(n, Conn { ws, log }).await;
                    }
                });
            }
        });
        FakeVendor {
            url,
            connections,
            open,
            log,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until the connector has left every connection (bounded).
    async fn wait_all_closed(&self) {
        for _ in 0..200 {
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the connector still holds a connection");
    }

    /// Frames the connector sent that contain `needle`.
    fn sent(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.contains(needle))
            .count()
    }
}

/// Test timings: quick reconnects, so a drop and a resubscription take milliseconds.
fn feed_settings(settings: &mut Settings, kind: FeedKind, url: &str, symbols: &str) {
    let feed = &mut settings.feed;
    feed.kind = kind;
    // The history backfill has its own tests (tests/api/backfill.rs); off here, so
    // nothing asks a real vendor's REST API.
    feed.backfill = false;
    feed.url = url.to_owned();
    feed.symbols = symbols.to_owned();
    feed.api_key = Secret::new("good-key");
    feed.api_secret = Secret::new("good-secret");
    feed.backoff_initial_ms = 50;
    feed.backoff_max_ms = 200;
    feed.refusal_backoff_ms = 400;
    feed.ping_interval_ms = 200;
    feed.idle_timeout_ms = 2_000;
}

/// The exact text of `key` in a quote object as served.
fn field(quote: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\":");
    let start = quote.find(&pattern)? + pattern.len();
    let rest = &quote[start..];
    let end = rest.find([',', '}'])?;
    Some(rest[..end].to_owned())
}

/// `GET /api/v1/quotes?symbols=SYMBOL` as served, raw.
async fn quote_text(app: &TestApp, symbol: &str) -> String {
    let (status, body) = app.get(&format!("/api/v1/quotes?symbols={symbol}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls until `symbol`'s `key` reads `value` exactly; panics with the last quote.
async fn wait_for(app: &TestApp, symbol: &str, key: &str, value: &str) {
    let mut last = String::new();
    for _ in 0..200 {
        last = quote_text(app, symbol).await;
        if field(&last, key).as_deref() == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{symbol}.{key} never became {value}: {last}");
}

async fn readyz_feed(app: &TestApp) -> (u16, Value) {
    let (status, body) = app.get("/readyz").await;
    let json: Value = serde_json::from_str(&body).expect("readyz is JSON");
    (status, json["feed"].clone())
}

async fn wait_for_status(app: &TestApp, wanted: &str) -> u16 {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (code, feed) = readyz_feed(app).await;
        if feed["status"] == wanted {
            return code;
        }
        last = feed;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("feed status never became {wanted}: {last}");
}

/// A labelled series from `/metrics`, e.g. `tickstream_feed_unmapped_total{feed="alpaca",reason="bad_size"}`.
async fn series(app: &TestApp, name_and_labels: &str) -> f64 {
    crate::support::metric(app.port, name_and_labels).await
}

async fn unmapped(app: &TestApp, feed: &str, reason: &str) -> f64 {
    series(
        app,
        &format!("tickstream_feed_unmapped_total{{feed=\"{feed}\",reason=\"{reason}\"}}"),
    )
    .await
}

/// Counts connection attempts over `window` while the vendor refuses every one.
async fn attempts_while_refused(vendor: &FakeVendor, window: Duration) -> usize {
    let start = vendor.connections();
    tokio::time::sleep(window).await;
    vendor.connections() - start
}

// ---------------------------------------------------------------------------------
// Finnhub

const FINNHUB_BATCH: &str = r#"{"data":[{"c":["1","12"],"p":189.12,"s":"AAPL","t":1796221800123,"v":100},{"c":["1"],"p":420.5,"s":"MSFT","t":1796221800124,"v":7},{"c":null,"p":12.345678,"s":"NEWCO","t":1796221800125,"v":3},{"p":1,"s":"ZZZZ","t":1796221800126,"v":1},{"p":189.5,"s":"AAPL","t":1796221800127,"v":0.5},{"p":189.1234567,"s":"AAPL","t":1796221800128,"v":1}],"type":"trade"}"#;

async fn finnhub_script(n: usize, mut conn: Conn) {
    for _ in 0..3 {
        conn.recv().await; // one subscribe per symbol
    }
    if n == 0 {
        conn.send(FINNHUB_BATCH).await;
        conn.send(r#"{"type":"ping"}"#).await;
        conn.send(
            r#"{"type":"error","msg":"Subscribing to too many symbols? no: invalid symbol FOO"}"#,
        )
        .await;
        conn.send("not json at all").await;
        conn.send(r#"{"type":"news","data":[]}"#).await;
        conn.send(r#"[1,2,3]"#).await;
        conn.close().await; // a server-initiated disconnect
    } else {
        conn.send(r#"{"data":[{"p":189.2,"s":"AAPL","t":1796221801000,"v":75}],"type":"trade"}"#)
            .await;
        conn.hold().await;
    }
}

#[actix_web::test]
async fn finnhub_trades_apply_exactly_and_the_connector_resubscribes_after_a_drop() {
    let vendor = FakeVendor::start(|uri| uri.contains("token=good-key"), finnhub_script).await;
    let app =
        spawn_app_with(|s| feed_settings(s, FeedKind::Finnhub, &vendor.url, "AAPL,MSFT,NEWCO"))
            .await;

    // The second connection's trade lands on top of the first's: exact price and the
    // volume of both connections, with nothing counted twice or from junk.
    wait_for(&app, "AAPL", "p", "189.2").await;
    let aapl = quote_text(&app, "AAPL").await;
    assert_eq!(field(&aapl, "v").as_deref(), Some("175"), "{aapl}");
    assert_eq!(
        field(&aapl, "t").as_deref(),
        Some("1796221801000"),
        "{aapl}"
    );
    let msft = quote_text(&app, "MSFT").await;
    assert_eq!(field(&msft, "p").as_deref(), Some("420.5"), "{msft}");
    assert_eq!(field(&msft, "v").as_deref(), Some("7"), "{msft}");
    // NEWCO is not in the universe: feed.symbols added it at start.
    let newco = quote_text(&app, "NEWCO").await;
    assert_eq!(field(&newco, "p").as_deref(), Some("12.345678"), "{newco}");
    assert_eq!(app.get("/api/v1/quotes?symbols=ZZZZ").await.0, 404);

    assert!(vendor.connections() >= 2);
    assert_eq!(
        vendor.sent(r#""symbol":"AAPL""#),
        2,
        "subscribed once per connection"
    );
    assert_eq!(vendor.sent(r#""type":"subscribe""#), 6);
    let (code, feed) = readyz_feed(&app).await;
    assert_eq!(code, 200);
    assert_eq!(feed["kind"], "finnhub");
    assert_eq!(feed["status"], "connected");
    assert!(feed["last_message_age_s"].as_f64().unwrap() < 5.0, "{feed}");
    for (reason, at_least) in [
        ("unknown_symbol", 1.0),
        ("bad_size", 1.0),
        ("bad_price", 1.0),
        ("malformed", 2.0),
        ("unsupported_type", 1.0),
    ] {
        let n = unmapped(&app, "finnhub", reason).await;
        assert!(n >= at_least, "{reason}: {n}");
    }
    assert!(series(&app, r#"tickstream_feed_reconnects_total{feed="finnhub"}"#).await >= 1.0);
    assert_eq!(
        series(
            &app,
            r#"tickstream_feed_ticks_applied_total{feed="finnhub"}"#
        )
        .await,
        4.0
    );
    assert_eq!(
        series(&app, r#"tickstream_feed_connected{feed="finnhub"}"#).await,
        1.0
    );
    // Shutdown (the application's token) ends the vendor connection too.
    app.stop().await.unwrap();
    vendor.wait_all_closed().await;
}

#[actix_web::test]
async fn a_refused_finnhub_token_backs_off_and_shows_on_readyz() {
    let vendor = FakeVendor::start(|_| false, |_, conn: Conn| conn.hold()).await;
    let app = spawn_app_with(|s| feed_settings(s, FeedKind::Finnhub, &vendor.url, "AAPL")).await;
    let code = wait_for_status(&app, "auth_failed").await;
    assert_eq!(
        code, 200,
        "feed trouble does not take the instance out of rotation"
    );
    // A tight loop would make thousands of attempts in 2 s; the refusal floor
    // (400 ms here) allows about five.
    let attempts = attempts_while_refused(&vendor, Duration::from_secs(2)).await;
    assert!((2..=7).contains(&attempts), "{attempts} attempts in 2 s");
    app.stop().await.unwrap();
}

/// The operator contract as README writes it, through the same loader as the binary.
#[actix_web::test]
async fn the_documented_environment_variables_start_a_finnhub_feed() {
    let vendor = FakeVendor::start(
        |uri| uri.contains("token=k"),
        |_, mut conn: Conn| async move {
            conn.recv().await;
            conn.recv().await;
            conn.send(
                r#"{"data":[{"p":101.25,"s":"MSFT","t":1796221800000,"v":40}],"type":"trade"}"#,
            )
            .await;
            conn.hold().await;
        },
    )
    .await;
    let env: Vec<(String, String)> = [
        ("TICKSTREAM__FEED__KIND", "finnhub"),
        // The history backfill has its own tests (tests/api/backfill.rs).
        ("TICKSTREAM__FEED__BACKFILL", "false"),
        ("TICKSTREAM__FEED__URL", vendor.url.as_str()),
        ("TICKSTREAM__FEED__API_KEY", "k"),
        ("TICKSTREAM__FEED__SYMBOLS", "AAPL,MSFT"),
        ("TICKSTREAM__SERVER__PORT", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut settings = Settings::from_sources(&[], env).expect("the documented variables load");
    assert!(
        settings.simulator.enabled,
        "on by default, and the feed replaces it"
    );
    // Memory only: the default data directory would be the repository's `data/`,
    // and a state restored from an earlier run would change the volumes below.
    settings.store.data_dir = String::new();
    let app = spawn_app_with(move |s| *s = Settings { ..settings }).await;
    wait_for(&app, "MSFT", "p", "101.25").await;
    let msft = quote_text(&app, "MSFT").await;
    assert_eq!(field(&msft, "v").as_deref(), Some("40"), "{msft}");
    // No simulator: AAPL has no trade of its own.
    let aapl = quote_text(&app, "AAPL").await;
    assert_eq!(field(&aapl, "v"), None, "{aapl}");
    assert_eq!(vendor.sent(r#""type":"subscribe""#), 2);
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Alpaca

async fn alpaca_login(conn: &mut Conn) -> bool {
    conn.send(r#"[{"T":"success","msg":"connected"}]"#).await;
    let auth = conn.recv().await;
    if !(auth.contains(r#""key":"good-key""#) && auth.contains(r#""secret":"good-secret""#)) {
        conn.send(r#"[{"T":"error","code":402,"msg":"auth failed"}]"#)
            .await;
        return false;
    }
    conn.send(r#"[{"T":"success","msg":"authenticated"}]"#)
        .await;
    let subscribe = conn.recv().await;
    assert!(subscribe.contains(r#""action":"subscribe""#), "{subscribe}");
    conn.send(
        r#"[{"T":"subscription","trades":["AAPL","MSFT"],"quotes":["AAPL","MSFT"],"bars":[]}]"#,
    )
    .await;
    true
}

async fn alpaca_script(n: usize, mut conn: Conn) {
    if !alpaca_login(&mut conn).await {
        return conn.close().await;
    }
    if n == 0 {
        conn.send(concat!(
            r#"[{"T":"t","i":96921,"S":"AAPL","x":"V","p":189.12,"s":100,"t":"2026-12-02T14:30:00.123456789Z","c":["@"],"z":"C"},"#,
            r#"{"T":"q","S":"AAPL","bx":"V","bp":189.11,"bs":3,"ax":"V","ap":189.13,"as":2,"t":"2026-12-02T14:30:00.124Z","c":["R"],"z":"C"},"#,
            r#"{"T":"t","i":7,"S":"MSFT","x":"V","p":420.5,"s":7,"t":"2026-12-02T14:30:00.2Z","c":["@"],"z":"C"},"#,
            r#"{"T":"b","S":"AAPL","o":1,"h":1,"l":1,"c":1,"v":1,"t":"2026-12-02T14:30:00Z"},"#,
            r#"{"T":"t","i":8,"S":"ZZZZ","x":"V","p":1,"s":1,"t":"2026-12-02T14:30:00.3Z"},"#,
            r#"{"T":"t","i":9,"S":"AAPL","x":"V","p":189.5,"s":0.5,"t":"2026-12-02T14:30:00.4Z"}]"#
        ))
        .await;
        conn.ping_expecting_pong().await;
        conn.send(r#"[{"T":"error","code":405,"msg":"symbol limit exceeded"}]"#)
            .await;
        conn.send(r#"[{"T":"t","S":"#).await;
        conn.close().await;
    } else {
        conn.send(r#"[{"T":"t","i":10,"S":"AAPL","x":"V","p":189.2,"s":75,"t":"2026-12-02T14:30:01.000999999Z","c":["@"],"z":"C"}]"#)
            .await;
        conn.hold().await;
    }
}

#[actix_web::test]
async fn alpaca_trades_and_quotes_apply_exactly_and_the_connector_logs_in_again_after_a_drop() {
    let vendor = FakeVendor::start(|_| true, alpaca_script).await;
    let app =
        spawn_app_with(|s| feed_settings(s, FeedKind::Alpaca, &vendor.url, "AAPL,MSFT")).await;

    wait_for(&app, "AAPL", "p", "189.2").await;
    let aapl = quote_text(&app, "AAPL").await;
    for (key, value) in [
        ("v", "175"),
        ("bp", "189.11"),
        ("bs", "300"), // 3 round lots
        ("ap", "189.13"),
        ("as", "200"),
        ("t", "1796221801000"), // nanoseconds truncated to the millisecond
    ] {
        assert_eq!(field(&aapl, key).as_deref(), Some(value), "{key}: {aapl}");
    }
    let msft = quote_text(&app, "MSFT").await;
    assert_eq!(
        (field(&msft, "p").as_deref(), field(&msft, "v").as_deref()),
        (Some("420.5"), Some("7")),
        "{msft}"
    );
    assert_eq!(vendor.sent(r#""action":"auth""#), 2);
    assert_eq!(
        vendor.sent(r#""action":"subscribe""#),
        2,
        "resubscribed after the drop"
    );
    let (_, feed) = readyz_feed(&app).await;
    assert_eq!(feed["kind"], "alpaca");
    for reason in [
        "unknown_symbol",
        "bad_size",
        "unsupported_type",
        "malformed",
    ] {
        assert!(unmapped(&app, "alpaca", reason).await >= 1.0, "{reason}");
    }
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn alpaca_auth_failure_backs_off_and_shows_on_readyz() {
    let vendor = FakeVendor::start(|_| true, alpaca_script).await;
    let app = spawn_app_with(|s| {
        feed_settings(s, FeedKind::Alpaca, &vendor.url, "AAPL");
        s.feed.api_secret = Secret::new("wrong-secret");
    })
    .await;
    assert_eq!(wait_for_status(&app, "auth_failed").await, 200);
    let attempts = attempts_while_refused(&vendor, Duration::from_secs(2)).await;
    assert!((2..=7).contains(&attempts), "{attempts} attempts in 2 s");
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn alpaca_connection_limit_shows_on_readyz_and_a_silent_vendor_is_left() {
    // First connection: refused for the connection limit (406). Then a vendor that
    // greets and goes silent: the idle timeout must notice and reconnect.
    let vendor = FakeVendor::start(
        |_| true,
        |n, mut conn: Conn| async move {
            if n == 0 {
                conn.send(r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#)
                    .await;
                conn.close().await;
            } else {
                // Silent: no greeting, and (raw TCP kept, frames unread) no pongs.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(conn);
            }
        },
    )
    .await;
    let app = spawn_app_with(|s| {
        feed_settings(s, FeedKind::Alpaca, &vendor.url, "AAPL");
        s.feed.refusal_backoff_ms = 300;
        s.feed.idle_timeout_ms = 500;
        s.feed.ping_interval_ms = 100;
    })
    .await;
    wait_for_status(&app, "connection_limit").await;
    // After the refusal floor, the connector tries again, hears nothing, and leaves
    // after the idle timeout: a third connection follows.
    for _ in 0..100 {
        if vendor.connections() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        vendor.connections() >= 3,
        "{} connections",
        vendor.connections()
    );
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Polygon (Massive)

async fn polygon_script(n: usize, mut conn: Conn) {
    conn.send(r#"[{"ev":"status","status":"connected","message":"Connected Successfully"}]"#)
        .await;
    let auth = conn.recv().await;
    if auth != r#"{"action":"auth","params":"good-key"}"# {
        conn.send(r#"[{"ev":"status","status":"auth_failed","message":"authentication failed"}]"#)
            .await;
        return conn.close().await;
    }
    conn.send(r#"[{"ev":"status","status":"auth_success","message":"authenticated"}]"#)
        .await;
    let subscribe = conn.recv().await;
    assert_eq!(
        subscribe,
        r#"{"action":"subscribe","params":"T.AAPL,Q.AAPL,T.MSFT,Q.MSFT"}"#
    );
    conn.send(r#"[{"ev":"status","status":"success","message":"subscribed to: T.AAPL,Q.AAPL,T.MSFT,Q.MSFT"}]"#)
        .await;
    if n == 0 {
        conn.send(concat!(
            r#"[{"ev":"T","sym":"AAPL","x":4,"i":"12345","z":3,"p":189.12,"s":100,"c":[12],"t":1796221800123,"q":1},"#,
            r#"{"ev":"Q","sym":"AAPL","bx":11,"bp":189.11,"bs":3,"ax":12,"ap":189.13,"as":2,"t":1796221800124,"q":2},"#,
            r#"{"ev":"T","sym":"MSFT","x":4,"i":"9","z":3,"p":420.5,"s":7,"t":1796221800200},"#,
            r#"{"ev":"A","sym":"AAPL","v":5400,"o":1,"c":1,"h":1,"l":1,"s":1,"e":2},"#,
            r#"{"ev":"T","sym":"AAPL","p":189.1234567,"s":1,"t":1796221800300},"#,
            r#"{"ev":"T","sym":"ZZZZ","p":1,"s":1,"t":1796221800301}]"#
        ))
        .await;
        conn.ping_expecting_pong().await;
        conn.send(r#"[{"ev":"status","status":"error","message":"something odd"}]"#)
            .await;
        conn.send("\u{0}\u{1}").await;
        conn.close().await;
    } else {
        conn.send(r#"[{"ev":"T","sym":"AAPL","p":189.2,"s":75,"t":1796221801000}]"#)
            .await;
        conn.hold().await;
    }
}

#[actix_web::test]
async fn polygon_trades_and_quotes_apply_exactly_and_the_connector_resubscribes_after_a_drop() {
    let vendor = FakeVendor::start(|_| true, polygon_script).await;
    let app =
        spawn_app_with(|s| feed_settings(s, FeedKind::Polygon, &vendor.url, "AAPL,MSFT")).await;
    wait_for(&app, "AAPL", "p", "189.2").await;
    let aapl = quote_text(&app, "AAPL").await;
    for (key, value) in [
        ("v", "175"),
        ("bp", "189.11"),
        ("bs", "300"),
        ("ap", "189.13"),
        ("as", "200"),
        ("t", "1796221801000"),
    ] {
        assert_eq!(field(&aapl, key).as_deref(), Some(value), "{key}: {aapl}");
    }
    let msft = quote_text(&app, "MSFT").await;
    assert_eq!(field(&msft, "p").as_deref(), Some("420.5"), "{msft}");
    assert_eq!(vendor.sent(r#""action":"subscribe""#), 2);
    let (_, feed) = readyz_feed(&app).await;
    assert_eq!(
        (feed["kind"].as_str(), feed["status"].as_str()),
        (Some("polygon"), Some("connected"))
    );
    for reason in [
        "unknown_symbol",
        "bad_price",
        "unsupported_type",
        "malformed",
    ] {
        assert!(unmapped(&app, "polygon", reason).await >= 1.0, "{reason}");
    }
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn polygon_auth_failure_backs_off_and_shows_on_readyz() {
    let vendor = FakeVendor::start(|_| true, polygon_script).await;
    let app = spawn_app_with(|s| {
        feed_settings(s, FeedKind::Polygon, &vendor.url, "AAPL,MSFT");
        s.feed.api_key = Secret::new("bad-key");
    })
    .await;
    assert_eq!(wait_for_status(&app, "auth_failed").await, 200);
    let attempts = attempts_while_refused(&vendor, Duration::from_secs(2)).await;
    assert!((2..=7).contains(&attempts), "{attempts} attempts in 2 s");
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn a_vendor_that_answers_pings_but_never_acknowledges_the_login_is_left() {
    // Greets, then only reads (answering pings): the connection looks alive, but the
    // login is never acknowledged.
    let vendor = FakeVendor::start(
        |_| true,
        |_, mut conn: Conn| async move {
            conn.send(r#"[{"T":"success","msg":"connected"}]"#).await;
            conn.hold().await;
        },
    )
    .await;
    let app = spawn_app_with(|s| {
        feed_settings(s, FeedKind::Alpaca, &vendor.url, "AAPL");
        s.feed.connect_timeout_ms = 300;
    })
    .await;
    for _ in 0..100 {
        if vendor.connections() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        vendor.connections() >= 3,
        "{} connections",
        vendor.connections()
    );
    assert!(vendor.sent(r#""action":"auth""#) >= 2);
    assert_eq!(vendor.sent(r#""action":"subscribe""#), 0);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn shutdown_does_not_wait_for_a_vendor_stuck_in_the_handshake() {
    // Accepts TCP and never answers the WebSocket handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let app = spawn_app_with(|s| {
        feed_settings(s, FeedKind::Finnhub, &url, "AAPL");
        s.feed.connect_timeout_ms = 60_000;
    })
    .await;
    let (mut stream, _) = tokio::time::timeout(RECV_TIMEOUT, listener.accept())
        .await
        .expect("the connector connects")
        .unwrap();
    app.stop().await.unwrap();
    // The connector drops the half-open connection at once, not after 60 s.
    let mut buffer = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        use tokio::io::AsyncReadExt;
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue, // the handshake request
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection outlived the shutdown");
}

/// A Finnhub connection that trades AAPL once, now, and stays open.
async fn finnhub_trade_now(_n: usize, mut conn: Conn) {
    conn.recv().await; // the subscription
    let now = chrono::Utc::now().timestamp_millis();
    conn.send(&format!(
        r#"{{"data":[{{"p":189.12,"s":"AAPL","t":{now},"v":100}}],"type":"trade"}}"#
    ))
    .await;
    conn.hold().await;
}

#[actix_web::test]
async fn the_backfill_fills_the_chart_before_the_first_live_minute_and_counts_nothing_twice() {
    // Arrange: the vendor's REST API has three whole minutes before now and the
    // current minute (which live trades fill here, so it must not be taken), and two
    // earlier days; the trading day began six hours ago.
    // The minutes are those of the moment the request comes (just after the
    // connection went live), so a minute boundary while the test starts cannot move
    // which one is current.
    const MINUTE: i64 = 60_000;
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(86_400_000);
    let days = [today - 6 * 86_400_000, today - 5 * 86_400_000];
    let rest = crate::backfill::FakeRest::start(move |seen| {
        let now = chrono::Utc::now().timestamp_millis();
        let this_minute = now - now.rem_euclid(MINUTE);
        let minutes = (0..=3).rev().map(|m| this_minute - m * MINUTE).collect();
        let (ts, o, v): (Vec<i64>, _, _) = match seen.param("resolution") {
            Some("1") => (minutes, "101.0625", 900),
            _ => (days.to_vec(), "99.5", 123_456),
        };
        crate::backfill::Reply::json(crate::support::finnhub_candles(&ts, o, v))
    })
    .await;
    let vendor = FakeVendor::start(|uri| uri.contains("token=good-key"), finnhub_trade_now).await;
    let rollover = chrono::Utc::now() - chrono::Duration::hours(6);
    let app = spawn_app_with(|s| {
        feed_settings(s, FeedKind::Finnhub, &vendor.url, "AAPL");
        s.feed.backfill = true;
        s.feed.rest_url = rest.url.clone();
        s.feed.backfill_requests_per_minute = 60_000;
        s.trading_day.time_zone = "UTC".to_owned();
        s.trading_day.rollover_time = rollover.format("%H:%M").to_string();
    })
    .await;

    // Act: the live trade arrives, and the backfill that started with the connection.
    wait_for(&app, "AAPL", "p", "189.12").await;
    let mut page = Value::Null;
    for _ in 0..100 {
        let (_, body) = app.get("/api/v1/history/AAPL?interval=1m").await;
        page = serde_json::from_str(&body).unwrap();
        if page["bars"].as_array().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: three vendor minutes, exact, then the live minute with the live trade's
    // volume only (the vendor's bar for it would have counted it twice).
    let bars = page["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 4, "{page}");
    for bar in &bars[..3] {
        let text = bar.to_string();
        assert!(
            text.contains(r#""o":101.0625"#) && text.contains(r#""v":900"#),
            "{text}"
        );
    }
    assert_eq!(bars[3]["t"], this_minute_of(&app).await);
    assert_eq!(
        (&bars[3]["c"], &bars[3]["v"]),
        (&serde_json::json!(189.12), &serde_json::json!(100))
    );
    // The daily bars come with a later request than the minutes: wait for them too.
    let mut daily = Value::Null;
    for _ in 0..100 {
        let (_, body) = app.get("/api/v1/history/AAPL?interval=1d").await;
        daily = serde_json::from_str(&body).unwrap();
        if daily["bars"].as_array().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let daily = daily["bars"].as_array().unwrap();
    assert_eq!(
        daily.len(),
        3,
        "two vendor days and today's, from the quote: {daily:?}"
    );
    assert_eq!(
        (&daily[0]["t"], &daily[0]["v"]),
        (&serde_json::json!(days[0]), &serde_json::json!(123_456))
    );
    assert_eq!(daily[2]["v"], 100, "today is the quote's day");
    let asked: Vec<String> = rest
        .seen()
        .iter()
        .map(|seen| format!("{} {}", seen.path, seen.param("resolution").unwrap_or("")))
        .collect();
    assert_eq!(
        asked,
        ["/api/v1/stock/candle 1", "/api/v1/stock/candle D"],
        "one request per interval and symbol"
    );
}

/// The minute bucket of AAPL's last trade, as the server has it.
async fn this_minute_of(app: &TestApp) -> Value {
    let t: i64 = field(&quote_text(app, "AAPL").await, "t")
        .unwrap()
        .parse()
        .unwrap();
    serde_json::json!(t - t.rem_euclid(60_000))
}

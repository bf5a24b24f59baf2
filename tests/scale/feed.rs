//! The built-in feed connector in a cluster: vendors allow one connection per key,
//! so exactly one instance holds it (the source lock), every instance gets its ticks
//! through Redis, and the connection moves when that instance dies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Instance, Redis};

const CONVERGE: Duration = Duration::from_secs(10);

/// A local server speaking Finnhub's trade stream: after the subscription it sends
/// an AAPL trade of size 1 every 20 ms until the connection drops.
struct FakeFinnhub {
    url: String,
    connections: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeFinnhub {
    async fn start() -> FakeFinnhub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let vendor = FakeFinnhub {
            url: format!("ws://{}", listener.local_addr().unwrap()),
            connections: Arc::default(),
            open: Arc::default(),
            most_open: Arc::default(),
        };
        let (connections, open, most_open) = (
            vendor.connections.clone(),
            vendor.open.clone(),
            vendor.most_open.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now_open, Ordering::SeqCst);
                let guard = OpenGuard(open.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    match rx.next().await {
                        Some(Ok(Message::Text(text))) if text.contains("subscribe") => {}
                        _ => return,
                    }
                    // Keep reading (pings are answered on the way) until the client goes.
                    let reader =
                        tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
                    let mut ts = 1_796_221_800_000i64;
                    loop {
                        ts += 1;
                        let trade = format!(
                            r#"{{"data":[{{"p":189.12,"s":"AAPL","t":{ts},"v":1}}],"type":"trade"}}"#
                        );
                        if tx.send(Message::Text(trade)).await.is_err() || reader.is_finished() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            }
        });
        vendor
    }
}

async fn volume(instance: &Instance) -> u64 {
    instance.quote("AAPL").await["v"].as_u64().unwrap_or(0)
}

async fn wait_volume_grows(instance: &Instance) {
    let before = volume(instance).await;
    let deadline = Instant::now() + CONVERGE;
    while volume(instance).await <= before {
        assert!(
            Instant::now() < deadline,
            "{}: AAPL volume stuck at {before}",
            instance.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn one_instance_holds_the_vendor_connection_and_it_moves_when_that_instance_dies() {
    let vendor = FakeFinnhub::start().await;
    let redis = Redis::start();
    let env = [
        ("TICKSTREAM__FEED__KIND", "finnhub"),
        // The history backfill has its own tests (tests/api/backfill.rs).
        ("TICKSTREAM__FEED__BACKFILL", "false"),
        ("TICKSTREAM__FEED__URL", vendor.url.as_str()),
        ("TICKSTREAM__FEED__API_KEY", "k"),
        ("TICKSTREAM__FEED__SYMBOLS", "AAPL"),
        ("TICKSTREAM__FEED__BACKOFF_INITIAL_MS", "50"),
        ("TICKSTREAM__FEED__BACKOFF_MAX_MS", "200"),
    ];
    let mut a = Instance::start("a", &redis, &env);
    let mut b = Instance::start("b", &redis, &env);
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;

    // Both instances see the one connection's trades.
    wait_volume_grows(&a).await;
    wait_volume_grows(&b).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(vendor.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        vendor.most_open.load(Ordering::SeqCst),
        1,
        "never two connections"
    );
    let a_leads = a.metric("tickstream_feed_leader").await == 1;
    let (leader, follower) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let (_, ready) = follower.get("/readyz").await;
    assert_eq!(ready["feed"]["status"], "standby", "{ready}");

    leader.kill();
    let deadline = Instant::now() + CONVERGE;
    while vendor.connections.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the follower never took the feed over"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wait_volume_grows(follower).await;
    let (_, ready) = follower.get("/readyz").await;
    assert_eq!(ready["feed"]["status"], "connected", "{ready}");
    assert_eq!(
        vendor.most_open.load(Ordering::SeqCst),
        1,
        "never two connections"
    );
}

/// A local server speaking Finnhub's candle API (`/stock/candle`, column-wise):
/// minutes `this minute - 3 .. - 1` of the moment it is asked (o 101.0625, v 900)
/// for `resolution=1`, and the days `days` (o 99.5, v 123456) otherwise.
async fn fake_candles(days: [i64; 2]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut chunk = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let now = chrono::Utc::now().timestamp_millis();
                let this_minute = now - now.rem_euclid(60_000);
                let (ts, o, v): (Vec<i64>, &str, u64) =
                    if head.contains("resolution=1&") || head.contains("resolution=1 ") {
                        (
                            (1..=3).rev().map(|m| this_minute - m * 60_000).collect(),
                            "101.0625",
                            900,
                        )
                    } else {
                        (days.to_vec(), "99.5", 123_456)
                    };
                let body = crate::support::finnhub_candles(&ts, o, v);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

#[actix_web::test]
async fn the_feed_instance_backfills_the_bars_every_instance_serves() {
    // Arrange: the trading day (UTC) began at midnight; the vendor has two earlier
    // days and the three minutes before the one the connection goes live in.
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(86_400_000);
    let days = [today - 6 * 86_400_000, today - 5 * 86_400_000];
    let rest = fake_candles(days).await;
    let vendor = FakeFinnhub::start().await;
    let redis = Redis::start();
    let env = [
        ("TICKSTREAM__FEED__KIND", "finnhub"),
        ("TICKSTREAM__FEED__URL", vendor.url.as_str()),
        ("TICKSTREAM__FEED__REST_URL", rest.as_str()),
        ("TICKSTREAM__FEED__BACKFILL_REQUESTS_PER_MINUTE", "60000"),
        ("TICKSTREAM__FEED__API_KEY", "k"),
        ("TICKSTREAM__FEED__SYMBOLS", "AAPL"),
        ("TICKSTREAM__TRADING_DAY__TIME_ZONE", "UTC"),
        ("TICKSTREAM__TRADING_DAY__ROLLOVER_TIME", "00:00"),
    ];
    let a = Instance::start("a", &redis, &env);
    let b = Instance::start("b", &redis, &env);
    a.wait_status("ready", CONVERGE).await;
    b.wait_status("ready", CONVERGE).await;

    // Act: whichever holds the feed goes live and backfills.
    wait_volume_grows(&a).await;
    let deadline = Instant::now() + CONVERGE;
    let vendor_minutes = |page: &serde_json::Value| {
        page["bars"].as_array().map_or(0, |bars| {
            bars.iter().filter(|bar| bar["o"] == 101.0625).count()
        })
    };
    loop {
        let (_, page) = a.get("/api/v1/history/AAPL?interval=1m").await;
        if vendor_minutes(&page) == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no backfilled minutes: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Assert: the same history on both, and on one started afterwards; the
    // vendor's days before today's bar (the quote's).
    let c = Instance::start("c", &redis, &env);
    c.wait_status("ready", CONVERGE).await;
    let (_, days_a) = a.get("/api/v1/history/AAPL?interval=1d").await;
    let vendor_days: Vec<&serde_json::Value> = days_a["bars"]
        .as_array()
        .expect("bars")
        .iter()
        .filter(|bar| bar["v"] == 123_456)
        .collect();
    assert_eq!(vendor_days.len(), 2, "{days_a}");
    assert_eq!(vendor_days[0]["t"], days[0]);
    for other in [&b, &c] {
        let (_, minutes_a) = a.get("/api/v1/history/AAPL?interval=1m").await;
        let (_, minutes) = other.get("/api/v1/history/AAPL?interval=1m").await;
        assert_eq!(vendor_minutes(&minutes), 3, "{}: {minutes}", other.name);
        // The live minutes go on growing: compare the vendor's bars only.
        let vendor_bars = |page: &serde_json::Value| -> Vec<serde_json::Value> {
            page["bars"]
                .as_array()
                .expect("bars")
                .iter()
                .filter(|bar| bar["o"] == 101.0625)
                .cloned()
                .collect()
        };
        assert_eq!(vendor_bars(&minutes), vendor_bars(&minutes_a));
        let (_, days) = other.get("/api/v1/history/AAPL?interval=1d").await;
        let first_two =
            |page: &serde_json::Value| page["bars"].as_array().expect("bars")[..2].to_vec();
        assert_eq!(first_two(&days), first_two(&days_a), "{}", other.name);
    }
}

//! History backfill against local HTTP servers that speak each vendor's REST API as
//! its documentation shows it (docs/FEEDS.md, "History backfill"): Alpaca's bars
//! with page tokens, Polygon's aggregates with `next_url`, Finnhub's column-wise
//! candles; empty windows, refusals, rate limits, server errors, junk and a server
//! too slow to answer. Loopback only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::DateTime;
use tickstream::config::{FeedSettings, Settings, TradingDaySettings};
use tickstream::domain::Symbol;
use tickstream::sources::feed::backfill::BackfillInterval::{self, Day, Minute};
use tickstream::sources::feed::backfill::{
    fetch_bars, BackfillClient, BackfillError, Backfiller, FetchRequest,
};
use tickstream::store::Bar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A request as the fake vendor received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    at: Instant,
}

impl Seen {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the fake vendor answers.
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    pub(crate) fn json(body: impl Into<String>) -> Reply {
        Reply::status(200, body)
    }

    fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// An HTTP/1.1 server on 127.0.0.1 (port 0) answering every GET with `respond`, one
/// request per connection; every request is recorded.
pub(crate) struct FakeRest {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeRest {
    pub(crate) async fn start(
        respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> FakeRest {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, respond) = (seen.clone(), Arc::new(respond));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (log, respond) = (log.clone(), respond.clone());
                tokio::spawn(async move {
                    let Some(request) = read_head(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(request.clone());
                    let reply = respond(&request);
                    tokio::time::sleep(reply.delay).await;
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    for (name, value) in &reply.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(reply.body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeRest { url, seen }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads a request head (a GET has no body) and parses its target and headers.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8(buf).ok()?;
    let mut lines = head.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Seen {
        path: path.to_owned(),
        query: serde_urlencoded::from_str(query).ok()?,
        headers,
        at: Instant::now(),
    })
}

/// Feed settings for `kind` against `rest_url`, with test timings.
fn settings(kind: &str, rest_url: &str, symbols: &str) -> Settings {
    let env = [
        ("TICKSTREAM__FEED__KIND", kind),
        ("TICKSTREAM__FEED__SYMBOLS", symbols),
        ("TICKSTREAM__FEED__API_KEY", "the-key"),
        ("TICKSTREAM__FEED__API_SECRET", "the-secret"),
        ("TICKSTREAM__FEED__REST_URL", rest_url),
        ("TICKSTREAM__FEED__BACKFILL_TIMEOUT_MS", "2000"),
        ("TICKSTREAM__FEED__BACKFILL_REQUESTS_PER_MINUTE", "60000"),
        ("TICKSTREAM__FEED__BACKOFF_INITIAL_MS", "20"),
        ("TICKSTREAM__FEED__BACKOFF_MAX_MS", "50"),
    ];
    Settings::from_sources(&[], env.map(|(k, v)| (k.to_owned(), v.to_owned())))
        .expect("test settings are valid")
}

/// The regular session's open on 2024-01-02, where the minute windows start.
const OPEN: &str = "2024-01-02T14:30:00Z";

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

fn aapl() -> Symbol {
    Symbol::parse("AAPL").unwrap()
}

async fn fetch(
    feed: &FeedSettings,
    interval: BackfillInterval,
    from: &str,
    to: &str,
) -> Result<Vec<Bar>, BackfillError> {
    let client = BackfillClient::new(feed).unwrap();
    fetch_bars(feed, &client, &aapl(), interval, ms(from), ms(to)).await
}

/// Asserts each query parameter's value.
fn assert_params(seen: &Seen, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(seen.param(name), Some(*value), "{name}");
    }
}

/// Bars as `(t, "o h l c", v)` with the prices' exact text.
fn texts(bars: &[Bar]) -> Vec<(i64, String, u64)> {
    bars.iter()
        .map(|b| (b.t, format!("{} {} {} {}", b.o, b.h, b.l, b.c), b.v))
        .collect()
}

#[tokio::test]
async fn alpaca_pages_join_oldest_first_without_duplicates_and_exact() {
    // Arrange: two pages; the second repeats the first page's last minute.
    let vendor = FakeRest::start(|seen| match seen.param("page_token") {
        None => Reply::json(
            r#"{"bars":[
                {"t":"2024-01-02T14:30:00Z","o":187.1234,"h":188,"l":0.0001,"c":101.1,"v":1200,"n":10,"vw":187.5},
                {"t":"2024-01-02T14:31:00Z","o":101.1,"h":101.1,"l":101.1,"c":101.1,"v":5,"n":1,"vw":101.1}
            ],"symbol":"AAPL","next_page_token":"QUFQTHxN"}"#,
        ),
        Some(_) => Reply::json(
            r#"{"bars":[
                {"t":"2024-01-02T14:31:00Z","o":101.1,"h":101.2,"l":101.1,"c":101.2,"v":7,"n":2,"vw":101.15},
                {"t":"2024-01-02T14:32:00Z","o":99.999999,"h":100,"l":99.5,"c":99.75,"v":12345.0,"n":3,"vw":99.8}
            ],"symbol":"AAPL","next_page_token":null}"#,
        ),
    })
    .await;
    let s = settings("alpaca", &vendor.url, "AAPL");

    // Act
    let bars = fetch(&s.feed, Minute, OPEN, "2024-01-02T21:00:00Z")
        .await
        .unwrap();

    // Assert: the documented request, then the pages joined exactly.
    let seen = vendor.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v2/stocks/AAPL/bars");
    assert_params(
        &seen[0],
        &[
            ("timeframe", "1Min"),
            ("start", "2024-01-02T14:30:00Z"),
            ("end", "2024-01-02T21:00:00Z"),
            ("limit", "10000"),
            ("feed", "iex"),
            ("adjustment", "raw"),
        ],
    );
    assert_eq!(seen[0].header("APCA-API-KEY-ID"), Some("the-key"));
    assert_eq!(seen[0].header("APCA-API-SECRET-KEY"), Some("the-secret"));
    assert_eq!(seen[0].param("page_token"), None);
    assert_eq!(seen[1].param("page_token"), Some("QUFQTHxN"));
    assert_eq!(seen[1].param("timeframe"), Some("1Min"));
    assert_eq!(
        texts(&bars),
        vec![
            (
                ms("2024-01-02T14:30:00Z"),
                "187.1234 188 0.0001 101.1".into(),
                1200
            ),
            (
                ms("2024-01-02T14:31:00Z"),
                "101.1 101.2 101.1 101.2".into(),
                7
            ),
            (
                ms("2024-01-02T14:32:00Z"),
                "99.999999 100 99.5 99.75".into(),
                12345
            ),
        ]
    );
}

#[tokio::test]
async fn alpaca_daily_bars_are_dated_across_the_dst_change_and_empty_windows_are_empty() {
    // Alpaca stamps a day at midnight New York: 05:00Z before the change, 04:00Z after.
    let vendor = FakeRest::start(|seen| match seen.param("timeframe") {
        Some("1Day") if seen.param("start") == Some("2024-03-07T00:00:00Z") => Reply::json(
            r#"{"bars":[
                {"t":"2024-03-08T05:00:00Z","o":170.0,"h":173.7,"l":168.49,"c":170.73,"v":76114634,"n":1,"vw":1},
                {"t":"2024-03-11T04:00:00Z","o":172.94,"h":174.38,"l":172.05,"c":172.75,"v":60139473,"n":1,"vw":1}
            ],"symbol":"AAPL","next_page_token":null}"#,
        ),
        _ => Reply::json(r#"{"bars":null,"symbol":"AAPL","next_page_token":null}"#),
    })
    .await;
    let s = settings("alpaca", &vendor.url, "AAPL");

    let days = fetch(&s.feed, Day, "2024-03-07T00:00:00Z", "2024-03-12T00:00:00Z")
        .await
        .unwrap();
    let empty = fetch(&s.feed, Day, "2024-03-09T00:00:00Z", "2024-03-10T00:00:00Z")
        .await
        .unwrap();

    let dates: Vec<i64> = days.iter().map(|b| b.t).collect();
    assert_eq!(
        dates,
        vec![ms("2024-03-08T00:00:00Z"), ms("2024-03-11T00:00:00Z")]
    );
    assert_eq!(days[0].c.to_string(), "170.73");
    assert!(empty.is_empty());
    assert_eq!(vendor.seen()[0].param("timeframe"), Some("1Day"));
}

#[tokio::test]
async fn polygon_follows_next_url_with_the_key_and_reads_float_volumes_exactly() {
    let from = ms("2024-01-02T14:30:00Z");
    let to = ms("2024-01-02T14:33:00Z");
    let vendor = FakeRest::start(move |seen| match seen.param("cursor") {
        None => {
            // next_url names this server, as Polygon's names its own host.
            let host = seen.header("host").unwrap_or_default().to_owned();
            Reply::json(format!(
                r#"{{"ticker":"AAPL","queryCount":2,"resultsCount":2,"adjusted":false,"status":"DELAYED",
                "results":[
                  {{"v":1.5e6,"vw":187.2,"o":187.1234,"c":187.2,"h":187.3,"l":187.0001,"t":{from},"n":40}},
                  {{"v":12345.0,"vw":101.1,"o":101.1,"c":101.1,"h":101.1,"l":101.1,"t":{},"n":2}}
                ],
                "next_url":"http://{host}/v2/aggs/ticker/AAPL/range/1/minute/{from}/{to}?cursor=bmV4dA"}}"#,
                from + 60_000
            ))
        }
        Some(_) => Reply::json(format!(
            r#"{{"ticker":"AAPL","resultsCount":2,"status":"OK","results":[
              {{"v":12346,"o":101.1,"c":101.2,"h":101.2,"l":101.1,"t":{},"n":3}},
              {{"v":1E+2,"o":0.0001,"c":0.0001,"h":0.0001,"l":0.0001,"t":{},"n":1}}
            ]}}"#,
            from + 60_000,
            from + 120_000
        )),
    })
    .await;
    let s = settings("polygon", &vendor.url, "AAPL");

    let bars = fetch(&s.feed, Minute, OPEN, "2024-01-02T14:33:00Z")
        .await
        .unwrap();

    let seen = vendor.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].path,
        format!("/v2/aggs/ticker/AAPL/range/1/minute/{from}/{to}")
    );
    assert_params(
        &seen[0],
        &[
            ("adjusted", "false"),
            ("sort", "asc"),
            ("limit", "50000"),
            ("apiKey", "the-key"),
        ],
    );
    // The continuation carries the cursor, and the key appended once.
    assert_eq!(seen[1].param("cursor"), Some("bmV4dA"));
    assert_eq!(seen[1].param("apiKey"), Some("the-key"));
    assert_eq!(seen[1].query.len(), 2, "{:?}", seen[1].query);
    assert_eq!(
        texts(&bars),
        vec![
            (from, "187.1234 187.3 187.0001 187.2".into(), 1_500_000),
            (from + 60_000, "101.1 101.2 101.1 101.2".into(), 12_346),
            (from + 120_000, "0.0001 0.0001 0.0001 0.0001".into(), 100),
        ]
    );
}

#[tokio::test]
async fn polygon_empty_daily_fractional_volume_and_foreign_next_url() {
    // Daily aggregates stamped at New York midnight, on both sides of 2024-11-03.
    let vendor = FakeRest::start(|seen| {
        // `…/range/1/{timespan}/{from}/{to}`
        let window = seen.path.rsplit('/').nth(2).unwrap_or_default().to_owned();
        match window.as_str() {
            "day" => Reply::json(format!(
                r#"{{"status":"OK","resultsCount":2,"results":[
                  {{"v":4.5e7,"o":222.91,"c":222.01,"h":225.35,"l":220.27,"t":{},"n":1}},
                  {{"v":54128590.0,"o":220.99,"c":222.77,"h":225.16,"l":220.8,"t":{},"n":1}}
                ]}}"#,
                ms("2024-11-01T04:00:00Z"),
                ms("2024-11-04T05:00:00Z")
            )),
            _ if seen.path.contains("/MSFT/") => Reply::json(
                r#"{"status":"OK","results":[{"v":12.5,"o":1,"c":1,"h":1,"l":1,"t":1704205800000}]}"#,
            ),
            _ if seen.path.contains("/IBM/") => Reply::json(
                r#"{"status":"OK","results":[],"next_url":"http://elsewhere.invalid/v2/aggs?cursor=x"}"#,
            ),
            _ => Reply::json(r#"{"ticker":"AAPL","queryCount":0,"resultsCount":0,"adjusted":false,"status":"OK"}"#),
        }
    })
    .await;
    let s = settings("polygon", &vendor.url, "AAPL");
    let client = BackfillClient::new(&s.feed).unwrap();
    let get = |symbol: &str, interval| {
        let (feed, client) = (&s.feed, &client);
        let symbol = Symbol::parse(symbol).unwrap();
        async move {
            fetch_bars(
                feed,
                client,
                &symbol,
                interval,
                ms("2024-10-31T00:00:00Z"),
                ms("2024-11-05T00:00:00Z"),
            )
            .await
        }
    };

    let days = get("AAPL", Day).await.unwrap();
    let empty = get("AAPL", Minute).await.unwrap();
    let fractional = get("MSFT", Minute).await.unwrap_err();
    let foreign = get("IBM", Minute).await.unwrap_err();

    assert_eq!(
        texts(&days),
        vec![
            (
                ms("2024-11-01T00:00:00Z"),
                "222.91 225.35 220.27 222.01".into(),
                45_000_000
            ),
            (
                ms("2024-11-04T00:00:00Z"),
                "220.99 225.16 220.8 222.77".into(),
                54_128_590
            ),
        ]
    );
    assert!(empty.is_empty());
    assert!(
        matches!(&fractional, BackfillError::Malformed { .. }),
        "{fractional:?}"
    );
    let text = fractional.to_string();
    assert!(text.starts_with("polygon MSFT 1m:"), "{text}");
    assert!(
        text.contains("v 12.5") && text.contains("not a whole number"),
        "{text}"
    );
    assert!(foreign.to_string().contains("next_url"), "{foreign}");
    // The key went nowhere but the configured host.
    assert_eq!(vendor.seen().len(), 4);
}

#[tokio::test]
async fn finnhub_candles_are_exact_and_daily_stamps_keep_their_date() {
    // Finnhub stamps a daily candle at 00:00Z of its date: the evening before in New York.
    let (mar8, mar11) = (
        ms("2024-03-08T00:00:00Z") / 1000,
        ms("2024-03-11T00:00:00Z") / 1000,
    );
    let vendor = FakeRest::start(move |seen| match (seen.param("resolution"), seen.param("symbol")) {
        (Some("D"), _) => Reply::json(format!(
            r#"{{"c":[170.73,172.75],"h":[173.7,174.38],"l":[168.49,172.05],"o":[169.15,172.94],"s":"ok","t":[{mar8},{mar11}],"v":[76114634,6.0139473e7]}}"#
        )),
        (_, Some("MSFT")) => Reply::json(r#"{"s":"no_data"}"#),
        _ => Reply::json(
            r#"{"c":[101.1,0.0001],"h":[187.1234,101.1],"l":[101.1,0.0001],"o":[101.1,101.1],"s":"ok","t":[1704205800,1704205860],"v":[1200,12345.0]}"#,
        ),
    })
    .await;
    let s = settings("finnhub", &vendor.url, "AAPL");
    let client = BackfillClient::new(&s.feed).unwrap();

    let minutes = fetch(&s.feed, Minute, OPEN, "2024-01-02T14:31:00.500Z")
        .await
        .unwrap();
    let days = fetch(&s.feed, Day, "2024-03-07T00:00:00Z", "2024-03-12T00:00:00Z")
        .await
        .unwrap();
    let msft = Symbol::parse("MSFT").unwrap();
    let none = fetch_bars(&s.feed, &client, &msft, Minute, 0, 1)
        .await
        .unwrap();

    let seen = vendor.seen();
    assert_eq!(seen[0].path, "/api/v1/stock/candle");
    assert_params(
        &seen[0],
        &[
            ("symbol", "AAPL"),
            ("resolution", "1"),
            ("from", "1704205800"),
            ("to", "1704205861"),
            ("token", "the-key"),
        ],
    );
    assert_eq!(
        texts(&minutes),
        vec![
            (1_704_205_800_000, "101.1 187.1234 101.1 101.1".into(), 1200),
            (1_704_205_860_000, "101.1 101.1 0.0001 0.0001".into(), 12345),
        ]
    );
    assert_eq!(
        texts(&days),
        vec![
            (
                ms("2024-03-08T00:00:00Z"),
                "169.15 173.7 168.49 170.73".into(),
                76_114_634
            ),
            (
                ms("2024-03-11T00:00:00Z"),
                "172.94 174.38 172.05 172.75".into(),
                60_139_473
            ),
        ]
    );
    assert!(none.is_empty());
}

#[tokio::test]
async fn http_statuses_junk_and_slowness_become_typed_errors() {
    let vendor = FakeRest::start(|seen| match seen.param("symbol").unwrap_or_default() {
        "DENY" => Reply::status(
            403,
            r#"{"error":"You don't have access to this resource."}"#,
        ),
        "BUSY" => {
            Reply::status(429, r#"{"error":"API limit reached."}"#).header("Retry-After", "7")
        }
        "DOWN" => Reply::status(502, "<html>bad gateway</html>"),
        "JUNK" => Reply::json(r#"{"s":"ok","t":[1704205800],"o":[1],"#),
        "ODD" => Reply::json(
            r#"{"s":"ok","t":[1704205800,1704205860],"o":[1],"h":[1],"l":[1],"c":[1],"v":[1]}"#,
        ),
        "SLOW" => Reply::json(r#"{"s":"no_data"}"#).after(Duration::from_secs(3)),
        _ => Reply::status(400, r#"{"error":"Invalid symbol"}"#),
    })
    .await;
    let mut s = settings("finnhub", &vendor.url, "AAPL");
    s.feed.backfill_timeout_ms = 300;
    let client = BackfillClient::new(&s.feed).unwrap();
    let get = |symbol: &str| {
        let (feed, client) = (&s.feed, &client);
        let symbol = Symbol::parse(symbol).unwrap();
        async move { fetch_bars(feed, client, &symbol, Day, 0, 1_000).await }
    };

    let denied = get("DENY").await.unwrap_err();
    let busy = get("BUSY").await.unwrap_err();
    let down = get("DOWN").await.unwrap_err();
    let junk = get("JUNK").await.unwrap_err();
    let odd = get("ODD").await.unwrap_err();
    let started = std::time::Instant::now();
    let slow = get("SLOW").await.unwrap_err();
    let waited = started.elapsed();
    let unknown = get("ZZZZ").await.unwrap_err();

    assert_eq!(
        denied.to_string(),
        "finnhub DENY 1d: not entitled (HTTP 403): You don't have access to this resource."
    );
    assert!(!denied.is_retryable());
    let seven = Some(Duration::from_secs(7));
    assert!(
        matches!(busy, BackfillError::RateLimited { retry_after, .. } if retry_after == seven),
        "{busy:?}"
    );
    assert!(matches!(down, BackfillError::Unavailable { status: 502, .. }) && down.is_retryable());
    assert!(matches!(junk, BackfillError::Malformed { .. }), "{junk:?}");
    assert!(
        junk.to_string()
            .starts_with("finnhub JUNK 1d: malformed response"),
        "{junk}"
    );
    assert!(odd.to_string().contains("differ in length"), "{odd}");
    assert!(
        matches!(
            slow,
            BackfillError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{slow:?}"
    );
    assert!(waited < Duration::from_millis(2_500), "{waited:?}");
    assert!(
        matches!(unknown, BackfillError::Rejected { status: 400, .. }),
        "{unknown:?}"
    );
    // No message carries the key, which Finnhub takes in the query string.
    for error in [&denied, &busy, &down, &junk, &slow, &unknown] {
        assert!(!error.to_string().contains("the-key"), "{error}");
    }
}

#[tokio::test]
async fn a_refused_plan_is_asked_once_per_interval_not_in_a_loop() {
    // Arrange: Finnhub's free plan has no candles.
    let vendor = FakeRest::start(|_| {
        Reply::status(
            403,
            r#"{"error":"You don't have access to this resource."}"#,
        )
    })
    .await;
    let s = settings("finnhub", &vendor.url, "AAPL,MSFT,IBM");
    let requests = tickstream::sources::feed::backfill::plan(
        &s.feed,
        &s.trading_day,
        chrono::Utc::now(),
        None,
    )
    .unwrap();
    assert_eq!(requests.len(), 6);
    let mut backfiller = Backfiller::new(&s.feed).unwrap();
    let (out, mut fetched) = mpsc::channel(8);

    // Act: the start's plan, then a second run as after a gap.
    let first = backfiller
        .run(requests.clone(), &out, &CancellationToken::new())
        .await;
    let again = backfiller
        .run(requests, &out, &CancellationToken::new())
        .await;

    // Assert: one request per interval, the rest skipped, nothing handed on.
    assert_eq!((first.failed, first.skipped, first.fetched), (2, 4, 0));
    assert_eq!((again.failed, again.skipped), (0, 6));
    assert_eq!(vendor.seen().len(), 2);
    assert!(fetched.try_recv().is_err());
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_at_the_vendors_pace() {
    // Arrange: AAPL is rate limited once (Retry-After: 1), MSFT fails twice with 500.
    let calls = Arc::new(Mutex::new((0, 0)));
    let counter = calls.clone();
    let vendor = FakeRest::start(move |seen| {
        let mut calls = counter.lock().unwrap();
        // `/v2/stocks/{symbol}/bars`
        let symbol = seen.path.split('/').nth(3).unwrap_or_default().to_owned();
        let ok = Reply::json(
            r#"{"bars":[{"t":"2024-01-02T14:30:00Z","o":1.5,"h":1.5,"l":1.5,"c":1.5,"v":1}],"next_page_token":null}"#,
        );
        match symbol.as_str() {
            "AAPL" => {
                calls.0 += 1;
                if calls.0 == 1 {
                    Reply::status(429, "{}").header("Retry-After", "1")
                } else {
                    ok
                }
            }
            _ => {
                calls.1 += 1;
                if calls.1 <= 2 {
                    Reply::status(500, "{}")
                } else {
                    ok
                }
            }
        }
    })
    .await;
    let s = settings("alpaca", &vendor.url, "AAPL,MSFT");
    let request = |symbol: &str| FetchRequest {
        symbol: Symbol::parse(symbol).unwrap(),
        interval: Minute,
        from_ms: ms("2024-01-02T14:30:00Z"),
        to_ms: ms("2024-01-02T15:00:00Z"),
    };
    let mut backfiller = Backfiller::new(&s.feed).unwrap();
    let (out, mut fetched) = mpsc::channel(8);

    // Act
    let summary = backfiller
        .run(
            vec![request("AAPL"), request("MSFT")],
            &out,
            &CancellationToken::new(),
        )
        .await;

    // Assert: both delivered, after 2 and 3 attempts; the retry waited Retry-After.
    assert_eq!((summary.fetched, summary.failed, summary.bars), (2, 0, 2));
    assert_eq!(*calls.lock().unwrap(), (2, 3));
    let seen = vendor.seen();
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950));
    let first = fetched.recv().await.unwrap();
    assert_eq!(first.request, request("AAPL"));
    assert_eq!(first.bars[0].c.to_string(), "1.5");
    assert_eq!(fetched.recv().await.unwrap().request, request("MSFT"));
}

#[tokio::test]
async fn requests_are_spaced_by_the_configured_quota_and_shutdown_stops_a_run() {
    let vendor = FakeRest::start(|seen| {
        let reply = Reply::json(r#"{"s":"no_data"}"#);
        if seen.param("symbol") == Some("SLOW") {
            reply.after(Duration::from_secs(5))
        } else {
            reply
        }
    })
    .await;
    let mut s = settings("finnhub", &vendor.url, "A,B,C");
    s.feed.backfill_requests_per_minute = 600; // one request every 100 ms
    s.feed.backfill_timeout_ms = 10_000;
    let request = |symbol: &str| FetchRequest {
        symbol: Symbol::parse(symbol).unwrap(),
        interval: Day,
        from_ms: 0,
        to_ms: 1_000,
    };
    let mut backfiller = Backfiller::new(&s.feed).unwrap();
    let (out, _fetched) = mpsc::channel(8);

    let paced = backfiller
        .run(
            vec![request("A"), request("B"), request("C")],
            &out,
            &CancellationToken::new(),
        )
        .await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
    });
    let started = Instant::now();
    let stopped = backfiller
        .run(vec![request("SLOW"), request("A")], &out, &shutdown)
        .await;

    assert_eq!((paced.fetched, paced.reason), (3, "done"));
    let seen = vendor.seen();
    for pair in seen[..3].windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(95));
    }
    assert_eq!(stopped.reason, "shutdown");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The slow request was made; nothing after it.
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3].param("symbol"), Some("SLOW"));
}

#[test]
fn the_plan_starts_at_the_configured_trading_day() {
    // Midnight UTC rollover: today's minutes from 00:00Z, 5 days of daily bars.
    let env = [
        ("TICKSTREAM__FEED__KIND", "alpaca"),
        ("TICKSTREAM__FEED__SYMBOLS", "AAPL"),
        ("TICKSTREAM__FEED__API_KEY", "k"),
        ("TICKSTREAM__FEED__API_SECRET", "s"),
        ("TICKSTREAM__FEED__BACKFILL_DAYS", "5"),
        ("TICKSTREAM__TRADING_DAY__ROLLOVER_TIME", "00:00"),
        ("TICKSTREAM__TRADING_DAY__TIME_ZONE", "UTC"),
    ];
    let s = Settings::from_sources(&[], env.map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap();
    let day: &TradingDaySettings = &s.trading_day;
    let now = DateTime::parse_from_rfc3339("2024-03-11T15:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);

    let requests = tickstream::sources::feed::backfill::plan(&s.feed, day, now, None).unwrap();

    let windows: Vec<(BackfillInterval, i64)> =
        requests.iter().map(|r| (r.interval, r.from_ms)).collect();
    assert_eq!(
        windows,
        vec![
            (Minute, ms("2024-03-11T00:00:00Z")),
            (Day, ms("2024-03-06T00:00:00Z")),
        ]
    );
}

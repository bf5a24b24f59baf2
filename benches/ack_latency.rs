//! Acknowledgement latency of durable ingest at a fixed rate: a publisher sends
//! batches at RATE ticks a second and times each batch from its send to its
//! acknowledgement, which the server gives only once the batch is committed to disk,
//! fsync included (docs/PROTOCOL.md §13). Two transports, one per run:
//!
//! - `ws`: over `/ws/ingest`, until the `ack`. Acks come back in order, so each is
//!   matched with the oldest unacknowledged send.
//! - `http`: each batch one `POST /api/v1/ticks` (a JSON array), until the whole 200
//!   response. A fixed pool of HTTP_CONNECTIONS keep-alive connections, one request
//!   in flight on each (HTTP/1.1 has no pipelining that clients use); when every one
//!   is busy at a send's time, that send waits for the first to finish and counts as
//!   late, so the backlog is bounded by the pool, not queued without limit. Any
//!   answer but 200 aborts the run.
//!
//! Run: `cargo bench --bench ack_latency` (optional args: RATE BATCH SECONDS TRANSPORT,
//! default 100000 1000 10 ws; e.g. `cargo bench --bench ack_latency -- 20000 1000 3
//! http`). The release server runs in its own process (2 workers, simulator off) with
//! the durable store on a fresh temporary data directory. Both transports send the
//! same batches, paced by a timer (a late send is not made up with a burst). Bounded:
//! RATE x SECONDS ticks, and every wait for an answer by ANSWER_TIMEOUT. Prints the
//! transport, then p50 / p90 / p99 / p99.9 / max in ms.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::Rng;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use support::{arg, ingest_socket, start_server, TempDir};

const KEY: &str = "bench-publisher-key";

/// Requests in flight at most over HTTP, each on its own connection: enough to
/// cover a few commits' worth of backlog at the default rate (100 batches a second,
/// a few ms per commit), few enough to stay a publisher, not a load test.
const HTTP_CONNECTIONS: usize = 8;

/// The longest wait for any one acknowledgement or response: far above any healthy
/// commit, so only a stuck server ends the run.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
enum Transport {
    Ws,
    Http,
}

impl Transport {
    /// The 4th positional argument; an unknown name is an error rather than a silent
    /// default, so a typo cannot measure the other transport.
    fn from_args() -> Transport {
        match std::env::args().filter(|a| !a.starts_with('-')).nth(4) {
            None => Transport::Ws,
            Some(name) => match name.as_str() {
                "ws" => Transport::Ws,
                "http" => Transport::Http,
                other => panic!("TRANSPORT must be `ws` or `http`, not `{other}`"),
            },
        }
    }
}

/// What a run sends: `total` batches, one every `every`, cycling through `ticks`
/// (JSON arrays of ticks, the same for both transports).
struct Schedule<'a> {
    ticks: &'a [String],
    every: Duration,
    total: usize,
}

impl Schedule<'_> {
    /// A send is late when it leaves more than one interval after its slot: the
    /// ticker delays rather than bursts, so a late send is counted, never made up.
    fn is_late(&self, started: Instant, n: usize) -> bool {
        started.elapsed() > self.every * (n as u32 + 2)
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap()
}

fn main() {
    let (rate, batch, seconds) = (arg(1, 100_000), arg(2, 1_000), arg(3, 10));
    let transport = Transport::from_args();
    let dir = TempDir::new("ack-latency");
    let data = dir.join("data");
    let server = start_server(&[
        ("TICKSTREAM__SERVER__WORKERS", "2"),
        ("TICKSTREAM__SIMULATOR__ENABLED", "false"),
        ("TICKSTREAM__INGEST__PUBLISHER_KEYS", KEY),
        ("TICKSTREAM__STORE__DATA_DIR", data.to_str().unwrap()),
    ]);
    let symbols: Vec<String> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/symbols.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_owned())
            .collect();
    let mut rng = rand::rng();
    let ticks: Vec<String> = (0..64)
        .map(|_| {
            let ticks: Vec<String> = (0..batch)
                .map(|_| {
                    let s = &symbols[rng.random_range(0..symbols.len())];
                    let cents: u32 = rng.random_range(1_000..50_000);
                    format!(
                        r#"{{"symbol":"{s}","price":{}.{:02},"size":{}}}"#,
                        cents / 100,
                        cents % 100,
                        rng.random_range(1..10) * 100
                    )
                })
                .collect();
            format!("[{}]", ticks.join(","))
        })
        .collect();
    let schedule = Schedule {
        ticks: &ticks,
        every: Duration::from_secs_f64(batch as f64 / rate as f64),
        total: (rate * seconds / batch) as usize,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (histogram, late) = match transport {
        Transport::Ws => {
            println!("transport: ws (/ws/ingest, one socket, time to the `ack`)");
            runtime.block_on(over_ws(server.port, &schedule))
        }
        Transport::Http => {
            println!(
                "transport: http (POST /api/v1/ticks, {HTTP_CONNECTIONS} keep-alive \
                 connections, time to the whole 200 response)"
            );
            runtime.block_on(over_http(server.port, &schedule))
        }
    };
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    println!(
        "ack latency at {rate} ticks/s ({batch} a batch, {} batches, {late} sent late): \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        schedule.total,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1e3
    );
}

/// One `/ws/ingest` socket: a reader task matches acks with sends in order.
async fn over_ws(port: u16, schedule: &Schedule<'_>) -> (Histogram<u64>, u64) {
    let messages: Vec<String> = schedule
        .ticks
        .iter()
        .map(|ticks| format!(r#"{{"op":"publish","ticks":{ticks}}}"#))
        .collect();
    let total = schedule.total;
    let (mut tx, mut rx) = ingest_socket(port, KEY).await.split();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::<Instant>::new()));
    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut histogram = new_histogram();
            for _ in 0..total {
                let frame = tokio::time::timeout(ANSWER_TIMEOUT, rx.next())
                    .await
                    .expect("an ack within 30 s");
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        assert!(text.contains(r#""type":"ack""#), "{text}");
                        let at = sent.lock().unwrap().pop_front().expect("a send");
                        histogram.record(at.elapsed().as_micros() as u64).unwrap();
                    }
                    other => panic!("publisher socket: {other:?}"),
                }
            }
            histogram
        })
    };
    let mut ticker = tokio::time::interval(schedule.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut late, started) = (0u64, Instant::now());
    for n in 0..total {
        ticker.tick().await;
        if schedule.is_late(started, n) {
            late += 1;
        }
        sent.lock().unwrap().push_back(Instant::now());
        tx.send(Message::Text(messages[n % messages.len()].clone()))
            .await
            .expect("publisher sends");
    }
    (reader.await.unwrap(), late)
}

/// What one POST gives back: its connection, for the next send, and its latency in
/// µs or why it failed.
type Answer = (reqwest::Client, Result<u64, String>);

/// HTTP_CONNECTIONS keep-alive connections, one request in flight on each.
async fn over_http(port: u16, schedule: &Schedule<'_>) -> (Histogram<u64>, u64) {
    let url = format!("http://127.0.0.1:{port}/api/v1/ticks");
    // One client per connection, each keeping at most one idle connection: a shared
    // client would open a new connection whenever none is idle, and the pool would
    // not be the fixed set of connections this mode measures over.
    let mut idle: Vec<reqwest::Client> = Vec::with_capacity(HTTP_CONNECTIONS);
    for _ in 0..HTTP_CONNECTIONS {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(ANSWER_TIMEOUT)
            .build()
            .expect("an HTTP client");
        // Connected before timing starts, as the ws socket is: the run measures
        // commits, not TCP handshakes.
        let health = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .expect("GET /healthz");
        assert_eq!(health.status(), 200, "GET /healthz");
        health.bytes().await.expect("the /healthz body");
        idle.push(client);
    }

    let mut histogram = new_histogram();
    let mut record = |(client, answer): Answer, idle: &mut Vec<reqwest::Client>| {
        match answer {
            Ok(micros) => histogram.record(micros).unwrap(),
            Err(why) => panic!("POST /api/v1/ticks failed, run aborted: {why}"),
        }
        idle.push(client);
    };
    let mut in_flight: JoinSet<Answer> = JoinSet::new();
    let mut ticker = tokio::time::interval(schedule.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut late, started) = (0u64, Instant::now());
    for n in 0..schedule.total {
        ticker.tick().await;
        // Bounded by the pool: at most HTTP_CONNECTIONS answers are waiting.
        while let Some(done) = in_flight.try_join_next() {
            record(done.expect("a POST task"), &mut idle);
        }
        let waited = idle.is_empty();
        if waited {
            let done = tokio::time::timeout(ANSWER_TIMEOUT, in_flight.join_next())
                .await
                .expect("a POST answered within 30 s")
                .expect("POSTs in flight when none is idle");
            record(done.expect("a POST task"), &mut idle);
        }
        if waited || schedule.is_late(started, n) {
            late += 1;
        }
        // The most recently used connection first: at a low rate it is the one least
        // likely to have outlived the server's keep-alive timeout (5 s by default).
        let client = idle.pop().expect("an idle connection");
        let (url, body) = (
            url.clone(),
            schedule.ticks[n % schedule.ticks.len()].clone(),
        );
        in_flight.spawn(async move {
            let at = Instant::now();
            let answer = post(&client, url, body)
                .await
                .map(|()| at.elapsed().as_micros() as u64);
            (client, answer)
        });
    }
    // The last answers, each bounded by the client's timeout.
    while let Some(done) = in_flight.join_next().await {
        record(done.expect("a POST task"), &mut idle);
    }
    (histogram, late)
}

/// One batch, answered once the whole response has arrived; Err for anything but a
/// 200.
async fn post(client: &reqwest::Client, url: String, body: String) -> Result<(), String> {
    let response = client
        .post(url)
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("no response: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{status} with an unreadable body: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}

//! Scale-out over Redis: what the cross-instance hop costs, side by side in one run.
//!
//! Run: `cargo bench --bench cluster` (optional args: TICKS SECONDS, default 400 10).
//! Needs redis-server (`scripts/system-packages` installs it). Starts its own
//! redis-server and release `tickstream` processes on free loopback ports.
//!
//! 1. Latency: one publisher sends TICKS single-tick messages over `/ws/ingest`,
//!    20 ms apart, each with a unique price; one viewer (max_hz 1000, so a flush is
//!    never held back by conflation) timestamps the update carrying each price.
//!    Three set-ups, measured one after another in the same run:
//!    - `memory`: one instance, broker.kind = memory (the baseline);
//!    - `redis, same instance`: publisher and viewer on instance A;
//!    - `redis, A -> B`: publisher on A, viewer on B (the cross-instance hop).
//! 2. Throughput: batches of 1,000 ticks pipelined (4 in flight) into one instance
//!    for SECONDS; ticks accepted per second, and for Redis the ticks per second the
//!    other instance applied. Memory mode alongside.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use support::{free_port, ingest_socket, publish_pipelined, start_server};

const KEY: &str = "bench-publisher-key";

struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/system-packages installs it)");
        // Dropping the handle kills and reaps the server, on every path.
        let redis = Redis(child, port);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not listen");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Server(Child, u16);

impl Server {
    fn start(redis: Option<&Redis>) -> Server {
        let port = free_port();
        let url = redis.map(|r| format!("redis://127.0.0.1:{}/0", r.1));
        let mut env = vec![
            ("TICKSTREAM__SIMULATOR__ENABLED", "false"),
            ("TICKSTREAM__INGEST__PUBLISHER_KEYS", KEY),
            ("TICKSTREAM__STREAM__MAX_HZ", "1000"),
            ("TICKSTREAM__SERVER__WORKERS", "1"),
        ];
        if let Some(url) = &url {
            env.push(("TICKSTREAM__BROKER__KIND", "redis"));
            env.push(("TICKSTREAM__BROKER__REDIS_URL", url));
        }
        let child = start_server(port, &env);
        let server = Server(child, port);
        // Wait until joined (ready, not degraded or syncing).
        for _ in 0..200 {
            if http_get(port, "/readyz").contains("\"ready\"") {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("instance never became ready");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn metric(port: u16, name: &str) -> u64 {
    http_get(port, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Per-tick latency (µs) from send to the viewer's update, publisher on `publish_port`,
/// viewer on `view_port`.
async fn latency(publish_port: u16, view_port: u16, ticks: usize) -> Vec<u64> {
    let url = format!("ws://127.0.0.1:{view_port}/ws?symbols=AAPL");
    let (mut viewer, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    viewer
        .send(Message::Text(r#"{"op":"set","max_hz":1000}"#.into()))
        .await
        .unwrap();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (mut tx, mut acks) = ingest_socket(publish_port, KEY).await.split();
    tokio::spawn(async move { while acks.next().await.is_some() {} });
    let publisher = {
        let sent = sent.clone();
        tokio::spawn(async move {
            // Let the viewer's snapshot and settings arrive first.
            tokio::time::sleep(Duration::from_millis(300)).await;
            for i in 0..ticks {
                let price = format!("{}.{:02}", 200 + i / 100, i % 100);
                let message = format!(
                    r#"{{"op":"publish","ticks":[{{"symbol":"AAPL","price":{price},"size":1}}]}}"#
                );
                sent.lock().unwrap().insert(price, Instant::now());
                tx.send(Message::Text(message)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut samples = Vec::with_capacity(ticks);
    let deadline = Instant::now() + Duration::from_millis(20 * ticks as u64 + 5_000);
    while samples.len() < ticks && Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_secs(2), viewer.next()).await
        else {
            continue;
        };
        let at = Instant::now();
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        if message["type"] != "update" {
            continue;
        }
        for quote in message["quotes"].as_array().unwrap() {
            if let Some(p) = quote.get("p") {
                // Prices come back in shortest form (200.1, not 200.10).
                let key = format!("{:.2}", p.as_f64().unwrap());
                if let Some(start) = sent.lock().unwrap().remove(&key) {
                    samples.push((at - start).as_micros() as u64);
                }
            }
        }
    }
    publisher.await.unwrap();
    samples.sort_unstable();
    samples
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// Ticks accepted by `port` over about `seconds` (batches of 1,000, 4 in flight),
/// and the time it took.
async fn throughput(port: u16, seconds: u64) -> (u64, Duration) {
    let batch: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"symbol":"{}","price":{}.{:02},"size":100}}"#,
                ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG"][i % 5],
                100 + i / 100,
                i % 100
            )
        })
        .collect();
    let message = format!(r#"{{"op":"publish","ticks":[{}]}}"#, batch.join(","));
    let start = Instant::now();
    let accepted = publish_pipelined(port, KEY, &[message], 4, seconds).await;
    (accepted, start.elapsed())
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ticks = args.first().copied().unwrap_or(400);
    let seconds = args.get(1).copied().unwrap_or(10) as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    println!("## latency: tick sent -> update received ({ticks} ticks, 20 ms apart)");
    println!("| set-up | samples | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let report = |name: &str, s: &[u64]| {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            s.len(),
            percentile(s, 0.5),
            percentile(s, 0.99),
            percentile(s, 1.0)
        );
    };
    {
        let single = Server::start(None);
        let s = runtime.block_on(latency(single.1, single.1, ticks));
        report("memory (one instance)", &s);
    }
    {
        let redis = Redis::start();
        let a = Server::start(Some(&redis));
        let b = Server::start(Some(&redis));
        let same = runtime.block_on(latency(a.1, a.1, ticks));
        report("redis, same instance", &same);
        let cross = runtime.block_on(latency(a.1, b.1, ticks));
        report("redis, A -> B", &cross);
    }

    println!();
    println!("## throughput: batches of 1,000 ticks over /ws/ingest for {seconds} s");
    println!("| set-up | accepted ticks/s | applied by the other instance, ticks/s |");
    println!("|---|---|---|");
    {
        let single = Server::start(None);
        let (accepted, took) = runtime.block_on(throughput(single.1, seconds));
        let rate = accepted as f64 / took.as_secs_f64();
        println!("| memory (one instance) | {rate:.0} | - |");
    }
    {
        let redis = Redis::start();
        let a = Server::start(Some(&redis));
        let b = Server::start(Some(&redis));
        let before = metric(b.1, "tickstream_ticks_applied_total");
        let (accepted, took) = runtime.block_on(throughput(a.1, seconds));
        // A replies once its own subscription applied a batch; B may trail by a
        // moment. Wait (bounded) until B applied every accepted tick.
        let mut applied = 0;
        let drain = Instant::now();
        while drain.elapsed() < Duration::from_secs(10) {
            applied = metric(b.1, "tickstream_ticks_applied_total") - before;
            if applied >= accepted {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let rate = accepted as f64 / took.as_secs_f64();
        let followed = applied as f64 / (took + drain.elapsed()).as_secs_f64();
        println!(
            "| redis, into A | {rate:.0} | {followed:.0} (B applied {applied} of {accepted}) |"
        );
    }
}

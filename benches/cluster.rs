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
//!    other instance applied. Memory mode alongside. Then the script's own time per
//!    call as Redis counts it (`INFO commandstats`): the cluster's ingest bound.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use support::{
    ingest_socket, metric, publish_pipelined, start_on_some_port, start_server, Process,
    ServerProcess, TempDir,
};

const KEY: &str = "bench-publisher-key";

/// redis-server on a loopback port (scripts/system-packages installs it); dropping
/// the handle kills and reaps the server, on every path, then removes its directory.
struct Redis {
    port: u16,
    _process: Process,
    _dir: TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = TempDir::new("bench-redis");
        let (process, port) = start_on_some_port("redis-server", &dir.join("redis.log"), |port| {
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path());
            command
        });
        Redis {
            port,
            _process: process,
            _dir: dir,
        }
    }
}

/// An instance; killed when dropped.
struct Server {
    port: u16,
    _process: ServerProcess,
}

impl Server {
    fn start(redis: Option<&Redis>) -> Server {
        let url = redis.map(|r| format!("redis://127.0.0.1:{}/0", r.port));
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
        let process = start_server(&env);
        let port = process.port;
        let server = Server {
            port,
            _process: process,
        };
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
        let s = runtime.block_on(latency(single.port, single.port, ticks));
        report("memory (one instance)", &s);
    }
    {
        let redis = Redis::start();
        let a = Server::start(Some(&redis));
        let b = Server::start(Some(&redis));
        let same = runtime.block_on(latency(a.port, a.port, ticks));
        report("redis, same instance", &same);
        let cross = runtime.block_on(latency(a.port, b.port, ticks));
        report("redis, A -> B", &cross);
    }

    println!();
    println!("## throughput: batches of 1,000 ticks over /ws/ingest for {seconds} s");
    println!("| set-up | accepted ticks/s | applied by the other instance, ticks/s |");
    println!("|---|---|---|");
    {
        let single = Server::start(None);
        let (accepted, took) = runtime.block_on(throughput(single.port, seconds));
        let rate = accepted as f64 / took.as_secs_f64();
        println!("| memory (one instance) | {rate:.0} | - |");
    }
    {
        let redis = Redis::start();
        let a = Server::start(Some(&redis));
        let b = Server::start(Some(&redis));
        let applied_by_b =
            || -> u64 { runtime.block_on(metric(b.port, "tickstream_ticks_applied_total")) };
        let before = applied_by_b();
        let (accepted, took) = runtime.block_on(throughput(a.port, seconds));
        // A replies once its own subscription applied a batch; B may trail by a
        // moment. Wait (bounded) until B applied every accepted tick.
        let mut applied = 0;
        let drain = Instant::now();
        while drain.elapsed() < Duration::from_secs(10) {
            applied = applied_by_b() - before;
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
        // Redis's own count of the script's time: what bounds the cluster's ingest,
        // without the noise of the client, the instances and the machine's neighbours.
        match lua_usec_per_call(redis.port) {
            Some(usec) => println!(
                "\nScript time in Redis: {usec:.1} µs a call (`INFO commandstats`, evalsha; \
                 nearly every call is one 1,000-tick batch)"
            ),
            None => println!("\nScript time in Redis: not available (redis-cli missing?)"),
        }
    }
}

/// `usec_per_call` of `evalsha` from `redis-cli INFO commandstats`.
fn lua_usec_per_call(port: u16) -> Option<f64> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("cmdstat_evalsha:"))?;
    line.split([':', ','])
        .find_map(|field| field.strip_prefix("usec_per_call="))?
        .trim()
        .parse()
        .ok()
}

//! Ingest throughput with viewers connected: ticks per second accepted over
//! `/ws/ingest` and over `POST /api/v1/ticks`, measured side by side in one run.
//!
//! Run: `cargo bench --bench ingest_throughput` (optional args: VIEWERS SECONDS, default
//! 1000 10). The release server runs in its own process (2 workers, simulator off);
//! every viewer subscribes to 20 random symbols of the 100 and keeps reading, so the
//! server diffs and sends updates while it ingests. The publisher pipelines batches of
//! 1,000 ticks (up to 4 unacknowledged); request bodies are serialized before timing
//! starts, so the client's own JSON work is not measured.

mod support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;
use tokio_tungstenite::tungstenite::Message;

use support::{cpu_seconds, publish_pipelined, start_server};

const KEY: &str = "bench-publisher-key";
const BATCH: usize = 1_000;
const PIPELINE: usize = 4;

fn symbols() -> Vec<String> {
    let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/symbols.csv"))
        .unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect()
}

/// JSON arrays of BATCH random ticks over the universe.
fn batches(symbols: &[String], count: usize) -> Vec<String> {
    let mut rng = rand::rng();
    (0..count)
        .map(|_| {
            let ticks: Vec<String> = (0..BATCH)
                .map(|_| {
                    let s = &symbols[rng.random_range(0..symbols.len())];
                    let cents: u32 = rng.random_range(1_000..50_000);
                    let size: u32 = rng.random_range(1..10) * 100;
                    format!(
                        r#"{{"symbol":"{s}","price":{}.{:02},"size":{size},"bid":{}.{:02},"ask":{}.{:02}}}"#,
                        cents / 100, cents % 100, (cents - 1) / 100, (cents - 1) % 100, (cents + 1) / 100, (cents + 1) % 100
                    )
                })
                .collect();
            format!("[{}]", ticks.join(","))
        })
        .collect()
}

async fn viewers(
    port: u16,
    count: usize,
    symbols: &[String],
    received: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let picked: Vec<&str> = {
            let mut rng = rand::rng();
            (0..20)
                .map(|_| symbols[rng.random_range(0..symbols.len())].as_str())
                .collect()
        };
        let url = format!("ws://127.0.0.1:{port}/ws?symbols={}", picked.join(","));
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("viewer connects");
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if matches!(message, Message::Text(_)) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tasks
}

async fn publish_ws(port: u16, bodies: &[String], seconds: u64) -> u64 {
    let messages: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| format!(r#"{{"op":"publish","req_id":{i},"ticks":{body}}}"#))
        .collect();
    publish_pipelined(port, KEY, &messages, PIPELINE, seconds).await
}

/// Keep-alive HTTP/1.1 posts on plain sockets, `connections` in parallel threads.
fn publish_http(port: u16, bodies: &[String], seconds: u64, connections: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                scope.spawn(move || {
                    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    stream.set_nodelay(true).unwrap();
                    let mut accepted = 0u64;
                    let mut i = c;
                    let mut buffer = vec![0u8; 1 << 16];
                    while Instant::now() < deadline {
                        let body = &bodies[i % bodies.len()];
                        i += connections;
                        let head = format!(
                            "POST /api/v1/ticks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        stream.write_all(head.as_bytes()).unwrap();
                        stream.write_all(body.as_bytes()).unwrap();
                        // Read one response: headers, then Content-Length bytes.
                        let mut got = Vec::new();
                        let (header_end, content_length) = loop {
                            let n = stream.read(&mut buffer).unwrap();
                            assert!(n > 0, "server closed");
                            got.extend_from_slice(&buffer[..n]);
                            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                                assert!(head.starts_with("http/1.1 200"), "{head}");
                                let length = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length:"))
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                                    .expect("content-length");
                                break (end + 4, length);
                            }
                        };
                        while got.len() < header_end + content_length {
                            let n = stream.read(&mut buffer).unwrap();
                            got.extend_from_slice(&buffer[..n]);
                        }
                        let reply: serde_json::Value = serde_json::from_slice(&got[header_end..]).unwrap();
                        accepted += reply["accepted"].as_u64().unwrap();
                    }
                    accepted
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let viewer_count = args.first().copied().unwrap_or(1000);
    let seconds = args.get(1).copied().unwrap_or(10) as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = start_server(&[
        ("TICKSTREAM__SIMULATOR__ENABLED", "false"),
        ("TICKSTREAM__INGEST__PUBLISHER_KEYS", KEY),
    ]);
    let (port, pid) = (server.port, server.pid());
    let universe = symbols();
    let bodies = batches(&universe, 32);
    let received = Arc::new(AtomicU64::new(0));
    let _viewers = runtime.block_on(viewers(port, viewer_count, &universe, received.clone()));
    println!("ingest throughput: {viewer_count} viewers x 20 symbols of {}, batches of {BATCH}, {seconds} s per transport", universe.len());
    println!("| transport | ticks accepted | ticks/s | server CPU s | server CPU per 1k ticks (ms) | viewer messages/s |");
    println!("|---|---|---|---|---|---|");
    for transport in ["ws", "http"] {
        let cpu_before = cpu_seconds(pid);
        let messages_before = received.load(Ordering::Relaxed);
        let started = Instant::now();
        let accepted = match transport {
            "ws" => runtime.block_on(publish_ws(port, &bodies, seconds)),
            _ => {
                // The viewers' runtime keeps reading on this thread's runtime while
                // HTTP runs on plain threads.
                let handle = std::thread::scope(|scope| {
                    let h = scope.spawn(|| publish_http(port, &bodies, seconds, 2));
                    runtime.block_on(async {
                        while !h.is_finished() {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    });
                    h.join().unwrap()
                });
                handle
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu_before;
        let messages = received.load(Ordering::Relaxed) - messages_before;
        println!(
            "| {transport} | {accepted} | {:.0} | {cpu:.2} | {:.3} | {:.0} |",
            accepted as f64 / elapsed,
            cpu * 1000.0 / (accepted as f64 / 1000.0),
            messages as f64 / elapsed
        );
    }
    drop(server);
}

//! Acknowledgement latency of durable ingest at a fixed rate: a publisher sends
//! batches over `/ws/ingest` at RATE ticks a second and times each batch from its
//! send to its `ack` (which the server sends only once the batch is committed to
//! disk, fsync included: docs/PROTOCOL.md §13).
//!
//! Run: `cargo bench --bench ack_latency` (optional args: RATE BATCH SECONDS, default
//! 100000 1000 10). The release server runs in its own process (2 workers, simulator
//! off) with the durable store on a fresh temporary data directory. Sends are paced
//! by a timer (a late send is not made up with a burst); acks come back in order, so
//! each is matched with the oldest unacknowledged send. Bounded: RATE x SECONDS
//! ticks. Prints p50 / p90 / p99 / p99.9 / max in ms.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::Rng;
use tokio_tungstenite::tungstenite::Message;

use support::{arg, ingest_socket, start_server, TempDir};

const KEY: &str = "bench-publisher-key";

fn main() {
    let (rate, batch, seconds) = (arg(1, 100_000), arg(2, 1_000), arg(3, 10));
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
    let messages: Vec<String> = (0..64)
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
            format!(r#"{{"op":"publish","ticks":[{}]}}"#, ticks.join(","))
        })
        .collect();
    let every = Duration::from_secs_f64(batch as f64 / rate as f64);
    let total = (rate * seconds / batch) as usize;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (histogram, late) = runtime.block_on(async {
        let (mut tx, mut rx) = ingest_socket(server.port, KEY).await.split();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::<Instant>::new()));
        let reader = {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                for _ in 0..total {
                    let frame = tokio::time::timeout(Duration::from_secs(30), rx.next())
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
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut late, started) = (0u64, Instant::now());
        for n in 0..total {
            ticker.tick().await;
            if started.elapsed() > every * (n as u32 + 2) {
                late += 1;
            }
            sent.lock().unwrap().push_back(Instant::now());
            tx.send(Message::Text(messages[n % messages.len()].clone()))
                .await
                .expect("publisher sends");
        }
        (reader.await.unwrap(), late)
    });
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    println!(
        "ack latency at {rate} ticks/s ({batch} a batch, {total} batches, {late} sent late): \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1e3
    );
}

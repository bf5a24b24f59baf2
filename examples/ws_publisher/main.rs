//! Example feed adapter: publishes a random walk over `/ws/ingest`.
//!
//! ```sh
//! TICKSTREAM__INGEST__PUBLISHER_KEYS=demo-key cargo run --release   # the server
//! cargo run --example ws_publisher -- --key demo-key --symbols AAPL,MSFT --rate 50
//! ```
//!
//! Kill and restart the server while it runs: the adapter reconnects with backoff and
//! re-sends what was not acknowledged; `seq` keeps the volume exact.

mod adapter;

use std::time::Duration;

use clap::Parser;
use rand::Rng;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// The server's ingest socket.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws/ingest")]
    url: String,
    /// A publisher key (one of TICKSTREAM__INGEST__PUBLISHER_KEYS).
    #[arg(long, env = "TICKSTREAM_PUBLISHER_KEY")]
    key: String,
    /// Comma-separated symbols to publish.
    #[arg(long, default_value = "AAPL,MSFT,NVDA")]
    symbols: String,
    /// Ticks per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Stop after this many seconds (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let symbols: Vec<String> = args
        .symbols
        .split(',')
        .map(|s| s.trim().to_uppercase())
        .collect();
    // Start seq from the clock so a restarted adapter never reuses an accepted seq.
    let first_seq = chrono::Utc::now().timestamp_micros() as u64;
    let mut publisher = adapter::Publisher::new(&args.url, &args.key, first_seq);
    let mut prices: Vec<f64> = symbols.iter().map(|_| 100.0).collect();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let per_batch = (args.rate / 5).max(1);
    let started = tokio::time::Instant::now();
    loop {
        ticker.tick().await;
        if args.seconds > 0 && started.elapsed() >= Duration::from_secs(args.seconds) {
            break;
        }
        let mut rng = rand::rng();
        let ticks = (0..per_batch)
            .map(|_| {
                let i = rng.random_range(0..symbols.len());
                prices[i] = (prices[i] * (1.0 + rng.random_range(-0.001..0.001))).max(0.01);
                let price = (prices[i] * 100.0).round() / 100.0;
                json!({"symbol": symbols[i], "price": price, "size": rng.random_range(1..10) * 100})
            })
            .collect();
        publisher.enqueue(ticks);
        if let Err(e) = publisher.flush(Duration::from_secs(60)).await {
            eprintln!("giving up: {e}");
            std::process::exit(1);
        }
        println!(
            "{:?}, {} batches pending",
            publisher.totals,
            publisher.pending()
        );
    }
}

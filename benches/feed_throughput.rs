//! Feed connector throughput: a local server speaking Finnhub's trade stream pushes
//! a fixed number of messages per second (one trade per frame, the worst case: no
//! vendor batching) to the release server, configured exactly as README's operator
//! contract says; we measure whether the connector keeps up.
//!
//! Run: `cargo bench --bench feed_throughput` (optional args: RATE SECONDS, default
//! 50000 10). Reports messages sent, ticks applied (`/metrics`), the largest backlog
//! seen while sending (sent minus applied, sampled every 100 ms), the time from the
//! last message sent to the last one applied, and the server's CPU.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use support::{cpu_seconds, metric, start_server};

const SYMBOLS: [&str; 20] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "JPM", "V", "WMT", "XOM",
    "UNH", "MA", "PG", "JNJ", "HD", "COST", "ORCL", "NFLX",
];

/// Frames per pacing tick: 1 ms ticks, so RATE/1000 frames each.
const TICK: Duration = Duration::from_millis(1);

async fn applied(port: u16) -> u64 {
    metric(
        port,
        r#"tickstream_feed_ticks_applied_total{feed="finnhub"}"#,
    )
    .await
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(50_000);
    let seconds = args.get(1).copied().unwrap_or(10);
    actix_web::rt::System::new().block_on(run(rate, seconds));
}

async fn run(rate: u64, seconds: u64) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let vendor = format!("ws://{}", listener.local_addr().expect("address"));
    let symbols = SYMBOLS.join(",");
    let server = start_server(&[
        ("TICKSTREAM__FEED__KIND", "finnhub"),
        // The history backfill has its own tests (tests/api/backfill.rs).
        ("TICKSTREAM__FEED__BACKFILL", "false"),
        ("TICKSTREAM__FEED__URL", &vendor),
        ("TICKSTREAM__FEED__API_KEY", "bench"),
        ("TICKSTREAM__FEED__SYMBOLS", &symbols),
        ("TICKSTREAM__SERVER__WORKERS", "2"),
    ]);
    let (port, pid) = (server.port, server.pid());

    let (stream, _) = listener.accept().await.expect("the connector connects");
    let mut ws = tokio_tungstenite::accept_async(stream)
        .await
        .expect("handshake");
    for _ in SYMBOLS {
        match ws.next().await {
            Some(Ok(Message::Text(_))) => {}
            other => panic!("expected a subscribe, got {other:?}"),
        }
    }
    // Frames prepared up front, so the sender's JSON work is not in the measurement.
    let frames: Vec<String> = (0..10_000u64)
        .map(|i| {
            let symbol = SYMBOLS[(i % SYMBOLS.len() as u64) as usize];
            let cents = 10_000 + (i * 7919) % 40_000;
            format!(
                r#"{{"data":[{{"c":["1"],"p":{}.{:02},"s":"{symbol}","t":{},"v":{}}}],"type":"trade"}}"#,
                cents / 100,
                cents % 100,
                1_796_221_800_000 + i,
                1 + i % 300
            )
        })
        .collect();
    let total = rate * seconds;
    let per_tick = (rate / 1000).max(1);
    let sent = Arc::new(AtomicU64::new(0));

    // Samples the backlog while sending.
    let sampler_sent = sent.clone();
    let sampler = actix_web::rt::spawn(async move {
        let mut worst = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = sampler_sent.load(Ordering::Relaxed);
            let a = applied(port).await;
            worst = worst.max(s.saturating_sub(a));
            if s >= total {
                return worst;
            }
        }
    });

    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut pacing = tokio::time::interval(TICK);
    pacing.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next = 0u64;
    // Answer the connector's pings while sending: it would otherwise count us silent.
    let (mut tx, mut rx) = ws.split();
    let reader = actix_web::rt::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    while next < total {
        pacing.tick().await;
        for _ in 0..per_tick.min(total - next) {
            tx.feed(Message::Text(
                frames[(next % frames.len() as u64) as usize].clone(),
            ))
            .await
            .expect("vendor sends");
            next += 1;
        }
        tx.flush().await.expect("vendor flushes");
        sent.store(next, Ordering::Relaxed);
    }
    let send_time = started.elapsed();
    let worst_backlog = sampler.await.expect("sampler");
    let last_sent = Instant::now();
    let mut final_applied = applied(port).await;
    while final_applied < total && last_sent.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        final_applied = applied(port).await;
    }
    let drain = last_sent.elapsed();
    let cpu = cpu_seconds(pid) - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "feed_throughput finnhub: rate {rate}/s target, sent {total} in {:.2} s ({:.0}/s), applied {final_applied} ({:.2}%), worst backlog {worst_backlog} messages (sampled every 100 ms), last applied {:.0} ms after last sent, server CPU {:.2} s ({:.0}% of one core)",
        send_time.as_secs_f64(),
        total as f64 / send_time.as_secs_f64(),
        100.0 * final_applied as f64 / total as f64,
        drain.as_secs_f64() * 1000.0,
        cpu,
        100.0 * cpu / elapsed,
    );
    reader.abort();
    drop(server);
    assert_eq!(
        final_applied, total,
        "the connector fell behind or lost messages"
    );
}

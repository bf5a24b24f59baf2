//! RSS per idle connection: the release server in its own process, N viewers that
//! connect and then stay quiet (simulator off, so nothing changes after the snapshot).
//!
//! Run: `cargo bench --bench idle_memory` (optional arg: connections, default 1000).
//! Reports the server's VmRSS before and after each batch of connections, per variant:
//! plain with no subscription, plain with 20 symbols, deflate with 20 symbols; and
//! again once every connection has been quiet for a heartbeat interval (the server's
//! default 5 s), when a compressing connection has given its encoder state back.

mod support;

use std::time::Duration;

use support::{rss_kib, start_server};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// How long the batch stays open after the first reading: more than the server's
/// default heartbeat interval (`stream.heartbeat_ms`, 5,000) after the last connect.
const QUIET: Duration = Duration::from_millis(6000);

const SYMBOLS: &str =
    "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,JPM,V,MA,UNH,XOM,JNJ,PG,HD,COST,SPY,QQQ,NFLX,AMD";

async fn open(port: u16, query: &str, count: usize, expect_messages: usize) -> Vec<impl Sized> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let url = format!("ws://127.0.0.1:{port}/ws{query}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        // Wait for welcome (+ subscriptions and snapshot) so the server has done its work.
        for _ in 0..expect_messages {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) => {}
                other => panic!("unexpected: {other:?}"),
            }
        }
        held.push(ws);
    }
    held
}

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "RSS per idle connection, {count} connections, release server (2 workers), simulator off"
    );
    println!(
        "| variant | RSS before (KiB) | RSS after (KiB) | per connection (KiB) | after a heartbeat (KiB) | per connection, quiet (KiB) |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, query, messages) in [
        ("plain, no subscription", String::new(), 1),
        ("plain, 20 symbols", format!("?symbols={SYMBOLS}"), 3),
        (
            "deflate, 20 symbols",
            format!("?symbols={SYMBOLS}&compression=deflate"),
            3,
        ),
    ] {
        let server = start_server(&[("TICKSTREAM__SIMULATOR__ENABLED", "false")]);
        let (port, pid) = (server.port, server.pid());
        // Warm up: one connection so lazily built worker state is not charged per connection.
        let warm = runtime.block_on(open(port, &query, 1, messages));
        std::thread::sleep(Duration::from_millis(300));
        let before = rss_kib(pid);
        let held = runtime.block_on(open(port, &query, count, messages));
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(pid);
        // Past the heartbeat interval (5 s by default) for the last connection too.
        std::thread::sleep(QUIET);
        let quiet = rss_kib(pid);
        let per = |rss: u64| (rss as f64 - before as f64) / count as f64;
        println!(
            "| {name} | {before} | {after} | {:.1} | {quiet} | {:.1} |",
            per(after),
            per(quiet)
        );
        drop(held);
        drop(warm);
        drop(server);
    }
}

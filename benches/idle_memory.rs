//! RSS per idle connection: the release server in its own process, N viewers that
//! connect and then stay quiet (simulator off, so nothing changes after the snapshot).
//!
//! Run: `cargo bench --bench idle_memory` (optional arg: connections, default 1000).
//! Reports the server's VmRSS before and after each batch of connections, per variant:
//! plain with no subscription, plain with 20 symbols, deflate with 20 symbols.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const SYMBOLS: &str =
    "AAPL,MSFT,NVDA,AMZN,GOOGL,META,TSLA,JPM,V,MA,UNH,XOM,JNJ,PG,HD,COST,SPY,QQQ,NFLX,AMD";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickstream"))
        .env("TICKSTREAM__SERVER__PORT", port.to_string())
        .env("TICKSTREAM__SIMULATOR__ENABLED", "false")
        // One load generator on one address: lift the per-address limits meant for
        // the internet.
        .env("TICKSTREAM__LIMITS__MAX_CONNECTIONS_PER_IP", "100000")
        .env("TICKSTREAM__LIMITS__CONNECTS_PER_SECOND_PER_IP", "100000")
        .env("TICKSTREAM__LIMITS__CONNECT_BURST_PER_IP", "100000")
        .env(
            "TICKSTREAM__LIMITS__REST_REQUESTS_PER_SECOND_PER_IP",
            "100000",
        )
        .env("TICKSTREAM__LIMITS__REST_BURST_PER_IP", "100000")
        .env("TICKSTREAM__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("server starts");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not listen");
}

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
    println!("| variant | RSS before (KiB) | RSS after (KiB) | per connection (KiB) |");
    println!("|---|---|---|---|");
    for (name, query, messages) in [
        ("plain, no subscription", String::new(), 1),
        ("plain, 20 symbols", format!("?symbols={SYMBOLS}"), 3),
        (
            "deflate, 20 symbols",
            format!("?symbols={SYMBOLS}&compression=deflate"),
            3,
        ),
    ] {
        let port = free_port();
        let mut server = start_server(port);
        let pid = server.id();
        // Warm up: one connection so lazily built worker state is not charged per connection.
        let warm = runtime.block_on(open(port, &query, 1, messages));
        std::thread::sleep(Duration::from_millis(300));
        let before = rss_kib(pid);
        let held = runtime.block_on(open(port, &query, count, messages));
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(pid);
        println!(
            "| {name} | {before} | {after} | {:.1} |",
            (after - before) as f64 / count as f64
        );
        drop(held);
        drop(warm);
        let _ = server.kill();
        let _ = server.wait();
    }
}

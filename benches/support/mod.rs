//! Helpers shared by the benchmark harnesses that run the release server in its own
//! process (each harness is its own crate and includes this module). Processes are
//! started and scraped by the tests' support module, written once for both.
#![allow(dead_code)] // not every harness uses every helper

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[path = "../../tests/support/mod.rs"]
mod shared;
#[allow(unused_imports)] // not every harness uses every helper
pub use shared::{metric, start_on_some_port, Process, ServerProcess, TempDir};

/// Starts `target/release/tickstream` on a port the OS picks (`ServerProcess::port`)
/// with `env` on top of the settings every harness needs: no inherited TICKSTREAM*
/// variables, warn-level logs, and the per-address limits (meant for internet
/// clients) lifted, because the load comes from one address. Returns once it listens;
/// killed when dropped.
pub fn start_server(env: &[(&str, &str)]) -> ServerProcess {
    // TICKSTREAM_SERVER_BIN runs another build (e.g. a saved "before" binary) for
    // side-by-side comparisons; the default is this crate's release binary. The
    // other build must know TICKSTREAM_PORT_FILE (src/main.rs).
    let binary = std::env::var("TICKSTREAM_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tickstream").to_owned());
    let mut command = shared::tickstream_command_at(binary);
    command
        .env("TICKSTREAM__LOG__LEVEL", "warn")
        .env("TICKSTREAM__LIMITS__MAX_CONNECTIONS_PER_IP", "100000")
        .env("TICKSTREAM__LIMITS__CONNECTS_PER_SECOND_PER_IP", "100000")
        .env("TICKSTREAM__LIMITS__CONNECT_BURST_PER_IP", "100000")
        .env(
            "TICKSTREAM__LIMITS__REST_REQUESTS_PER_SECOND_PER_IP",
            "100000",
        )
        .env("TICKSTREAM__LIMITS__REST_BURST_PER_IP", "100000")
        .envs(env.iter().copied());
    // Memory only (the shared support's default) unless TICKSTREAM_BENCH_DATA_DIR names
    // a directory for the durable store (issue 23's durable-against-memory comparison).
    if let Ok(dir) = std::env::var("TICKSTREAM_BENCH_DATA_DIR") {
        command.env("TICKSTREAM__STORE__DATA_DIR", dir);
    }
    shared::spawn_server("tickstream", command)
}

/// The harness's `index`-th positional argument (flags such as `--bench` skipped),
/// or `default`.
pub fn arg(index: usize, default: u64) -> u64 {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A publisher's `/ws/ingest` socket, authenticated with `key`.
pub async fn ingest_socket(port: u16, key: &str) -> Socket {
    let mut request = format!("ws://127.0.0.1:{port}/ws/ingest")
        .into_client_request()
        .expect("a valid URL");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {key}").parse().expect("a valid header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("publisher connects")
        .0
}

/// Sends `messages` (in turn, repeating) over one ingest socket for `seconds`,
/// keeping `pipeline` unacknowledged; returns the ticks the acks accepted.
pub async fn publish_pipelined(
    port: u16,
    key: &str,
    messages: &[String],
    pipeline: usize,
    seconds: u64,
) -> u64 {
    let (mut tx, mut rx) = ingest_socket(port, key).await.split();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let (mut in_flight, mut accepted, mut next) = (0usize, 0u64, 0usize);
    loop {
        while in_flight < pipeline && tokio::time::Instant::now() < deadline {
            tx.send(Message::Text(messages[next % messages.len()].clone()))
                .await
                .expect("publisher sends");
            next += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            return accepted;
        }
        match rx.next().await {
            Some(Ok(Message::Text(text))) => {
                let ack: serde_json::Value = serde_json::from_str(&text).expect("JSON ack");
                assert_eq!(ack["type"], "ack", "{text}");
                accepted += ack["accepted"].as_u64().expect("accepted count");
                in_flight -= 1;
            }
            Some(Ok(_)) => {}
            other => panic!("publisher socket failed: {other:?}"),
        }
    }
}

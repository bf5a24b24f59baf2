//! `tickstream-bench`: the load generator.
//!
//! N viewers, each subscribed to K random symbols of a universe of U, and one
//! publisher over `/ws/ingest` at R ticks per second whose ticks carry `ts` = send
//! time, so a viewer's "staleness" (receive time minus the quote's `t`) is the
//! end-to-end delay including conflation. Connections ramp at a set rate and can be
//! spread over several loopback source addresses (a process holds at most ~19,900
//! sockets here; run several generators for more). Reports a human table and one
//! JSON line. All traffic goes to the given server (use loopback addresses).
//!
//! ```sh
//! tickstream-bench --viewers 10000 --symbols-per-viewer 20 --universe 500 \
//!   --ticks-per-second 10000 --max-hz 4 --deflate --publisher-key KEY \
//!   --admin-key ADMIN --server-pid $(pgrep -x tickstream) --seconds 30
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Parser;
use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for tickstream: viewers, a publisher, staleness and cost")]
struct Args {
    /// The server's address (host:port), plain ws/http.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: String,
    /// Viewers to connect.
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// Symbols each viewer subscribes to (random, distinct).
    #[arg(long, default_value_t = 20)]
    symbols_per_viewer: usize,
    /// Size of the universe the viewers and the publisher pick from.
    #[arg(long, default_value_t = 100)]
    universe: usize,
    /// Ticks per second from the publisher (0 = no publisher; e.g. use the simulator).
    #[arg(long, default_value_t = 1000)]
    ticks_per_second: u32,
    /// Ask for compression=deflate.
    #[arg(long)]
    deflate: bool,
    /// How viewers connect: `ws` (tungstenite; plain or `--deflate`), `pmd` (WebSocket
    /// with permessage-deflate), `sse` (Server-Sent Events, gzip).
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    transport: Transport,
    /// Each viewer's update rate (sent as {"op":"set"}).
    #[arg(long, default_value_t = 4.0)]
    max_hz: f64,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 2000)]
    ramp: u32,
    /// Comma-separated local source addresses for viewer sockets (127.0.0.x). Empty
    /// (the default): no bind, the kernel picks address and port at connect, which is
    /// much cheaper (binding to port 0 searches the whole ephemeral range for a port
    /// free for every destination: at ~17,000 sockets the ramp stalled long enough for
    /// the server's 5 s request timeout). Give sources only beyond ~28,000 connections
    /// to one server port.
    #[arg(long, default_value = "")]
    sources: String,
    /// Seconds to wait after the ramp before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds to measure.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Publisher key (TICKSTREAM__INGEST__PUBLISHER_KEYS) for the publisher.
    #[arg(long, env = "TICKSTREAM_BENCH_PUBLISHER_KEY")]
    publisher_key: Option<String>,
    /// Admin key, to create the universe's symbols when the server has fewer.
    #[arg(long, env = "TICKSTREAM_BENCH_ADMIN_KEY")]
    admin_key: Option<String>,
    /// The server's pid, to report its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A viewer token, when the server has auth on.
    #[arg(long)]
    token: Option<String>,
    /// Generator threads. One thread must not be the bottleneck it measures: with
    /// thousands of deflate viewers use 2 (the server and the generator then share
    /// the machine's cores, as in the targets).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Everything the viewers count, behind one mutex (taken once per received message).
struct Stats {
    measuring: bool,
    connected: usize,
    connect_errors: usize,
    disconnects: usize,
    messages: u64,
    heartbeats: u64,
    /// Viewers that received at least one heartbeat while measuring.
    viewers_with_heartbeat: usize,
    symbol_updates: u64,
    wire_bytes: u64,
    staleness_ms: Histogram<u64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            measuring: false,
            connected: 0,
            connect_errors: 0,
            disconnects: 0,
            messages: 0,
            heartbeats: 0,
            viewers_with_heartbeat: 0,
            symbol_updates: 0,
            wire_bytes: 0,
            staleness_ms: Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid bounds"),
        }
    }

    fn start_measuring(&mut self) {
        self.measuring = true;
        self.messages = 0;
        self.heartbeats = 0;
        self.viewers_with_heartbeat = 0;
        self.symbol_updates = 0;
        self.wire_bytes = 0;
        self.staleness_ms.reset();
    }
}

impl Stats {
    /// One received message: `wire` bytes on the wire, `text` its JSON. A viewer's
    /// first heartbeat is counted once (`heartbeat_counted`, the viewer's own flag).
    fn record(&mut self, wire: u64, text: &[u8], now: i64, heartbeat_counted: &mut bool) {
        self.messages += 1;
        self.wire_bytes += wire;
        if text.starts_with(b"{\"type\":\"heartbeat\"") {
            self.heartbeats += 1;
            if !*heartbeat_counted {
                *heartbeat_counted = true;
                self.viewers_with_heartbeat += 1;
            }
        }
        record_update(text, now, self);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Server frames are unmasked: 2 header bytes under 126, 4 under 65,536, else 10.
fn frame_overhead(len: usize) -> u64 {
    match len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    }
}

/// Counts the quotes of an `update` and records each quote's staleness, by scanning
/// the text rather than parsing it (the generator must stay cheaper than the server).
fn record_update(text: &[u8], now: i64, stats: &mut Stats) {
    if !text.starts_with(b"{\"type\":\"update\"") {
        return;
    }
    let mut rest = text;
    while let Some(at) = find(rest, b"\"t\":") {
        rest = &rest[at + 4..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Ok(t) = std::str::from_utf8(&rest[..digits])
            .unwrap_or("")
            .parse::<i64>()
        {
            stats.symbol_updates += 1;
            let _ = stats.staleness_ms.record((now - t).max(1) as u64);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

type Shared = Arc<Mutex<Stats>>;

/// Counts a viewer that could not connect; the first few errors are printed.
fn connect_failed(stats: &Shared, error: &dyn std::fmt::Display) {
    let mut stats = lock(stats);
    stats.connect_errors += 1;
    if stats.connect_errors <= 3 {
        eprintln!("viewer: cannot connect: {error}");
    }
}

fn lock(stats: &Shared) -> MutexGuard<'_, Stats> {
    stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn viewer(args: Arc<Args>, source: Option<IpAddr>, symbols: Vec<String>, stats: Shared) {
    let server: SocketAddr = match args.server.parse() {
        Ok(address) => address,
        Err(_) => {
            lock(&stats).connect_errors += 1;
            return;
        }
    };
    let connected = async {
        let socket = TcpSocket::new_v4()?;
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        // With no symbols the viewer subscribes to nothing and gets only heartbeats.
        let mut url = format!("ws://{}/ws?", args.server);
        if !symbols.is_empty() {
            url.push_str(&format!("symbols={}&", symbols.join(",")));
        }
        if args.deflate {
            url.push_str("compression=deflate&");
        }
        if let Some(token) = &args.token {
            url.push_str(&format!("token={token}&"));
        }
        url.pop();
        let request = url.into_client_request().map_err(std::io::Error::other)?;
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(ws)
    }
    .await;
    let mut ws = match connected {
        Ok(ws) => ws,
        Err(e) => return connect_failed(&stats, &e),
    };
    lock(&stats).connected += 1;
    let set = format!(r#"{{"op":"set","max_hz":{}}}"#, args.max_hz);
    if ws.send(Message::Text(set)).await.is_err() {
        lock(&stats).disconnects += 1;
        return;
    }
    let mut inflater = Decompress::new(false);
    let mut plain = Vec::with_capacity(16 * 1024);
    let mut heartbeat_counted = false;
    while let Some(frame) = ws.next().await {
        let now = now_ms();
        let (wire, text): (usize, &[u8]) = match &frame {
            Ok(Message::Text(text)) => (text.len(), text.as_bytes()),
            Ok(Message::Binary(bytes)) => {
                plain.clear();
                let start = inflater.total_in();
                loop {
                    let used = (inflater.total_in() - start) as usize;
                    if used == bytes.len() && plain.len() < plain.capacity() {
                        break;
                    }
                    plain.reserve(16 * 1024);
                    if inflater
                        .decompress_vec(&bytes[used..], &mut plain, FlushDecompress::Sync)
                        .is_err()
                    {
                        break;
                    }
                }
                (bytes.len(), plain.as_slice())
            }
            Ok(_) => continue,
            Err(_) => break,
        };
        let mut stats = lock(&stats);
        if stats.measuring {
            stats.record(
                wire as u64 + frame_overhead(wire),
                text,
                now,
                &mut heartbeat_counted,
            );
        }
    }
    let mut stats = lock(&stats);
    stats.disconnects += 1;
    stats.connected -= 1;
}

/// How viewers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    /// WebSocket through tokio-tungstenite (plain, or `--deflate` app-level).
    Ws,
    /// WebSocket offering RFC 7692 permessage-deflate (a raw client: tungstenite 0.24
    /// has no permessage-deflate).
    Pmd,
    /// Server-Sent Events (`/sse`) with `Accept-Encoding: gzip`.
    Sse,
}

/// A viewer on a raw socket: permessage-deflate WebSocket or gzip SSE. It records
/// what the tungstenite viewer records: messages, wire bytes, staleness.
async fn raw_viewer(args: Arc<Args>, source: Option<IpAddr>, symbols: Vec<String>, stats: Shared) {
    let sse = args.transport == Transport::Sse;
    let connected = async {
        let server: SocketAddr = args.server.parse().map_err(std::io::Error::other)?;
        let socket = TcpSocket::new_v4()?;
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let mut stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        let mut query = format!("symbols={}", symbols.join(","));
        if let Some(token) = &args.token {
            query.push_str(&format!("&token={token}"));
        }
        let request = if sse {
            format!(
                "GET /sse?{query}&max_hz={} HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: gzip\r\n\r\n",
                args.max_hz, args.server
            )
        } else {
            format!(
                "GET /ws?{query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
                args.server
            )
        };
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(16 * 1024);
        let end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed during the handshake"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let want = if sse { " 200 " } else { " 101 " };
        if !head.starts_with("http/1.1") || !head[8..13].contains(want.trim()) {
            return Err(std::io::Error::other(format!("refused: {}", head.lines().next().unwrap_or(""))));
        }
        if !sse && !head.contains("permessage-deflate") {
            return Err(std::io::Error::other("permessage-deflate was not negotiated"));
        }
        buf.drain(..end);
        Ok::<_, std::io::Error>((stream, buf))
    }
    .await;
    let (mut stream, mut buf) = match connected {
        Ok(ok) => ok,
        Err(e) => return connect_failed(&stats, &e),
    };
    lock(&stats).connected += 1;
    if !sse {
        let set = format!(r#"{{"op":"set","max_hz":{}}}"#, args.max_hz);
        if stream
            .write_all(&masked(0x1, set.as_bytes()))
            .await
            .is_err()
        {
            lock(&stats).disconnects += 1;
            return;
        }
    }
    let mut inflater = Decompress::new(false);
    let mut plain: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut events: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut gzip_header = 10usize;
    let mut heartbeat_counted = false;
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let now = now_ms();
        // Messages complete in `buf`: (wire bytes, plaintext JSON).
        let mut messages: Vec<(usize, Vec<u8>)> = Vec::new();
        if sse {
            // Chunked transfer, then one gzip member inflated as it comes.
            while let Some(line) = find(&buf, b"\r\n") {
                let size = std::str::from_utf8(&buf[..line])
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                let Some(size) = size else { break 'read };
                if buf.len() < line + 2 + size + 2 {
                    break;
                }
                if size == 0 {
                    break 'read;
                }
                let data: Vec<u8> = buf[line + 2..line + 2 + size].to_vec();
                buf.drain(..line + 2 + size + 2);
                let skip = gzip_header.min(data.len());
                gzip_header -= skip;
                plain.clear();
                plain.reserve(data.len() * 8 + 1024);
                if inflater
                    .decompress_vec(&data[skip..], &mut plain, FlushDecompress::Sync)
                    .is_err()
                {
                    break 'read;
                }
                events.extend_from_slice(&plain);
                let mut first = true;
                while let Some(end) = find(&events, b"\n\n") {
                    let event: Vec<u8> = events.drain(..end + 2).collect();
                    if let Some(at) = find(&event, b"data: ") {
                        let json = event[at + 6..].split(|&b| b == b'\n').next().unwrap_or(&[]);
                        // The chunk's wire bytes go with its first event.
                        let wire = if first { size + 4 } else { 0 };
                        first = false;
                        messages.push((wire, json.to_vec()));
                    }
                }
            }
        } else {
            while buf.len() >= 2 {
                let (len, header) = match buf[1] & 0x7F {
                    126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                    127 if buf.len() >= 10 => (
                        u64::from_be_bytes(buf[2..10].try_into().unwrap_or([0; 8])) as usize,
                        10,
                    ),
                    126 | 127 => break,
                    n => (usize::from(n), 2),
                };
                if buf.len() < header + len {
                    break;
                }
                let (first_byte, payload): (u8, Vec<u8>) =
                    (buf[0], buf[header..header + len].to_vec());
                buf.drain(..header + len);
                match first_byte & 0x0F {
                    0x8 => break 'read,
                    0x9 if stream.write_all(&masked(0xA, &payload)).await.is_err() => {
                        break 'read;
                    }
                    0x1 if first_byte & 0x40 != 0 => {
                        plain.clear();
                        plain.reserve(payload.len() * 8 + 1024);
                        let mut input = payload.clone();
                        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
                        if inflater
                            .decompress_vec(&input, &mut plain, FlushDecompress::Sync)
                            .is_err()
                        {
                            break 'read;
                        }
                        messages.push((len + header, plain.clone()));
                    }
                    0x1 => messages.push((len + header, payload)),
                    _ => {}
                }
            }
        }
        let mut stats = lock(&stats);
        if stats.measuring {
            for (wire, text) in &messages {
                stats.record(*wire as u64, text, now, &mut heartbeat_counted);
            }
        }
    }
    let mut stats = lock(&stats);
    stats.disconnects += 1;
    stats.connected -= 1;
}

/// A masked client frame (FIN set) of `opcode`.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x17, 0xc3, 0x9e];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Publishes R ticks a second in 10 ms batches with `ts` = send time; returns the
/// count the server acknowledged as accepted.
async fn publisher(args: Arc<Args>, universe: Arc<Vec<String>>, until: Instant) -> u64 {
    let Some(key) = args.publisher_key.clone() else {
        return 0;
    };
    let mut request = format!("ws://{}/ws/ingest", args.server)
        .into_client_request()
        .expect("a valid URL");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {key}").parse().expect("a valid header"),
    );
    let Ok((socket, _)) = tokio_tungstenite::connect_async(request).await else {
        eprintln!("publisher: cannot connect to /ws/ingest");
        return 0;
    };
    let (mut tx, mut rx) = socket.split();
    let acks = tokio::spawn(async move {
        let mut accepted = 0u64;
        while let Some(Ok(Message::Text(text))) = rx.next().await {
            if let Some(at) = text.find("\"accepted\":") {
                let digits: String = text[at + 11..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                accepted += digits.parse::<u64>().unwrap_or(0);
            }
        }
        accepted
    });
    // The ticks themselves (a random walk per symbol) are written once, up front,
    // without their `ts`; each batch copies the next ones and appends the send time.
    // Formatting every tick anew capped the publisher below 200,000 ticks/s.
    let mut prices: Vec<u64> = universe.iter().map(|_| 10_000).collect();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let pool: Vec<String> = (0..100_000)
        .map(|_| {
            let s = rng.random_range(0..universe.len());
            let cents = &mut prices[s];
            *cents = (*cents as i64 + rng.random_range(-3..=3)).max(100) as u64;
            format!(
                r#"{{"symbol":"{}","price":{}.{:02},"size":{},"bid":{}.{:02},"ask":{}.{:02},"ts":"#,
                universe[s],
                *cents / 100,
                *cents % 100,
                rng.random_range(1..10) * 100,
                (*cents - 1) / 100,
                (*cents - 1) % 100,
                (*cents + 1) / 100,
                (*cents + 1) % 100,
            )
        })
        .collect();
    let mut next = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut carry = 0.0;
    let mut req_id = 0u64;
    while Instant::now() < until {
        ticker.tick().await;
        carry += f64::from(args.ticks_per_second) / 100.0;
        let count = carry.floor() as usize;
        carry -= count as f64;
        if count == 0 {
            continue;
        }
        let ts = now_ms().to_string();
        let mut body = String::with_capacity(count * 110 + 64);
        req_id += 1;
        body.push_str(&format!(r#"{{"op":"publish","req_id":{req_id},"ticks":["#));
        for i in 0..count {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&pool[next]);
            body.push_str(&ts);
            body.push('}');
            next = (next + 1) % pool.len();
        }
        body.push_str("]}");
        if tx.send(Message::Text(body)).await.is_err() {
            eprintln!("publisher: socket closed");
            break;
        }
    }
    let _ = tx.close().await;
    acks.await.unwrap_or(0)
}

/// A blocking HTTP/1.1 request on loopback; returns (status, body).
fn http(
    server: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(server)?;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

/// The first `size` symbols of the server's universe, creating `LOADnnnn` symbols
/// through the admin API when it has fewer.
fn universe(args: &Args) -> anyhow::Result<Vec<String>> {
    let (status, body) = http(&args.server, "GET", "/api/v1/symbols", None, "")?;
    anyhow::ensure!(status == 200, "GET /api/v1/symbols answered {status}");
    let body: serde_json::Value = serde_json::from_str(&body)?;
    let mut symbols: Vec<String> = body["symbols"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["s"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut n = 0;
    while symbols.len() < args.universe {
        let key = args.admin_key.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "the server has {} symbols; pass --admin-key to create more",
                symbols.len()
            )
        })?;
        n += 1;
        let name = format!("LOAD{n:04}");
        if symbols.contains(&name) {
            continue;
        }
        let (status, _) = http(
            &args.server,
            "PUT",
            &format!("/api/v1/admin/symbols/{name}"),
            Some(key),
            r#"{"name":"Load test","pc":100}"#,
        )?;
        anyhow::ensure!(
            status == 201 || status == 200,
            "creating {name} answered {status}"
        );
        symbols.push(name);
    }
    symbols.truncate(args.universe);
    Ok(symbols)
}

/// CPU seconds (user + system), user CPU seconds and RSS in KiB of a process.
fn process_usage(pid: u32) -> Option<(f64, f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let user = fields.get(11)?.parse::<f64>().ok()?;
    let ticks = user + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((ticks / 100.0, user / 100.0, rss))
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let sources: Vec<IpAddr> = args
        .sources
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let universe = Arc::new(universe(&args)?);
    anyhow::ensure!(
        args.symbols_per_viewer <= universe.len(),
        "symbols-per-viewer exceeds the universe"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let stats: Shared = Arc::new(Mutex::new(Stats::new()));
    let report = runtime.block_on(async {
        // The server's RSS before any viewer connects: the baseline of the per-viewer
        // memory figure (issue 13, target 1).
        let rss_before_connect = args.server_pid.and_then(process_usage).map(|(_, _, rss)| rss);
        let started = Instant::now();
        // Ramp: spawn viewers at the configured rate.
        let mut rng = rand::rng();
        let interval = Duration::from_secs_f64(1.0 / f64::from(args.ramp.max(1)));
        for i in 0..args.viewers {
            let picked: Vec<String> = rand::seq::index::sample(&mut rng, universe.len(), args.symbols_per_viewer)
                .into_iter()
                .map(|j| universe[j].clone())
                .collect();
            let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
            if args.transport == Transport::Ws {
                tokio::spawn(viewer(args.clone(), source, picked, stats.clone()));
            } else {
                tokio::spawn(raw_viewer(args.clone(), source, picked, stats.clone()));
            }
            if i % 50 == 49 {
                tokio::time::sleep(interval * 50).await;
            }
        }
        // Wait for the ramp to settle (every viewer connected or failed).
        let settle_until = Instant::now() + Duration::from_secs(60);
        while {
            let s = lock(&stats);
            s.connected + s.connect_errors < args.viewers && Instant::now() < settle_until
        } {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ramp_seconds = started.elapsed().as_secs_f64();
        let measure_end = Instant::now() + Duration::from_secs(args.warmup + args.seconds);
        let publisher = tokio::spawn(publisher(args.clone(), universe.clone(), measure_end));
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        let usage_before = args.server_pid.and_then(process_usage);
        lock(&stats).start_measuring();
        let window = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let elapsed = window.elapsed().as_secs_f64();
        let usage_after = args.server_pid.and_then(process_usage);
        lock(&stats).measuring = false;
        let accepted = publisher.await.unwrap_or(0);
        let s = lock(&stats);
        let q = |p: f64| s.staleness_ms.value_at_quantile(p);
        serde_json::json!({
            "viewers": args.viewers,
            "symbols_per_viewer": args.symbols_per_viewer,
            "universe": universe.len(),
            "ticks_per_second": args.ticks_per_second,
            "max_hz": args.max_hz,
            "deflate": args.deflate,
            "transport": format!("{:?}", args.transport).to_lowercase(),
            "generator_threads": args.threads,
            "ramp_seconds": (ramp_seconds * 10.0).round() / 10.0,
            "connections_held": s.connected,
            "connect_errors": s.connect_errors,
            "disconnects": s.disconnects,
            "ticks_accepted": accepted,
            "ticks_accepted_per_second": (accepted as f64 / (args.warmup + args.seconds) as f64).round(),
            "messages_per_second": (s.messages as f64 / elapsed).round(),
            "heartbeats_per_second": (s.heartbeats as f64 / elapsed).round(),
            "viewers_with_heartbeat": s.viewers_with_heartbeat,
            "symbol_updates_per_second": (s.symbol_updates as f64 / elapsed).round(),
            "wire_bytes_per_symbol_update": ((s.wire_bytes as f64 / s.symbol_updates.max(1) as f64) * 10.0).round() / 10.0,
            "staleness_ms": {
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99.9": q(0.999), "max": s.staleness_ms.max(),
                "samples": s.staleness_ms.len(),
            },
            "server_cpu_cores": match (usage_before, usage_after) {
                (Some((a, _, _)), Some((b, _, _))) => serde_json::json!(((b - a) / elapsed * 1000.0).round() / 1000.0),
                _ => serde_json::Value::Null,
            },
            "server_user_cpu_cores": match (usage_before, usage_after) {
                (Some((_, a, _)), Some((_, b, _))) => serde_json::json!(((b - a) / elapsed * 1000.0).round() / 1000.0),
                _ => serde_json::Value::Null,
            },
            "server_rss_kib": usage_after.map(|(_, _, rss)| rss),
            "server_rss_before_connect_kib": rss_before_connect,
            "rss_per_viewer_kib": match (rss_before_connect, usage_after) {
                (Some(before), Some((_, _, after))) if s.connected > 0 => serde_json::json!(
                    ((after.saturating_sub(before)) as f64 / s.connected as f64 * 100.0).round() / 100.0
                ),
                _ => serde_json::Value::Null,
            },
            "measured_seconds": (elapsed * 10.0).round() / 10.0,
        })
    });
    print_table(&report);
    println!("{report}");
    std::process::exit(0);
}

fn print_table(r: &serde_json::Value) {
    let rows = [
        (
            "viewers x symbols (universe)",
            format!(
                "{} x {} ({})",
                r["viewers"], r["symbols_per_viewer"], r["universe"]
            ),
        ),
        (
            "ticks/s, max_hz, deflate",
            format!(
                "{}, {}, {}",
                r["ticks_per_second"], r["max_hz"], r["deflate"]
            ),
        ),
        ("connections held", r["connections_held"].to_string()),
        (
            "connect errors / disconnects",
            format!("{} / {}", r["connect_errors"], r["disconnects"]),
        ),
        ("ticks accepted", r["ticks_accepted"].to_string()),
        ("messages/s", r["messages_per_second"].to_string()),
        (
            "symbol-updates/s",
            r["symbol_updates_per_second"].to_string(),
        ),
        (
            "wire bytes per symbol-update",
            r["wire_bytes_per_symbol_update"].to_string(),
        ),
        (
            "staleness ms p50/p90/p99/p99.9/max",
            format!(
                "{}/{}/{}/{}/{}",
                r["staleness_ms"]["p50"],
                r["staleness_ms"]["p90"],
                r["staleness_ms"]["p99"],
                r["staleness_ms"]["p99.9"],
                r["staleness_ms"]["max"]
            ),
        ),
        (
            "server CPU (cores, user)",
            format!("{} ({})", r["server_cpu_cores"], r["server_user_cpu_cores"]),
        ),
        ("server RSS (KiB)", r["server_rss_kib"].to_string()),
        (
            "RSS per viewer (KiB, after minus before connecting)",
            r["rss_per_viewer_kib"].to_string(),
        ),
    ];
    println!("| metric | value |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
}

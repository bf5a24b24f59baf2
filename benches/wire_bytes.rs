//! Bytes on the wire per symbol-update: plain JSON vs DEFLATE (several compressor
//! settings) vs the same update sent as a full plain-JSON quote.
//!
//! Run: `cargo bench --bench wire_bytes` (optional args: seconds, clients per variant).
//! The server runs in-process with the seeded simulator at its default rate; every
//! client subscribes to the same 20 symbols at max_hz 10. Wire bytes include the
//! WebSocket frame header (server frames are unmasked: 2 bytes under 126, else 4).

use std::collections::BTreeMap;
use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tickstream::config::Settings;
use tickstream::startup::Application;
use tokio_tungstenite::tungstenite::Message;

const SYMBOLS: [&str; 20] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "MA", "UNH", "XOM", "JNJ",
    "PG", "HD", "COST", "SPY", "QQQ", "NFLX", "AMD",
];

#[derive(Default, Debug)]
struct Tally {
    wire_bytes: u64,
    symbol_updates: u64,
    full_quote_bytes: u64,
    messages: u64,
}

fn frame_header(len: usize) -> u64 {
    if len < 126 {
        2
    } else if len < 65_536 {
        4
    } else {
        10
    }
}

async fn run_client(port: u16, deflate: bool, seconds: u64) -> Tally {
    let query = if deflate { "&compression=deflate" } else { "" };
    let url = format!(
        "ws://127.0.0.1:{port}/ws?symbols={}{query}",
        SYMBOLS.join(",")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut inflater = Decompress::new(false);
    let mut view: BTreeMap<String, Value> = BTreeMap::new();
    let mut tally = Tally::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut measuring = false;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let (text, wire) = match frame {
            Message::Text(t) => {
                let len = t.len();
                (t, len)
            }
            Message::Binary(b) => {
                let mut out = Vec::with_capacity(b.len() * 8 + 1024);
                let start = inflater.total_in();
                while ((inflater.total_in() - start) as usize) < b.len()
                    || out.len() == out.capacity()
                {
                    out.reserve(8192);
                    let used = (inflater.total_in() - start) as usize;
                    inflater
                        .decompress_vec(&b[used..], &mut out, FlushDecompress::Sync)
                        .expect("inflate");
                }
                (String::from_utf8(out).expect("utf8"), b.len())
            }
            _ => continue,
        };
        let message: Value = serde_json::from_str(text.trim_end()).expect("json");
        let kind = message["type"].as_str().unwrap_or("");
        for quote in message["quotes"].as_array().into_iter().flatten() {
            let s = quote["s"].as_str().unwrap().to_owned();
            let entry = view.entry(s.clone()).or_insert_with(|| json!({"s": s}));
            for (k, v) in quote.as_object().unwrap() {
                entry[k] = v.clone();
            }
            if kind == "update" && measuring {
                tally.symbol_updates += 1;
                tally.full_quote_bytes += entry.to_string().len() as u64;
            }
        }
        if kind == "update" {
            // Skip the first update: it may carry the backlog since the snapshot.
            if measuring {
                tally.messages += 1;
                tally.wire_bytes += wire as u64 + frame_header(wire);
            }
            measuring = true;
        }
    }
    let _ = ws.close(None).await;
    tally
}

async fn measure(level: u32, dictionary: usize, seconds: u64, clients: usize) -> (Tally, Tally) {
    let mut settings = Settings::from_sources(&[], Vec::<(String, String)>::new()).unwrap();
    settings.server.port = 0;
    // Memory only: a restored state would change what the seeded simulator sends.
    settings.store.data_dir = String::new();
    settings.simulator.seed = Some(7);
    settings.stream.deflate_level = level;
    settings.stream.deflate_dictionary_bytes = dictionary;
    let app = Application::build(settings).await.expect("app");
    let port = app.port();
    let shutdown = app.shutdown_token().clone();
    let server = actix_web::rt::spawn(app.run_until_stopped());
    let mut tasks = Vec::new();
    for i in 0..clients * 2 {
        tasks.push(actix_web::rt::spawn(run_client(port, i % 2 == 1, seconds)));
    }
    let (mut plain, mut deflate) = (Tally::default(), Tally::default());
    for (i, task) in tasks.into_iter().enumerate() {
        let t = task.await.expect("client");
        let into = if i % 2 == 1 { &mut deflate } else { &mut plain };
        into.wire_bytes += t.wire_bytes;
        into.symbol_updates += t.symbol_updates;
        into.full_quote_bytes += t.full_quote_bytes;
        into.messages += t.messages;
    }
    shutdown.cancel();
    let _ = server.await;
    (plain, deflate)
}

fn per_update(t: &Tally) -> f64 {
    t.wire_bytes as f64 / t.symbol_updates.max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(10);
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    println!("wire bytes per symbol-update: {clients} plain + {clients} deflate clients x 20 symbols, {seconds} s, simulator 300 ticks/s over 100 symbols, max_hz 10");
    println!("| deflate level | dictionary bytes | full quote (plain JSON) | plain update | deflate update | deflate / full | symbol-updates per message |");
    println!("|---|---|---|---|---|---|---|");
    for (level, dictionary) in [(1, 0), (1, 1024), (1, 4096), (1, 32768), (6, 4096)] {
        let (plain, deflate) =
            actix_web::rt::System::new().block_on(measure(level, dictionary, seconds, clients));
        let full = plain.full_quote_bytes as f64 / plain.symbol_updates.max(1) as f64;
        println!(
            "| {level} | {dictionary} | {full:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            per_update(&plain),
            per_update(&deflate),
            per_update(&deflate) / full,
            plain.symbol_updates as f64 / plain.messages.max(1) as f64,
        );
    }
}

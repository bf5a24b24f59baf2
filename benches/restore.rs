//! Ready after a restart with a full data file: the time from starting the release
//! server on a data directory to its first `200` from `/readyz`, and the file's size.
//!
//! Run: `cargo bench --bench restore` (optional args: SYMBOLS SECOND_BARS MINUTE_BARS
//! DAY_BARS RUNS, default 10000 3600 5460 400 5: 10,000 symbols with the default
//! retention full, 1 hour of 1 s bars, 14 days x 390 of 1 m bars, 400 days). The data
//! file is written first through the store and its durable writer (as a vendor
//! backfill would write it), in commits of 50 symbols; then the server starts on it
//! RUNS times after graceful stops and RUNS times after kill -9, each start timed
//! to its first `/readyz` 200, and both medians are printed. Bounded: SYMBOLS x (bar
//! counts) bars, 2 x (RUNS + 1) starts.

mod support;

use std::time::{Duration, Instant};

use tickstream::domain::{Price, Symbol, SymbolId};
use tickstream::store::{Bar, Durable, Interval, Retention, SnapshotStore};

use support::{arg, start_server, TempDir};

fn bars(count: u64, step: i64, newest: i64) -> Vec<Bar> {
    (0..count as i64)
        .map(|i| {
            let price = Price::from_micros(100_000_000 + (i % 977) * 10_000);
            Bar {
                t: newest - (count as i64 - 1 - i) * step,
                o: price,
                h: price,
                l: price,
                c: price,
                v: 100 + i as u64 % 50,
            }
        })
        .collect()
}

fn main() {
    let symbols = arg(1, 10_000) as usize;
    let counts = [arg(2, 3_600), arg(3, 5_460), arg(4, 400)];
    let runs = arg(5, 5) as usize;
    let dir = TempDir::new("restore-bench");
    let data = dir.join("data");
    const DAY: i64 = 86_400_000;
    let newest = 1_764_072_000_000; // 2025-11-25 12:00 UTC
    let retention = Retention {
        second_bars_ms: 3_600_000,
        minute_bars_ms: 14 * DAY,
        day_bars_ms: 400 * DAY,
    };

    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    {
        let store = SnapshotStore::new(symbols);
        let durable = Durable::open(&data, &store, Duration::from_millis(200), retention).unwrap();
        let series = [
            (Interval::OneSecond, bars(counts[0], 1_000, newest)),
            (Interval::OneMinute, bars(counts[1], 60_000, newest)),
            (
                Interval::OneDay,
                bars(counts[2], DAY, newest - newest % DAY - DAY),
            ),
        ];
        // Two rounds per 50 symbols, each at most 3,000 bars of an interval per symbol,
        // so what a ring lets go stays within what it keeps for the writer.
        for chunk in (0..symbols).collect::<Vec<_>>().chunks(50) {
            let ids: Vec<SymbolId> = chunk
                .iter()
                .map(|n| {
                    let symbol = Symbol::parse(&format!("S{n:05}")).unwrap();
                    store.upsert_symbol(symbol, Some("Bench"), None).unwrap().0
                })
                .collect();
            for round in 0..2 {
                for &id in &ids {
                    for (interval, bars) in &series {
                        let half = bars.len().div_ceil(2);
                        let piece = if round == 0 {
                            &bars[half..]
                        } else {
                            &bars[..half]
                        };
                        store.merge_bars(id, *interval, piece, i64::MAX);
                    }
                }
                runtime
                    .block_on(durable.wait_stored(store.generation()))
                    .unwrap();
            }
        }
        durable.close().unwrap();
    }
    let file = data.join(tickstream::store::DATA_FILE);
    let bytes = std::fs::metadata(&file).unwrap().len();
    println!(
        "wrote {symbols} symbols x {counts:?} bars in {:.0} s: {bytes} bytes ({:.1} MiB)",
        started.elapsed().as_secs_f64(),
        bytes as f64 / (1 << 20) as f64
    );

    // Graceful stops first (SIGTERM: the file is closed cleanly, the next start only
    // reads what it needs), then crashes (kill -9: redb checks and repairs the whole
    // file at the next start, so that start takes time in proportion to its size).
    for (how, graceful) in [("after SIGTERM", true), ("after kill -9", false)] {
        let mut times = Vec::new();
        // One start to leave the file as this kind of stop leaves it.
        stop(start(&data, symbols).0, graceful);
        for run in 0..runs {
            let (server, elapsed) = start(&data, symbols);
            println!(
                "{how}, run {}: ready after {:.0} ms",
                run + 1,
                elapsed.as_secs_f64() * 1e3
            );
            times.push(elapsed);
            stop(server, graceful);
        }
        times.sort();
        println!(
            "median ready {how}: {:.0} ms ({runs} runs)",
            times[times.len() / 2].as_secs_f64() * 1e3
        );
    }
}

/// Starts the server on `data` and waits for `/readyz`; returns it and the time taken.
fn start(data: &std::path::Path, symbols: usize) -> (support::ServerProcess, Duration) {
    let begun = Instant::now();
    let max_symbols = (symbols + 1_000).to_string();
    let server = start_server(&[
        ("TICKSTREAM__SIMULATOR__ENABLED", "false"),
        ("TICKSTREAM__STORE__DATA_DIR", data.to_str().unwrap()),
        ("TICKSTREAM__STORE__MAX_SYMBOLS", &max_symbols),
    ]);
    let deadline = begun + Duration::from_secs(120);
    while !ready(server.port) {
        assert!(Instant::now() < deadline, "not ready within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    (server, begun.elapsed())
}

fn stop(mut server: support::ServerProcess, graceful: bool) {
    if graceful {
        server.sigterm();
        let (status, _) = server.wait_for_exit(Duration::from_secs(60));
        assert!(status.success(), "graceful stop: {status:?}");
    } else {
        server.kill();
    }
}

/// `/readyz` answers 200.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

//! Criterion micro-benchmarks of the per-tick and per-flush hot path.
//!
//! Run: `cargo bench --bench hot_path` (a criterion filter may follow `--`).
//!
//! Groups:
//! - `apply`: `SnapshotStore::apply_batch` of 1 tick and of a 100-tick batch over 100
//!   symbols (a mix of trade, book and trade+book ticks with cent prices).
//! - `update`: diff + encode of one `update` for K subscribed symbols of a 500-symbol
//!   store. The ticks that change the symbols are applied in `iter_batched` setup
//!   (`BatchSize::PerIteration`, so exactly one apply precedes each timed
//!   `write_update`); only `write_update` into a reused, cleared `Vec` is timed.
//!   `k20_apply_included` times apply + write_update together with plain `iter` as a
//!   cross-check.
//! - `snapshot`: `write_snapshot` of 20 fully populated symbols.
//! - `deflate`: one ~400-byte `update` message (+ `\n`) per iteration, cycling through
//!   256 consecutive distinct messages so the dictionary never holds an exact copy.
//! - `parse`: one client request and one ingest tick.
//!
//! All inputs come from a fixed-seed generator: runs are deterministic.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tickstream::deflate::DeflateStream;
use tickstream::domain::{Price, Symbol, SymbolId, Tick};
use tickstream::ingest::parse_tick;
use tickstream::store::SnapshotStore;
use tickstream::stream::{parse_request, Subscriptions};

const REAL_SYMBOLS: [&str; 20] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "MA", "UNH", "XOM", "JNJ",
    "PG", "HD", "COST", "SPY", "QQQ", "NFLX", "AMD",
];
const UNIVERSE: usize = 500;
/// 2025-11-25 12:00:00 UTC in milliseconds.
const START_TS: i64 = 1_764_072_000_000;
const CENT: i64 = 10_000;

/// A deterministic market: a cent-tick random walk per symbol, one-cent spreads and
/// round-lot sizes.
struct Market {
    rng: u64,
    cents: Vec<i64>,
    ts: i64,
}

impl Market {
    fn new(symbols: usize) -> Market {
        let mut market = Market {
            rng: 0x5eed_1234_abcd_0001,
            cents: Vec::new(),
            ts: START_TS,
        };
        market.cents = (0..symbols)
            .map(|_| 1_000 + (market.next() % 49_000) as i64)
            .collect();
        market
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn previous_close(&self, index: usize) -> Price {
        Price::from_micros(self.cents[index] * CENT)
    }

    /// One tick for `index`: a third are trades, a third book updates, a third both.
    fn tick(&mut self, index: usize) -> Tick {
        self.ts += 1 + (self.next() % 3) as i64;
        let r = self.next();
        let step = (r % 7) as i64 - 3;
        let cents = (self.cents[index] + step).max(100);
        self.cents[index] = cents;
        let lots = |bits: u64| 100 * (1 + bits % 20);
        let mut tick = Tick {
            symbol: SymbolId(index as u32),
            ts: self.ts,
            ..Tick::default()
        };
        let kind = (r >> 8) % 3;
        if kind != 1 {
            tick.price = Some(Price::from_micros(cents * CENT));
            tick.size = Some(lots(r >> 16));
        }
        if kind != 0 {
            tick.bid = Some(Price::from_micros((cents - 1) * CENT));
            tick.bid_size = Some(lots(r >> 24));
            tick.ask = Some(Price::from_micros((cents + 1) * CENT));
            tick.ask_size = Some(lots(r >> 32));
        }
        tick
    }
}

fn symbol_name(index: usize) -> String {
    if index < REAL_SYMBOLS.len() {
        return REAL_SYMBOLS[index].to_owned();
    }
    // Z + three letters: unique and never one of the real tickers.
    let letter = |n: usize| char::from(b'A' + (n % 26) as u8);
    format!(
        "Z{}{}{}",
        letter(index / 676),
        letter(index / 26),
        letter(index)
    )
}

/// A store of `symbols` symbols (capacity 512), each with a previous close and one
/// full trade+book tick so every quote field is present.
fn market_store(symbols: usize) -> (SnapshotStore, Market) {
    let store = SnapshotStore::new(512);
    let mut market = Market::new(symbols);
    for index in 0..symbols {
        let name = symbol_name(index);
        let id = store
            .add_symbol(
                Symbol::parse(&name).unwrap(),
                &name,
                Some(market.previous_close(index)),
            )
            .unwrap();
        assert_eq!(id, SymbolId(index as u32), "symbols get dense ids");
    }
    let mut warm = Vec::new();
    while warm.len() < symbols * 3 {
        let index = warm.len() % symbols;
        warm.push(market.tick(index));
    }
    store.apply_batch(&warm);
    (store, market)
}

/// Subscriptions to ids `0..k`, with the snapshot sent (the diff baseline set).
fn subscribed(store: &SnapshotStore, k: usize) -> Subscriptions {
    let mut subs = Subscriptions::default();
    let ids: Vec<SymbolId> = (0..k as u32).map(SymbolId).collect();
    subs.add(&ids);
    let mut out = Vec::new();
    subs.write_snapshot(store, None, &mut out);
    subs
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30)
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");

    let (store, mut market) = market_store(100);
    group.throughput(Throughput::Elements(1));
    group.bench_function("1_tick", |b| {
        b.iter_batched(
            || [market.tick(7)],
            |batch| store.apply_batch(black_box(&batch)),
            BatchSize::SmallInput,
        )
    });

    let (store, mut market) = market_store(100);
    group.throughput(Throughput::Elements(100));
    group.bench_function("100_ticks_100_symbols", |b| {
        b.iter_batched(
            || (0..100).map(|i| market.tick(i)).collect::<Vec<Tick>>(),
            |batch| store.apply_batch(black_box(&batch)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("update");
    let (store, mut market) = market_store(UNIVERSE);

    // Every subscribed symbol changed since the last flush.
    for k in [20usize, 500] {
        let mut subs = subscribed(&store, k);
        let mut out = Vec::with_capacity(64 * 1024);
        let mut batch = Vec::with_capacity(k);
        group.throughput(Throughput::Elements(k as u64));
        group.bench_function(format!("k{k}_all_changed"), |b| {
            b.iter_batched(
                || {
                    batch.clear();
                    batch.extend((0..k).map(|i| market.tick(i)));
                    store.apply_batch(&batch);
                },
                |()| {
                    out.clear();
                    let stats = subs.write_update(&store, &mut out);
                    debug_assert_eq!(stats.quotes, k);
                    black_box(stats)
                },
                BatchSize::PerIteration,
            )
        });
    }

    // 5 of 20 changed (rotating through the 20): the common conflated case.
    let mut subs = subscribed(&store, 20);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut round = 0usize;
    group.throughput(Throughput::Elements(5));
    group.bench_function("k20_5_changed", |b| {
        b.iter_batched(
            || {
                round += 1;
                let batch: Vec<Tick> = (0..5).map(|j| market.tick(j * 4 + round % 4)).collect();
                store.apply_batch(&batch);
            },
            |()| {
                out.clear();
                let stats = subs.write_update(&store, &mut out);
                debug_assert_eq!(stats.quotes, 5);
                black_box(stats)
            },
            BatchSize::PerIteration,
        )
    });

    // Nothing changed: the scan-only cost (20 atomic version loads).
    let mut subs = subscribed(&store, 20);
    group.throughput(Throughput::Elements(20));
    group.bench_function("k20_none_changed", |b| {
        b.iter(|| {
            out.clear();
            let stats = subs.write_update(&store, &mut out);
            debug_assert_eq!(stats.quotes, 0);
            black_box(stats)
        })
    });

    // Cross-check of the PerIteration numbers: apply and write_update both timed.
    let mut subs = subscribed(&store, 20);
    let mut batch = Vec::with_capacity(20);
    group.throughput(Throughput::Elements(20));
    group.bench_function("k20_apply_included", |b| {
        b.iter(|| {
            batch.clear();
            batch.extend((0..20).map(|i| market.tick(i)));
            store.apply_batch(&batch);
            out.clear();
            black_box(subs.write_update(&store, &mut out))
        })
    });
    group.finish();
}

fn bench_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    let (store, _) = market_store(UNIVERSE);
    let mut subs = subscribed(&store, 20);
    let mut out = Vec::with_capacity(64 * 1024);
    subs.write_snapshot(&store, None, &mut out);
    eprintln!("snapshot/20_symbols: {} bytes of quotes", out.len());
    group.throughput(Throughput::Elements(20));
    group.bench_function("20_symbols", |b| {
        b.iter(|| {
            out.clear();
            black_box(subs.write_snapshot(&store, None, &mut out))
        })
    });
    group.finish();
}

/// 256 consecutive `update` messages of a 20-symbol subscription where 5 symbols
/// changed per flush, each framed as the session frames it (JSON + `\n`).
fn update_messages() -> Vec<Vec<u8>> {
    let (store, mut market) = market_store(UNIVERSE);
    let mut subs = subscribed(&store, 20);
    (0..256usize)
        .map(|seq| {
            let batch: Vec<Tick> = (0..5).map(|j| market.tick(j * 4 + seq % 4)).collect();
            store.apply_batch(&batch);
            let mut msg =
                format!("{{\"type\":\"update\",\"seq\":{},\"quotes\":[", seq + 2).into_bytes();
            let stats = subs.write_update(&store, &mut msg);
            assert_eq!(stats.quotes, 5);
            msg.extend_from_slice(b"]}\n");
            msg
        })
        .collect()
}

/// Compresses with a sync flush, as the session's codec does.
fn deflate_sync(compressor: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    let start = compressor.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(input.len() + 256);
        }
        let consumed = (compressor.total_in() - start) as usize;
        let status = compressor
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .unwrap();
        let consumed = (compressor.total_in() - start) as usize;
        assert!(!matches!(status, Status::StreamEnd));
        if consumed == input.len() && out.len() < out.capacity() {
            return;
        }
    }
}

fn inflate(inflater: &mut Decompress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 16 + 1024);
    let start = inflater.total_in();
    while ((inflater.total_in() - start) as usize) < input.len() {
        let consumed = (inflater.total_in() - start) as usize;
        out.reserve(4096);
        inflater
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .unwrap();
    }
    out
}

fn bench_deflate(c: &mut Criterion) {
    let messages = update_messages();
    let plain: usize = messages.iter().map(Vec::len).sum();
    let mean_plain = plain as f64 / messages.len() as f64;
    eprintln!("deflate: mean update message {mean_plain:.0} bytes (incl. \\n)");

    let mut group = c.benchmark_group("deflate");
    group.throughput(Throughput::Elements(1));
    for (name, level, dictionary) in [
        // Level 1: the per-connection fast encoder (history window as "dictionary").
        ("fast_l1_window4096", 1, 4096),
        ("fast_l1_window0", 1, 0),
        ("fast_l1_window32768", 1, 32 * 1024),
        // Levels 2-9: the shared zlib compressor primed with the history.
        ("primed_zlib_l2_dict4096", 2, 4096),
        ("primed_zlib_l6_dict4096", 6, 4096),
    ] {
        // One pass over the cycle: fills the dictionary, checks that one inflater
        // decodes the connection, and measures the compressed size.
        let mut stream = DeflateStream::new(level, dictionary);
        let mut inflater = Decompress::new(false);
        let mut wire = Vec::with_capacity(4096);
        let mut compressed = 0;
        for msg in &messages {
            wire.clear();
            stream.compress(msg, &mut wire).unwrap();
            assert_eq!(&inflate(&mut inflater, &wire), msg);
            compressed += wire.len();
        }
        eprintln!(
            "deflate/{name}: mean {:.0} bytes/message ({:.1}% of plain)",
            compressed as f64 / messages.len() as f64,
            100.0 * compressed as f64 / plain as f64
        );
        let mut next = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let msg = &messages[next % messages.len()];
                next += 1;
                wire.clear();
                stream.compress(black_box(msg), &mut wire).unwrap();
                black_box(wire.len())
            })
        });
    }

    // The rejected alternative: one stateful zlib stream per connection.
    let mut compressor = Compress::new(Compression::new(1), false);
    let mut inflater = Decompress::new(false);
    let mut wire = Vec::with_capacity(4096);
    let mut compressed = 0;
    for msg in &messages {
        wire.clear();
        deflate_sync(&mut compressor, msg, &mut wire);
        assert_eq!(&inflate(&mut inflater, &wire), msg);
        compressed += wire.len();
    }
    eprintln!(
        "deflate/stateful_l1: mean {:.0} bytes/message ({:.1}% of plain)",
        compressed as f64 / messages.len() as f64,
        100.0 * compressed as f64 / plain as f64
    );
    let mut next = 0usize;
    group.bench_function("stateful_l1", |b| {
        b.iter(|| {
            let msg = &messages[next % messages.len()];
            next += 1;
            wire.clear();
            deflate_sync(&mut compressor, black_box(msg), &mut wire);
            black_box(wire.len())
        })
    });
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let request = r#"{"op":"subscribe","symbols":["AAPL","MSFT"],"req_id":1}"#;
    assert!(parse_request(request).is_ok());
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function("request_subscribe", |b| {
        b.iter(|| parse_request(black_box(request)))
    });

    let tick = r#"{"symbol":"AAPL","price":189.12,"size":100,"bid":189.11,"bid_size":300,"ask":189.13,"ask_size":200,"ts":1764072000123,"seq":42}"#;
    assert!(parse_tick(tick).is_ok());
    group.throughput(Throughput::Bytes(tick.len() as u64));
    group.bench_function("tick", |b| b.iter(|| parse_tick(black_box(tick))));
    group.finish();
}

criterion_group! {
    name = hot_path;
    config = config();
    targets = bench_apply, bench_update, bench_snapshot, bench_deflate, bench_parse
}
criterion_main!(hot_path);

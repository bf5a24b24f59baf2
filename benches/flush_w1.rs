//! W1's per-flush work in one process, without sockets: the diff, the JSON and the
//! DEFLATE encoder of 10,000 sessions whose state is as cold in cache as in the server.
//!
//! Run: `cargo bench --bench flush_w1` (optional args: SESSIONS VIRTUAL_SECONDS, default
//! 10000 3). Also under `valgrind --tool=callgrind` for instruction counts that do not
//! depend on the machine's load.
//!
//! Virtual time advances in 1 ms steps: each step applies 10 random trade+book ticks
//! over 500 symbols (10,000 ticks/s), then flushes the sessions whose 250 ms turn it is
//! (`max_hz` 4: 40 sessions a step at 10,000 sessions), each subscribed to 20 random
//! symbols, with deflate. Only the flushes are timed: envelope + `write_update` + `\n`
//! + compression + the copy into an owned frame, as `Session::flush` does.
//!
//! It also reports, for the idea of sharing encoded fragments between sessions, how
//! often a sent symbol's version is exactly one after the one that session last saw
//! (the only case where "the diff against the previous version" is this client's
//! diff), and how often the same (symbol, version, changed fields) fragment was
//! already written for another session (the best case for a per-worker cache).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use tickstream::deflate::DeflateStream;
use tickstream::domain::{Price, Symbol, SymbolId, Tick};
use tickstream::store::SnapshotStore;
use tickstream::stream::Subscriptions;

const UNIVERSE: usize = 500;
const PER_SESSION: usize = 20;
const TICKS_PER_MS: usize = 10;
const PERIOD_MS: usize = 250;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Session {
    subs: Subscriptions,
    deflate: DeflateStream,
    seq: u64,
    /// Version of each subscribed symbol when this session last sent it (by id).
    seen: Vec<(SymbolId, u64)>,
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let sessions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seconds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut rng = Rng(0x5eed_0000_0000_0001);
    let store = SnapshotStore::new(UNIVERSE);
    let mut cents: Vec<i64> = Vec::with_capacity(UNIVERSE);
    for i in 0..UNIVERSE {
        let name = format!("L{i:04}");
        let c = 1_000 + rng.below(40_000) as i64;
        cents.push(c);
        store
            .add_symbol(
                Symbol::parse(&name).unwrap(),
                &name,
                Some(Price::from_micros(c * 10_000)),
            )
            .unwrap();
    }
    let mut ts = 1_764_072_000_000i64;
    let mut tick = |rng: &mut Rng, ts: i64| {
        let s = rng.below(UNIVERSE);
        cents[s] = (cents[s] + rng.below(7) as i64 - 3).max(100);
        let c = cents[s];
        Tick {
            symbol: SymbolId(s as u32),
            price: Some(Price::from_micros(c * 10_000)),
            size: Some((1 + rng.below(9) as u64) * 100),
            bid: Some(Price::from_micros((c - 1) * 10_000)),
            ask: Some(Price::from_micros((c + 1) * 10_000)),
            ts,
            ..Tick::default()
        }
    };
    // Every symbol traded once, so quotes are complete.
    let warm: Vec<Tick> = (0..UNIVERSE * 3).map(|_| tick(&mut rng, ts)).collect();
    store.apply_batch(&warm);
    let mut all: Vec<Session> = (0..sessions)
        .map(|_| {
            let mut subs = Subscriptions::default();
            let mut ids: Vec<SymbolId> = Vec::new();
            while ids.len() < PER_SESSION {
                let id = SymbolId(rng.below(UNIVERSE) as u32);
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            subs.add(&ids);
            let mut deflate = DeflateStream::new(1, 4096);
            let mut json = b"{\"type\":\"snapshot\",\"seq\":1,\"quotes\":[".to_vec();
            subs.write_snapshot(&store, None, &mut json);
            json.extend_from_slice(b"]}\n");
            let mut wire = Vec::new();
            deflate.compress(&json, &mut wire).unwrap();
            let seen = ids.iter().map(|&id| (id, store.version(id))).collect();
            Session {
                subs,
                deflate,
                seq: 1,
                seen,
            }
        })
        .collect();
    let mut json: Vec<u8> = Vec::with_capacity(4096);
    let mut wire: Vec<u8> = Vec::with_capacity(4096);
    let mut timed = Duration::ZERO;
    // Of which the JSON (envelope + `write_update`), the part without compression.
    let mut json_timed = Duration::ZERO;
    let (mut messages, mut plain_bytes, mut wire_bytes, mut quotes) = (0u64, 0u64, 0u64, 0u64);
    let (mut next_version, mut fragment_hits) = (0u64, 0u64);
    let mut fragments: HashSet<(u32, u64, u64)> = HashSet::new();
    let mut sink = 0usize;
    let steps = (seconds + 1) * 1000;
    for step in 0..steps {
        ts += 1;
        let batch: Vec<Tick> = (0..TICKS_PER_MS).map(|_| tick(&mut rng, ts)).collect();
        store.apply_batch(&batch);
        let measuring = step >= 1000;
        if step % 1000 == 0 {
            fragments.clear();
        }
        let phase = step % PERIOD_MS;
        let mut i = phase;
        while i < sessions {
            let session = &mut all[i];
            i += PERIOD_MS;
            let started = Instant::now();
            json.clear();
            json.extend_from_slice(b"{\"type\":\"update\",\"seq\":");
            json.extend_from_slice(itoa::Buffer::new().format(session.seq + 1).as_bytes());
            json.extend_from_slice(b",\"quotes\":[");
            let stats = session.subs.write_update(&store, &mut json);
            if stats.quotes == 0 {
                continue;
            }
            session.seq += 1;
            json.extend_from_slice(b"]}\n");
            let json_done = started.elapsed();
            wire.clear();
            session.deflate.compress(&json, &mut wire).unwrap();
            let frame = actix_web::web::Bytes::copy_from_slice(&wire);
            if measuring {
                timed += started.elapsed();
                json_timed += json_done;
            }
            sink = sink.wrapping_add(frame.len());
            if !measuring {
                for entry in &mut session.seen {
                    entry.1 = store.version(entry.0);
                }
                continue;
            }
            messages += 1;
            plain_bytes += json.len() as u64;
            wire_bytes += wire.len() as u64;
            quotes += stats.quotes as u64;
            // Sharing statistics (untimed).
            let body = &json[..json.len() - 3];
            let start = body.iter().position(|&b| b == b'[').unwrap() + 1;
            for fragment in body[start..].split(|&b| b == b'}').filter(|f| f.len() > 2) {
                let fragment = fragment.strip_prefix(b",").unwrap_or(fragment);
                let name_end = fragment[6..].iter().position(|&b| b == b'"').unwrap() + 6;
                let name = std::str::from_utf8(&fragment[6..name_end]).unwrap();
                let id = store.lookup_str(name).unwrap();
                let version = store.version(id);
                let seen = session.seen.iter_mut().find(|e| e.0 == id).unwrap();
                if version == seen.1 + 1 {
                    next_version += 1;
                }
                seen.1 = version;
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                fragment.hash(&mut hasher);
                if !fragments.insert((id.0, version, hasher.finish())) {
                    fragment_hits += 1;
                }
            }
        }
    }
    let per_message = timed.as_nanos() as f64 / messages.max(1) as f64;
    println!(
        "sessions {sessions}, {seconds} virtual s: {messages} messages, {:.0} ns a message \
         ({:.0} ns of it the JSON), {:.0} plain B, {:.0} wire B, {:.1} quotes a message",
        per_message,
        json_timed.as_nanos() as f64 / messages.max(1) as f64,
        plain_bytes as f64 / messages as f64,
        wire_bytes as f64 / messages as f64,
        quotes as f64 / messages as f64,
    );
    println!(
        "sent symbols whose version is the next after the session's last: {:.1} %; \
         fragments already written for another session: {:.1} %",
        100.0 * next_version as f64 / quotes as f64,
        100.0 * fragment_hits as f64 / quotes as f64,
    );
    std::hint::black_box(sink);
}

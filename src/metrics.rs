//! Counters for `/metrics`, sharded per thread.
//!
//! Viewers run on several actix workers; a single set of atomics would bounce one
//! cache line between the cores on every message. Each thread gets its own shard
//! (looked up once when a viewer starts) and `/metrics` adds the shards up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

/// One thread's counters. Every field only grows.
#[derive(Default, Debug)]
pub struct Counters {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub symbol_updates_sent: AtomicU64,
    pub updates_conflated: AtomicU64,
    pub client_errors: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A plain copy of the summed counters.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub symbol_updates_sent: u64,
    pub updates_conflated: u64,
    pub client_errors: u64,
    pub slow_consumer_closes: u64,
}

#[derive(Default)]
pub struct Metrics {
    shards: Mutex<Vec<(ThreadId, Arc<Counters>)>>,
}

impl Metrics {
    /// The calling thread's shard. Called when a viewer starts, not per message.
    pub fn shard(&self) -> Arc<Counters> {
        let me = std::thread::current().id();
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counters)) = shards.iter().find(|(id, _)| *id == me) {
            return counters.clone();
        }
        let counters = Arc::new(Counters::default());
        shards.push((me, counters.clone()));
        counters
    }

    pub fn totals(&self) -> Totals {
        let shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        let mut t = Totals::default();
        for (_, c) in shards.iter() {
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            t.connections_opened += get(&c.connections_opened);
            t.connections_closed += get(&c.connections_closed);
            t.messages_sent += get(&c.messages_sent);
            t.bytes_sent += get(&c.bytes_sent);
            t.symbol_updates_sent += get(&c.symbol_updates_sent);
            t.updates_conflated += get(&c.updates_conflated);
            t.client_errors += get(&c.client_errors);
            t.slow_consumer_closes += get(&c.slow_consumer_closes);
        }
        t
    }
}

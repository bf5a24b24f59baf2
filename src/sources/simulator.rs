//! The built-in feed: a seeded random walk per symbol with a realistic book.
//!
//! Each tick picks a symbol, moves its mid price by a small log-normal step, and emits
//! either a quote change (new bid/ask and sizes) or a trade at the bid, ask or mid with
//! a round-lot size. Prices stay on a one-cent grid (1/100 cent under one dollar).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::broker::{Broker, TickBatch};
use crate::config::SimulatorSettings;
use crate::domain::{now_millis, Field, ParsedTick, Price, Symbol, SymbolId};
use crate::store::SnapshotStore;

/// Standard deviation of one tick's log return: about 1% a day at a few ticks a second.
const STEP_SIGMA: f64 = 0.0004;
/// Share of ticks that are trades; the rest move the book only.
const TRADE_SHARE: f64 = 0.6;

struct Walker {
    /// The symbol's name, kept so each tick names it without a reverse look-up.
    symbol: Symbol,
    mid: f64,
}

pub struct Simulator {
    rng: StdRng,
    walkers: Vec<Walker>,
    ticks_per_second: f64,
    interval: Duration,
    /// Fractional ticks carried to the next batch, so the average rate is exact.
    carry: f64,
}

impl Simulator {
    pub fn new(settings: &SimulatorSettings) -> Simulator {
        let rng = match settings.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Simulator {
            rng,
            walkers: Vec::new(),
            ticks_per_second: f64::from(settings.ticks_per_second),
            interval: Duration::from_millis(settings.batch_interval_ms),
            carry: 0.0,
        }
    }

    /// Produces ticks until `shutdown`, one batch per interval, while this instance
    /// holds the cluster's feed-source leadership (always, on a single instance).
    pub async fn run(mut self, store: SnapshotStore, broker: Broker, shutdown: CancellationToken) {
        let leader = broker.source_leadership();
        info!(
            ticks_per_second = self.ticks_per_second,
            "simulator started"
        );
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = TickBatch::new(0);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    if !*leader.borrow() {
                        continue;
                    }
                    batch.ticks.clear();
                    batch.received_at = now_millis();
                    self.next_batch(&store, batch.received_at, &mut batch.ticks);
                    broker.publish(&batch).await;
                }
            }
        }
        info!("simulator stopped");
    }

    /// Appends one interval's worth of ticks, all stamped `ts`.
    pub fn next_batch(&mut self, store: &SnapshotStore, ts: i64, batch: &mut Vec<ParsedTick>) {
        let symbols = store.len();
        if symbols == 0 {
            return;
        }
        while self.walkers.len() < symbols {
            let id = SymbolId(self.walkers.len() as u32);
            let (quote, _) = store.read(id);
            let start = quote
                .price(Field::P)
                .or(quote.price(Field::Pc))
                .map_or(100.0, |p| p.micros() as f64 / 1e6);
            let symbol = store.info(id).symbol.clone();
            self.walkers.push(Walker { symbol, mid: start });
        }
        self.carry += self.ticks_per_second * self.interval.as_secs_f64();
        let count = self.carry.floor() as usize;
        self.carry -= count as f64;
        for _ in 0..count {
            let id = SymbolId(self.rng.random_range(0..symbols) as u32);
            batch.push(self.next_tick(id, ts));
        }
    }

    fn next_tick(&mut self, id: SymbolId, ts: i64) -> ParsedTick {
        let rng = &mut self.rng;
        let walker = &mut self.walkers[id.index()];
        let z: f64 = StandardNormal.sample(rng);
        walker.mid = (walker.mid * (STEP_SIGMA * z).exp()).max(0.01);
        // One cent over a dollar, a hundredth of a cent below (micros).
        let tick_size: i64 = if walker.mid >= 1.0 { 10_000 } else { 100 };
        let mid = Price::from_micros((walker.mid * 1e6) as i64).round_to(tick_size);
        let spread_ticks: i64 = rng.random_range(1..=3);
        let bid =
            Price::from_micros((mid.micros() - tick_size * (spread_ticks / 2)).max(tick_size));
        let ask = Price::from_micros(bid.micros() + tick_size * spread_ticks);
        let mut tick = ParsedTick::at(walker.symbol.clone(), ts);
        if rng.random_bool(TRADE_SHARE) {
            tick.price = Some(match rng.random_range(0..3) {
                0 => bid,
                1 => ask,
                _ => mid,
            });
            let lots: u64 = rng.random_range(1..=10);
            tick.size = Some(if rng.random_bool(0.1) {
                rng.random_range(1..100)
            } else {
                lots * 100
            });
        } else {
            tick.bid = Some(bid);
            tick.ask = Some(ask);
            tick.bid_size = Some(rng.random_range(1..=20u64) * 100);
            tick.ask_size = Some(rng.random_range(1..=20u64) * 100);
        }
        tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Tick;

    fn settings(seed: u64) -> SimulatorSettings {
        SimulatorSettings {
            enabled: true,
            ticks_per_second: 500,
            batch_interval_ms: 20,
            seed: Some(seed),
        }
    }

    fn store() -> SnapshotStore {
        let store = SnapshotStore::new(8);
        store
            .add_symbol(
                Symbol::parse("AAPL").unwrap(),
                "Apple",
                Price::parse("189.12").ok(),
            )
            .unwrap();
        store
            .add_symbol(
                Symbol::parse("PENNY").unwrap(),
                "Penny",
                Price::parse("0.5").ok(),
            )
            .unwrap();
        store
    }

    #[test]
    fn produces_the_configured_rate_with_sane_prices() {
        let store = store();
        let mut sim = Simulator::new(&settings(7));
        let mut batch = Vec::new();
        for _ in 0..50 {
            sim.next_batch(&store, 1, &mut batch);
        }
        // 50 batches of 20 ms at 500/s = one second = 500 ticks.
        assert_eq!(batch.len(), 500);
        let ticks: Vec<Tick> = batch
            .iter()
            .map(|t| t.to_tick(store.lookup(&t.symbol).unwrap(), 1))
            .collect();
        store.apply_batch(&ticks);
        let (aapl, _) = store.read(SymbolId(0));
        let p = aapl.price(Field::P).unwrap().micros();
        assert!(
            p % 10_000 == 0 && (150_000_000..230_000_000).contains(&p),
            "{p}"
        );
        let (bid, ask) = (aapl.get(Field::Bp).unwrap(), aapl.get(Field::Ap).unwrap());
        assert!(bid < ask, "{bid} < {ask}");
        let (penny, _) = store.read(SymbolId(1));
        assert!(penny.price(Field::P).unwrap().micros() % 100 == 0);
    }

    #[test]
    fn a_seed_reproduces_the_feed() {
        let store = store();
        let (mut a, mut b) = (Simulator::new(&settings(42)), Simulator::new(&settings(42)));
        let (mut ba, mut bb) = (Vec::new(), Vec::new());
        a.next_batch(&store, 1, &mut ba);
        b.next_batch(&store, 1, &mut bb);
        assert_eq!(ba, bb);
    }
}

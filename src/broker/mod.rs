//! Where accepted changes go: straight into this instance's store (`memory`), or
//! through Redis to every instance of a cluster (`redis`).
//!
//! Every producer of changes (publishers, the simulator, replay, vendor feeds, the
//! trading day's rollover, admin and auto-created symbols) hands them to the
//! [`Broker`], never to the store: the broker is the store's only writer, so one switch
//! decides between a single instance and a cluster. Viewers never see the broker:
//! they read the local store, which the broker keeps in step.
//!
//! Ticks arrive as a [`TickBatch`] of [`ParsedTick`]s that still name their symbol:
//! each instance resolves a symbol to its own id once, where it applies the tick
//! (here for `memory`; on every instance from the cluster's channel for `redis`).

mod cluster;
mod record;

pub use cluster::{Cluster, ClusterCounters};

use std::cell::RefCell;
use std::sync::Arc;

use chrono::NaiveDate;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{BrokerKind, BrokerSettings};
use crate::domain::{ParsedTick, Price, Symbol, SymbolId, Tick};
use crate::store::{day_bar_time, Bar, Interval, Retention, SnapshotStore, StoreFull};

/// How the instance stands towards the rest of the cluster (`/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStatus {
    /// In step with the cluster (always, for `memory`).
    Ready,
    /// (Re)connected and rebuilding the store from the cluster state.
    Syncing,
    /// Redis is unreachable: serving current quotes and local ingest, catching up
    /// by itself when Redis returns.
    Degraded,
}

impl BrokerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerStatus::Ready => "ready",
            BrokerStatus::Syncing => "syncing",
            BrokerStatus::Degraded => "degraded",
        }
    }
}

/// A cheap-to-clone handle; see the module docs.
#[derive(Clone)]
pub struct Broker {
    store: SnapshotStore,
    cluster: Option<Arc<Cluster>>,
    /// Always true without a cluster: the one instance runs its own feeds.
    solo_leader: watch::Sender<bool>,
}

impl Broker {
    /// The single-instance broker: changes apply to `store` directly.
    pub fn memory(store: SnapshotStore) -> Broker {
        Broker {
            store,
            cluster: None,
            solo_leader: watch::Sender::new(true),
        }
    }

    /// Builds the broker `settings` ask for. With Redis this makes a first attempt to
    /// join the cluster (bounded by `broker.timeout_ms`), so an instance starts warm
    /// when Redis is up and degraded (serving, retrying) when it is not.
    pub async fn start(
        store: SnapshotStore,
        settings: &BrokerSettings,
        retention: Retention,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Broker> {
        match settings.kind {
            BrokerKind::Memory => Ok(Broker::memory(store)),
            BrokerKind::Redis => {
                let cluster = Cluster::start(store.clone(), settings, retention, shutdown).await?;
                Ok(Broker {
                    store,
                    cluster: Some(cluster),
                    solo_leader: watch::Sender::new(true),
                })
            }
        }
    }

    pub fn status(&self) -> BrokerStatus {
        self.cluster
            .as_ref()
            .map_or(BrokerStatus::Ready, |c| c.status())
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Applies an accepted batch everywhere, in order. Returns how many of its ticks
    /// the cluster had already accepted from the same publisher (by `seq`) and so
    /// dropped; always 0 for `memory`, where the ingestor alone de-duplicates.
    pub async fn publish(&self, batch: &TickBatch) -> usize {
        if batch.ticks.is_empty() {
            return 0;
        }
        match &self.cluster {
            None => {
                apply_resolved(&self.store, batch);
                0
            }
            Some(cluster) => cluster.publish_ticks(batch).await,
        }
    }

    /// Starts trading day `day`, once per cluster however many instances ask.
    pub async fn roll_over(&self, day: NaiveDate) {
        match &self.cluster {
            None => self.store.roll_over(day_bar_time(day)),
            Some(cluster) => cluster.roll_over(day).await,
        }
    }

    /// At start-up: `day` is the trading day by the clock. A stored day before it
    /// means rollovers were missed while the server was down: roll over now, so
    /// yesterday's volume is not counted as today's. With no stored day, `day` is it.
    pub async fn start_trading_day(&self, day: NaiveDate) {
        match self.store.trading_day() {
            Some(stored) if stored < day_bar_time(day) => {
                info!(%day, "a trading-day rollover was missed while stopped; rolling over now");
                self.roll_over(day).await;
            }
            Some(_) => {}
            None => self.store.set_trading_day(day_bar_time(day)),
        }
    }

    /// Merges a vendor's bars of `symbol` before `before` into its history (see
    /// [`SnapshotStore::merge_bars`]); with Redis, into the cluster's shared bars.
    pub async fn merge_bars(&self, id: SymbolId, interval: Interval, bars: &[Bar], before: i64) {
        match &self.cluster {
            None => self.store.merge_bars(id, interval, bars, before),
            Some(cluster) => cluster.merge_bars(id, interval, bars, before).await,
        }
    }

    /// Creates a symbol or updates its name and reference price, on every instance.
    pub async fn upsert_symbol(
        &self,
        symbol: Symbol,
        name: Option<&str>,
        previous_close: Option<Price>,
    ) -> Result<(SymbolId, bool), StoreFull> {
        match &self.cluster {
            None => self.store.upsert_symbol(symbol, name, previous_close),
            Some(cluster) => cluster.upsert_symbol(symbol, name, previous_close).await,
        }
    }

    /// Removes a symbol on every instance; `None` when it is unknown here.
    pub async fn remove_symbol(&self, symbol: &Symbol) -> Option<SymbolId> {
        match &self.cluster {
            None => self.store.remove_symbol(symbol),
            Some(cluster) => cluster.remove_symbol(symbol).await,
        }
    }

    /// True while this instance may run the cluster's one simulator or replay.
    pub fn source_leadership(&self) -> watch::Receiver<bool> {
        match &self.cluster {
            None => self.solo_leader.subscribe(),
            Some(cluster) => cluster.source_leadership(),
        }
    }
}

/// One source's ticks, accepted together and applied in order.
#[derive(Debug, Clone, Default)]
pub struct TickBatch {
    /// The publisher whose `seq`s the ticks carry (a digest of its key, the same on
    /// every instance), for cluster-wide de-duplication; `None` for built-in sources.
    pub publisher: Option<Arc<str>>,
    /// This instance's clock when the batch arrived: the `ts` of ticks without one.
    pub received_at: i64,
    pub ticks: Vec<ParsedTick>,
}

impl TickBatch {
    /// An empty batch from a built-in source, stamped `received_at`.
    pub fn new(received_at: i64) -> TickBatch {
        TickBatch {
            publisher: None,
            received_at,
            ticks: Vec::new(),
        }
    }
}

thread_local! {
    /// The resolved ticks of the batch being applied: one buffer per thread, reused.
    static RESOLVED: RefCell<Vec<Tick>> = const { RefCell::new(Vec::new()) };
}

/// Resolves each tick's symbol to this store's id (once) and applies the batch. A tick
/// whose symbol is not here (removed since the source checked) is dropped. A
/// publisher's highest `seq` in the batch is recorded with its ticks, in one step, so
/// the durable state never has one without the other.
pub(crate) fn apply_resolved(store: &SnapshotStore, batch: &TickBatch) {
    let seq = batch.ticks.iter().filter_map(|parsed| parsed.seq).max();
    let publisher = batch.publisher.as_ref().zip(seq);
    RESOLVED.with_borrow_mut(|resolved| {
        resolved.clear();
        resolved.extend(batch.ticks.iter().filter_map(|parsed| {
            let id = store.lookup(&parsed.symbol)?;
            Some(parsed.to_tick(id, batch.received_at))
        }));
        store.apply_publisher_batch(resolved, publisher);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Field;

    #[tokio::test]
    async fn a_rollover_missed_while_stopped_happens_at_start_up_and_only_then() {
        let store = SnapshotStore::new(4);
        let aapl = store
            .add_symbol(Symbol::parse("AAPL").unwrap(), "Apple", None)
            .unwrap();
        let broker = Broker::memory(store.clone());
        let monday = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let tuesday = monday.succ_opt().unwrap();
        // No stored day: the clock's day is taken as it is, nothing rolls.
        broker.start_trading_day(monday).await;
        assert_eq!(store.trading_day(), Some(day_bar_time(monday)));
        store.apply_batch(&[Tick {
            symbol: aapl,
            price: Price::parse("190.5").ok(),
            size: Some(100),
            ts: 1,
            ..Tick::default()
        }]);
        // The same day again (a restart within the day): the volume stays.
        broker.start_trading_day(monday).await;
        assert_eq!(store.read(aapl).0.get(Field::V), Some(100));
        // A later day: Monday closes as a daily bar, Tuesday starts from zero.
        broker.start_trading_day(tuesday).await;
        assert_eq!(store.read(aapl).0.get(Field::V), Some(0));
        assert_eq!(store.trading_day(), Some(day_bar_time(tuesday)));
        let days = store.bars(aapl, Interval::OneDay, 10);
        assert_eq!(
            (days.len(), days[0].t, days[0].v),
            (1, day_bar_time(monday), 100)
        );
    }
}

//! Scale-out over Redis: many instances, one market state.
//!
//! - **One order.** A change is applied to the cluster state by a Lua script
//!   (`lua/apply.lua`) that, in the same atomic step, updates the hash of latest
//!   quotes, takes the next sequence number and publishes the change on the channel.
//!   Every instance, including the one that accepted the change, applies messages in
//!   sequence order from its subscription and never applies its own change any other
//!   way, so no change is applied twice and every instance folds the same changes in
//!   the same order: their stores equal the hash.
//! - **Read your writes.** The instance that accepted a change replies only once its
//!   own subscription has applied it (bounded by `broker.timeout_ms`).
//! - **Gaps and outages.** A sequence gap, a lost subscription or a failed call means
//!   messages may be missing: the instance re-joins, which flushes what it accepted
//!   while cut off (the outbox, each batch with an id so a retry is applied once),
//!   then replaces its quotes with the hash (the resync) and only then reports ready.
//!   While Redis is unreachable it applies accepted changes locally and keeps them in
//!   the outbox.
//! - **A wiped Redis.** The hash carries an epoch. When it is missing (first start, or
//!   Redis lost its data) the first instance to re-join seeds it from its own store,
//!   which already holds its outbox, so that outbox is dropped rather than flushed.
//! - **One feed.** The simulator or replay runs only on the instance holding a lock
//!   with expiry (`broker.lock_ttl_ms`), renewed at a third of it.
//!
//! - **Shared bars.** The same script keeps every symbol's 1 s, 1 m and daily bars
//!   in Redis (with the retention `store.history_*`), and history pages are read
//!   from there, so every instance serves the same history.
//!
//! One job per file: this file is the handle (start, status, publishing); the
//! outbox is [`outbox`]; joining, the resync and following the channel are
//! [`follow`]; history pages are [`history`]; the one-source lock is
//! [`source_lock`]; the calls to Redis they share are [`remote`].

#[cfg(test)]
mod fake;
mod follow;
mod history;
mod outbox;
mod remote;
mod source_lock;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use rand::Rng;
use redis::Client;
use tokio::sync::{watch, Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::outbox::{BatchIds, Outbox, Pending};
use self::remote::{ClusterState, Keys, Link, Remote};
use super::record::{encode_bar, encode_series, encode_tick, encode_upsert, Op};
use super::{BrokerStatus, TickBatch};
use crate::config::BrokerSettings;
use crate::domain::{Price, Symbol, SymbolId};
use crate::store::{day_bar_time, Bar, Interval, Retention, SnapshotStore, StoreFull};

/// Totals for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub resyncs: AtomicU64,
    pub outbox_dropped: AtomicU64,
    pub duplicates: AtomicU64,
}

pub struct Cluster {
    client: Client,
    store: SnapshotStore,
    remote: Remote,
    lock_ttl: Duration,
    link: Mutex<Option<Link>>,
    /// Held for writing while (re)joining, so no change is applied locally between
    /// the outbox flush and the resync (it would be counted twice).
    join_gate: RwLock<()>,
    status: watch::Sender<BrokerStatus>,
    /// The last sequence number this instance applied.
    applied: watch::Sender<u64>,
    outbox: Outbox,
    batch_ids: BatchIds,
    /// Signalled by a publisher whose Redis call failed: the run loop re-joins.
    broken: Notify,
    leader: watch::Sender<bool>,
    pub counters: ClusterCounters,
}

impl Cluster {
    /// Connects (or starts degraded), then runs the subscription and the source lock
    /// in background tasks until `shutdown`.
    pub async fn start(
        store: SnapshotStore,
        settings: &BrokerSettings,
        retention: Retention,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Cluster>> {
        let client = Client::open(settings.redis_url.expose())
            .context("broker.redis_url is not a valid Redis URL")?;
        let instance = format!("{:016x}", rand::rng().random::<u64>());
        let keys = Keys::new(&settings.key_prefix);
        let cluster = Arc::new(Cluster {
            client,
            store,
            batch_ids: BatchIds::new(&keys.batch_prefix, &instance),
            remote: Remote {
                keys,
                instance,
                timeout: Duration::from_millis(settings.timeout_ms),
                retention: Interval::ALL
                    .map(|interval| retention.of(interval).to_string())
                    .join(","),
            },
            lock_ttl: Duration::from_millis(settings.lock_ttl_ms),
            link: Mutex::new(None),
            join_gate: RwLock::new(()),
            status: watch::Sender::new(BrokerStatus::Syncing),
            applied: watch::Sender::new(0),
            outbox: Outbox::new(settings.outbox_max_ticks),
            broken: Notify::new(),
            leader: watch::Sender::new(false),
            counters: ClusterCounters::default(),
        });
        let first = match cluster.join().await {
            Ok(stream) => Some(stream),
            Err(e) => {
                warn!(error = %e, "Redis unreachable at start: serving degraded, retrying");
                cluster.status.send_replace(BrokerStatus::Degraded);
                None
            }
        };
        info!(instance = %cluster.remote.instance, status = cluster.status().as_str(), "cluster broker started");
        tokio::spawn(cluster.clone().run(first, shutdown.clone()));
        tokio::spawn(cluster.clone().hold_source_lock(shutdown));
        Ok(cluster)
    }

    pub fn status(&self) -> BrokerStatus {
        *self.status.borrow()
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.items()
    }

    pub fn source_leadership(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    fn current_link(&self) -> Option<Link> {
        self.link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_link(&self, link: Option<Link>) {
        *self.link.lock().unwrap_or_else(PoisonError::into_inner) = link;
    }

    /// Drops the connection after a failed call and wakes the run loop to re-join.
    fn break_link(&self, why: &str) {
        if self.current_link().is_some() {
            warn!(why, "lost Redis: degraded until it is back");
        }
        self.set_link(None);
        self.status.send_replace(BrokerStatus::Degraded);
        self.leader.send_replace(false);
        self.broken.notify_one();
    }

    // ---- publishing -------------------------------------------------------------

    pub async fn publish_ticks(&self, batch: &TickBatch) -> usize {
        let items = batch
            .ticks
            .iter()
            .map(|tick| encode_tick(tick, batch.received_at))
            .collect();
        let publisher = batch.publisher.as_deref().unwrap_or("");
        self.publish(Op::Ticks, publisher, items, || {
            super::apply_resolved(&self.store, batch)
        })
        .await
    }

    /// Starts trading day `day` cluster-wide (once, whichever instance asks first):
    /// every quote's day closes into a daily bar and restarts.
    pub async fn roll_over(&self, day: NaiveDate) {
        let t = day_bar_time(day);
        let ending = self
            .store
            .trading_day()
            .map_or_else(String::new, |t| t.to_string());
        let items = vec![day.to_string(), t.to_string(), ending];
        self.publish(Op::RollOver, "", items, || self.store.roll_over(t))
            .await;
    }

    pub async fn upsert_symbol(
        &self,
        symbol: Symbol,
        name: Option<&str>,
        previous_close: Option<Price>,
    ) -> Result<(SymbolId, bool), StoreFull> {
        let existed = self.store.lookup(&symbol).is_some();
        let item = encode_upsert(symbol.as_str(), previous_close, name);
        let mut local = None;
        self.publish(Op::Upsert, "", vec![item], || {
            local = Some(
                self.store
                    .upsert_symbol(symbol.clone(), name, previous_close),
            );
        })
        .await;
        match local {
            Some(result) => result,
            // Applied from the channel (or still on its way): report what is here now.
            None => match self.store.lookup(&symbol) {
                Some(id) => Ok((id, !existed)),
                None => self
                    .store
                    .upsert_symbol(symbol, name, previous_close)
                    .map(|(id, _)| (id, !existed)),
            },
        }
    }

    /// Merges bars from elsewhere (a vendor's history) into the cluster's, for the
    /// buckets [`SnapshotStore::merge_cutoff`] leaves to them.
    pub async fn merge_bars(&self, id: SymbolId, interval: Interval, bars: &[Bar], before: i64) {
        let before = self.store.merge_cutoff(interval, before);
        let bars: Vec<Bar> = bars.iter().filter(|bar| bar.t < before).copied().collect();
        if bars.is_empty() {
            return;
        }
        let mut items = Vec::with_capacity(bars.len() + 1);
        items.push(encode_series(self.store.info(id).symbol.as_str(), interval));
        items.extend(bars.iter().map(encode_bar));
        self.publish(Op::Bars, "", items, || {
            self.store.merge_bars(id, interval, &bars, before)
        })
        .await;
    }

    pub async fn remove_symbol(&self, symbol: &Symbol) -> Option<SymbolId> {
        let id = self.store.lookup(symbol)?;
        self.publish(Op::Remove, "", vec![symbol.as_str().to_owned()], || {
            self.store.remove_symbol(symbol);
        })
        .await;
        Some(id)
    }

    /// Publishes one change through Redis and waits until this instance applied it;
    /// while cut off, applies it locally (`apply_locally`) and keeps it for later.
    /// Returns the number of ticks the cluster dropped as duplicates.
    async fn publish(
        &self,
        op: Op,
        publisher: &str,
        items: Vec<String>,
        apply_locally: impl FnOnce(),
    ) -> usize {
        let _gate = self.join_gate.read().await;
        let batch = self.batch_ids.next();
        if let Some(link) = self.current_link() {
            match self
                .remote
                .on(&link)
                .apply(&batch, op, publisher, &items)
                .await
            {
                Ok((seq, duplicates)) => {
                    add(&self.counters.published, 1);
                    add(&self.counters.duplicates, duplicates as u64);
                    if seq > 0 {
                        self.wait_applied(seq as u64).await;
                    }
                    return duplicates;
                }
                Err(e) => self.break_link(&format!("publish failed: {e}")),
            }
        }
        apply_locally();
        let dropped = self.outbox.push(Pending {
            batch,
            op,
            publisher: publisher.to_owned(),
            items,
        });
        if dropped > 0 {
            add(&self.counters.outbox_dropped, dropped as u64);
        }
        0
    }

    /// Read your writes: waits (bounded) until the subscription applied `seq`.
    async fn wait_applied(&self, seq: u64) {
        let mut applied = self.applied.subscribe();
        let _ =
            tokio::time::timeout(self.remote.timeout, applied.wait_for(|&done| done >= seq)).await;
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerKind, Secret};
    use crate::domain::{Field, ParsedTick};

    fn trades(symbol: &str, sizes: &[u64]) -> TickBatch {
        let mut batch = TickBatch::new(1);
        for &size in sizes {
            batch.ticks.push(ParsedTick {
                symbol: Symbol::parse(symbol).expect("a valid symbol"),
                price: Price::parse("10").ok(),
                size: Some(size),
                bid: None,
                bid_size: None,
                ask: None,
                ask_size: None,
                ts: None,
                seq: None,
            });
        }
        batch
    }

    #[tokio::test]
    async fn cut_off_a_publish_applies_here_at_once_and_the_outbox_counts_what_overflows() {
        // Arrange: a "Redis" that accepts connections and never answers (frozen), so
        // joining times out and the broker starts degraded; room for 3 ticks.
        let frozen = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = frozen.local_addr().expect("bound").port();
        let settings = BrokerSettings {
            kind: BrokerKind::Redis,
            redis_url: Secret::new(format!("redis://127.0.0.1:{port}")),
            key_prefix: "test".to_owned(),
            timeout_ms: 50,
            lock_ttl_ms: 1_000,
            outbox_max_ticks: 3,
        };
        let store = SnapshotStore::new(4);
        let aapl = store
            .add_symbol(Symbol::parse("AAPL").expect("valid"), "Apple", None)
            .expect("room");
        let shutdown = CancellationToken::new();
        let retention = Retention {
            second_bars_ms: 1,
            minute_bars_ms: 1,
            day_bars_ms: 1,
        };
        let cluster = Cluster::start(store.clone(), &settings, retention, shutdown.clone())
            .await
            .expect("a valid URL");
        assert_eq!(cluster.status(), BrokerStatus::Degraded);

        // Act
        let first = cluster.publish_ticks(&trades("AAPL", &[1, 2])).await;
        let after_first = (cluster.outbox_len(), load(&cluster.counters.outbox_dropped));
        let second = cluster.publish_ticks(&trades("AAPL", &[3, 4])).await;

        // Assert
        assert_eq!((first, second), (0, 0), "no duplicates known while cut off");
        assert_eq!(after_first, (2, 0));
        assert_eq!(
            (cluster.outbox_len(), load(&cluster.counters.outbox_dropped)),
            (2, 2),
            "4 ticks over a bound of 3: the oldest batch (2 ticks) goes, counted"
        );
        assert_eq!(
            store.read(aapl).0.get(Field::V),
            Some(10),
            "every tick applied here, the dropped ones too"
        );
        shutdown.cancel();
    }

    fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

//! Joining the cluster and following it: subscribe, seed a Redis that has no
//! cluster state, flush the outbox, replace the store's quotes with the cluster
//! state (the resync), then apply the channel's messages in sequence order until
//! something fails, and join again.
//!
//! Every instance applies every change, its own included, only from here, so all
//! stores fold the same changes in the same order. A gap in the sequence, a lost
//! subscription or a failed call means messages may be missing: a resync (or a
//! re-join) makes the store equal the hash again.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use futures_util::StreamExt;
use rand::Rng;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, Script};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::remote::{ClusterState, Link};
use super::{add, Cluster};
use crate::broker::record::{
    decode_bar, decode_message, decode_record, decode_series, decode_tick, decode_upsert,
    encode_bar, encode_record, Message, Op,
};
use crate::broker::BrokerStatus;
use crate::domain::{Symbol, SymbolId};
use crate::store::{day_bar_time, Bar, Interval, SnapshotStore};

/// Seeds an empty cluster state from one instance's quotes (see the script).
static SEED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/seed.lua")));
/// Puts an instance's bars into a cluster state it just seeded (see the script).
static SEED_BARS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/seed_bars.lua")));
/// Bars per `seed_bars.lua` call: a few hundred kilobytes of arguments.
const SEED_BARS_PER_CALL: usize = 4_000;

/// The first pause before joining again after a failure; it doubles up to
/// [`MAX_REJOIN_BACKOFF`] while Redis stays away.
const FIRST_REJOIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_REJOIN_BACKOFF: Duration = Duration::from_secs(2);
/// How often a follower asks Redis for its sequence number, to notice messages the
/// subscription lost without a gap to show it (the last ones before a quiet spell).
const SEQ_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Cluster {
    /// Subscribes, makes sure the cluster state exists (seeding it if not), flushes
    /// the outbox, replaces the store with the cluster state and marks the instance
    /// ready. Returns the subscription, positioned after the snapshot.
    pub(super) async fn join(&self) -> anyhow::Result<PubSubStream> {
        let _gate = self.join_gate.write().await;
        self.status.send_replace(BrokerStatus::Syncing);
        let timeout = self.remote.timeout;
        let mut pubsub = tokio::time::timeout(timeout, self.client.get_async_pubsub())
            .await
            .context("connect timed out")??;
        tokio::time::timeout(timeout, pubsub.subscribe(&self.remote.keys.channel))
            .await
            .context("subscribe timed out")??;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut conn = tokio::time::timeout(
            timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .context("connect timed out")??;

        let (epoch, seeded) = self.seed_if_empty(&mut conn).await?;
        if seeded {
            // Bars after the quotes: a later failure leaves fewer bars, never wrong ones.
            match self.seed_bars(&mut conn, &epoch).await {
                Ok(bars) => info!(bars, "put this instance's bars back into the empty Redis"),
                Err(e) => warn!(error = %e, "could not put the bars back into Redis"),
            }
        }
        let link = Link { conn, epoch };
        self.outbox.flush(&self.remote.on(&link)).await?;
        let seq = self.resync(&link).await?;
        self.set_link(Some(link));
        self.status.send_replace(BrokerStatus::Ready);
        info!(seq, "joined the cluster: store in step with Redis");
        Ok(pubsub.into_on_message())
    }

    /// Seeds the cluster state from this store when Redis has none; returns the epoch
    /// and whether this instance seeded it.
    async fn seed_if_empty(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> anyhow::Result<(String, bool)> {
        let keys = &self.remote.keys;
        let candidate = format!("{:016x}", rand::rng().random::<u64>());
        let mut invocation = SEED.prepare_invoke();
        invocation
            .key(&keys.quotes)
            .key(&keys.seq)
            .key(&keys.epoch)
            .arg(&candidate);
        for info in self.store.symbols() {
            let (quote, _) = self.store.read(info.id);
            invocation
                .arg(info.symbol.as_str())
                .arg(encode_record(&quote, &self.store.name(info.id)));
        }
        let epoch: String =
            tokio::time::timeout(self.remote.timeout, invocation.invoke_async(conn))
                .await
                .context("seed timed out")??;
        let seeded = epoch == candidate;
        if seeded {
            // Our store already holds everything we accepted while cut off.
            let items = self.outbox.clear();
            if items > 0 {
                info!(items, "seeded an empty Redis from this instance");
            }
        }
        Ok((epoch, seeded))
    }

    /// Writes the bars this instance holds in memory into a cluster state it just
    /// seeded (Redis lost its data, bars included), in calls of at most
    /// [`SEED_BARS_PER_CALL`] bars; returns how many were written.
    async fn seed_bars(
        &self,
        conn: &mut MultiplexedConnection,
        epoch: &str,
    ) -> anyhow::Result<u64> {
        let keys = &self.remote.keys;
        let mut written = 0;
        let mut call = SEED_BARS.prepare_invoke();
        let mut in_call = 0;
        let series = self.store.symbols().flat_map(|info| {
            Interval::ALL.map(|interval| (info.id, info.symbol.clone(), interval))
        });
        for (id, symbol, interval) in series {
            let bars = self.store.bars(id, interval, interval.capacity());
            // The day in progress is the quote's, never a stored bar.
            let today = self.store.trading_day().unwrap_or(i64::MAX);
            let bars: Vec<_> = bars
                .iter()
                .filter(|bar| interval != Interval::OneDay || bar.t < today)
                .collect();
            if bars.is_empty() {
                continue;
            }
            if in_call == 0 {
                call.key(&keys.epoch).arg(epoch);
            }
            call.arg(keys.bar_series(interval, symbol.as_str()))
                .arg(bars.len());
            for bar in &bars {
                call.arg(encode_bar(bar));
            }
            in_call += bars.len();
            if in_call >= SEED_BARS_PER_CALL {
                written += self.invoke_seed_bars(&call, conn).await?;
                call = SEED_BARS.prepare_invoke();
                in_call = 0;
            }
        }
        if in_call > 0 {
            written += self.invoke_seed_bars(&call, conn).await?;
        }
        Ok(written)
    }

    async fn invoke_seed_bars(
        &self,
        call: &redis::ScriptInvocation<'_>,
        conn: &mut MultiplexedConnection,
    ) -> anyhow::Result<u64> {
        let written: u64 = tokio::time::timeout(self.remote.timeout, call.invoke_async(conn))
            .await
            .context("seeding bars timed out")??;
        Ok(written)
    }

    /// Replaces every quote with the cluster state; returns its sequence number.
    async fn resync(&self, link: &Link) -> anyhow::Result<u64> {
        let seq = resync_store(&self.store, &self.remote.on(link), &link.epoch).await?;
        self.applied.send_replace(seq);
        add(&self.counters.resyncs, 1);
        Ok(seq)
    }

    /// Follows the cluster until shutdown, re-joining after every failure.
    pub(super) async fn run(
        self: Arc<Self>,
        mut joined: Option<PubSubStream>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = FIRST_REJOIN_BACKOFF;
        loop {
            if let Some(stream) = joined.take() {
                backoff = FIRST_REJOIN_BACKOFF;
                let why = self.follow(stream, &shutdown).await;
                if shutdown.is_cancelled() {
                    return;
                }
                self.break_link(&why);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_REJOIN_BACKOFF);
            match self.join().await {
                Ok(stream) => joined = Some(stream),
                Err(e) => {
                    self.status.send_replace(BrokerStatus::Degraded);
                    tracing::debug!(error = %e, "Redis still unreachable");
                }
            }
        }
    }

    /// Applies messages in sequence order until the subscription fails or a gap
    /// cannot be repaired; returns why it stopped.
    async fn follow(&self, mut stream: PubSubStream, shutdown: &CancellationToken) -> String {
        // A failure signalled before this subscription existed is not about it.
        let _ = futures_util::FutureExt::now_or_never(self.broken.notified());
        let mut check = tokio::time::interval(SEQ_CHECK_INTERVAL);
        // A sequence number Redis had reached at the last check, not yet applied here.
        let mut behind: Option<u64> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return "shutdown".into(),
                _ = self.broken.notified() => return "a call to Redis failed".into(),
                message = stream.next() => {
                    let Some(message) = message else {
                        return "subscription closed".into();
                    };
                    let payload = String::from_utf8_lossy(message.get_payload_bytes());
                    let Some(message) = decode_message(&payload) else {
                        warn!("unreadable message on the cluster channel; skipped");
                        continue;
                    };
                    let last = *self.applied.borrow();
                    if message.seq <= last {
                        continue; // already in the snapshot
                    }
                    if message.seq > last + 1 {
                        warn!(expected = last + 1, got = message.seq, "missed cluster messages: resynchronising");
                        if let Err(e) = self.resync_now().await {
                            return format!("resync failed: {e}");
                        }
                        if message.seq <= *self.applied.borrow() {
                            continue;
                        }
                    }
                    self.apply_message(&message);
                    self.applied.send_replace(message.seq);
                }
                _ = check.tick() => {
                    let Some(link) = self.current_link() else {
                        return "link dropped".into();
                    };
                    let mut conn = link.conn.clone();
                    let seq: Result<Option<u64>, _> = tokio::time::timeout(
                        self.remote.timeout,
                        redis::cmd("GET").arg(&self.remote.keys.seq).query_async(&mut conn),
                    ).await.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from));
                    let seq = match seq {
                        Ok(seq) => seq.unwrap_or(0),
                        Err(e) => return format!("health check failed: {e}"),
                    };
                    let applied = *self.applied.borrow();
                    // Still behind a number Redis had a second ago: messages were lost.
                    if behind.is_some_and(|b| applied < b) || seq < applied {
                        if let Err(e) = self.resync_now().await {
                            return format!("resync failed: {e}");
                        }
                        behind = None;
                    } else {
                        behind = (seq > applied).then_some(seq);
                    }
                }
            }
        }
    }

    async fn resync_now(&self) -> anyhow::Result<u64> {
        let link = self.current_link().context("not connected")?;
        self.status.send_replace(BrokerStatus::Syncing);
        let seq = self.resync(&link).await?;
        self.status.send_replace(BrokerStatus::Ready);
        Ok(seq)
    }

    fn apply_message(&self, message: &Message<'_>) {
        add(&self.counters.received, 1);
        match message.op {
            Op::Ticks => {
                let mut ticks = Vec::with_capacity(message.items.len());
                for item in &message.items {
                    let Some((symbol, mut tick)) = decode_tick(item) else {
                        warn!(item, "unreadable tick on the cluster channel; skipped");
                        continue;
                    };
                    if let Some(id) = resolve(&self.store, symbol, None) {
                        tick.symbol = id;
                        ticks.push(tick);
                    }
                }
                self.store.apply_batch(&ticks);
            }
            Op::RollOver => {
                let day = message
                    .items
                    .first()
                    .and_then(|day| day.parse::<NaiveDate>().ok());
                match day {
                    Some(day) => {
                        self.store.roll_over(day_bar_time(day));
                        info!(%day, "trading day rolled over (cluster-wide)");
                    }
                    None => {
                        warn!(items = ?message.items, "unreadable rollover on the cluster channel; skipped")
                    }
                }
            }
            Op::Upsert => {
                for item in &message.items {
                    let Some((symbol, pc, name)) = decode_upsert(item) else {
                        continue;
                    };
                    if let Ok(symbol) = Symbol::parse(symbol) {
                        if let Err(e) = self.store.upsert_symbol(symbol, name, pc) {
                            warn!(error = %e, "cannot add a cluster symbol here");
                        }
                    }
                }
            }
            Op::Bars => {
                let series = message.items.first().and_then(|head| decode_series(head));
                let Some((symbol, interval)) = series else {
                    warn!(
                        items = message.items.len(),
                        "unreadable bars on the cluster channel; skipped"
                    );
                    return;
                };
                let bars: Option<Vec<Bar>> =
                    message.items[1..].iter().map(|b| decode_bar(b)).collect();
                match (bars, resolve(&self.store, symbol, None)) {
                    (Some(bars), Some(id)) => self.store.merge_bars(id, interval, &bars, i64::MAX),
                    (None, _) => warn!(symbol, "unreadable bar on the cluster channel; skipped"),
                    (_, None) => {}
                }
            }
            Op::Remove => {
                for item in &message.items {
                    if let Ok(symbol) = Symbol::parse(item) {
                        self.store.remove_symbol(&symbol);
                    }
                }
            }
        }
    }
}

/// Replaces `store`'s quotes with the cluster state read from `redis`, adding the
/// symbols this instance lacks; returns the state's sequence number. A quote's
/// version moves only when it changed, so viewers are sent just the difference.
/// Fails when the state no longer carries `epoch` (it was replaced while joining).
async fn resync_store(
    store: &SnapshotStore,
    redis: &impl ClusterState,
    epoch: &str,
) -> anyhow::Result<u64> {
    let snapshot = redis.snapshot().await?;
    if snapshot.epoch != epoch {
        bail!("the cluster state was replaced while joining");
    }
    for pair in snapshot.records.chunks_exact(2) {
        let Some((quote, name)) = decode_record(&pair[1]) else {
            warn!(symbol = %pair[0], "unreadable quote record in Redis; skipped");
            continue;
        };
        if let Some(id) = resolve(store, &pair[0], Some(name)) {
            store.replace_quote(id, quote);
        }
    }
    Ok(snapshot.seq)
}

/// The local id of a cluster symbol, created here if this instance lacks it
/// (another instance added it, or auto-created it from a tick).
fn resolve(store: &SnapshotStore, symbol: &str, name: Option<&str>) -> Option<SymbolId> {
    if let Some(id) = store.lookup_str(symbol) {
        return Some(id);
    }
    let parsed = Symbol::parse(symbol).ok()?;
    let name = name.filter(|n| !n.is_empty()).unwrap_or(symbol);
    match store.add_symbol(parsed, name, None) {
        Ok(id) => Some(id),
        Err(e) => {
            warn!(symbol, error = %e, "cannot add a cluster symbol here");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeRedis;
    use super::*;
    use crate::domain::{Price, Quote, Tick};

    fn price(text: &str) -> Option<Price> {
        Price::parse(text).ok()
    }

    fn trade(symbol: SymbolId, p: &str, size: u64, ts: i64) -> Tick {
        Tick {
            symbol,
            price: price(p),
            size: Some(size),
            ts,
            ..Tick::default()
        }
    }

    /// A store holding AAPL and MSFT, each with one trade.
    fn store_with_two_quotes() -> (SnapshotStore, SymbolId, SymbolId) {
        let store = SnapshotStore::new(8);
        let add = |s: &str| {
            let symbol = Symbol::parse(s).expect("a valid symbol");
            store.add_symbol(symbol, s, None).expect("room")
        };
        let (aapl, msft) = (add("AAPL"), add("MSFT"));
        store.apply_batch(&[trade(aapl, "100", 10, 1), trade(msft, "300", 5, 1)]);
        (store, aapl, msft)
    }

    fn quote_after(p: &str, size: u64) -> Quote {
        let mut quote = Quote::with_previous_close(price("90"));
        quote.apply(&trade(SymbolId::default(), p, size, 7));
        quote
    }

    #[tokio::test]
    async fn a_resync_makes_the_store_equal_the_hash_and_moves_only_changed_versions() {
        // Arrange: Redis has a newer AAPL, the same MSFT, and NEWCO this instance lacks.
        let (store, aapl, msft) = store_with_two_quotes();
        let (msft_here, msft_version) = store.read(msft);
        let aapl_version = store.version(aapl);
        let (aapl_there, newco_there) = (quote_after("101.5", 30), quote_after("12.34", 100));
        let redis = FakeRedis::new("e1", 42)
            .with_quote("AAPL", &aapl_there, "Apple")
            .with_quote("MSFT", &msft_here, "MSFT")
            .with_quote("NEWCO", &newco_there, "New Co")
            .with_record("BAD", "x,y|unreadable");

        // Act
        let seq = resync_store(&store, &redis, "e1")
            .await
            .expect("same epoch");

        // Assert
        assert_eq!(seq, 42, "the state's sequence number");
        assert_eq!(store.read(aapl), (aapl_there, aapl_version + 1));
        assert_eq!(
            store.read(msft),
            (msft_here, msft_version),
            "an unchanged quote keeps its version: viewers are sent nothing"
        );
        let newco = store.lookup_str("NEWCO").expect("added from the hash");
        assert_eq!(store.read(newco).0, newco_there);
        assert_eq!(&*store.name(newco), "New Co");
        assert_eq!(
            store.lookup_str("BAD"),
            None,
            "an unreadable record is skipped"
        );
    }

    #[tokio::test]
    async fn a_resync_against_a_replaced_cluster_state_fails_and_changes_nothing() {
        let (store, aapl, _) = store_with_two_quotes();
        let before = store.read(aapl);
        let redis = FakeRedis::new("e2", 7).with_quote("AAPL", &quote_after("1", 1), "Apple");

        let result = resync_store(&store, &redis, "e1").await;

        assert!(result.is_err(), "synced with e1, the state is now e2");
        assert_eq!(store.read(aapl), before);
    }
}

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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use tokio::sync::{watch, Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::record::{
    decode_message, decode_record, decode_tick, decode_upsert, encode_record, encode_tick,
    encode_upsert, Message, Op,
};
use super::{BrokerStatus, TickBatch};
use crate::config::BrokerSettings;
use crate::domain::{Price, Symbol, SymbolId};
use crate::store::{SnapshotStore, StoreFull};

/// Totals for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub resyncs: AtomicU64,
    pub outbox_dropped: AtomicU64,
    pub duplicates: AtomicU64,
}

/// Redis key names, all under `broker.key_prefix`.
struct Keys {
    quotes: String,
    seq: String,
    publishers: String,
    /// The trading day last rolled over (each rolls over once cluster-wide).
    trading_day: String,
    epoch: String,
    channel: String,
    source_lock: String,
    batch_prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            quotes: format!("{prefix}:quotes"),
            seq: format!("{prefix}:seq"),
            publishers: format!("{prefix}:publisher-seq"),
            trading_day: format!("{prefix}:trading_day"),
            epoch: format!("{prefix}:epoch"),
            channel: format!("{prefix}:changes"),
            source_lock: format!("{prefix}:source-lock"),
            batch_prefix: format!("{prefix}:batch:"),
        }
    }
}

/// A change accepted while cut off from Redis, waiting to be published.
struct Pending {
    batch: String,
    op: Op,
    publisher: String,
    items: Vec<String>,
}

#[derive(Default)]
struct Outbox {
    pending: VecDeque<Pending>,
    items: usize,
}

/// The connection and epoch of a joined instance; present only while ready.
#[derive(Clone)]
struct Link {
    conn: MultiplexedConnection,
    epoch: String,
}

pub struct Cluster {
    client: Client,
    store: SnapshotStore,
    keys: Keys,
    instance: String,
    timeout: Duration,
    lock_ttl: Duration,
    outbox_max_items: usize,
    apply_script: Script,
    snapshot_script: Script,
    seed_script: Script,
    lock_script: Script,
    link: Mutex<Option<Link>>,
    /// Held for writing while (re)joining, so no change is applied locally between
    /// the outbox flush and the resync (it would be counted twice).
    join_gate: RwLock<()>,
    status: watch::Sender<BrokerStatus>,
    /// The last sequence number this instance applied.
    applied: watch::Sender<u64>,
    outbox: Mutex<Outbox>,
    /// Signalled by a publisher whose Redis call failed: the run loop re-joins.
    broken: Notify,
    leader: watch::Sender<bool>,
    batches: AtomicU64,
    pub counters: ClusterCounters,
}

type SnapshotReply = (String, u64, Vec<String>);

impl Cluster {
    /// Connects (or starts degraded), then runs the subscription and the source lock
    /// in background tasks until `shutdown`.
    pub async fn start(
        store: SnapshotStore,
        settings: &BrokerSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Cluster>> {
        let client = Client::open(settings.redis_url.expose())
            .context("broker.redis_url is not a valid Redis URL")?;
        let instance = format!("{:016x}", rand::rng().random::<u64>());
        let cluster = Arc::new(Cluster {
            client,
            store,
            keys: Keys::new(&settings.key_prefix),
            instance,
            timeout: Duration::from_millis(settings.timeout_ms),
            lock_ttl: Duration::from_millis(settings.lock_ttl_ms),
            outbox_max_items: settings.outbox_max_ticks,
            apply_script: Script::new(include_str!("lua/apply.lua")),
            snapshot_script: Script::new(include_str!("lua/snapshot.lua")),
            seed_script: Script::new(include_str!("lua/seed.lua")),
            lock_script: Script::new(include_str!("lua/lock.lua")),
            link: Mutex::new(None),
            join_gate: RwLock::new(()),
            status: watch::Sender::new(BrokerStatus::Syncing),
            applied: watch::Sender::new(0),
            outbox: Mutex::new(Outbox::default()),
            broken: Notify::new(),
            leader: watch::Sender::new(false),
            batches: AtomicU64::new(0),
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
        info!(instance = %cluster.instance, status = cluster.status().as_str(), "cluster broker started");
        tokio::spawn(cluster.clone().run(first, shutdown.clone()));
        tokio::spawn(cluster.clone().hold_source_lock(shutdown));
        Ok(cluster)
    }

    pub fn status(&self) -> BrokerStatus {
        *self.status.borrow()
    }

    pub fn outbox_len(&self) -> usize {
        self.lock_outbox().items
    }

    pub fn source_leadership(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
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

    fn next_batch_id(&self) -> String {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        format!("{}{}:{n}", self.keys.batch_prefix, self.instance)
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

    pub async fn roll_over(&self, day: &str) {
        self.publish(Op::RollOver, "", vec![day.to_owned()], || {
            self.store.roll_over()
        })
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
        let batch = self.next_batch_id();
        if let Some(link) = self.current_link() {
            match self
                .invoke_apply(&link, &batch, op, publisher, &items)
                .await
            {
                Ok((seq, duplicates)) => {
                    Self::add(&self.counters.published, 1);
                    Self::add(&self.counters.duplicates, duplicates as u64);
                    if seq > 0 {
                        self.wait_applied(seq as u64).await;
                    }
                    return duplicates;
                }
                Err(e) => self.break_link(&format!("publish failed: {e}")),
            }
        }
        apply_locally();
        let mut outbox = self.lock_outbox();
        outbox.items += items.len();
        outbox.pending.push_back(Pending {
            batch,
            op,
            publisher: publisher.to_owned(),
            items,
        });
        // Bounded: beyond the limit the oldest changes stay applied here but will not
        // reach the other instances (counted, and logged once per batch).
        while outbox.items > self.outbox_max_items {
            let Some(dropped) = outbox.pending.pop_front() else {
                break;
            };
            outbox.items -= dropped.items.len();
            Self::add(&self.counters.outbox_dropped, dropped.items.len() as u64);
            warn!(
                items = dropped.items.len(),
                "outbox full (broker.outbox_max_ticks): oldest batch will not reach other instances"
            );
        }
        0
    }

    async fn invoke_apply(
        &self,
        link: &Link,
        batch: &str,
        op: Op,
        publisher: &str,
        items: &[String],
    ) -> anyhow::Result<(i64, usize)> {
        let mut invocation = self.apply_script.prepare_invoke();
        invocation
            .key(&self.keys.quotes)
            .key(&self.keys.seq)
            .key(&self.keys.publishers)
            .key(batch)
            .key(&self.keys.trading_day)
            .key(&self.keys.epoch)
            .arg(&self.instance)
            .arg(&self.keys.channel)
            .arg(op.as_str())
            .arg(publisher)
            .arg(&link.epoch);
        for item in items {
            invocation.arg(item);
        }
        let mut conn = link.conn.clone();
        let (seq, duplicates): (i64, usize) =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
                .await
                .context("timed out")??;
        Ok((seq, duplicates))
    }

    async fn wait_applied(&self, seq: u64) {
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(self.timeout, applied.wait_for(|&done| done >= seq)).await;
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    // ---- joining and following the cluster ----------------------------------------

    /// Subscribes, makes sure the cluster state exists (seeding it if not), flushes
    /// the outbox, replaces the store with the cluster state and marks the instance
    /// ready. Returns the subscription, positioned after the snapshot.
    async fn join(&self) -> anyhow::Result<redis::aio::PubSubStream> {
        let _gate = self.join_gate.write().await;
        self.status.send_replace(BrokerStatus::Syncing);
        let timeout = self.timeout;
        let mut pubsub = tokio::time::timeout(timeout, self.client.get_async_pubsub())
            .await
            .context("connect timed out")??;
        tokio::time::timeout(timeout, pubsub.subscribe(&self.keys.channel))
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

        let epoch = self.seed_if_empty(&mut conn).await?;
        let link = Link { conn, epoch };
        self.flush_outbox(&link).await?;
        let seq = self.resync(&link).await?;
        self.set_link(Some(link));
        self.status.send_replace(BrokerStatus::Ready);
        info!(seq, "joined the cluster: store in step with Redis");
        Ok(pubsub.into_on_message())
    }

    /// Seeds the cluster state from this store when Redis has none; returns the epoch.
    async fn seed_if_empty(&self, conn: &mut MultiplexedConnection) -> anyhow::Result<String> {
        let candidate = format!("{:016x}", rand::rng().random::<u64>());
        let mut invocation = self.seed_script.prepare_invoke();
        invocation
            .key(&self.keys.quotes)
            .key(&self.keys.seq)
            .key(&self.keys.epoch)
            .arg(&candidate);
        for info in self.store.symbols() {
            let (quote, _) = self.store.read(info.id);
            invocation
                .arg(info.symbol.as_str())
                .arg(encode_record(&quote, &self.store.name(info.id)));
        }
        let epoch: String = tokio::time::timeout(self.timeout, invocation.invoke_async(conn))
            .await
            .context("seed timed out")??;
        if epoch == candidate {
            // Our store already holds everything we accepted while cut off.
            let mut outbox = self.lock_outbox();
            if outbox.items > 0 {
                info!(
                    items = outbox.items,
                    "seeded an empty Redis from this instance"
                );
            }
            *outbox = Outbox::default();
        }
        Ok(epoch)
    }

    async fn flush_outbox(&self, link: &Link) -> anyhow::Result<()> {
        loop {
            let next = {
                let outbox = self.lock_outbox();
                outbox
                    .pending
                    .front()
                    .map(|p| (p.batch.clone(), p.op, p.publisher.clone(), p.items.clone()))
            };
            let Some((batch, op, publisher, items)) = next else {
                return Ok(());
            };
            self.invoke_apply(link, &batch, op, &publisher, &items)
                .await
                .context("flushing the outbox")?;
            let mut outbox = self.lock_outbox();
            if outbox.pending.front().is_some_and(|p| p.batch == batch) {
                let done = outbox.pending.pop_front().expect("just checked");
                outbox.items -= done.items.len();
            }
        }
    }

    /// Replaces every quote with the cluster state; returns its sequence number.
    async fn resync(&self, link: &Link) -> anyhow::Result<u64> {
        let mut conn = link.conn.clone();
        let (epoch, seq, entries): SnapshotReply = tokio::time::timeout(
            self.timeout,
            self.snapshot_script
                .key(&self.keys.quotes)
                .key(&self.keys.seq)
                .key(&self.keys.epoch)
                .invoke_async(&mut conn),
        )
        .await
        .context("snapshot timed out")??;
        if epoch != link.epoch {
            bail!("the cluster state was replaced while joining");
        }
        for pair in entries.chunks_exact(2) {
            let Some((quote, name)) = decode_record(&pair[1]) else {
                warn!(symbol = %pair[0], "unreadable quote record in Redis; skipped");
                continue;
            };
            if let Some(id) = self.resolve(&pair[0], Some(name)) {
                self.store.replace_quote(id, quote);
            }
        }
        self.applied.send_replace(seq);
        Self::add(&self.counters.resyncs, 1);
        Ok(seq)
    }

    /// The local id of a cluster symbol, created here if this instance lacks it
    /// (another instance added it, or auto-created it from a tick).
    fn resolve(&self, symbol: &str, name: Option<&str>) -> Option<SymbolId> {
        if let Some(id) = self.store.lookup_str(symbol) {
            return Some(id);
        }
        let parsed = Symbol::parse(symbol).ok()?;
        let name = name.filter(|n| !n.is_empty()).unwrap_or(symbol);
        match self.store.add_symbol(parsed, name, None) {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(symbol, error = %e, "cannot add a cluster symbol here");
                None
            }
        }
    }

    /// Follows the cluster until shutdown, re-joining after every failure.
    async fn run(
        self: Arc<Self>,
        mut joined: Option<redis::aio::PubSubStream>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Some(stream) = joined.take() {
                backoff = Duration::from_millis(100);
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
            backoff = (backoff * 2).min(Duration::from_secs(2));
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
    async fn follow(
        &self,
        mut stream: redis::aio::PubSubStream,
        shutdown: &CancellationToken,
    ) -> String {
        // A failure signalled before this subscription existed is not about it.
        let _ = futures_util::FutureExt::now_or_never(self.broken.notified());
        let mut check = tokio::time::interval(Duration::from_secs(1));
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
                        self.timeout,
                        redis::cmd("GET").arg(&self.keys.seq).query_async(&mut conn),
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
        Self::add(&self.counters.received, 1);
        match message.op {
            Op::Ticks => {
                let mut ticks = Vec::with_capacity(message.items.len());
                for item in &message.items {
                    let Some((symbol, mut tick)) = decode_tick(item) else {
                        warn!(item, "unreadable tick on the cluster channel; skipped");
                        continue;
                    };
                    if let Some(id) = self.resolve(symbol, None) {
                        tick.symbol = id;
                        ticks.push(tick);
                    }
                }
                self.store.apply_batch(&ticks);
            }
            Op::RollOver => {
                self.store.roll_over();
                info!(day = ?message.items.first(), "trading day rolled over (cluster-wide)");
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
            Op::Remove => {
                for item in &message.items {
                    if let Ok(symbol) = Symbol::parse(item) {
                        self.store.remove_symbol(&symbol);
                    }
                }
            }
        }
    }

    // ---- the one feed source ------------------------------------------------------

    /// Takes and renews the source lock while joined; gives it up at shutdown.
    async fn hold_source_lock(self: Arc<Self>, shutdown: CancellationToken) {
        let ttl_ms = self.lock_ttl.as_millis() as u64;
        loop {
            let held = self.source_lock(ttl_ms, "hold").await;
            let was = self.leader.send_replace(held);
            if held != was {
                info!(
                    leader = held,
                    "feed source (simulator/replay) leadership changed"
                );
            }
            // Renew at a third of the expiry; poll faster for a free lock so a
            // successor takes over soon after the holder's lock expires.
            let pause = if held { ttl_ms / 3 } else { ttl_ms / 10 }.max(10);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            }
        }
        if *self.leader.borrow() {
            // A clean stop hands the feed over at once instead of at expiry.
            self.source_lock(ttl_ms, "release").await;
            self.leader.send_replace(false);
        }
    }

    /// Runs the lock script (`hold` or `release`); true when this instance holds it.
    async fn source_lock(&self, ttl_ms: u64, action: &str) -> bool {
        let Some(link) = self.current_link() else {
            return false;
        };
        let mut conn = link.conn.clone();
        let reply: Result<Result<i64, _>, _> = tokio::time::timeout(
            self.timeout,
            self.lock_script
                .key(&self.keys.source_lock)
                .arg(&self.instance)
                .arg(ttl_ms)
                .arg(action)
                .invoke_async(&mut conn),
        )
        .await;
        matches!(reply, Ok(Ok(1)))
    }
}

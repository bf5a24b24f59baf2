//! The calls to Redis that every part of the cluster broker shares: the key names,
//! this instance's name and the per-call timeout ([`Remote`]), and a joined
//! connection ([`Link`]) on which publishing, the outbox flush and the resync run
//! `apply.lua` and `snapshot.lua`.
//!
//! Those two calls are the [`ClusterState`] trait, so the outbox and the resync can
//! be unit-tested against an in-memory fake; production always goes through
//! [`Linked`], the real connection.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;
use redis::aio::MultiplexedConnection;
use redis::Script;

use crate::broker::record::Op;
use crate::store::Interval;

/// Applies one change and publishes it in the cluster's order (see the script).
static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/apply.lua")));
/// Reads the epoch, the sequence number and the hash of quotes in one atomic step.
static SNAPSHOT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/snapshot.lua")));

/// Redis key names, all under `broker.key_prefix`.
pub(super) struct Keys {
    pub quotes: String,
    pub seq: String,
    pub publishers: String,
    /// The trading day last rolled over (each rolls over once cluster-wide).
    pub trading_day: String,
    pub epoch: String,
    pub channel: String,
    pub source_lock: String,
    pub batch_prefix: String,
    /// Bars: `<bars><1s|1m|1d>:<SYMBOL>`, one sorted set per series (`apply.lua`).
    pub bars: String,
    /// The current trading day's daily-bar `t`: the day a rollover closes.
    pub trading_day_t: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            quotes: format!("{prefix}:quotes"),
            seq: format!("{prefix}:seq"),
            publishers: format!("{prefix}:publisher-seq"),
            trading_day: format!("{prefix}:trading_day"),
            epoch: format!("{prefix}:epoch"),
            channel: format!("{prefix}:changes"),
            source_lock: format!("{prefix}:source-lock"),
            batch_prefix: format!("{prefix}:batch:"),
            bars: format!("{prefix}:bars:"),
            trading_day_t: format!("{prefix}:trading_day_t"),
        }
    }

    /// The sorted set of one symbol's bars of one interval.
    pub fn bar_series(&self, interval: Interval, symbol: &str) -> String {
        format!("{}{}:{symbol}", self.bars, interval.as_str())
    }
}

/// What every call names besides its connection: fixed for the instance's life.
pub(super) struct Remote {
    pub keys: Keys,
    /// This instance's name in the channel's messages and as the lock's holder.
    pub instance: String,
    /// The bound on every call (`broker.timeout_ms`): a frozen Redis must end in
    /// "degraded", never in a publisher waiting for ever.
    pub timeout: Duration,
    /// How far back Redis keeps each interval's bars (`store.history_*`), as
    /// `apply.lua` reads it: `1s,1m,1d` in ms.
    pub retention: String,
}

impl Remote {
    /// The calls on `link`.
    pub fn on<'a>(&'a self, link: &'a Link) -> Linked<'a> {
        Linked { remote: self, link }
    }
}

/// The connection and epoch of a joined instance; present only while ready.
#[derive(Clone)]
pub(super) struct Link {
    pub conn: MultiplexedConnection,
    /// The epoch this instance synced with: `apply.lua` refuses a change made
    /// against a cluster state that has since been replaced.
    pub epoch: String,
}

/// `snapshot.lua`'s reply: epoch, sequence number, then the hash as HGETALL gives it.
type SnapshotReply = (String, u64, Vec<String>);

/// The cluster state as one atomic read saw it.
pub(super) struct Snapshot {
    /// Empty when the state is gone (a new or wiped Redis).
    pub epoch: String,
    /// The sequence number of the last change folded into `records`.
    pub seq: u64,
    /// `symbol, record` pairs, flat as HGETALL answers.
    pub records: Vec<String>,
}

/// The cluster state in Redis as publishing, the outbox flush and the resync see
/// it: two calls. Generic, not `dyn`: the production path compiles to the direct
/// calls, and each is one round trip per batch or per resync, never per tick.
pub(super) trait ClusterState {
    /// Applies one batch and publishes it in the cluster's order (`apply.lua`), once
    /// per `batch` id however often it is retried. Returns `(seq, duplicates)`: seq
    /// 0 = nothing published, -1 = this id was already applied.
    fn apply(
        &self,
        batch: &str,
        op: Op,
        publisher: &str,
        items: &[String],
    ) -> impl Future<Output = anyhow::Result<(i64, usize)>> + Send;

    /// The whole cluster state in one atomic read (`snapshot.lua`).
    fn snapshot(&self) -> impl Future<Output = anyhow::Result<Snapshot>> + Send;
}

/// One joined link with what its calls name: the production [`ClusterState`].
pub(super) struct Linked<'a> {
    remote: &'a Remote,
    link: &'a Link,
}

impl ClusterState for Linked<'_> {
    async fn apply(
        &self,
        batch: &str,
        op: Op,
        publisher: &str,
        items: &[String],
    ) -> anyhow::Result<(i64, usize)> {
        let keys = &self.remote.keys;
        let mut invocation = APPLY.prepare_invoke();
        invocation
            .key(&keys.quotes)
            .key(&keys.seq)
            .key(&keys.publishers)
            .key(batch)
            .key(&keys.trading_day)
            .key(&keys.epoch)
            .key(&keys.bars)
            .key(&keys.trading_day_t)
            .arg(&self.remote.instance)
            .arg(&keys.channel)
            .arg(op.as_str())
            .arg(publisher)
            .arg(&self.link.epoch)
            .arg(&self.remote.retention);
        for item in items {
            invocation.arg(item);
        }
        let mut conn = self.link.conn.clone();
        let (seq, duplicates): (i64, usize) =
            tokio::time::timeout(self.remote.timeout, invocation.invoke_async(&mut conn))
                .await
                .context("timed out")??;
        Ok((seq, duplicates))
    }

    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let keys = &self.remote.keys;
        let mut conn = self.link.conn.clone();
        let (epoch, seq, records): SnapshotReply = tokio::time::timeout(
            self.remote.timeout,
            SNAPSHOT
                .key(&keys.quotes)
                .key(&keys.seq)
                .key(&keys.epoch)
                .invoke_async(&mut conn),
        )
        .await
        .context("snapshot timed out")??;
        Ok(Snapshot {
            epoch,
            seq,
            records,
        })
    }
}

//! Where accepted changes go: straight into this instance's store (`memory`), or
//! through Redis to every instance of a cluster (`redis`).
//!
//! Every producer of changes (ingest, the simulator, replay, session rollovers, admin
//! symbol changes) hands them to the [`Broker`] instead of the store, so one switch
//! decides between a single instance and a cluster. Sessions never see the broker:
//! they keep reading the local store, which the broker keeps in step.

mod cluster;
mod record;

pub use cluster::{Cluster, ClusterCounters};

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerKind, BrokerSettings};
use crate::domain::{Price, Symbol, SymbolId, Tick};
use crate::store::{SnapshotStore, StoreFull};

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
        shutdown: CancellationToken,
    ) -> anyhow::Result<Broker> {
        match settings.kind {
            BrokerKind::Memory => Ok(Broker::memory(store)),
            BrokerKind::Redis => {
                let cluster = Cluster::start(store.clone(), settings, shutdown).await?;
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

    /// Applies accepted ticks everywhere. `seqs` (parallel to `ticks`, may be empty)
    /// carries publisher sequence numbers for cluster-wide de-duplication; returns how
    /// many ticks the cluster had already seen and therefore dropped.
    pub async fn publish_ticks(
        &self,
        publisher: Option<&str>,
        ticks: &[Tick],
        seqs: &[Option<u64>],
    ) -> usize {
        if ticks.is_empty() {
            return 0;
        }
        match &self.cluster {
            None => {
                self.store.apply_batch(ticks);
                0
            }
            Some(cluster) => cluster.publish_ticks(publisher, ticks, seqs).await,
        }
    }

    /// Starts a new trading session (`session` names it, e.g. the date), once per
    /// cluster however many instances ask.
    pub async fn roll_over(&self, session: &str) {
        match &self.cluster {
            None => self.store.roll_over(),
            Some(cluster) => cluster.roll_over(session).await,
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

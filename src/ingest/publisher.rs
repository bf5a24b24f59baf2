//! Accepting ticks from publishers: authentication, per-item validation,
//! per-publisher `seq` de-duplication, and one batch to the broker per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use super::tick_json::{parse_tick, TickError};
use crate::broker::{Broker, TickBatch};
use crate::config::{IngestSettings, Secret};
use crate::domain::{now_millis, ParsedTick};
use crate::store::{Durable, SnapshotStore, StorageUnavailable};
use crate::wire::ErrorCode;

/// A batch applied to the store, waiting to be stored before it is acknowledged.
#[derive(Debug)]
pub struct Applied {
    report: IngestReport,
    /// The store's change count just after the batch: a commit at or past it covers it.
    generation: u64,
}

/// Which configured key a request presented (its position in the key list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherId(usize);

/// The reply to one batch (contract §3).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub code: ErrorCode,
    pub message: String,
}

/// Totals for `/metrics`.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
}

pub struct Ingestor {
    store: SnapshotStore,
    broker: Broker,
    /// The durable writer, when `store.data_dir` is set: a batch is answered only
    /// once it is committed.
    durable: Option<Durable>,
    keys: Vec<Secret>,
    /// A stable name for each publisher in the cluster's seq table: a digest of its
    /// key, so instances agree without sharing the key's position or the key itself.
    fingerprints: Vec<Arc<str>>,
    /// Highest `seq` accepted per publisher. The lock is held for a whole batch,
    /// publishing included, so one publisher's concurrent batches apply in `seq` order.
    last_seq: Vec<Mutex<Option<u64>>>,
    auto_create_symbols: bool,
    pub max_batch_ticks: usize,
    pub max_body_bytes: usize,
    pub counters: IngestCounters,
}

impl Ingestor {
    /// `store` already holds the restored state, so each publisher continues from its
    /// stored `seq`.
    pub fn new(
        store: SnapshotStore,
        broker: Broker,
        durable: Option<Durable>,
        settings: &IngestSettings,
    ) -> Ingestor {
        let keys = settings.keys();
        let fingerprints: Vec<Arc<str>> =
            keys.iter().map(|key| Arc::from(fingerprint(key))).collect();
        Ingestor {
            last_seq: fingerprints
                .iter()
                .map(|f| Mutex::new(store.publisher_seq(f)))
                .collect(),
            fingerprints,
            store,
            broker,
            durable,
            keys,
            auto_create_symbols: settings.auto_create_symbols,
            max_batch_ticks: settings.max_batch_ticks,
            max_body_bytes: settings.max_body_bytes,
            counters: IngestCounters::default(),
        }
    }

    /// Finds the publisher whose key was presented. Every configured key is compared
    /// in constant time, so timing does not reveal how much of a key matched.
    pub fn authenticate(&self, presented: &str) -> Option<PublisherId> {
        let mut found = None;
        for (index, key) in self.keys.iter().enumerate() {
            if bool::from(key.expose().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(PublisherId(index));
            }
        }
        found
    }

    /// Validates, de-duplicates and publishes one batch of ticks given as JSON texts.
    /// Returns once the broker has applied the batch and, with a data directory, once
    /// it is stored; `StorageUnavailable` when it could not be (nothing is
    /// acknowledged then, and a retry with the same `seq`s is safe).
    pub async fn ingest<'a>(
        &self,
        publisher: PublisherId,
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<IngestReport, StorageUnavailable> {
        let applied = self.apply(publisher, items).await;
        self.acknowledge(applied).await
    }

    /// The first half of [`Ingestor::ingest`]: validates, de-duplicates and applies
    /// one batch, without waiting for it to be stored. A publisher's socket applies
    /// its next batch while this one's commit is still under way, and answers in order.
    pub async fn apply<'a>(
        &self,
        publisher: PublisherId,
        items: impl IntoIterator<Item = &'a str>,
    ) -> Applied {
        let mut report = IngestReport::default();
        let mut batch = TickBatch {
            publisher: Some(self.fingerprints[publisher.0].clone()),
            received_at: now_millis(),
            ticks: Vec::new(),
        };
        let mut last_seq = self.last_seq[publisher.0].lock().await;
        for (index, item) in items.into_iter().enumerate() {
            let tick = match self.check(item).await {
                Ok(tick) => tick,
                Err(e) => {
                    report.rejected.push(Rejected {
                        index,
                        code: e.code,
                        message: e.message,
                    });
                    continue;
                }
            };
            if let Some(seq) = tick.seq {
                if last_seq.is_some_and(|last| seq <= last) {
                    report.duplicates += 1;
                    continue;
                }
                *last_seq = Some(seq);
            }
            batch.ticks.push(tick);
        }
        // Another instance may have accepted some of these already (a retry that
        // went elsewhere): the cluster drops those and says how many.
        let seen_elsewhere = self.broker.publish(&batch).await;
        // Read after the batch (and any symbol it created) was applied: this number
        // covers it, and also whatever earlier batch these duplicates repeat.
        let generation = self.store.generation();
        drop(last_seq);
        report.accepted = batch.ticks.len() - seen_elsewhere;
        report.duplicates += seen_elsewhere;
        Applied { report, generation }
    }

    /// Whether `applied` is stored already (always, without a data directory).
    pub fn is_stored(&self, applied: &Applied) -> bool {
        self.durable
            .as_ref()
            .is_none_or(|durable| durable.status().committed >= applied.generation)
    }

    /// Resolves once `applied` is stored, or once storing it failed (then
    /// [`Ingestor::acknowledge`] says so).
    pub async fn stored(&self, applied: &Applied) {
        if let Some(durable) = &self.durable {
            let _ = durable.wait_stored(applied.generation).await;
        }
    }

    /// The second half of [`Ingestor::ingest`]: the report, once the batch is stored.
    pub async fn acknowledge(&self, applied: Applied) -> Result<IngestReport, StorageUnavailable> {
        if let Some(durable) = &self.durable {
            // Acknowledged means durable: wait for the group commit that covers this
            // batch with its seq (store/durable.rs, "THE DURABILITY MOMENT") before
            // any answer is built.
            durable.wait_stored(applied.generation).await?;
        }
        let report = applied.report;
        let add = |counter: &AtomicU64, n: usize| counter.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.counters.accepted, report.accepted);
        add(&self.counters.duplicates, report.duplicates);
        add(&self.counters.rejected, report.rejected.len());
        Ok(report)
    }

    /// Parses one tick and checks that its symbol exists, first creating it through
    /// the broker (so on every instance, before its ticks) when configured to.
    async fn check(&self, json: &str) -> Result<ParsedTick, TickError> {
        let parsed = parse_tick(json)?;
        if self.store.lookup(&parsed.symbol).is_some() {
            return Ok(parsed);
        }
        if !self.auto_create_symbols {
            return Err(TickError::new(
                ErrorCode::UnknownSymbol,
                format!("unknown symbol {}", parsed.symbol),
            ));
        }
        let name = parsed.symbol.as_str().to_owned();
        self.broker
            .upsert_symbol(parsed.symbol.clone(), Some(&name), None)
            .await
            .map_err(|e| TickError::new(ErrorCode::Internal, e.to_string()))?;
        Ok(parsed)
    }
}

/// The first 8 bytes of the key's SHA-256, in hex: names the publisher in Redis
/// without revealing the key.
fn fingerprint(key: &Secret) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.expose().as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Field, Price, Symbol, SymbolId};

    fn ingestor(auto_create: bool) -> Ingestor {
        let store = SnapshotStore::new(8);
        store
            .add_symbol(
                Symbol::parse("AAPL").unwrap(),
                "Apple",
                Price::parse("100").ok(),
            )
            .unwrap();
        Ingestor::new(
            store.clone(),
            Broker::memory(store),
            None,
            &IngestSettings {
                publisher_keys: Secret::new("k1,k2"),
                max_body_bytes: 1 << 20,
                max_batch_ticks: 100,
                auto_create_symbols: auto_create,
                ping_interval_ms: 15_000,
                idle_timeout_ms: 45_000,
                write_timeout_ms: 10_000,
            },
        )
    }

    #[tokio::test]
    async fn authenticates_each_key_as_its_own_publisher() {
        let ingest = ingestor(false);
        assert_eq!(ingest.authenticate("k1"), Some(PublisherId(0)));
        assert_eq!(ingest.authenticate("k2"), Some(PublisherId(1)));
        for wrong in ["", "k", "k3", "k1 ", "k1,k2"] {
            assert_eq!(ingest.authenticate(wrong), None, "{wrong:?}");
        }
    }

    #[tokio::test]
    async fn rejects_per_item_and_applies_the_rest() {
        let ingest = ingestor(false);
        let report = ingest
            .ingest(
                PublisherId(0),
                [
                    r#"{"symbol":"AAPL","price":101,"size":10}"#,
                    r#"{"symbol":"NOPE","price":1}"#,
                    r#"{"symbol":"AAPL","price":1.1234567}"#,
                    r#"{"symbol":"AAPL","price":102,"size":5}"#,
                ],
            )
            .await
            .unwrap();
        assert_eq!(report.accepted, 2);
        let codes: Vec<_> = report.rejected.iter().map(|r| (r.index, r.code)).collect();
        assert_eq!(
            codes,
            vec![(1, ErrorCode::UnknownSymbol), (2, ErrorCode::BadRequest)]
        );
        let (quote, _) = ingest.store.read(SymbolId(0));
        assert_eq!(quote.get(Field::V), Some(15));
    }

    #[tokio::test]
    async fn seq_makes_retries_safe_per_publisher() {
        let ingest = ingestor(false);
        let batch = [
            r#"{"symbol":"AAPL","price":101,"size":10,"seq":1}"#,
            r#"{"symbol":"AAPL","price":102,"size":10,"seq":2}"#,
        ];
        assert_eq!(
            ingest.ingest(PublisherId(0), batch).await.unwrap().accepted,
            2
        );
        let retry = ingest.ingest(PublisherId(0), batch).await.unwrap();
        assert_eq!((retry.accepted, retry.duplicates), (0, 2));
        // Another publisher has its own sequence.
        assert_eq!(
            ingest.ingest(PublisherId(1), batch).await.unwrap().accepted,
            2
        );
        // Within a batch, a repeated or lower seq is a duplicate too.
        let mixed = ingest
            .ingest(
                PublisherId(0),
                [
                    r#"{"symbol":"AAPL","price":1,"size":1,"seq":5}"#,
                    r#"{"symbol":"AAPL","price":1,"size":1,"seq":5}"#,
                    r#"{"symbol":"AAPL","price":1,"size":1,"seq":3}"#,
                    r#"{"symbol":"AAPL","price":1,"size":1}"#,
                ],
            )
            .await
            .unwrap();
        assert_eq!((mixed.accepted, mixed.duplicates), (2, 2));
        let (quote, _) = ingest.store.read(SymbolId(0));
        assert_eq!(quote.get(Field::V), Some(42), "no volume counted twice");
    }

    #[tokio::test]
    async fn unknown_symbols_are_created_when_configured() {
        let ingest = ingestor(true);
        let report = ingest
            .ingest(PublisherId(0), [r#"{"symbol":"newco","price":5}"#])
            .await
            .unwrap();
        assert_eq!(report.accepted, 1);
        assert!(ingest
            .store
            .lookup(&Symbol::parse("NEWCO").unwrap())
            .is_some());
    }
}

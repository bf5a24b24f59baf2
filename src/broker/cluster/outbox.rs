//! What an instance accepted while cut off from Redis, kept to be published when it
//! re-joins.
//!
//! While cut off, the instance applies a change locally at once (its viewers see it)
//! and keeps it here. On re-join, before the resync, every kept batch goes through
//! `apply.lua` in the order it was accepted, so the other instances get it too and
//! the resync that follows does not wipe it. Each batch carries an id fixed when it
//! was accepted: a flush that fails after Redis applied a batch retries it under the
//! same id, and the script applies an id once.
//!
//! Bounded by `broker.outbox_max_ticks`: a long outage under heavy ingest must not
//! grow memory without limit. Beyond the bound the oldest batches go (counted by the
//! caller as `outbox_dropped`): they stay applied here but never reach the others.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use tracing::warn;

use super::remote::ClusterState;
use crate::broker::record::Op;

/// A change accepted while cut off from Redis, waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    /// The id `apply.lua` applies once (see [`BatchIds`]).
    pub batch: String,
    pub op: Op,
    pub publisher: String,
    pub items: Vec<String>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    /// Items over all of `pending`: what the bound counts.
    items: usize,
}

pub(super) struct Outbox {
    /// A std lock: only plain memory work happens while it is held, never an `.await`.
    queue: Mutex<Queue>,
    max_items: usize,
}

impl Outbox {
    /// An empty outbox that keeps at most `max_items` items (`broker.outbox_max_ticks`).
    pub fn new(max_items: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            max_items,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Items waiting to be published (the `tickstream_broker_outbox` gauge).
    pub fn items(&self) -> usize {
        self.lock().items
    }

    /// Keeps a change behind the ones before it. Returns how many items the bound
    /// pushed out (oldest batches first, whole batches), for `outbox_dropped`.
    pub fn push(&self, pending: Pending) -> usize {
        let mut queue = self.lock();
        queue.items += pending.items.len();
        queue.pending.push_back(pending);
        let mut dropped_items = 0;
        // Bounded: beyond the limit the oldest changes stay applied here but will not
        // reach the other instances (counted, and logged once per batch).
        while queue.items > self.max_items {
            let Some(dropped) = queue.pending.pop_front() else {
                break;
            };
            queue.items -= dropped.items.len();
            dropped_items += dropped.items.len();
            warn!(
                items = dropped.items.len(),
                "outbox full (broker.outbox_max_ticks): oldest batch will not reach other instances"
            );
        }
        dropped_items
    }

    /// Forgets every kept change (a seeded Redis already holds them); returns how
    /// many items that was.
    pub fn clear(&self) -> usize {
        std::mem::take(&mut *self.lock()).items
    }

    /// Publishes every kept batch, oldest first, each under its own id, removing each
    /// once Redis has answered for it. Stops at the first failure, keeping that batch
    /// and everything after it for the next attempt.
    pub async fn flush(&self, redis: &impl ClusterState) -> anyhow::Result<()> {
        loop {
            // A copy, so the lock is not held across the call.
            let Some(next) = self.lock().pending.front().cloned() else {
                return Ok(());
            };
            redis
                .apply(&next.batch, next.op, &next.publisher, &next.items)
                .await
                .context("flushing the outbox")?;
            let mut queue = self.lock();
            if queue.pending.front().is_some_and(|p| p.batch == next.batch) {
                let done = queue.pending.pop_front().expect("just checked");
                queue.items -= done.items.len();
            }
        }
    }
}

/// Names each batch once, for good: `<prefix>:batch:<instance>:<n>`. The id is taken
/// when a change is accepted and kept with it, so every retry of that change, however
/// late, names the same batch.
pub(super) struct BatchIds {
    prefix: String,
    next: AtomicU64,
}

impl BatchIds {
    pub fn new(batch_prefix: &str, instance: &str) -> BatchIds {
        BatchIds {
            prefix: format!("{batch_prefix}{instance}:"),
            next: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeRedis, Published};
    use super::*;

    fn change(batch: &str, ticks: &[&str]) -> Pending {
        Pending {
            batch: batch.to_owned(),
            op: Op::Ticks,
            publisher: "p1".to_owned(),
            items: ticks.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn published(change: &Pending) -> Published {
        Published {
            batch: change.batch.clone(),
            op: change.op,
            publisher: change.publisher.clone(),
            items: change.items.clone(),
        }
    }

    fn three_changes() -> [Pending; 3] {
        [
            change("b:0", &["AAPL,1,1,,,,,1,"]),
            change("b:1", &["AAPL,2,1,,,,,2,", "MSFT,3,1,,,,,2,"]),
            change("b:2", &["MSFT,4,1,,,,,3,"]),
        ]
    }

    #[tokio::test]
    async fn a_flush_publishes_every_kept_batch_once_in_order_with_its_id_and_empties_it() {
        // Arrange
        let outbox = Outbox::new(100);
        let changes = three_changes();
        for change in &changes {
            assert_eq!(outbox.push(change.clone()), 0);
        }
        assert_eq!(outbox.items(), 4);
        let redis = FakeRedis::new("e1", 0);

        // Act
        outbox.flush(&redis).await.expect("the link works");
        outbox.flush(&redis).await.expect("nothing left to send");

        // Assert
        let expected: Vec<_> = changes.iter().map(published).collect();
        assert_eq!(redis.published(), expected);
        assert_eq!(redis.apply_calls(), 3, "the second flush sent nothing");
        assert_eq!(outbox.items(), 0);
    }

    #[tokio::test]
    async fn beyond_its_bound_the_outbox_drops_whole_batches_oldest_first_and_says_how_many() {
        // Arrange: room for 3 items.
        let outbox = Outbox::new(3);
        let [one, two, three] = three_changes();

        // Act
        let dropped = [
            outbox.push(one),           // 1 item
            outbox.push(two.clone()),   // 3 items: at the bound
            outbox.push(three.clone()), // 4 items: the oldest (1) goes
        ];

        // Assert
        assert_eq!(dropped, [0, 0, 1]);
        assert_eq!(outbox.items(), 3);
        let redis = FakeRedis::new("e1", 0);
        outbox.flush(&redis).await.expect("the link works");
        assert_eq!(
            redis.published(),
            vec![published(&two), published(&three)],
            "the survivors, still in order"
        );
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_bound_is_dropped_with_everything_before_it() {
        let outbox = Outbox::new(1);
        let [one, two, _] = three_changes();
        assert_eq!(outbox.push(one), 0);
        assert_eq!(outbox.push(two), 3, "both batches: 1 + 2 items");
        assert_eq!(outbox.items(), 0);
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_what_it_did_not_publish_for_the_next_one() {
        // Arrange: the link breaks after the first batch.
        let outbox = Outbox::new(100);
        let changes = three_changes();
        for change in &changes {
            outbox.push(change.clone());
        }
        let redis = FakeRedis::new("e1", 0);
        redis.break_after(1, false);

        // Act
        let failed = outbox.flush(&redis).await;

        // Assert
        assert!(failed.is_err());
        assert_eq!(redis.published(), vec![published(&changes[0])]);
        assert_eq!(outbox.items(), 3, "batches 1 and 2 are still kept");

        // The link is back: the rest goes, nothing twice.
        redis.heal();
        outbox.flush(&redis).await.expect("the link works");
        let expected: Vec<_> = changes.iter().map(published).collect();
        assert_eq!(redis.published(), expected);
        assert_eq!(outbox.items(), 0);
    }

    #[tokio::test]
    async fn a_batch_whose_reply_was_lost_is_retried_under_the_same_id_and_applied_once() {
        // Arrange: Redis applies the second batch but the reply never arrives.
        let outbox = Outbox::new(100);
        let changes = three_changes();
        for change in &changes {
            outbox.push(change.clone());
        }
        let redis = FakeRedis::new("e1", 0);
        redis.break_after(1, true);

        // Act
        assert!(outbox.flush(&redis).await.is_err());
        redis.heal();
        outbox.flush(&redis).await.expect("the link works");

        // Assert
        let expected: Vec<_> = changes.iter().map(published).collect();
        assert_eq!(redis.published(), expected, "each batch once, in order");
        assert_eq!(redis.apply_calls(), 4, "batch 1 was sent twice");
        assert_eq!(outbox.items(), 0);
    }

    #[test]
    fn batch_ids_are_unique_per_instance_and_never_repeat() {
        let a = BatchIds::new("t:batch:", "a1");
        let b = BatchIds::new("t:batch:", "b2");
        let ids = [a.next(), a.next(), b.next()];
        assert_eq!(ids, ["t:batch:a1:0", "t:batch:a1:1", "t:batch:b2:0"]);
    }

    #[test]
    fn clearing_forgets_every_kept_change() {
        let outbox = Outbox::new(100);
        for change in three_changes() {
            outbox.push(change);
        }
        assert_eq!(outbox.clear(), 4);
        assert_eq!(outbox.items(), 0);
    }
}

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

use super::remote::Linked;
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
    pub async fn flush(&self, redis: &Linked<'_>) -> anyhow::Result<()> {
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

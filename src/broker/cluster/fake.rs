//! An in-memory [`ClusterState`] for unit tests: a hash of records, a sequence
//! number and an epoch, the batch ids already applied (as `apply.lua` marks them),
//! every batch it published in order, and a switch that cuts the link after a
//! number of calls, with or without the last call having reached "Redis".

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::bail;

use super::remote::{ClusterState, Snapshot};
use crate::broker::record::{encode_record, Op};
use crate::domain::Quote;

/// One batch as the channel carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub batch: String,
    pub op: Op,
    pub publisher: String,
    pub items: Vec<String>,
}

#[derive(Default)]
struct State {
    epoch: String,
    seq: u64,
    /// `symbol, record` pairs, flat as HGETALL answers.
    records: Vec<String>,
    applied_ids: HashSet<String>,
    published: Vec<Published>,
    apply_calls: usize,
    /// Calls to `apply` that still succeed before the link breaks; `None`: never.
    calls_before_break: Option<usize>,
    /// Whether the call that meets the break still reached Redis (its reply was lost).
    reply_lost: bool,
}

pub struct FakeRedis {
    state: Mutex<State>,
}

impl FakeRedis {
    /// A cluster state under `epoch`, at sequence number `seq`, with no quotes.
    pub fn new(epoch: &str, seq: u64) -> FakeRedis {
        FakeRedis {
            state: Mutex::new(State {
                epoch: epoch.to_owned(),
                seq,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `symbol`'s quote and name in the hash, as `encode_record` writes it.
    pub fn with_quote(self, symbol: &str, quote: &Quote, name: &str) -> FakeRedis {
        self.with_record(symbol, &encode_record(quote, name))
    }

    /// Puts a raw record in the hash (to test unreadable ones).
    pub fn with_record(self, symbol: &str, record: &str) -> FakeRedis {
        let mut state = self.lock();
        state.records.push(symbol.to_owned());
        state.records.push(record.to_owned());
        drop(state);
        self
    }

    /// Lets `calls` more calls to `apply` succeed, then fails every one after. With
    /// `reply_lost`, the first failing call is applied all the same (a timeout after
    /// the script ran).
    pub fn break_after(&self, calls: usize, reply_lost: bool) {
        let mut state = self.lock();
        state.calls_before_break = Some(calls);
        state.reply_lost = reply_lost;
    }

    /// The link works again.
    pub fn heal(&self) {
        self.lock().calls_before_break = None;
    }

    /// Every batch published so far, in the order the channel carried them.
    pub fn published(&self) -> Vec<Published> {
        self.lock().published.clone()
    }

    /// Calls to `apply`, failed and repeated ones included.
    pub fn apply_calls(&self) -> usize {
        self.lock().apply_calls
    }
}

impl State {
    /// What `apply.lua` does with a batch, minus the quotes: once per id, in order.
    fn apply(&mut self, batch: &str, op: Op, publisher: &str, items: &[String]) -> (i64, usize) {
        if !self.applied_ids.insert(batch.to_owned()) {
            return (-1, 0);
        }
        self.seq += 1;
        self.published.push(Published {
            batch: batch.to_owned(),
            op,
            publisher: publisher.to_owned(),
            items: items.to_vec(),
        });
        (self.seq as i64, 0)
    }
}

impl ClusterState for FakeRedis {
    async fn apply(
        &self,
        batch: &str,
        op: Op,
        publisher: &str,
        items: &[String],
    ) -> anyhow::Result<(i64, usize)> {
        let mut state = self.lock();
        state.apply_calls += 1;
        match state.calls_before_break {
            Some(0) => {
                if std::mem::take(&mut state.reply_lost) {
                    state.apply(batch, op, publisher, items);
                }
                bail!("connection lost")
            }
            Some(n) => state.calls_before_break = Some(n - 1),
            None => {}
        }
        Ok(state.apply(batch, op, publisher, items))
    }

    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let state = self.lock();
        Ok(Snapshot {
            epoch: state.epoch.clone(),
            seq: state.seq,
            records: state.records.clone(),
        })
    }
}

//! Runs the backfill each time the feed goes live and merges what it fetched into
//! the store's history through the broker.
//!
//! Where vendor bars stop: a connection that went live at `live_from` makes the bars
//! from the minute that holds `live_from` on out of its own trades, so only minutes
//! before it are merged (a vendor's bar for that minute would count those trades
//! twice). Daily bars are merged for the days before the current trading day, whose
//! bar is the quote's. A vendor's bar replaces the stored bar of its bucket: it is
//! whole, where one built here may miss what arrived during a gap.

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{plan, BackfillInterval, Backfiller, Fetched};
use crate::broker::Broker;
use crate::config::{FeedSettings, TradingDaySettings};
use crate::sources::feed::LiveSince;
use crate::store::{Interval, SnapshotStore};

/// Backfills after every [`LiveSince`] the feed reports, until shutdown.
pub async fn run_backfills(
    feed: FeedSettings,
    day: TradingDaySettings,
    store: SnapshotStore,
    broker: Broker,
    mut live: watch::Receiver<Option<LiveSince>>,
    shutdown: CancellationToken,
) {
    let mut backfiller = match Backfiller::new(&feed) {
        Ok(backfiller) => backfiller,
        Err(e) => {
            warn!(error = %format!("{e:#}"), "history backfill disabled: cannot build its HTTP client");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = live.changed() => if changed.is_err() { return },
        }
        let Some(since) = *live.borrow_and_update() else {
            continue;
        };
        let requests = match plan(&feed, &day, Utc::now(), since.gap_from) {
            Ok(requests) => requests,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "history backfill: cannot plan it");
                continue;
            }
        };
        let (out, mut fetched) = mpsc::channel::<Fetched>(8);
        let fetch = async {
            let out = out; // dropped when the run ends, which ends the merge below
            backfiller.run(requests, &out, &shutdown).await
        };
        let merge = async {
            let mut merged = 0usize;
            while let Some(batch) = fetched.recv().await {
                merged += merge(&store, &broker, &batch, since.live_from).await;
            }
            merged
        };
        let (summary, merged) = tokio::join!(fetch, merge);
        info!(
            fetched = summary.fetched,
            failed = summary.failed,
            skipped = summary.skipped,
            bars = merged,
            reason = summary.reason,
            "history backfill ended"
        );
    }
}

/// Merges one request's bars; returns how many were offered to the store.
async fn merge(store: &SnapshotStore, broker: &Broker, fetched: &Fetched, live_from: i64) -> usize {
    let Some(id) = store.lookup(&fetched.request.symbol) else {
        return 0;
    };
    let (interval, before) = match fetched.request.interval {
        BackfillInterval::Minute => (
            Interval::OneMinute,
            live_from - live_from.rem_euclid(60_000),
        ),
        BackfillInterval::Day => (Interval::OneDay, i64::MAX),
    };
    broker.merge_bars(id, interval, &fetched.bars, before).await;
    fetched.bars.len()
}

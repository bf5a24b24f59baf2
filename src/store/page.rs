//! One page of a symbol's history: the newest bars of a time range, taken from the
//! rings in memory and, for what is older than they hold, from the data file.
//!
//! A ring holds every bar from its first one on ([`RecentBars::ring_from`]), so the
//! file is asked only for `t` before that: no bar is served twice, and one that is
//! not yet committed is served from memory.

use super::{Bar, Durable, Interval, SnapshotStore, StorageUnavailable};
use crate::domain::SymbolId;

/// The most bars one page holds (`limit` above it is served as this).
pub const MAX_PAGE_BARS: usize = 5_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Oldest first.
    pub bars: Vec<Bar>,
    /// Older bars of the range were left out: ask again with `to` = the first `t`.
    pub more: bool,
}

/// The newest `limit` bars of `id` with `from <= t < to`.
pub async fn history_page(
    store: &SnapshotStore,
    durable: Option<&Durable>,
    id: SymbolId,
    interval: Interval,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<HistoryPage, StorageUnavailable> {
    let limit = limit.clamp(1, MAX_PAGE_BARS);
    let recent = store.recent_bars(id, interval, from, to, limit);
    let mut page = HistoryPage {
        bars: recent.bars,
        more: recent.cut,
    };
    let Some(durable) = durable else {
        return Ok(page);
    };
    let older_to = recent.ring_from.map_or(to, |ring_from| ring_from.min(to));
    if page.more || page.bars.len() >= limit || from >= older_to {
        return Ok(page);
    }
    let (durable, symbol) = (durable.clone(), store.info(id).symbol.clone());
    let wanted = limit - page.bars.len();
    let (mut older, more) = tokio::task::spawn_blocking(move || {
        durable.read_bars(&symbol, interval, from, older_to, wanted)
    })
    .await
    .map_err(|_| StorageUnavailable)??;
    older.append(&mut page.bars);
    Ok(HistoryPage { bars: older, more })
}

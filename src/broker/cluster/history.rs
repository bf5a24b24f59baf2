//! History pages in a cluster: every instance reads the bars `apply.lua` keeps in
//! Redis, so all serve the same history, one started a minute ago included, and a
//! resync has nothing of its own to repair. Only the trading day in progress comes
//! from this instance's quote, which equals the cluster's hash.
//!
//! While Redis is out of reach (or a read fails) the page comes from the bars this
//! instance holds in memory, which go on growing from what it applies locally: a
//! degraded instance keeps serving, as it does quotes.

use redis::aio::MultiplexedConnection;
use tracing::warn;

use super::Cluster;
use crate::broker::record::decode_bar;
use crate::domain::SymbolId;
use crate::store::{with_day_in_progress, HistoryPage, Interval, MAX_PAGE_BARS};

impl Cluster {
    /// The newest `limit` bars of `id` with `from <= t < to`, oldest first.
    pub async fn history_page(
        &self,
        id: SymbolId,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> HistoryPage {
        let limit = limit.clamp(1, MAX_PAGE_BARS);
        if let Some(link) = self.current_link() {
            let mut conn = link.conn.clone();
            match self
                .shared_page(&mut conn, id, interval, from, to, limit)
                .await
            {
                Ok(page) => return page,
                Err(e) => warn!(error = %e, "cannot read bars from Redis; serving this instance's"),
            }
        }
        let recent = self.store.recent_bars(id, interval, from, to, limit);
        HistoryPage {
            bars: recent.bars,
            more: recent.cut,
        }
    }

    async fn shared_page(
        &self,
        conn: &mut MultiplexedConnection,
        id: SymbolId,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> anyhow::Result<HistoryPage> {
        // The day in progress is the quote's; Redis holds closed days only.
        let today = (interval == Interval::OneDay)
            .then(|| self.store.day_bar_in_progress(id))
            .flatten();
        let (today, closed_to, closed_limit) = with_day_in_progress(today, from, to, limit);
        let key = self
            .remote
            .keys
            .bar_series(interval, self.store.info(id).symbol.as_str());
        let max = match closed_to {
            i64::MAX => "+inf".to_owned(),
            t => format!("({t}"),
        };
        let min = match from {
            i64::MIN => "-inf".to_owned(),
            t => t.to_string(),
        };
        // Newest first, one more than wanted: that one says whether there is more.
        let members: Vec<String> = tokio::time::timeout(
            self.remote.timeout,
            redis::cmd("ZREVRANGEBYSCORE")
                .arg(&key)
                .arg(max)
                .arg(min)
                .arg("LIMIT")
                .arg(0)
                .arg(closed_limit + 1)
                .query_async(conn),
        )
        .await??;
        let more = members.len() > closed_limit;
        let mut bars = Vec::with_capacity(limit);
        for member in members.iter().take(closed_limit).rev() {
            match decode_bar(member) {
                Some(bar) => bars.push(bar),
                None => anyhow::bail!("unreadable bar {member:?} in {key}"),
            }
        }
        bars.extend(today);
        Ok(HistoryPage { bars, more })
    }
}

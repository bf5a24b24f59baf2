//! Recent price history per symbol: 1-second, 1-minute and daily OHLCV bars in
//! bounded rings.
//!
//! Bars are fed by the same apply path as the quote, under the same slot lock, so a
//! bar and the quote never disagree about which trades happened. A 1 s or 1 m bar's
//! `t` is the start of its bucket in the trade's own event time; a daily bar is the
//! quote's day (`o/h/l/p/v`) closed at the trading-day rollover, and its `t` is that
//! trading day's date at 00:00 UTC. Rings are empty until a symbol's first trade, so
//! quiet symbols cost nothing.
//!
//! The rings are the newest part of the history. Without a data file they are all of
//! it; with one, the durable layer keeps the longer retention on disk and the rings
//! hold what is newest, starting from the newest stored bar of each interval after a
//! restart (so the bar in progress goes on, never restarts). A ring always covers
//! every bar from its first one on, which is what lets a reader take older bars from
//! disk and newer ones from here without a gap or an overlap.

use std::collections::VecDeque;

use crate::domain::Price;

/// Bars kept in memory per interval: five minutes of seconds, a 6.5-hour trading day
/// of minutes, a trading year of days.
pub const SECOND_BARS: usize = 300;
pub const MINUTE_BARS: usize = 390;
pub const DAY_BARS: usize = 260;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    OneSecond,
    OneMinute,
    OneDay,
}

impl Interval {
    pub const ALL: [Interval; 3] = [Interval::OneSecond, Interval::OneMinute, Interval::OneDay];

    pub fn parse(raw: &str) -> Option<Interval> {
        match raw {
            "1s" => Some(Interval::OneSecond),
            "1m" => Some(Interval::OneMinute),
            "1d" => Some(Interval::OneDay),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::OneSecond => "1s",
            Interval::OneMinute => "1m",
            Interval::OneDay => "1d",
        }
    }

    /// The bucket length; a day is counted as 24 hours (a daily bar's `t` is a date).
    pub fn millis(self) -> i64 {
        match self {
            Interval::OneSecond => 1_000,
            Interval::OneMinute => 60_000,
            Interval::OneDay => 86_400_000,
        }
    }

    /// Bars the in-memory ring keeps.
    pub fn capacity(self) -> usize {
        match self {
            Interval::OneSecond => SECOND_BARS,
            Interval::OneMinute => MINUTE_BARS,
            Interval::OneDay => DAY_BARS,
        }
    }
}

/// A daily bar's `t`: its trading day's date at 00:00 UTC, in ms.
pub fn day_bar_time(date: chrono::NaiveDate) -> i64 {
    date.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
}

/// Where a page of daily bars puts the day in progress (`today`, the quote's bar):
/// last, if it falls in `from..to` and the page has room; the closed bars then end
/// before it and leave it that room. Returns it (if in the page), where the closed
/// bars end (exclusive) and how many of them fit.
pub fn with_day_in_progress(
    today: Option<Bar>,
    from: i64,
    to: i64,
    limit: usize,
) -> (Option<Bar>, i64, usize) {
    let today = today.filter(|bar| from <= bar.t && bar.t < to && limit > 0);
    let closed_to = today.map_or(to, |bar| to.min(bar.t));
    (today, closed_to, limit - usize::from(today.is_some()))
}

/// How far back the data file keeps each interval's bars, in ms counted back from a
/// symbol's newest bar of that interval (`store.history_*`). The rings in memory
/// span less, so a restart never shortens what a history page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub second_bars_ms: i64,
    pub minute_bars_ms: i64,
    pub day_bars_ms: i64,
}

impl Retention {
    pub fn of(&self, interval: Interval) -> i64 {
        match interval {
            Interval::OneSecond => self.second_bars_ms,
            Interval::OneMinute => self.minute_bars_ms,
            Interval::OneDay => self.day_bars_ms,
        }
    }
}

/// One OHLCV bar; prices are exact fixed-point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub t: i64,
    pub o: Price,
    pub h: Price,
    pub l: Price,
    pub c: Price,
    pub v: u64,
}

#[derive(Debug, Default, Clone)]
pub struct History {
    rings: [VecDeque<Bar>; 3],
    /// Per interval, the oldest bar `t` changed since the durable layer last took the
    /// changed bars ([`History::take_changed`]); `None` when nothing changed.
    changed_from: [Option<i64>; 3],
    /// Per interval, whether a new bar was started since the last take: only then
    /// can bars have aged out of the retention, so only then does the writer prune.
    opened: [bool; 3],
    /// Per interval, changed bars pushed out of the ring before the durable layer
    /// took them (a batch spanning more bars than the ring holds): kept for the next
    /// take, so an acknowledged batch's bars are all stored. Only with a data file
    /// ([`History::record_trade`]'s `spill`), and bounded by [`MAX_SPILLED`].
    spilled: [Vec<Bar>; 3],
}

/// Most bars of one interval kept for the durable layer beyond the ring (while the
/// disk fails, the oldest go first).
pub const MAX_SPILLED: usize = 4_096;

/// The bars of one interval that changed since the last [`History::take_changed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedBars {
    pub interval: Interval,
    pub bars: Vec<Bar>,
    /// A new bar was started: older bars may have left the retention.
    pub opened: bool,
}

/// The newest bars of one interval in a time range, from the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentBars {
    /// Oldest first, at most the asked limit, the newest ones of the range.
    pub bars: Vec<Bar>,
    /// The ring's first bar: every bar from it on is in the ring, so only older ones
    /// can be elsewhere (on disk). `None` when the ring is empty.
    pub ring_from: Option<i64>,
    /// The range held more ring bars than the limit.
    pub cut: bool,
}

impl History {
    /// Records a trade. An out-of-order trade (older than the quote's last tick) adds
    /// its volume to the bar of its own bucket if that bar is still kept, and moves
    /// no price, matching the quote's rule.
    /// `spill`: a data file takes the changed bars, so those pushed out of the ring
    /// before it took them are kept for it.
    pub fn record_trade(&mut self, ts: i64, price: Price, size: u64, in_order: bool, spill: bool) {
        for interval in [Interval::OneSecond, Interval::OneMinute] {
            let i = interval as usize;
            let ring = &mut self.rings[i];
            let previous = ring.back().map(|bar| bar.t);
            if let Some((t, opened)) = record(ring, interval, ts, price, size, in_order) {
                // A new bar closes the one before it: the data file moves that one
                // from the bar in progress to the closed bars, so it counts as changed.
                let from = if opened { previous.unwrap_or(t) } else { t };
                self.mark_changed_from(interval, from);
                self.opened[i] |= opened;
            }
            let ring = &mut self.rings[i];
            if ring.len() > interval.capacity() {
                let out = ring.pop_front().expect("longer than its capacity");
                if spill && self.changed_from[i].is_some_and(|from| out.t >= from) {
                    spill_bar(&mut self.spilled[i], out);
                }
            }
        }
    }

    /// Records a closed trading day's bar (at the rollover, or a vendor's backfill):
    /// replaces the bar of that day if the ring has it, else inserts it in order.
    pub fn put_day(&mut self, bar: Bar) {
        let ring = &mut self.rings[Interval::OneDay as usize];
        match ring.binary_search_by_key(&bar.t, |b| b.t) {
            Ok(index) => ring[index] = bar,
            Err(index) => {
                ring.insert(index, bar);
                self.opened[Interval::OneDay as usize] = true;
                if ring.len() > Interval::OneDay.capacity() {
                    ring.pop_front();
                }
            }
        }
        self.mark_changed_from(Interval::OneDay, bar.t);
    }

    /// Merges bars from elsewhere (a vendor's history): each replaces the bar of its
    /// bucket or is inserted in order; the ring then keeps its newest `capacity`
    /// (with `spill`, the changed ones it lets go are kept for the data file).
    pub fn merge(&mut self, interval: Interval, bars: &[Bar], spill: bool) {
        let i = interval as usize;
        let Some(oldest) = bars.iter().map(|bar| bar.t).min() else {
            return;
        };
        let ring = &mut self.rings[i];
        for bar in bars {
            match ring.binary_search_by_key(&bar.t, |b| b.t) {
                Ok(index) => ring[index] = *bar,
                Err(index) => ring.insert(index, *bar),
            }
        }
        self.mark_changed_from(interval, oldest);
        self.opened[i] = true;
        while self.rings[i].len() > interval.capacity() {
            let out = self.rings[i].pop_front().expect("longer than its capacity");
            if spill {
                spill_bar(&mut self.spilled[i], out);
            }
        }
    }

    /// The bars changed since the last call, per interval with a change, and forgets
    /// them: the durable layer writes exactly these (the slot lock is held).
    pub fn take_changed(&mut self) -> Vec<ChangedBars> {
        let mut changed = Vec::new();
        for interval in Interval::ALL {
            let i = interval as usize;
            let Some(from) = self.changed_from[i].take() else {
                continue;
            };
            let mut bars = std::mem::take(&mut self.spilled[i]);
            bars.extend(self.rings[i].iter().filter(|bar| bar.t >= from).copied());
            changed.push(ChangedBars {
                interval,
                bars,
                opened: std::mem::take(&mut self.opened[i]),
            });
        }
        changed
    }

    /// Marks the bars from `t` on as changed again (their commit failed).
    pub fn mark_changed_from(&mut self, interval: Interval, t: i64) {
        let from = &mut self.changed_from[interval as usize];
        *from = Some(from.map_or(t, |from| from.min(t)));
    }

    /// Marks a copy's changes as changed again after its commit failed; those no
    /// longer in the ring are kept aside again.
    pub fn requeue(&mut self, changed: &ChangedBars) {
        let i = changed.interval as usize;
        if let Some(first) = changed.bars.first() {
            self.mark_changed_from(changed.interval, first.t);
        }
        self.opened[i] |= changed.opened;
        let ring_from = self.rings[i].front().map_or(i64::MAX, |bar| bar.t);
        let mut older: Vec<Bar> = changed
            .bars
            .iter()
            .take_while(|bar| bar.t < ring_from)
            .copied()
            .collect();
        if !older.is_empty() {
            // Older than anything spilled since: they go first.
            older.append(&mut self.spilled[i]);
            let excess = older.len().saturating_sub(MAX_SPILLED);
            older.drain(..excess);
            self.spilled[i] = older;
        }
    }

    /// Puts back stored bars of one interval (oldest first) at start-up, keeping the
    /// newest the ring holds.
    pub fn restore(&mut self, interval: Interval, bars: impl IntoIterator<Item = Bar>) {
        let ring = &mut self.rings[interval as usize];
        ring.extend(bars);
        while ring.len() > interval.capacity() {
            ring.pop_front();
        }
    }

    /// The newest `limit` bars, oldest first.
    pub fn bars(&self, interval: Interval, limit: usize) -> Vec<Bar> {
        self.recent(interval, i64::MIN, i64::MAX, limit).bars
    }

    /// The newest `limit` bars with `from <= t < to`, oldest first.
    pub fn recent(&self, interval: Interval, from: i64, to: i64, limit: usize) -> RecentBars {
        let ring = &self.rings[interval as usize];
        let start = ring.partition_point(|bar| bar.t < from);
        let end = ring.partition_point(|bar| bar.t < to);
        let skip = (end.saturating_sub(start)).saturating_sub(limit);
        RecentBars {
            bars: ring.range(start + skip..end.max(start)).copied().collect(),
            ring_from: ring.front().map(|bar| bar.t),
            cut: skip > 0,
        }
    }
}

fn spill_bar(spilled: &mut Vec<Bar>, bar: Bar) {
    if spilled.len() == MAX_SPILLED {
        spilled.remove(0);
    }
    spilled.push(bar);
}

/// Records one trade in one ring (which may then be one bar longer than its
/// capacity); returns the `t` of the bar it changed, if any, and
/// whether that bar is new.
fn record(
    ring: &mut VecDeque<Bar>,
    interval: Interval,
    ts: i64,
    price: Price,
    size: u64,
    in_order: bool,
) -> Option<(i64, bool)> {
    let start = ts - ts.rem_euclid(interval.millis());
    match ring.back_mut() {
        Some(bar) if bar.t == start => {
            bar.v = bar.v.saturating_add(size);
            if in_order {
                bar.h = bar.h.max(price);
                bar.l = bar.l.min(price);
                bar.c = price;
            }
            Some((start, false))
        }
        Some(bar) if bar.t > start || !in_order => {
            // An older bucket: volume only, and only if that bar is still kept.
            let index = ring.binary_search_by_key(&start, |b| b.t).ok()?;
            ring[index].v = ring[index].v.saturating_add(size);
            Some((start, false))
        }
        None if !in_order => None,
        _ => {
            ring.push_back(Bar {
                t: start,
                o: price,
                h: price,
                l: price,
                c: price,
                v: size,
            });
            Some((start, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Price {
        Price::parse(text).unwrap()
    }

    #[test]
    fn builds_bars_against_a_hand_computed_series() {
        let mut history = History::default();
        // Second 0: 10, 12, 9, 11 (v 4); second 1: 13 (v 5); second 3: 8 (v 6).
        for (ts, price, size) in [
            (0, "10", 1),
            (200, "12", 1),
            (500, "9", 1),
            (999, "11", 1),
            (1_000, "13", 5),
            (3_500, "8", 6),
        ] {
            history.record_trade(ts, p(price), size, true, false);
        }
        let bar = |t, o, h, l, c, v| Bar {
            t,
            o: p(o),
            h: p(h),
            l: p(l),
            c: p(c),
            v,
        };
        assert_eq!(
            history.bars(Interval::OneSecond, 10),
            vec![
                bar(0, "10", "12", "9", "11", 4),
                bar(1_000, "13", "13", "13", "13", 5),
                bar(3_000, "8", "8", "8", "8", 6),
            ]
        );
        assert_eq!(
            history.bars(Interval::OneMinute, 10),
            vec![bar(0, "10", "13", "8", "8", 15)]
        );
        assert_eq!(
            history.bars(Interval::OneSecond, 1),
            vec![bar(3_000, "8", "8", "8", "8", 6)]
        );
    }

    #[test]
    fn out_of_order_trades_add_volume_to_their_own_bucket_only() {
        let mut history = History::default();
        history.record_trade(0, p("10"), 1, true, false);
        history.record_trade(2_000, p("11"), 1, true, false);
        history.record_trade(500, p("99"), 7, false, false);
        let bars = history.bars(Interval::OneSecond, 10);
        assert_eq!((bars[0].v, bars[0].h), (8, p("10")));
        assert_eq!(bars[1].v, 1);
        // A bucket no longer (or never) kept: nothing to add to.
        history.record_trade(1_000, p("99"), 3, false, false);
        assert_eq!(history.bars(Interval::OneSecond, 10).len(), 2);
    }

    #[test]
    fn changed_bars_are_taken_once_with_the_oldest_kept() {
        let mut history = History::default();
        history.record_trade(0, p("10"), 1, true, false);
        history.record_trade(61_000, p("11"), 2, true, false);
        let first = history.take_changed();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].bars.len(), 2, "both second bars are new");
        assert!(history.take_changed().is_empty(), "nothing changed since");
        // A late trade changes only its own (older) bucket, and the ones after it.
        history.record_trade(500, p("99"), 7, false, false);
        let late = history.take_changed();
        assert_eq!(late[0].interval, Interval::OneSecond);
        assert_eq!((late[0].bars[0].t, late[0].bars[0].v), (0, 8));
        assert!(!late[0].opened, "no new bar, nothing can have aged out");
        assert!(first[0].opened && first[1].opened);
    }

    #[test]
    fn recent_takes_the_newest_bars_of_a_range() {
        let mut history = History::default();
        for i in 0..10 {
            history.record_trade(i * 1_000, p("1"), 1, true, false);
        }
        let page = history.recent(Interval::OneSecond, 2_000, 8_000, 3);
        let ts: Vec<i64> = page.bars.iter().map(|bar| bar.t).collect();
        assert_eq!(
            (ts, page.cut, page.ring_from),
            (vec![5_000, 6_000, 7_000], true, Some(0))
        );
        let all = history.recent(Interval::OneSecond, 2_000, 8_000, 100);
        assert_eq!((all.bars.len(), all.cut), (6, false));
        let none = history.recent(Interval::OneSecond, 20_000, 30_000, 100);
        assert!(none.bars.is_empty() && !none.cut);
        let backwards = history.recent(Interval::OneSecond, 8_000, 2_000, 100);
        assert!(backwards.bars.is_empty());
    }

    #[test]
    fn a_day_bar_replaces_its_own_day_and_keeps_order() {
        let mut history = History::default();
        let day = |t: i64, c: &str| Bar {
            t,
            o: p("1"),
            h: p("2"),
            l: p("1"),
            c: p(c),
            v: 5,
        };
        const D: i64 = 86_400_000;
        history.put_day(day(2 * D, "1.5"));
        history.put_day(day(0, "1.1"));
        history.put_day(day(2 * D, "1.7"));
        let bars = history.bars(Interval::OneDay, 10);
        assert_eq!(bars, vec![day(0, "1.1"), day(2 * D, "1.7")]);
        let changed = history.take_changed();
        assert_eq!(
            (changed[0].interval, changed[0].bars.len()),
            (Interval::OneDay, 2)
        );
    }

    #[test]
    fn restore_keeps_the_newest_bars_a_ring_holds() {
        let mut history = History::default();
        let bars = (0..400).map(|i| Bar {
            t: i * 1_000,
            o: p("1"),
            h: p("1"),
            l: p("1"),
            c: p("1"),
            v: 1,
        });
        history.restore(Interval::OneSecond, bars);
        let kept = history.bars(Interval::OneSecond, usize::MAX);
        assert_eq!((kept.len(), kept[0].t), (SECOND_BARS, 100_000));
        assert!(
            history.take_changed().is_empty(),
            "restored bars are stored"
        );
    }

    #[test]
    fn changed_bars_pushed_out_of_the_ring_are_kept_for_the_data_file() {
        let mut history = History::default();
        let n = SECOND_BARS as i64 + 50;
        for i in 0..n {
            history.record_trade(i * 1_000, p("1"), 1, true, true);
        }
        assert_eq!(
            history.bars(Interval::OneSecond, usize::MAX).len(),
            SECOND_BARS
        );
        let changed = history.take_changed();
        assert_eq!(
            changed[0].bars.len(),
            n as usize,
            "every changed bar, in order"
        );
        assert!(changed[0].bars.windows(2).all(|w| w[0].t < w[1].t));
        // A failed commit puts them back, the spilled ones included.
        history.requeue(&changed[0]);
        let again = history.take_changed();
        assert_eq!(again[0].bars, changed[0].bars);
        // Without a data file nothing is kept beyond the ring.
        let mut memory_only = History::default();
        for i in 0..n {
            memory_only.record_trade(i * 1_000, p("1"), 1, true, false);
        }
        assert_eq!(memory_only.take_changed()[0].bars.len(), SECOND_BARS);
    }

    #[test]
    fn merged_bars_replace_their_buckets_and_the_older_ones_go_to_the_data_file() {
        let mut history = History::default();
        history.record_trade(600_000, p("5"), 1, true, true);
        history.take_changed();
        let bar = |t: i64, c: &str, v| Bar {
            t,
            o: p(c),
            h: p(c),
            l: p(c),
            c: p(c),
            v,
        };
        // 400 older minutes, one of them the bucket already held: replaced.
        let vendor: Vec<Bar> = (0..400)
            .map(|m| bar(600_000 - m * 60_000, "4.25", 9))
            .collect();
        history.merge(Interval::OneMinute, &vendor, true);
        let kept = history.bars(Interval::OneMinute, usize::MAX);
        assert_eq!(kept.len(), MINUTE_BARS);
        assert_eq!(*kept.last().unwrap(), bar(600_000, "4.25", 9));
        assert!(kept.windows(2).all(|w| w[0].t < w[1].t));
        let changed = history.take_changed();
        assert_eq!(
            changed[0].bars.len(),
            400,
            "all of them reach the data file"
        );
    }

    #[test]
    fn rings_are_bounded() {
        let mut history = History::default();
        for i in 0..1_000 {
            history.record_trade(i * 1_000, p("1"), 1, true, false);
        }
        let seconds = history.bars(Interval::OneSecond, usize::MAX);
        assert_eq!(seconds.len(), SECOND_BARS);
        assert_eq!(seconds[0].t, 700_000);
        assert_eq!(history.bars(Interval::OneMinute, usize::MAX).len(), 17);
    }
}

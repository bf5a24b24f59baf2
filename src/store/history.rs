//! Recent price history per symbol: 1-second and 1-minute OHLCV bars in bounded rings.
//!
//! Bars are fed by the same apply path as the quote, under the same slot lock, so a
//! bar and the quote never disagree about which trades happened. A bar's `t` is the
//! start of its bucket in the trade's own event time. Rings are empty until a
//! symbol's first trade, so quiet symbols cost nothing.

use std::collections::VecDeque;

use crate::domain::Price;

/// Bars kept per interval: five minutes of seconds, a 6.5-hour trading day of minutes.
pub const SECOND_BARS: usize = 300;
pub const MINUTE_BARS: usize = 390;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    OneSecond,
    OneMinute,
}

impl Interval {
    pub fn parse(raw: &str) -> Option<Interval> {
        match raw {
            "1s" => Some(Interval::OneSecond),
            "1m" => Some(Interval::OneMinute),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::OneSecond => "1s",
            Interval::OneMinute => "1m",
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Interval::OneSecond => 1_000,
            Interval::OneMinute => 60_000,
        }
    }

    pub fn capacity(self) -> usize {
        match self {
            Interval::OneSecond => SECOND_BARS,
            Interval::OneMinute => MINUTE_BARS,
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
    seconds: VecDeque<Bar>,
    minutes: VecDeque<Bar>,
    /// Per interval, the oldest bar `t` changed since the durable layer last took the
    /// changed bars ([`History::take_changed`]); `None` when nothing changed.
    changed_from: [Option<i64>; 2],
}

/// The bars of one interval that changed since the last [`History::take_changed`],
/// and the oldest bar still kept (older ones fell off the ring and can be dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedBars {
    pub interval: Interval,
    pub bars: Vec<Bar>,
    pub oldest_kept: Option<i64>,
}

impl History {
    /// Records a trade. An out-of-order trade (older than the quote's last tick) adds
    /// its volume to the bar of its own bucket if that bar is still kept, and moves
    /// no price, matching the quote's rule.
    pub fn record_trade(&mut self, ts: i64, price: Price, size: u64, in_order: bool) {
        for interval in [Interval::OneSecond, Interval::OneMinute] {
            let ring = match interval {
                Interval::OneSecond => &mut self.seconds,
                Interval::OneMinute => &mut self.minutes,
            };
            if let Some(t) = record(ring, interval, ts, price, size, in_order) {
                let from = &mut self.changed_from[interval as usize];
                *from = Some(from.map_or(t, |from| from.min(t)));
            }
        }
    }

    /// The bars changed since the last call, per interval with a change, and forgets
    /// them: the durable layer writes exactly these (the slot lock is held).
    pub fn take_changed(&mut self) -> Vec<ChangedBars> {
        let mut changed = Vec::new();
        for interval in [Interval::OneSecond, Interval::OneMinute] {
            let Some(from) = self.changed_from[interval as usize].take() else {
                continue;
            };
            let ring = self.ring(interval);
            changed.push(ChangedBars {
                interval,
                bars: ring.iter().filter(|bar| bar.t >= from).copied().collect(),
                oldest_kept: ring.front().map(|bar| bar.t),
            });
        }
        changed
    }

    /// Marks the bars from `t` on as changed again (their commit failed).
    pub fn mark_changed_from(&mut self, interval: Interval, t: i64) {
        let from = &mut self.changed_from[interval as usize];
        *from = Some(from.map_or(t, |from| from.min(t)));
    }

    /// Puts back stored bars of one interval (oldest first) at start-up, keeping the
    /// newest the ring holds.
    pub fn restore(&mut self, interval: Interval, bars: impl IntoIterator<Item = Bar>) {
        let ring = match interval {
            Interval::OneSecond => &mut self.seconds,
            Interval::OneMinute => &mut self.minutes,
        };
        ring.extend(bars);
        while ring.len() > interval.capacity() {
            ring.pop_front();
        }
    }

    fn ring(&self, interval: Interval) -> &VecDeque<Bar> {
        match interval {
            Interval::OneSecond => &self.seconds,
            Interval::OneMinute => &self.minutes,
        }
    }

    /// The newest `limit` bars, oldest first.
    pub fn bars(&self, interval: Interval, limit: usize) -> Vec<Bar> {
        let ring = self.ring(interval);
        let skip = ring.len().saturating_sub(limit);
        ring.iter().skip(skip).copied().collect()
    }
}

/// Records one trade in one ring; returns the `t` of the bar it changed, if any.
fn record(
    ring: &mut VecDeque<Bar>,
    interval: Interval,
    ts: i64,
    price: Price,
    size: u64,
    in_order: bool,
) -> Option<i64> {
    let start = ts - ts.rem_euclid(interval.millis());
    match ring.back_mut() {
        Some(bar) if bar.t == start => {
            bar.v = bar.v.saturating_add(size);
            if in_order {
                bar.h = bar.h.max(price);
                bar.l = bar.l.min(price);
                bar.c = price;
            }
            Some(start)
        }
        Some(bar) if bar.t > start || !in_order => {
            // An older bucket: volume only, and only if that bar is still kept.
            let index = ring.binary_search_by_key(&start, |b| b.t).ok()?;
            ring[index].v = ring[index].v.saturating_add(size);
            Some(start)
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
            if ring.len() > interval.capacity() {
                ring.pop_front();
            }
            Some(start)
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
            history.record_trade(ts, p(price), size, true);
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
        history.record_trade(0, p("10"), 1, true);
        history.record_trade(2_000, p("11"), 1, true);
        history.record_trade(500, p("99"), 7, false);
        let bars = history.bars(Interval::OneSecond, 10);
        assert_eq!((bars[0].v, bars[0].h), (8, p("10")));
        assert_eq!(bars[1].v, 1);
        // A bucket no longer (or never) kept: nothing to add to.
        history.record_trade(1_000, p("99"), 3, false);
        assert_eq!(history.bars(Interval::OneSecond, 10).len(), 2);
    }

    #[test]
    fn changed_bars_are_taken_once_with_the_oldest_kept() {
        let mut history = History::default();
        history.record_trade(0, p("10"), 1, true);
        history.record_trade(61_000, p("11"), 2, true);
        let first = history.take_changed();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].bars.len(), 2, "both second bars are new");
        assert!(history.take_changed().is_empty(), "nothing changed since");
        // A late trade changes only its own (older) bucket, and the ones after it.
        history.record_trade(500, p("99"), 7, false);
        let late = history.take_changed();
        assert_eq!(late[0].interval, Interval::OneSecond);
        assert_eq!((late[0].bars[0].t, late[0].bars[0].v), (0, 8));
        assert_eq!(late[0].oldest_kept, Some(0));
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
    fn rings_are_bounded() {
        let mut history = History::default();
        for i in 0..1_000 {
            history.record_trade(i * 1_000, p("1"), 1, true);
        }
        let seconds = history.bars(Interval::OneSecond, usize::MAX);
        assert_eq!(seconds.len(), SECOND_BARS);
        assert_eq!(seconds[0].t, 700_000);
        assert_eq!(history.bars(Interval::OneMinute, usize::MAX).len(), 17);
    }
}

//! What to fetch, and fetching it at the vendor's pace.
//!
//! [`plan`] lists the requests for a start (or after a gap): every configured
//! symbol's 1-minute bars of the current trading day first (what a viewer looks at),
//! then its daily bars of the last `feed.backfill_days` days. [`Backfiller`] runs
//! such a list: one request at a time, spaced to stay within the plan's quota
//! (`feed.backfill_requests_per_minute`, by default the vendor's free-plan limit),
//! honouring `Retry-After`, retrying what may succeed later a bounded number of
//! times, and after a refusal (HTTP 401/403) asking no more of that interval.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveTime, Utc};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{fetch_bars, BackfillClient, BackfillError, BackfillInterval, Bar};
use crate::config::{FeedSettings, TradingDaySettings};
use crate::domain::Symbol;
use crate::sources::trading_day::last_rollover;

/// Attempts per request, the first included, for failures that may pass (429, 5xx,
/// timeouts, connection failures). After them the request is skipped: the next
/// start or gap asks again.
const MAX_ATTEMPTS: u32 = 3;

/// One call to [`fetch_bars`] that a plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub symbol: Symbol,
    pub interval: BackfillInterval,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// A request's bars, as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub request: FetchRequest,
    pub bars: Vec<Bar>,
}

/// What a [`Backfiller::run`] did, and why it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests answered with bars (possibly none) and handed on.
    pub fetched: usize,
    pub bars: usize,
    /// Requests that failed after their attempts.
    pub failed: usize,
    /// Requests not made, their interval refused earlier (HTTP 401/403).
    pub skipped: usize,
    /// `done`, `shutdown` or `receiver closed`.
    pub reason: &'static str,
}

/// The requests that fill history at `now`, for every symbol of `feed.symbols`.
///
/// `complete_until` is where the history already held ends (ms), `None` at a first
/// start. 1-minute bars are asked from the current trading day's start (the last
/// `trading_day.rollover_time`) or from `complete_until` if later; daily bars from
/// `feed.backfill_days` calendar days ago, and after a gap only when it began before
/// the current trading day (a day's daily bar is missing), from that day on.
pub fn plan(
    feed: &FeedSettings,
    day: &TradingDaySettings,
    now: DateTime<Utc>,
    complete_until: Option<i64>,
) -> anyhow::Result<Vec<FetchRequest>> {
    let symbols = feed.symbols()?;
    let zone = day.time_zone()?;
    let day_start = last_rollover(now, day.rollover_time()?, zone).timestamp_millis();
    let now_ms = now.timestamp_millis();
    let minute_from = complete_until.map_or(day_start, |held| held.max(day_start));
    let utc_midnight = |date: chrono::NaiveDate| date.and_time(NaiveTime::MIN).and_utc();
    let first_day = now
        .with_timezone(&zone)
        .date_naive()
        .checked_sub_days(Days::new(u64::from(feed.backfill_days)))
        .map(|date| utc_midnight(date).timestamp_millis());
    let daily_from = match (feed.backfill_days, complete_until, first_day) {
        (0, _, _) | (_, _, None) => None,
        (_, None, Some(first)) => Some(first),
        (_, Some(held), Some(first)) if held < day_start => {
            let held_date = DateTime::from_timestamp_millis(held)
                .map(|t| utc_midnight(t.with_timezone(&zone).date_naive()).timestamp_millis())
                .unwrap_or(first);
            Some(first.max(held_date))
        }
        (_, Some(_), Some(_)) => None,
    };
    let mut requests = Vec::new();
    if minute_from < now_ms {
        requests.extend(symbols.iter().map(|symbol| FetchRequest {
            symbol: symbol.clone(),
            interval: BackfillInterval::Minute,
            from_ms: minute_from,
            to_ms: now_ms,
        }));
    }
    if let Some(from_ms) = daily_from.filter(|&from| from < now_ms) {
        requests.extend(symbols.iter().map(|symbol| FetchRequest {
            symbol: symbol.clone(),
            interval: BackfillInterval::Day,
            from_ms,
            to_ms: now_ms,
        }));
    }
    Ok(requests)
}

/// The interval between two requests to the vendor: a minute divided by
/// `feed.backfill_requests_per_minute`, or by the vendor's free-plan limit when 0.
pub fn request_spacing(feed: &FeedSettings) -> Duration {
    let per_minute = match feed.backfill_requests_per_minute {
        0 => feed.kind.free_requests_per_minute(),
        n => n,
    };
    Duration::from_secs(60) / per_minute.max(1)
}

/// Runs plans against the configured vendor, one request at a time. Keeps its pace
/// and its refusals across runs: a run after a gap neither bursts past the quota nor
/// asks again what the key's plan refused (until a restart).
pub struct Backfiller {
    settings: FeedSettings,
    client: BackfillClient,
    spacing: Duration,
    /// No request before this instant: the pace, or a vendor's `Retry-After`.
    next_slot: Instant,
    /// Intervals the vendor refused with 401/403.
    refused: HashSet<BackfillInterval>,
    /// Causes already logged (kind and interval), so a cause is logged once.
    logged: HashSet<(&'static str, BackfillInterval)>,
}

impl Backfiller {
    pub fn new(settings: &FeedSettings) -> anyhow::Result<Backfiller> {
        Ok(Backfiller {
            client: BackfillClient::new(settings)?,
            spacing: request_spacing(settings),
            settings: settings.clone(),
            next_slot: Instant::now(),
            refused: HashSet::new(),
            logged: HashSet::new(),
        })
    }

    /// Fetches `requests` in order and hands each one's bars to `out` (awaiting the
    /// send is the backpressure), until done, `shutdown`, or `out` closing.
    pub async fn run(
        &mut self,
        requests: Vec<FetchRequest>,
        out: &mpsc::Sender<Fetched>,
        shutdown: &CancellationToken,
    ) -> Summary {
        let feed = self.settings.kind.as_str();
        info!(
            feed,
            requests = requests.len(),
            spacing_ms = self.spacing.as_millis() as u64,
            "history backfill started"
        );
        let mut summary = Summary::default();
        let mut requests = requests.into_iter();
        let reason = loop {
            let Some(request) = requests.next() else {
                break "done";
            };
            if self.refused.contains(&request.interval) {
                summary.skipped += 1;
                continue;
            }
            let bars = tokio::select! {
                _ = shutdown.cancelled() => break "shutdown",
                bars = self.fetch_with_retries(&request) => bars,
            };
            let Some(bars) = bars else {
                summary.failed += 1;
                continue;
            };
            summary.fetched += 1;
            summary.bars += bars.len();
            tokio::select! {
                _ = shutdown.cancelled() => break "shutdown",
                sent = out.send(Fetched { request, bars }) => {
                    if sent.is_err() {
                        break "receiver closed";
                    }
                }
            }
        };
        summary.reason = reason;
        info!(
            feed,
            reason,
            fetched = summary.fetched,
            bars = summary.bars,
            failed = summary.failed,
            skipped = summary.skipped,
            "history backfill ended"
        );
        summary
    }

    /// One request's bars, after up to [`MAX_ATTEMPTS`] paced attempts; `None` when it
    /// failed (logged once per cause).
    async fn fetch_with_retries(&mut self, request: &FetchRequest) -> Option<Vec<Bar>> {
        for attempt in 0..MAX_ATTEMPTS {
            sleep_until(self.next_slot).await;
            self.next_slot = Instant::now() + self.spacing;
            let result = fetch_bars(
                &self.settings,
                &self.client,
                &request.symbol,
                request.interval,
                request.from_ms,
                request.to_ms,
            )
            .await;
            let error = match result {
                Ok(bars) => {
                    debug!(
                        symbol = %request.symbol,
                        interval = request.interval.as_str(),
                        bars = bars.len(),
                        "history fetched"
                    );
                    return Some(bars);
                }
                Err(error) => error,
            };
            if let BackfillError::NotEntitled { .. } = error {
                self.refused.insert(request.interval);
                self.log_once(
                    &error,
                    request.interval,
                    "history backfill refused by the vendor (key or plan); \
                     no more requests for this interval until restart",
                );
                return None;
            }
            if !error.is_retryable() || attempt + 1 == MAX_ATTEMPTS {
                self.log_once(
                    &error,
                    request.interval,
                    "history backfill request failed; skipped",
                );
                return None;
            }
            let wait = self.retry_wait(&error, attempt);
            self.next_slot = self.next_slot.max(Instant::now() + wait);
            self.log_once(
                &error,
                request.interval,
                "history backfill request failed; retrying",
            );
        }
        None
    }

    /// How long to hold off before the next attempt: the vendor's `Retry-After`, or
    /// `feed.refusal_backoff_ms` after a 429 without one (quotas count per minute);
    /// otherwise the feed's reconnect backoff, doubling per attempt up to its cap.
    fn retry_wait(&self, error: &BackfillError, attempt: u32) -> Duration {
        let millis = match error {
            BackfillError::RateLimited {
                retry_after: Some(wait),
                ..
            } => return *wait,
            BackfillError::RateLimited { .. } => self.settings.refusal_backoff_ms,
            _ => self
                .settings
                .backoff_initial_ms
                .saturating_mul(1 << attempt.min(20))
                .min(self.settings.backoff_max_ms),
        };
        Duration::from_millis(millis)
    }

    fn log_once(&mut self, error: &BackfillError, interval: BackfillInterval, what: &str) {
        if self.logged.insert((error.kind(), interval)) {
            warn!(
                feed = self.settings.kind.as_str(),
                interval = interval.as_str(),
                error = %error,
                "{what} (logged once per cause)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FeedKind, Settings};

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut env = vec![
            ("TICKSTREAM__FEED__KIND", "polygon"),
            ("TICKSTREAM__FEED__API_KEY", "k"),
            ("TICKSTREAM__FEED__SYMBOLS", "AAPL,MSFT"),
        ];
        env.extend_from_slice(pairs);
        Settings::from_sources(&[], env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ms(text: &str) -> i64 {
        utc(text).timestamp_millis()
    }

    fn windows(requests: &[FetchRequest]) -> Vec<(&str, BackfillInterval, i64, i64)> {
        requests
            .iter()
            .map(|r| (r.symbol.as_str(), r.interval, r.from_ms, r.to_ms))
            .collect()
    }

    #[test]
    fn a_first_start_asks_for_todays_minutes_then_the_last_days() {
        let s = settings(&[]);
        // 11:00 in New York (EST): the trading day began at 09:30.
        let now = utc("2026-01-15T16:00:00Z");
        let requests = plan(&s.feed, &s.trading_day, now, None).unwrap();
        let (open, first_day, to) = (
            ms("2026-01-15T14:30:00Z"),
            ms("2025-12-16T00:00:00Z"),
            now.timestamp_millis(),
        );
        assert_eq!(
            windows(&requests),
            vec![
                ("AAPL", BackfillInterval::Minute, open, to),
                ("MSFT", BackfillInterval::Minute, open, to),
                ("AAPL", BackfillInterval::Day, first_day, to),
                ("MSFT", BackfillInterval::Day, first_day, to),
            ]
        );
    }

    #[test]
    fn after_a_gap_only_what_is_missing_is_asked_for() {
        let s = settings(&[("TICKSTREAM__FEED__BACKFILL_DAYS", "10")]);
        // 11:00 EDT; the trading day began at 13:30Z.
        let now = utc("2026-07-15T15:00:00Z");
        // A gap within today: minutes from where history stops, no daily bars.
        let held = ms("2026-07-15T14:10:00Z");
        let requests = plan(&s.feed, &s.trading_day, now, Some(held)).unwrap();
        assert_eq!(requests.len(), 2);
        assert!(requests
            .iter()
            .all(|r| r.interval == BackfillInterval::Minute && r.from_ms == held));
        // A gap since two days ago: today's minutes from the open, daily bars from
        // the day history stops on.
        let held = ms("2026-07-13T18:00:00Z");
        let requests = plan(&s.feed, &s.trading_day, now, Some(held)).unwrap();
        assert_eq!(requests[0].from_ms, ms("2026-07-15T13:30:00Z"));
        assert_eq!(requests[2].interval, BackfillInterval::Day);
        assert_eq!(requests[2].from_ms, ms("2026-07-13T00:00:00Z"));
        // Nothing missing at all.
        let requests = plan(&s.feed, &s.trading_day, now, Some(now.timestamp_millis())).unwrap();
        assert!(requests.is_empty());
    }

    #[test]
    fn no_daily_bars_with_zero_days() {
        let s = settings(&[("TICKSTREAM__FEED__BACKFILL_DAYS", "0")]);
        let requests = plan(&s.feed, &s.trading_day, utc("2026-01-15T16:00:00Z"), None).unwrap();
        assert!(requests
            .iter()
            .all(|r| r.interval == BackfillInterval::Minute));
    }

    #[test]
    fn the_pace_is_the_free_plan_unless_configured() {
        let mut feed = settings(&[]).feed;
        for (kind, spacing_ms) in [
            (FeedKind::Polygon, 12_000),
            (FeedKind::Finnhub, 1_000),
            (FeedKind::Alpaca, 300),
        ] {
            feed.kind = kind;
            assert_eq!(request_spacing(&feed), Duration::from_millis(spacing_ms));
        }
        feed.backfill_requests_per_minute = 600;
        assert_eq!(request_spacing(&feed), Duration::from_millis(100));
    }
}

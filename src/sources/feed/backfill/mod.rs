//! History backfill from the vendors' REST APIs, so that a configured feed shows a
//! full chart from the first start: the current trading day's 1-minute bars and the
//! last weeks' daily bars, fetched per symbol.
//!
//! This module only fetches. [`fetch_bars`] asks one vendor for one symbol's bars in a
//! window and hands them back as the store's [`Bar`]s, exact (prices from the JSON
//! number's text, whole volumes), oldest first and without duplicates; [`plan()`]
//! says which windows to ask for at start or after a gap, and [`Backfiller`] asks for
//! them at the vendor's pace, honouring `Retry-After` and giving up cleanly on a plan
//! without access; [`run_backfills`] does that each time the feed goes live and
//! merges the bars into history through the broker.
//! docs/FEEDS.md is the operator's view.
//!
//! Each vendor module (`alpaca`, `polygon`, `finnhub`) only knows its URLs, paging
//! and JSON; `http` owns deadlines, body limits and the meaning of HTTP statuses, and
//! `values` the exact conversions, so every vendor gets the same guarantees.

mod alpaca;
mod finnhub;
mod http;
mod merge;
mod plan;
mod polygon;
mod values;

pub use http::BackfillClient;
pub use merge::run_backfills;
pub use plan::{plan, request_spacing, Backfiller, FetchRequest, Fetched, Summary};

use std::fmt;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::config::{FeedKind, FeedSettings};
use crate::domain::{Price, Symbol};
use crate::store::Bar;

/// Most pages one [`fetch_bars`] call follows. A day of minute bars is one page at
/// every vendor and 30 days of daily bars too; a vendor that keeps sending page
/// tokens past this is broken, and we stop rather than loop.
const MAX_PAGES: usize = 50;

/// Most bars one [`fetch_bars`] call returns: a month of 1-minute bars with extended
/// hours (30 × 960) fits three times over. Bounds memory against a broken vendor.
const MAX_BARS: usize = 100_000;

/// The bar size asked of the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackfillInterval {
    /// 1-minute bars; `t` is the minute's start in UTC.
    Minute,
    /// Daily bars; `t` is the trading date at 00:00 UTC.
    Day,
}

impl BackfillInterval {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillInterval::Minute => "1m",
            BackfillInterval::Day => "1d",
        }
    }
}

/// The request an error is about, named in every message: "polygon AAPL 1m".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub vendor: FeedKind,
    pub symbol: Symbol,
    pub interval: BackfillInterval,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.vendor.as_str(),
            self.symbol,
            self.interval.as_str()
        )
    }
}

/// Why a backfill request brought no bars. [`BackfillError::is_retryable`] tells the
/// caller whether asking again later can help; none of the messages carries a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillError {
    /// HTTP 401 or 403: a bad key, or a plan without this data (Finnhub's free plan
    /// has no candles; Alpaca's has no recent SIP data). Asking again cannot help.
    #[error("{at}: not entitled (HTTP {status}): {message}")]
    NotEntitled {
        at: Origin,
        status: u16,
        message: String,
    },
    /// HTTP 429; ask again no sooner than `retry_after` (the vendor's `Retry-After`).
    #[error("{at}: rate limited (HTTP 429), retry after {retry_after:?}")]
    RateLimited {
        at: Origin,
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx: the vendor's trouble, worth another try later.
    #[error("{at}: vendor unavailable (HTTP {status})")]
    Unavailable { at: Origin, status: u16 },
    /// Another HTTP status (a 400 for a symbol the vendor does not know, a redirect).
    #[error("{at}: refused (HTTP {status}): {message}")]
    Rejected {
        at: Origin,
        status: u16,
        message: String,
    },
    /// No complete answer within `feed.backfill_timeout_ms`.
    #[error("{at}: no complete answer within {timeout_ms} ms")]
    Timeout { at: Origin, timeout_ms: u64 },
    /// The connection failed (DNS, TCP, TLS, a reset).
    #[error("{at}: request failed: {message}")]
    Transport { at: Origin, message: String },
    /// The body is not the documented JSON, or a value in it cannot be kept exactly
    /// (a price with 7 decimals, a fractional volume).
    #[error("{at}: malformed response: {reason}")]
    Malformed { at: Origin, reason: String },
    /// More pages, bars or bytes than one call accepts ([`MAX_PAGES`], [`MAX_BARS`]).
    #[error("{at}: more than {limit} {what} in one call")]
    TooLarge {
        at: Origin,
        what: &'static str,
        limit: usize,
    },
    /// The call itself is wrong: no vendor configured, an inverted window, a bad
    /// `feed.rest_url`.
    #[error("backfill: {0}")]
    Invalid(String),
}

impl BackfillError {
    /// Whether the same request may succeed later: rate limits, 5xx, timeouts and
    /// connection failures. Refusals and malformed answers would only repeat.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackfillError::RateLimited { .. }
                | BackfillError::Unavailable { .. }
                | BackfillError::Timeout { .. }
                | BackfillError::Transport { .. }
        )
    }

    /// A short, stable name for the kind of failure, for logging each kind once.
    pub fn kind(&self) -> &'static str {
        match self {
            BackfillError::NotEntitled { .. } => "not_entitled",
            BackfillError::RateLimited { .. } => "rate_limited",
            BackfillError::Unavailable { .. } => "unavailable",
            BackfillError::Rejected { .. } => "rejected",
            BackfillError::Timeout { .. } => "timeout",
            BackfillError::Transport { .. } => "transport",
            BackfillError::Malformed { .. } => "malformed",
            BackfillError::TooLarge { .. } => "too_large",
            BackfillError::Invalid(_) => "invalid",
        }
    }
}

/// One symbol's bars of one interval in `[from_ms, to_ms]` (ms since the epoch), from
/// the vendor `settings.kind` names, following its pages. Bars come back exact (prices
/// from their JSON text, whole volumes), oldest first, one per `t`. `t` is the
/// bucket's start in ms since the epoch: a minute bar's first minute in UTC, a daily
/// bar's trading date (its New York calendar date) at 00:00 UTC, whatever instant the
/// vendor stamped the day with.
///
/// Every HTTP request is bounded by `feed.backfill_timeout_ms`; the call by
/// [`MAX_PAGES`] and [`MAX_BARS`]. It makes one attempt: retrying, pacing and
/// `Retry-After` are the caller's ([`Backfiller`] does all three).
pub async fn fetch_bars(
    settings: &FeedSettings,
    client: &BackfillClient,
    symbol: &Symbol,
    interval: BackfillInterval,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Bar>, BackfillError> {
    if from_ms < 0 || to_ms < from_ms {
        return Err(BackfillError::Invalid(format!(
            "window [{from_ms}, {to_ms}] is not a forward range of epoch milliseconds"
        )));
    }
    let request = Request {
        settings,
        client,
        at: Origin {
            vendor: settings.kind,
            symbol: symbol.clone(),
            interval,
        },
        from_ms,
        to_ms,
    };
    let mut bars = match settings.kind {
        FeedKind::Alpaca => alpaca::fetch(&request).await?,
        FeedKind::Polygon => polygon::fetch(&request).await?,
        FeedKind::Finnhub => finnhub::fetch(&request).await?,
        FeedKind::None => {
            return Err(BackfillError::Invalid(
                "feed.kind names no vendor".to_owned(),
            ))
        }
    };
    if interval == BackfillInterval::Day {
        for bar in &mut bars {
            bar.t = values::trading_date_ms(bar.t).ok_or_else(|| {
                request.malformed(format!("daily bar stamp {} out of range", bar.t))
            })?;
        }
    }
    Ok(oldest_first_without_duplicates(bars))
}

/// Sorts by `t` and keeps one bar per `t`: the one received last, since a later page
/// (or a later stamp of the same day) is the vendor's newer word on that bucket.
fn oldest_first_without_duplicates(mut bars: Vec<Bar>) -> Vec<Bar> {
    // Stable: bars with equal `t` stay in the order received.
    bars.sort_by_key(|bar| bar.t);
    let mut out: Vec<Bar> = Vec::with_capacity(bars.len());
    for bar in bars {
        match out.last_mut() {
            Some(last) if last.t == bar.t => *last = bar,
            _ => out.push(bar),
        }
    }
    out
}

/// What every vendor module needs for one [`fetch_bars`] call.
struct Request<'a> {
    settings: &'a FeedSettings,
    client: &'a BackfillClient,
    at: Origin,
    from_ms: i64,
    to_ms: i64,
}

impl Request<'_> {
    fn malformed(&self, reason: impl Into<String>) -> BackfillError {
        BackfillError::Malformed {
            at: self.at.clone(),
            reason: reason.into(),
        }
    }

    /// The body as the vendor's JSON type, or a [`BackfillError::Malformed`] naming
    /// the vendor, the symbol and serde's reason.
    fn parse<'b, T: serde::Deserialize<'b>>(&self, body: &'b str) -> Result<T, BackfillError> {
        serde_json::from_str(body)
            .map_err(|e| self.malformed(format!("not the documented JSON: {e}")))
    }

    /// The configured REST address, or the vendor's own.
    fn base_url(&self, default: &str) -> Result<reqwest::Url, BackfillError> {
        let text = match self.settings.rest_url.as_str() {
            "" => default,
            configured => configured,
        };
        reqwest::Url::parse(text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| {
                BackfillError::Invalid(format!("feed.rest_url {text:?} is not an http(s) address"))
            })
    }

    /// `base` with `segments` appended to its path (each percent-encoded as needed).
    fn endpoint(&self, default: &str, segments: &[&str]) -> Result<reqwest::Url, BackfillError> {
        let mut url = self.base_url(default)?;
        let cannot = format!("feed.rest_url {url} cannot take a path");
        url.path_segments_mut()
            .map_err(|()| BackfillError::Invalid(cannot))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// A bar from one of Alpaca's or Polygon's bar objects, stamped `t`.
    fn row(&self, t: i64, row: &RawBar) -> Result<Bar, BackfillError> {
        self.bar(t, [row.o, row.h, row.l, row.c], row.v)
    }

    /// One bar from the vendor's fields: prices from their JSON text, exactly, and a
    /// whole volume.
    fn bar(
        &self,
        t: i64,
        [o, h, l, c]: [&RawValue; 4],
        v: &RawValue,
    ) -> Result<Bar, BackfillError> {
        let price = |name: &str, raw: &RawValue| {
            Price::positive_from_json(raw)
                .map_err(|e| self.malformed(format!("{name} {}: {e}", raw.get())))
        };
        Ok(Bar {
            t,
            o: price("o", o)?,
            h: price("h", h)?,
            l: price("l", l)?,
            c: price("c", c)?,
            v: values::volume(v.get())
                .map_err(|e| self.malformed(format!("v {}: {e}", v.get())))?,
        })
    }
}

/// A bar object as Alpaca and Polygon write it (`t`, `o`, `h`, `l`, `c`, `v`, and
/// fields we do not use), every value kept as the JSON text sent: `t` is RFC 3339
/// text at Alpaca and epoch milliseconds at Polygon.
#[derive(serde::Deserialize)]
struct RawBar<'a> {
    #[serde(borrow)]
    t: &'a RawValue,
    #[serde(borrow)]
    o: &'a RawValue,
    #[serde(borrow)]
    h: &'a RawValue,
    #[serde(borrow)]
    l: &'a RawValue,
    #[serde(borrow)]
    c: &'a RawValue,
    #[serde(borrow)]
    v: &'a RawValue,
}

/// Bars gathered over the pages of one call, within [`MAX_PAGES`] and [`MAX_BARS`].
struct Pages<'r, 'a> {
    request: &'r Request<'a>,
    pages: usize,
    bars: Vec<Bar>,
}

impl<'r, 'a> Pages<'r, 'a> {
    fn new(request: &'r Request<'a>) -> Self {
        Pages {
            request,
            pages: 0,
            bars: Vec::new(),
        }
    }

    /// Counts one more page received; refuses past [`MAX_PAGES`].
    fn page(&mut self) -> Result<(), BackfillError> {
        self.pages += 1;
        if self.pages > MAX_PAGES {
            return Err(self.too_large("pages", MAX_PAGES));
        }
        Ok(())
    }

    fn push(&mut self, bar: Bar) -> Result<(), BackfillError> {
        if self.bars.len() >= MAX_BARS {
            return Err(self.too_large("bars", MAX_BARS));
        }
        self.bars.push(bar);
        Ok(())
    }

    fn too_large(&self, what: &'static str, limit: usize) -> BackfillError {
        BackfillError::TooLarge {
            at: self.request.at.clone(),
            what,
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(t: i64, c: i64) -> Bar {
        let p = Price::from_micros(c);
        Bar {
            t,
            o: p,
            h: p,
            l: p,
            c: p,
            v: 1,
        }
    }

    #[test]
    fn bars_come_oldest_first_one_per_bucket_the_last_word_winning() {
        let bars = vec![bar(120, 1), bar(60, 2), bar(120, 3), bar(0, 4), bar(60, 5)];
        let out = oldest_first_without_duplicates(bars);
        assert_eq!(out, vec![bar(0, 4), bar(60, 5), bar(120, 3)]);
    }

    #[test]
    fn errors_name_the_vendor_symbol_and_interval_and_say_whether_to_retry() {
        let at = Origin {
            vendor: FeedKind::Finnhub,
            symbol: Symbol::parse("AAPL").unwrap(),
            interval: BackfillInterval::Day,
        };
        let refused = BackfillError::NotEntitled {
            at: at.clone(),
            status: 403,
            message: "You don't have access to this resource.".into(),
        };
        assert_eq!(
            refused.to_string(),
            "finnhub AAPL 1d: not entitled (HTTP 403): You don't have access to this resource."
        );
        assert!(!refused.is_retryable());
        let limited = BackfillError::RateLimited {
            at,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.kind(), "rate_limited");
    }
}

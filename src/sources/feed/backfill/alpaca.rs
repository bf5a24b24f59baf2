//! Alpaca's historical stock bars
//! (<https://docs.alpaca.markets/reference/stockbarsingle>):
//! `GET {rest_url}/v2/stocks/{symbol}/bars?timeframe=1Min|1Day&start=…&end=…` (RFC 3339)
//! `&limit=10000&feed=iex|sip&adjustment=raw`, the key and secret in the
//! `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers. The answer is
//! `{"bars":[{"t":"2024-01-02T14:30:00Z","o","h","l","c","v","n","vw"}…],
//! "symbol":"AAPL","next_page_token":…}`; a non-null token asks for the next page with
//! `page_token`. Daily bars are stamped at midnight New York time.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;

use super::{BackfillInterval, Bar, Pages, RawBar, Request};
use crate::sources::feed::values;

const DEFAULT_REST: &str = "https://data.alpaca.markets";

/// The most bars Alpaca returns per page.
const PAGE_LIMIT: &str = "10000";

#[derive(Deserialize)]
struct Page<'a> {
    /// `null` or absent when the window holds no bars.
    #[serde(borrow, default)]
    bars: Option<Vec<RawBar<'a>>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

pub(super) async fn fetch(request: &Request<'_>) -> Result<Vec<Bar>, super::BackfillError> {
    let settings = request.settings;
    let symbol = request.at.symbol.as_str();
    let mut first = request.endpoint(DEFAULT_REST, &["v2", "stocks", symbol, "bars"])?;
    first
        .query_pairs_mut()
        .append_pair("timeframe", timeframe(request.at.interval))
        .append_pair("start", &rfc3339(request.from_ms)?)
        .append_pair("end", &rfc3339(request.to_ms)?)
        .append_pair("limit", PAGE_LIMIT)
        .append_pair("feed", data_feed(&settings.alpaca_feed))
        .append_pair("adjustment", "raw");
    let headers = [
        ("APCA-API-KEY-ID", settings.api_key.expose()),
        ("APCA-API-SECRET-KEY", settings.api_secret.expose()),
    ];
    let mut pages = Pages::new(request);
    let mut token: Option<String> = None;
    loop {
        pages.page()?;
        let mut url = first.clone();
        if let Some(token) = &token {
            url.query_pairs_mut().append_pair("page_token", token);
        }
        let body = request.client.get(&request.at, url, &headers).await?;
        let page: Page = request.parse(&body)?;
        for bar in page.bars.unwrap_or_default() {
            let t = serde_json::from_str::<Cow<str>>(bar.t.get())
                .ok()
                .and_then(|text| values::rfc3339_millis(&text).ok())
                .ok_or_else(|| {
                    request.malformed(format!("t {} is not an RFC 3339 time", bar.t.get()))
                })?;
            pages.push(request.row(t, &bar)?)?;
        }
        match page.next_page_token.filter(|next| !next.is_empty()) {
            Some(next) if token.as_ref() == Some(&next) => {
                return Err(request.malformed("next_page_token repeats the page just read"));
            }
            Some(next) => token = Some(next),
            None => return Ok(pages.bars),
        }
    }
}

fn timeframe(interval: BackfillInterval) -> &'static str {
    match interval {
        BackfillInterval::Minute => "1Min",
        BackfillInterval::Day => "1Day",
    }
}

/// The REST `feed` for the configured stream feed: the same data source, except the
/// stream-only `test` feed, whose REST counterpart is the free `iex`.
fn data_feed(stream_feed: &str) -> &str {
    match stream_feed {
        "sip" | "delayed_sip" => stream_feed,
        _ => "iex",
    }
}

/// `2024-01-02T14:30:00Z` (milliseconds only when there are some).
fn rfc3339(ms: i64) -> Result<String, super::BackfillError> {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .ok_or_else(|| super::BackfillError::Invalid(format!("{ms} ms is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_sent_as_rfc3339_utc() {
        assert_eq!(rfc3339(1_704_205_800_000).unwrap(), "2024-01-02T14:30:00Z");
        assert_eq!(
            rfc3339(1_704_205_800_250).unwrap(),
            "2024-01-02T14:30:00.250Z"
        );
    }

    #[test]
    fn the_rest_feed_follows_the_stream_feed() {
        assert_eq!(data_feed("iex"), "iex");
        assert_eq!(data_feed("sip"), "sip");
        assert_eq!(data_feed("delayed_sip"), "delayed_sip");
        assert_eq!(data_feed("test"), "iex");
    }
}

//! Polygon.io's (Massive's) aggregates
//! (<https://polygon.io/docs/rest/stocks/aggregates/custom-bars>):
//! `GET {rest_url}/v2/aggs/ticker/{symbol}/range/1/minute|day/{from_ms}/{to_ms}
//! ?adjusted=false&sort=asc&limit=50000&apiKey=KEY`. The answer is
//! `{"status":"OK"|"DELAYED","resultsCount":…,"results":[{"t":ms,"o","h","l","c","v","vw","n"}…],
//! "next_url":…}`; `results` is absent when the window is empty, and `next_url` (an
//! absolute URL without the key) continues. Daily bars are stamped at midnight New
//! York time; `v` may be written as a float.

use serde::Deserialize;

use super::{BackfillError, BackfillInterval, Bar, Pages, RawBar, Request};
use crate::sources::feed::values;

const DEFAULT_REST: &str = "https://api.polygon.io";

/// The most base aggregates Polygon returns per page.
const PAGE_LIMIT: &str = "50000";

#[derive(Deserialize)]
struct Page<'a> {
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(borrow, default)]
    results: Option<Vec<RawBar<'a>>>,
    #[serde(default)]
    next_url: Option<String>,
}

pub(super) async fn fetch(request: &Request<'_>) -> Result<Vec<Bar>, BackfillError> {
    let key = request.settings.api_key.expose();
    let (from, to) = (request.from_ms.to_string(), request.to_ms.to_string());
    let mut url = request.endpoint(
        DEFAULT_REST,
        &[
            "v2",
            "aggs",
            "ticker",
            request.at.symbol.as_str(),
            "range",
            "1",
            timespan(request.at.interval),
            &from,
            &to,
        ],
    )?;
    let origin = url.origin();
    url.query_pairs_mut()
        .append_pair("adjusted", "false")
        .append_pair("sort", "asc")
        .append_pair("limit", PAGE_LIMIT)
        .append_pair("apiKey", key);
    let mut pages = Pages::new(request);
    let mut seen_next: Option<String> = None;
    loop {
        pages.page()?;
        let body = request.client.get(&request.at, url, &[]).await?;
        let page: Page = request.parse(&body)?;
        match page.status.as_deref() {
            Some("OK" | "DELAYED") => {}
            other => {
                return Err(request.malformed(format!(
                    "status {:?}: {}",
                    other.unwrap_or("(none)"),
                    page.message.as_deref().unwrap_or("(no message)")
                )))
            }
        }
        for bar in page.results.unwrap_or_default() {
            let t = values::millis(bar.t).map_err(|_| {
                request.malformed(format!("t {} is not epoch milliseconds", bar.t.get()))
            })?;
            pages.push(request.row(t, &bar)?)?;
        }
        let Some(next) = page.next_url.filter(|next| !next.is_empty()) else {
            return Ok(pages.bars);
        };
        if seen_next.as_ref() == Some(&next) {
            return Err(request.malformed("next_url repeats the page just read"));
        }
        url = reqwest::Url::parse(&next)
            .ok()
            // The key goes only where the first request went.
            .filter(|next| next.origin() == origin)
            .ok_or_else(|| {
                request.malformed("next_url is not an address of the configured host")
            })?;
        url.query_pairs_mut().append_pair("apiKey", key);
        seen_next = Some(next);
    }
}

fn timespan(interval: BackfillInterval) -> &'static str {
    match interval {
        BackfillInterval::Minute => "minute",
        BackfillInterval::Day => "day",
    }
}

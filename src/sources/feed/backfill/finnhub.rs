//! Finnhub's stock candles (<https://finnhub.io/docs/api/stock-candles>):
//! `GET {rest_url}/api/v1/stock/candle?symbol=AAPL&resolution=1|D&from=…&to=…` (Unix
//! seconds) `&token=KEY`. The answer is column-wise,
//! `{"s":"ok","t":[…],"o":[…],"h":[…],"l":[…],"c":[…],"v":[…]}`, or `{"s":"no_data"}`;
//! there are no pages. Free plans get HTTP 403
//! `{"error":"You don't have access to this resource."}`. Daily candles are stamped
//! at 00:00 UTC of the trading date; `v` may be written as a float.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BackfillError, BackfillInterval, Bar, Pages, Request};

const DEFAULT_REST: &str = "https://finnhub.io";

#[derive(Deserialize)]
struct Candles<'a> {
    s: Option<String>,
    #[serde(borrow, default)]
    t: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    o: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    h: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    l: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    c: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    v: Vec<&'a RawValue>,
}

pub(super) async fn fetch(request: &Request<'_>) -> Result<Vec<Bar>, BackfillError> {
    let mut url = request.endpoint(DEFAULT_REST, &["api", "v1", "stock", "candle"])?;
    // Whole seconds covering the window: `from` rounded down, `to` up.
    let from = request.from_ms.div_euclid(1000);
    let to = (request.to_ms + 999).div_euclid(1000);
    url.query_pairs_mut()
        .append_pair("symbol", request.at.symbol.as_str())
        .append_pair("resolution", resolution(request.at.interval))
        .append_pair("from", &from.to_string())
        .append_pair("to", &to.to_string())
        .append_pair("token", request.settings.api_key.expose());
    let mut pages = Pages::new(request);
    pages.page()?;
    let body = request.client.get(&request.at, url, &[]).await?;
    let candles: Candles = request.parse(&body)?;
    match candles.s.as_deref() {
        Some("ok") => {}
        Some("no_data") => return Ok(Vec::new()),
        other => {
            return Err(request.malformed(format!(
                "s is {:?}, not ok or no_data",
                other.unwrap_or("(none)")
            )))
        }
    }
    let n = candles.t.len();
    let columns = [&candles.o, &candles.h, &candles.l, &candles.c, &candles.v];
    if columns.iter().any(|column| column.len() != n) {
        return Err(request.malformed("t, o, h, l, c and v differ in length"));
    }
    for i in 0..n {
        let t = seconds_to_millis(candles.t[i].get()).ok_or_else(|| {
            request.malformed(format!("t {} is not epoch seconds", candles.t[i].get()))
        })?;
        let prices = [candles.o[i], candles.h[i], candles.l[i], candles.c[i]];
        pages.push(request.bar(t, prices, candles.v[i])?)?;
    }
    Ok(pages.bars)
}

fn resolution(interval: BackfillInterval) -> &'static str {
    match interval {
        BackfillInterval::Minute => "1",
        BackfillInterval::Day => "D",
    }
}

/// Epoch seconds (an integer) as milliseconds.
fn seconds_to_millis(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|&s| s >= 0)
        .and_then(|s| s.checked_mul(1000))
}

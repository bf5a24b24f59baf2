//! Finnhub's trade stream (<https://finnhub.io/docs/api/websocket-trades>): the key
//! goes in the URL (`wss://ws.finnhub.io?token=…`), one
//! `{"type":"subscribe","symbol":"AAPL"}` per symbol, no acknowledgement. The server
//! sends `{"type":"trade","data":[{"s","p","t","v","c"}…]}` with `t` in milliseconds,
//! `{"type":"ping"}` heartbeats, and `{"type":"error","msg":…}`. A bad key is refused
//! at the HTTP handshake (401), which the runner reports as `auth_failed`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::values;
use super::{Control, Decoded, FeedStatus, Unmapped};
use crate::config::Secret;
use crate::domain::ParsedTick;

const DEFAULT_URL: &str = "wss://ws.finnhub.io";

#[derive(Debug, Clone)]
pub struct Finnhub {
    pub base: String,
    key: Secret,
    symbols: Vec<String>,
}

impl Finnhub {
    pub fn new(url: &str, key: Secret, symbols: Vec<String>) -> Finnhub {
        let base = if url.is_empty() { DEFAULT_URL } else { url };
        Finnhub {
            base: base.to_owned(),
            key,
            symbols,
        }
    }

    /// `wss://ws.finnhub.io/?token=KEY`: the documented address has no path, but an
    /// HTTP request line needs one, so `/` is added before the query.
    pub fn url(&self) -> String {
        let token: String =
            serde_urlencoded::to_string([("token", self.key.expose())]).unwrap_or_default();
        let (base, query) = self.base.split_once('?').unwrap_or((&self.base, ""));
        let authority_only = base
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.contains('/'));
        let slash = if authority_only { "/" } else { "" };
        match query {
            "" => format!("{base}{slash}?{token}"),
            query => format!("{base}{slash}?{query}&{token}"),
        }
    }

    pub fn subscribe(&self) -> Vec<String> {
        self.symbols
            .iter()
            .map(|s| serde_json::json!({"type": "subscribe", "symbol": s}).to_string())
            .collect()
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    msg: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Trade<'a> {
    #[serde(borrow)]
    s: Cow<'a, str>,
    #[serde(borrow)]
    p: &'a RawValue,
    #[serde(borrow)]
    t: &'a RawValue,
    #[serde(borrow)]
    v: Option<&'a RawValue>,
}

pub fn decode(text: &str, out: &mut Decoded) {
    out.messages = 1;
    let Ok(envelope) = serde_json::from_str::<Envelope>(text) else {
        out.unmapped.push(Unmapped::Malformed);
        return;
    };
    match envelope.kind.as_deref() {
        Some("trade") => {
            let data = envelope.data.unwrap_or_default();
            out.messages = data.len().max(1) as u64;
            for item in data {
                match trade(item) {
                    Ok(tick) => out.ticks.push(tick),
                    Err(reason) => out.unmapped.push(reason),
                }
            }
        }
        Some("ping") => out.controls.push(Control::Heartbeat),
        Some("error") => {
            let msg = envelope.msg.as_deref().unwrap_or("(no message)");
            // Finnhub names refused keys and plan limits in free text; those cannot
            // succeed on retry, anything else (a bad symbol) leaves the stream usable.
            let lower = msg.to_ascii_lowercase();
            let control = if lower.contains("token") || lower.contains("api key") {
                Control::Refused(FeedStatus::AuthFailed, msg.to_owned())
            } else if lower.contains("limit") {
                Control::Warning(Some(FeedStatus::SymbolLimit), msg.to_owned())
            } else {
                Control::Warning(None, msg.to_owned())
            };
            out.controls.push(control);
        }
        _ => out.unmapped.push(Unmapped::UnsupportedType),
    }
}

fn trade(raw: &RawValue) -> Result<ParsedTick, Unmapped> {
    let trade: Trade = serde_json::from_str(raw.get()).map_err(|_| Unmapped::Malformed)?;
    let symbol = values::symbol(&trade.s)?;
    let price = values::price(Some(trade.p))?.ok_or(Unmapped::BadPrice)?;
    // `v = 0` is a last-price update without a trade (Finnhub's docs): a price, no volume.
    let size = match trade.v {
        Some(v) => Some(values::size(v, 1)?).filter(|&n| n > 0),
        None => None,
    };
    let ts = values::millis(trade.t)?;
    Ok(ParsedTick {
        price: Some(price),
        size,
        ..ParsedTick::at(symbol, ts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(text: &str) -> Decoded {
        let mut out = Decoded::default();
        decode(text, &mut out);
        out
    }

    #[test]
    fn maps_a_documented_trade_batch_exactly() {
        let out = decode_str(
            r#"{"data":[{"c":["1","8","24","12"],"p":122.1,"s":"TSLA","t":1672348887195,"v":1},{"c":["1","24","12"],"p":129.575,"s":"AAPL","t":1672348887785,"v":79}],"type":"trade"}"#,
        );
        assert_eq!(out.messages, 2);
        assert!(out.unmapped.is_empty());
        let [tsla, aapl] = &out.ticks[..] else {
            panic!("{:?}", out.ticks)
        };
        assert_eq!(tsla.symbol.as_str(), "TSLA");
        assert_eq!(tsla.price.unwrap().to_string(), "122.1");
        assert_eq!((tsla.size, tsla.ts), (Some(1), Some(1672348887195)));
        assert_eq!(aapl.price.unwrap().to_string(), "129.575");
        assert_eq!(aapl.size, Some(79));
    }

    #[test]
    fn the_key_goes_in_the_query_and_is_escaped() {
        let url = |base: &str| Finnhub::new(base, Secret::new("a b&c"), vec![]).url();
        assert_eq!(url(""), "wss://ws.finnhub.io/?token=a+b%26c");
        assert_eq!(url("ws://127.0.0.1:9"), "ws://127.0.0.1:9/?token=a+b%26c");
        assert_eq!(url("ws://h/x?v=1"), "ws://h/x?v=1&token=a+b%26c");
    }

    #[test]
    fn heartbeats_errors_and_junk() {
        assert_eq!(
            decode_str(r#"{"type":"ping"}"#).controls,
            vec![Control::Heartbeat]
        );
        assert!(matches!(
            decode_str(r#"{"type":"error","msg":"Invalid API token"}"#).controls[..],
            [Control::Refused(FeedStatus::AuthFailed, _)]
        ));
        assert!(matches!(
            decode_str(r#"{"type":"error","msg":"Invalid symbol"}"#).controls[..],
            [Control::Warning(None, _)]
        ));
        assert_eq!(decode_str("nope").unmapped, vec![Unmapped::Malformed]);
        assert_eq!(
            decode_str(r#"{"type":"news"}"#).unmapped,
            vec![Unmapped::UnsupportedType]
        );
        let out = decode_str(
            r#"{"type":"trade","data":[{"s":"A","p":1.0000001,"t":1,"v":1},{"s":"A","p":1,"t":1,"v":0.5},{"s":"A","p":1,"t":1},{"p":1}]}"#,
        );
        assert!(out.ticks.len() == 1 && out.ticks[0].size.is_none());
        assert_eq!(
            out.unmapped,
            vec![Unmapped::BadPrice, Unmapped::BadSize, Unmapped::Malformed]
        );
    }
}

//! Polygon.io's stocks WebSocket, now also served as Massive
//! (<https://massive.com/docs/websocket/stocks/trades>,
//! <https://massive.com/docs/websocket/stocks/quotes>): `wss://socket.massive.com/stocks`
//! (real time) or `wss://delayed.massive.com/stocks` greets with
//! `[{"ev":"status","status":"connected",…}]`; we send `{"action":"auth","params":KEY}`,
//! get `auth_success` (or `auth_failed`), then `{"action":"subscribe","params":"T.AAPL,Q.AAPL"}`
//! and a `success` status. Data arrive in arrays: trades `ev:"T"` (`sym`, `p`, `s`,
//! `t` in Unix ms), quotes `ev:"Q"` (`bp`, `bs`, `ap`, `as`; sizes in round lots per the
//! quotes page).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::values;
use super::{Control, Decoded, FeedStatus, Unmapped};
use crate::config::Secret;
use crate::domain::ParsedTick;

const REAL_TIME_URL: &str = "wss://socket.massive.com/stocks";
const DELAYED_URL: &str = "wss://delayed.massive.com/stocks";

#[derive(Debug, Clone)]
pub struct Polygon {
    url: String,
    key: Secret,
    symbols: Vec<String>,
    pub round_lot_shares: u64,
}

impl Polygon {
    pub fn new(
        url: &str,
        delayed: bool,
        key: Secret,
        symbols: Vec<String>,
        round_lot_shares: u64,
    ) -> Polygon {
        let url = match (url.is_empty(), delayed) {
            (false, _) => url,
            (true, false) => REAL_TIME_URL,
            (true, true) => DELAYED_URL,
        };
        Polygon {
            url: url.to_owned(),
            key,
            symbols,
            round_lot_shares,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn auth(&self) -> String {
        serde_json::json!({"action": "auth", "params": self.key.expose()}).to_string()
    }

    pub fn subscribe(&self) -> String {
        let params: Vec<String> = self
            .symbols
            .iter()
            .flat_map(|s| [format!("T.{s}"), format!("Q.{s}")])
            .collect();
        serde_json::json!({"action": "subscribe", "params": params.join(",")}).to_string()
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    ev: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sym: Option<Cow<'a, str>>,
    #[serde(borrow)]
    p: Option<&'a RawValue>,
    #[serde(borrow)]
    s: Option<&'a RawValue>,
    #[serde(borrow)]
    bp: Option<&'a RawValue>,
    #[serde(borrow)]
    bs: Option<&'a RawValue>,
    #[serde(borrow)]
    ap: Option<&'a RawValue>,
    #[serde(rename = "as", borrow)]
    ask_size: Option<&'a RawValue>,
    #[serde(borrow)]
    t: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

pub fn decode(text: &str, lot: u64, out: &mut Decoded) {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) else {
        out.messages = 1;
        out.unmapped.push(Unmapped::Malformed);
        return;
    };
    out.messages = items.len() as u64;
    for item in items {
        let Ok(message) = serde_json::from_str::<Message>(item.get()) else {
            out.unmapped.push(Unmapped::Malformed);
            continue;
        };
        match message.ev.as_deref() {
            Some("T") => match trade(&message) {
                Ok(tick) => out.ticks.push(tick),
                Err(reason) => out.unmapped.push(reason),
            },
            Some("Q") => match quote(&message, lot) {
                Ok(tick) => out.ticks.push(tick),
                Err(reason) => out.unmapped.push(reason),
            },
            Some("status") => out.controls.push(status(&message)),
            _ => out.unmapped.push(Unmapped::UnsupportedType),
        }
    }
}

fn status(message: &Message) -> Control {
    let text = message
        .message
        .as_deref()
        .unwrap_or("(no message)")
        .to_owned();
    match message.status.as_deref() {
        Some("connected") => Control::Greeting,
        Some("auth_success") => Control::Authenticated,
        Some("success") => Control::Subscribed,
        Some("auth_failed") => Control::Refused(FeedStatus::AuthFailed, text),
        Some("max_connections") => Control::Refused(FeedStatus::ConnectionLimit, text),
        Some(other) => Control::Warning(None, format!("{other}: {text}")),
        None => Control::Warning(None, text),
    }
}

fn symbol_and_time(message: &Message) -> Result<(crate::domain::Symbol, i64), Unmapped> {
    let symbol = values::symbol(message.sym.as_deref().ok_or(Unmapped::Malformed)?)?;
    let ts = values::millis(message.t.ok_or(Unmapped::Malformed)?)?;
    Ok((symbol, ts))
}

fn trade(message: &Message) -> Result<ParsedTick, Unmapped> {
    let (symbol, ts) = symbol_and_time(message)?;
    values::trade(symbol, ts, message.p, message.s)
}

fn quote(message: &Message, lot: u64) -> Result<ParsedTick, Unmapped> {
    let (symbol, ts) = symbol_and_time(message)?;
    values::book_tick(
        symbol,
        ts,
        [message.bp, message.bs, message.ap, message.ask_size],
        lot,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(text: &str) -> Decoded {
        let mut out = Decoded::default();
        decode(text, 100, &mut out);
        out
    }

    #[test]
    fn maps_documented_trades_and_quotes_exactly() {
        let out = decode_str(
            r#"[{"ev":"T","sym":"AAPL","x":4,"i":"12345","p":192.31,"s":100,"c":[12],"t":1748476801234},{"ev":"Q","sym":"AAPL","bx":11,"bp":192.30,"bs":2,"ax":12,"ap":192.32,"as":1,"t":1748476801240},{"ev":"A","sym":"AAPL","v":5400}]"#,
        );
        assert_eq!(out.messages, 3);
        assert_eq!(out.unmapped, vec![Unmapped::UnsupportedType]);
        let [trade, quote] = &out.ticks[..] else {
            panic!("{:?}", out.ticks)
        };
        assert_eq!(trade.price.unwrap().to_string(), "192.31");
        assert_eq!((trade.size, trade.ts), (Some(100), Some(1748476801234)));
        assert_eq!(quote.bid.unwrap().to_string(), "192.3");
        assert_eq!((quote.bid_size, quote.ask_size), (Some(200), Some(100)));
    }

    #[test]
    fn statuses() {
        let control = |status: &str| {
            decode_str(&format!(
                r#"[{{"ev":"status","status":"{status}","message":"m"}}]"#
            ))
            .controls
            .remove(0)
        };
        assert_eq!(control("connected"), Control::Greeting);
        assert_eq!(control("auth_success"), Control::Authenticated);
        assert_eq!(control("success"), Control::Subscribed);
        assert!(matches!(
            control("auth_failed"),
            Control::Refused(FeedStatus::AuthFailed, _)
        ));
        assert!(matches!(
            control("max_connections"),
            Control::Refused(FeedStatus::ConnectionLimit, _)
        ));
        assert!(matches!(control("error"), Control::Warning(None, _)));
    }
}

//! Alpaca's market data stream v2 for stocks
//! (<https://docs.alpaca.markets/docs/streaming-market-data>,
//! <https://docs.alpaca.markets/docs/real-time-stock-pricing-data>):
//! `wss://stream.data.alpaca.markets/v2/{iex|sip|delayed_sip|test}` greets with
//! `[{"T":"success","msg":"connected"}]`; we answer `{"action":"auth","key","secret"}`
//! (within the 10 s the server allows), get `[{"T":"success","msg":"authenticated"}]`,
//! subscribe `{"action":"subscribe","trades":[…],"quotes":[…]}` and get
//! `[{"T":"subscription",…}]`. Data arrive in arrays: trades `T:"t"` (`S`, `p`, `s`,
//! `t` RFC 3339 with nanoseconds), quotes `T:"q"` (`bp`, `bs`, `ap`, `as`, sizes in
//! round lots). Errors are `[{"T":"error","code":…,"msg":…}]`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::values;
use super::{Control, Decoded, FeedStatus, Unmapped};
use crate::config::Secret;
use crate::domain::ParsedTick;

const DEFAULT_BASE: &str = "wss://stream.data.alpaca.markets/v2";

#[derive(Debug, Clone)]
pub struct Alpaca {
    url: String,
    key: Secret,
    secret: Secret,
    symbols: Vec<String>,
    pub round_lot_shares: u64,
}

impl Alpaca {
    pub fn new(
        url: &str,
        feed: &str,
        key: Secret,
        secret: Secret,
        symbols: Vec<String>,
        round_lot_shares: u64,
    ) -> Alpaca {
        let url = if url.is_empty() {
            format!("{DEFAULT_BASE}/{feed}")
        } else {
            url.to_owned()
        };
        Alpaca {
            url,
            key,
            secret,
            symbols,
            round_lot_shares,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn auth(&self) -> String {
        serde_json::json!({"action": "auth", "key": self.key.expose(), "secret": self.secret.expose()})
            .to_string()
    }

    pub fn subscribe(&self) -> String {
        serde_json::json!({"action": "subscribe", "trades": self.symbols, "quotes": self.symbols})
            .to_string()
    }
}

/// Every field any stock message may carry; which are required depends on `T`.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "T", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "S", borrow)]
    symbol: Option<Cow<'a, str>>,
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
    t: Option<Cow<'a, str>>,
    code: Option<i64>,
    #[serde(borrow)]
    msg: Option<Cow<'a, str>>,
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
        match message.kind.as_deref() {
            Some("t") => match trade(&message) {
                Ok(tick) => out.ticks.push(tick),
                Err(reason) => out.unmapped.push(reason),
            },
            Some("q") => match quote(&message, lot) {
                Ok(tick) => out.ticks.push(tick),
                Err(reason) => out.unmapped.push(reason),
            },
            Some("success") => match message.msg.as_deref() {
                Some("connected") => out.controls.push(Control::Greeting),
                Some("authenticated") => out.controls.push(Control::Authenticated),
                _ => {}
            },
            Some("subscription") => out.controls.push(Control::Subscribed),
            Some("error") => out.controls.push(error(&message)),
            _ => out.unmapped.push(Unmapped::UnsupportedType),
        }
    }
}

/// Alpaca's documented stream error codes and what each means for the connection.
fn error(message: &Message) -> Control {
    let msg = message.msg.as_deref().unwrap_or("(no message)");
    let text = format!("{} {msg}", message.code.unwrap_or(0));
    match message.code {
        // 401 not authenticated, 402 auth failed, 404 auth timeout.
        Some(401 | 402 | 404) => Control::Refused(FeedStatus::AuthFailed, text),
        Some(406) => Control::Refused(FeedStatus::ConnectionLimit, text),
        Some(409) => Control::Refused(FeedStatus::InsufficientSubscription, text),
        Some(405) => Control::Warning(Some(FeedStatus::SymbolLimit), text),
        // 400 invalid syntax, 403 already authenticated, 407 slow client, 410 invalid
        // subscribe action for this feed, 500 internal error: reported, not fatal here
        // (a slow client is disconnected by the server, and the runner reconnects).
        _ => Control::Warning(None, text),
    }
}

fn symbol_and_time(message: &Message) -> Result<(crate::domain::Symbol, i64), Unmapped> {
    let symbol = values::symbol(message.symbol.as_deref().ok_or(Unmapped::Malformed)?)?;
    let ts = values::rfc3339_millis(message.t.as_deref().ok_or(Unmapped::Malformed)?)?;
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
            r#"[{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},{"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"}]"#,
        );
        assert_eq!(out.messages, 2);
        assert!(out.unmapped.is_empty(), "{:?}", out.unmapped);
        let [trade, quote] = &out.ticks[..] else {
            panic!("{:?}", out.ticks)
        };
        assert_eq!(trade.price.unwrap().to_string(), "126.55");
        assert_eq!((trade.size, trade.ts), (Some(1), Some(1_614_009_104_208)));
        assert_eq!(quote.bid.unwrap().to_string(), "87.66");
        assert_eq!(quote.ask.unwrap().to_string(), "87.68");
        assert_eq!((quote.bid_size, quote.ask_size), (Some(100), Some(400)));
        assert_eq!(quote.ts, Some(1_614_009_105_335));
    }

    #[test]
    fn control_messages_and_errors() {
        assert_eq!(
            decode_str(r#"[{"T":"success","msg":"connected"}]"#).controls,
            vec![Control::Greeting]
        );
        assert_eq!(
            decode_str(r#"[{"T":"success","msg":"authenticated"}]"#).controls,
            vec![Control::Authenticated]
        );
        assert_eq!(
            decode_str(r#"[{"T":"subscription","trades":["AAPL"],"quotes":["AAPL"],"bars":[]}]"#)
                .controls,
            vec![Control::Subscribed]
        );
        for (code, status) in [
            (402, FeedStatus::AuthFailed),
            (406, FeedStatus::ConnectionLimit),
            (409, FeedStatus::InsufficientSubscription),
        ] {
            let out = decode_str(&format!(r#"[{{"T":"error","code":{code},"msg":"x"}}]"#));
            assert!(
                matches!(&out.controls[..], [Control::Refused(s, _)] if *s == status),
                "{code}"
            );
        }
        let out = decode_str(r#"[{"T":"error","code":405,"msg":"symbol limit exceeded"}]"#);
        assert!(matches!(
            &out.controls[..],
            [Control::Warning(Some(FeedStatus::SymbolLimit), _)]
        ));
        let out = decode_str(
            r#"[{"T":"b","S":"A"},{"T":"t","S":"A","p":1,"s":0.5,"t":"2021-02-22T15:51:44Z"},{"T":"q","S":"A","bp":0,"bs":0,"ap":0,"as":0,"t":"2021-02-22T15:51:44Z"},{"T":"t","S":"A","p":1,"s":1,"t":"yesterday"},7]"#,
        );
        assert!(out.ticks.is_empty());
        assert_eq!(
            out.unmapped,
            vec![
                Unmapped::UnsupportedType,
                Unmapped::BadSize,
                Unmapped::BadPrice,
                Unmapped::BadTimestamp,
                Unmapped::Malformed
            ]
        );
        assert_eq!(decode_str("{").unmapped, vec![Unmapped::Malformed]);
    }
}

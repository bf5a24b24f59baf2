//! The text formats shared with Redis: a tick as a script argument and channel item,
//! a quote as a hash record, a bar as a sorted-set member, and a channel message.
//!
//! Plain comma-separated integers (prices in micros) rather than JSON: the Lua side
//! splits them without a JSON library's 14-digit number formatting, and both sides
//! stay exact. The formats are internal to a cluster of one tickstream version.

use crate::domain::{Field, ParsedTick, Price, Quote, Tick};
use crate::store::{Bar, Interval};

/// Quote fields kept in a record, in record order (`d`/`dp` are derived on read).
const RECORD_FIELDS: [Field; 11] = [
    Field::P,
    Field::Bp,
    Field::Bs,
    Field::Ap,
    Field::As,
    Field::V,
    Field::O,
    Field::H,
    Field::L,
    Field::Pc,
    Field::T,
];

/// What a channel message carries (the script's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ticks,
    RollOver,
    Upsert,
    Remove,
    /// Bars from elsewhere (a vendor's history), each replacing its bucket's bar.
    Bars,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Ticks => "ticks",
            Op::RollOver => "rollover",
            Op::Upsert => "upsert",
            Op::Remove => "remove",
            Op::Bars => "bars",
        }
    }

    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "ticks" => Op::Ticks,
            "rollover" => Op::RollOver,
            "upsert" => Op::Upsert,
            "remove" => Op::Remove,
            "bars" => Op::Bars,
            _ => return None,
        })
    }
}

fn push_opt(out: &mut String, value: Option<i64>) {
    out.push(',');
    if let Some(value) = value {
        out.push_str(itoa::Buffer::new().format(value));
    }
}

fn clamp(size: Option<u64>) -> Option<i64> {
    size.map(|s| s.min(i64::MAX as u64) as i64)
}

/// `SYMBOL,price,size,bid,bid_size,ask,ask_size,ts,seq` (empty = absent). The symbol
/// goes as the source named it: each instance resolves it to its own id on apply.
/// A tick without its own `ts` is stamped `received_at`.
pub fn encode_tick(tick: &ParsedTick, received_at: i64) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(tick.symbol.as_str());
    push_opt(&mut out, tick.price.map(Price::micros));
    push_opt(&mut out, clamp(tick.size));
    push_opt(&mut out, tick.bid.map(Price::micros));
    push_opt(&mut out, clamp(tick.bid_size));
    push_opt(&mut out, tick.ask.map(Price::micros));
    push_opt(&mut out, clamp(tick.ask_size));
    push_opt(&mut out, Some(tick.ts.unwrap_or(received_at)));
    push_opt(&mut out, tick.seq.map(|s| s.min(i64::MAX as u64) as i64));
    out
}

/// A tick item back into its symbol and fields (the symbol id is resolved later).
pub fn decode_tick(item: &str) -> Option<(&str, Tick)> {
    let mut fields = item.split(',');
    let symbol = fields.next().filter(|s| !s.is_empty())?;
    let mut next = || -> Option<Option<i64>> {
        let field = fields.next()?;
        if field.is_empty() {
            Some(None)
        } else {
            field.parse().ok().map(Some)
        }
    };
    let price = next()?.map(Price::from_micros);
    let size = next()?.map(|v| v.max(0) as u64);
    let bid = next()?.map(Price::from_micros);
    let bid_size = next()?.map(|v| v.max(0) as u64);
    let ask = next()?.map(Price::from_micros);
    let ask_size = next()?.map(|v| v.max(0) as u64);
    let ts = next()??;
    Some((
        symbol,
        Tick {
            price,
            size,
            bid,
            bid_size,
            ask,
            ask_size,
            ts,
            ..Tick::default()
        },
    ))
}

/// `p,bp,bs,ap,as,v,o,h,l,pc,t|name`.
pub fn encode_record(quote: &Quote, name: &str) -> String {
    let name = one_line(name);
    let mut out = String::with_capacity(96);
    for (i, field) in RECORD_FIELDS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Some(value) = quote.get(*field) {
            out.push_str(itoa::Buffer::new().format(value));
        }
    }
    out.push('|');
    out.push_str(&name);
    out
}

/// A record back into a quote (with `d`/`dp` derived) and the name.
pub fn decode_record(record: &str) -> Option<(Quote, &str)> {
    let (body, name) = record.split_once('|').unwrap_or((record, ""));
    let mut quote = Quote::default();
    let mut fields = body.split(',');
    for field in RECORD_FIELDS {
        let text = fields.next().unwrap_or("");
        if !text.is_empty() {
            quote.set(field, text.parse().ok()?);
        }
    }
    quote.derive_change();
    Some((quote, name))
}

/// `t,o,h,l,c,v` (prices in micros): one bar, a member of its series' sorted set,
/// scored by `t` (`apply.lua` writes them; history pages read them).
pub fn encode_bar(bar: &Bar) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(itoa::Buffer::new().format(bar.t));
    for price in [bar.o, bar.h, bar.l, bar.c] {
        out.push(',');
        out.push_str(itoa::Buffer::new().format(price.micros()));
    }
    out.push(',');
    out.push_str(itoa::Buffer::new().format(bar.v));
    out
}

pub fn decode_bar(member: &str) -> Option<Bar> {
    let mut fields = member.split(',').map(|field| field.parse::<i64>().ok());
    let mut next = || fields.next().flatten();
    let t = next()?;
    let [o, h, l, c] = [next()?, next()?, next()?, next()?].map(Price::from_micros);
    let v = u64::try_from(next()?).ok()?;
    Some(Bar { t, o, h, l, c, v })
}

/// `SYMBOL,interval`: the first item of the bars op; the bars follow, one an item.
pub fn encode_series(symbol: &str, interval: Interval) -> String {
    format!("{symbol},{}", interval.as_str())
}

pub fn decode_series(item: &str) -> Option<(&str, Interval)> {
    let (symbol, interval) = item.split_once(',')?;
    Some((symbol, Interval::parse(interval)?))
}

/// `SYMBOL,pc|name` for the upsert op.
pub fn encode_upsert(symbol: &str, pc: Option<Price>, name: Option<&str>) -> String {
    let mut out = String::from(symbol);
    out.push(',');
    if let Some(pc) = pc {
        out.push_str(itoa::Buffer::new().format(pc.micros()));
    }
    out.push('|');
    out.push_str(&one_line(name.unwrap_or("")));
    out
}

/// Names travel inside newline-separated messages: keep them on one line.
fn one_line(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['\n', '\r']) {
        name.replace(['\n', '\r'], " ").into()
    } else {
        name.into()
    }
}

pub fn decode_upsert(item: &str) -> Option<(&str, Option<Price>, Option<&str>)> {
    let (head, name) = item.split_once('|')?;
    let (symbol, pc) = head.split_once(',')?;
    let pc = if pc.is_empty() {
        None
    } else {
        Some(Price::from_micros(pc.parse().ok()?))
    };
    Some((symbol, pc, Some(name).filter(|n| !n.is_empty())))
}

/// One channel message: `origin\nseq\nop\nitem\nitem…`.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub origin: &'a str,
    pub seq: u64,
    pub op: Op,
    pub items: Vec<&'a str>,
}

pub fn decode_message(payload: &str) -> Option<Message<'_>> {
    let mut lines = payload.split('\n');
    let origin = lines.next()?;
    let seq = lines.next()?.parse().ok()?;
    let op = Op::parse(lines.next()?)?;
    Some(Message {
        origin,
        seq,
        op,
        items: lines.collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Symbol, SymbolId};

    fn price(text: &str) -> Option<Price> {
        Price::parse(text).ok()
    }

    #[test]
    fn bars_round_trip_exactly() {
        let bar = Bar {
            t: 1_764_072_060_000,
            o: Price::parse("189.123456").unwrap(),
            h: Price::parse("999999999.999999").unwrap(),
            l: Price::parse("0.000001").unwrap(),
            c: Price::parse("190").unwrap(),
            v: (1 << 53) - 1,
        };
        let member = encode_bar(&bar);
        assert_eq!(
            member,
            "1764072060000,189123456,999999999999999,1,190000000,9007199254740991"
        );
        assert_eq!(decode_bar(&member), Some(bar));
        assert_eq!(decode_bar("1,2,3,4,5"), None, "truncated");
        assert_eq!(decode_bar("1,2,3,4,5,-6"), None, "negative volume");
        assert_eq!(decode_bar("1,2,x,4,5,6"), None, "not a number");
    }

    #[test]
    fn ticks_round_trip_exactly() {
        let parsed = ParsedTick {
            symbol: Symbol::parse("brk.a").unwrap(),
            price: price("189.123456"),
            size: Some(100),
            bid: price("189.12"),
            bid_size: None,
            ask: price("999999999.999999"),
            ask_size: Some(7),
            ts: None,
            seq: Some(42),
        };
        let item = encode_tick(&parsed, 1_764_072_000_123);
        let tick = parsed.to_tick(SymbolId::default(), 1_764_072_000_123);
        assert_eq!(
            item,
            "BRK.A,189123456,100,189120000,,999999999999999,7,1764072000123,42"
        );
        let (symbol, back) = decode_tick(&item).unwrap();
        assert_eq!((symbol, back), ("BRK.A", tick));
        assert!(decode_tick("AAPL,1,2").is_none(), "truncated");
        assert!(decode_tick("AAPL,x,,,,,,1,").is_none(), "not a number");
    }

    #[test]
    fn records_round_trip_with_derived_change() {
        let mut quote = Quote::with_previous_close(price("100"));
        quote.apply(&Tick {
            price: price("101.5"),
            size: Some(10),
            ts: 5,
            ..Tick::default()
        });
        let record = encode_record(&quote, "Apple, Inc.");
        let (back, name) = decode_record(&record).unwrap();
        assert_eq!((back, name), (quote, "Apple, Inc."));
        let (empty, name) = decode_record("").unwrap();
        assert_eq!((empty, name), (Quote::default(), ""));
    }

    #[test]
    fn messages_and_upserts_parse() {
        let message = decode_message("a1\n7\nticks\nAAPL,1,,,,,,5,\nMSFT,2,,,,,,5,").unwrap();
        assert_eq!(
            (message.origin, message.seq, message.op, message.items.len()),
            ("a1", 7, Op::Ticks, 2)
        );
        assert!(decode_message("a1\nx\nticks").is_none());
        assert!(decode_message("a1\n1\nnope").is_none());
        let item = encode_upsert("NEWCO", price("12.5"), Some("New | Co"));
        assert_eq!(
            decode_upsert(&item),
            Some(("NEWCO", price("12.5"), Some("New | Co")))
        );
        assert_eq!(
            decode_upsert("X,|"),
            Some(("X", None, None)),
            "nothing to change but existence"
        );
    }
}

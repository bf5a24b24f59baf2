//! The tick format publishers send (contract §3), parsed one item at a time so a
//! bad tick is rejected with its index while the rest of the batch is applied.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::{ParsedTick, Price, PriceError, Symbol, MAX_SIZE};
use crate::wire::ErrorCode;

/// `{"symbol":"AAPL","price":189.12,"size":100,"bid":…,"bid_size":…,"ask":…,"ask_size":…,"ts":…,"seq":…}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTick<'a> {
    #[serde(borrow)]
    symbol: Option<std::borrow::Cow<'a, str>>,
    // Prices stay as the text that was sent until `Price` parses it exactly.
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    size: Option<u64>,
    #[serde(borrow)]
    bid: Option<&'a RawValue>,
    bid_size: Option<u64>,
    #[serde(borrow)]
    ask: Option<&'a RawValue>,
    ask_size: Option<u64>,
    ts: Option<i64>,
    seq: Option<u64>,
}

/// Why one tick was refused: a contract code and a message for the adapter's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickError {
    pub code: ErrorCode,
    pub message: String,
}

impl TickError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> TickError {
        TickError {
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> TickError {
        TickError::new(ErrorCode::BadRequest, message)
    }
}

/// Parses and validates one tick's JSON text.
pub fn parse_tick(json: &str) -> Result<ParsedTick, TickError> {
    let wire: WireTick = serde_json::from_str(json).map_err(|e| TickError::bad(format!("{e}")))?;
    let raw_symbol = wire
        .symbol
        .ok_or_else(|| TickError::bad("missing field `symbol`"))?;
    let symbol = Symbol::parse(&raw_symbol)
        .map_err(|e| TickError::new(ErrorCode::InvalidSymbol, e.to_string()))?;
    if wire.price.is_none() && wire.bid.is_none() && wire.ask.is_none() {
        return Err(TickError::bad(
            "a tick needs at least one of `price`, `bid`, `ask`",
        ));
    }
    let price = |field: &str, value: Option<&RawValue>| -> Result<Option<Price>, TickError> {
        value
            .map(Price::positive_from_json)
            .transpose()
            .map_err(|e: PriceError| TickError::bad(format!("`{field}`: {e}")))
    };
    for (size_field, size, price_field, has_price) in [
        ("size", wire.size, "price", wire.price.is_some()),
        ("bid_size", wire.bid_size, "bid", wire.bid.is_some()),
        ("ask_size", wire.ask_size, "ask", wire.ask.is_some()),
    ] {
        if size.is_some() && !has_price {
            return Err(TickError::bad(format!(
                "`{size_field}` goes with `{price_field}`"
            )));
        }
    }
    for (field, size) in [
        ("size", wire.size),
        ("bid_size", wire.bid_size),
        ("ask_size", wire.ask_size),
    ] {
        if size.is_some_and(|size| size > MAX_SIZE) {
            return Err(TickError::bad(format!(
                "`{field}` is above {MAX_SIZE}, the largest integer every JSON client reads exactly"
            )));
        }
    }
    if let Some(ts) = wire.ts {
        if ts < 0 {
            return Err(TickError::bad(
                "`ts` must be milliseconds since the Unix epoch",
            ));
        }
    }
    Ok(ParsedTick {
        symbol,
        price: price("price", wire.price)?,
        size: wire.size,
        bid: price("bid", wire.bid)?,
        bid_size: wire.bid_size,
        ask: price("ask", wire.ask)?,
        ask_size: wire.ask_size,
        ts: wire.ts,
        seq: wire.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(json: &str) -> ErrorCode {
        parse_tick(json).unwrap_err().code
    }

    #[test]
    fn parses_a_full_tick_exactly() {
        let tick = parse_tick(
            r#"{"symbol":"aapl","price":189.12,"size":100,"bid":189.11,"bid_size":300,"ask":189.13,"ask_size":200,"ts":1764072000123,"seq":42}"#,
        )
        .unwrap();
        assert_eq!(tick.symbol.as_str(), "AAPL");
        assert_eq!(tick.price.unwrap().to_string(), "189.12");
        assert_eq!(tick.bid.unwrap().to_string(), "189.11");
        let precise = parse_tick(
            r#"{"symbol":"A","price":999999999.999999,"size":9007199254740991,"ask":1e-6}"#,
        )
        .unwrap();
        assert_eq!(precise.price.unwrap().to_string(), "999999999.999999");
        assert_eq!(precise.ask.unwrap().to_string(), "0.000001");
        assert_eq!(precise.size, Some(MAX_SIZE));
        assert_eq!(
            (tick.size, tick.ts, tick.seq),
            (Some(100), Some(1764072000123), Some(42))
        );
    }

    #[test]
    fn every_rule_has_its_code() {
        assert_eq!(code("not json"), ErrorCode::BadRequest);
        assert_eq!(code(r#"[1]"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"price":1}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"symbol":"$$","price":1}"#),
            ErrorCode::InvalidSymbol
        );
        assert_eq!(code(r#"{"symbol":"A"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"symbol":"A","price":-1}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"symbol":"A","price":0}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"symbol":"A","price":1.0000001}"#),
            ErrorCode::BadRequest
        );
        // Beyond 15 significant digits an f64 would round this to 6 decimals.
        assert_eq!(
            code(r#"{"symbol":"A","price":999999999.9999991}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"symbol":"A","price":1,"size":9007199254740992}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"symbol":"A","price":"1"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"symbol":"A","price":1,"size":-5}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"symbol":"A","bid":1,"size":5}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"symbol":"A","price":1,"ts":-1}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"symbol":"A","price":1,"volume":5}"#),
            ErrorCode::BadRequest
        );
        let message = parse_tick(r#"{"symbol":"A","price":1.0000001}"#)
            .unwrap_err()
            .message;
        assert!(
            message.contains("price") && message.contains("6 decimals"),
            "{message}"
        );
    }
}

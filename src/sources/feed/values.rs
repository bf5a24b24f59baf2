//! Exact conversions of vendor fields: prices from the JSON number's own text (so
//! `189.12` stays `189.12`), whole-number sizes, and timestamps in milliseconds.
//! Every failure names the [`Unmapped`] reason it is counted under.

use chrono::DateTime;
use serde_json::value::RawValue;

use super::Unmapped;
use crate::domain::ParsedTick;
use crate::domain::MAX_SIZE;
use crate::domain::{Price, Symbol};

/// A price as sent; `None` when absent. A price of exactly zero also reads as absent:
/// Alpaca and Polygon send `0` for an empty side of the book.
pub fn price(raw: Option<&RawValue>) -> Result<Option<Price>, Unmapped> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match Price::positive_from_json(raw) {
        Ok(price) => Ok(Some(price)),
        Err(crate::domain::PriceError::NotPositive) if is_zero(raw.get()) => Ok(None),
        Err(_) => Err(Unmapped::BadPrice),
    }
}

fn is_zero(text: &str) -> bool {
    Price::parse(text).is_ok_and(|p| p == Price::ZERO)
}

/// A size in shares: the JSON number must be a whole number (`100` or `100.0`, never
/// `0.5`), times `lot` (shares per round lot for vendors that count lots), and at most
/// [`MAX_SIZE`] so every client reads it exactly.
/// A trade as a tick: the vendor's price (exact text) and size (whole shares).
pub fn trade(
    symbol: Symbol,
    ts: i64,
    price: Option<&RawValue>,
    size: Option<&RawValue>,
) -> Result<ParsedTick, Unmapped> {
    let price = self::price(Some(price.ok_or(Unmapped::Malformed)?))?.ok_or(Unmapped::BadPrice)?;
    let size = self::size(size.ok_or(Unmapped::Malformed)?, 1)?;
    Ok(ParsedTick {
        price: Some(price),
        size: Some(size),
        ..ParsedTick::at(symbol, ts)
    })
}

/// A quote's two sides; a side with a zero price is empty and left out.
pub fn book_tick(
    symbol: Symbol,
    ts: i64,
    [bp, bs, ap, ask_size]: [Option<&RawValue>; 4],
    lot: u64,
) -> Result<ParsedTick, Unmapped> {
    let bid = price(Some(bp.ok_or(Unmapped::Malformed)?))?;
    let ask = price(Some(ap.ok_or(Unmapped::Malformed)?))?;
    let bid_size = size(bs.ok_or(Unmapped::Malformed)?, lot)?;
    let ask_size = size(ask_size.ok_or(Unmapped::Malformed)?, lot)?;
    if bid.is_none() && ask.is_none() {
        return Err(Unmapped::BadPrice);
    }
    Ok(ParsedTick {
        bid,
        bid_size: bid.map(|_| bid_size),
        ask,
        ask_size: ask.map(|_| ask_size),
        ..ParsedTick::at(symbol, ts)
    })
}

pub fn size(raw: &RawValue, lot: u64) -> Result<u64, Unmapped> {
    let text = raw.get();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole_ok = !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit());
    let fraction_ok = fraction.bytes().all(|b| b == b'0');
    if !whole_ok || !fraction_ok {
        return Err(Unmapped::BadSize);
    }
    whole
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(lot))
        .filter(|&n| n <= MAX_SIZE)
        .ok_or(Unmapped::BadSize)
}

/// Milliseconds since the Unix epoch, from an integer JSON number.
pub fn millis(raw: &RawValue) -> Result<i64, Unmapped> {
    raw.get()
        .parse::<i64>()
        .ok()
        .filter(|&ms| ms >= 0)
        .ok_or(Unmapped::BadTimestamp)
}

/// Milliseconds since the Unix epoch from RFC 3339 text with up to nanosecond
/// precision (`2021-02-22T15:51:45.335689322Z`), truncated below the millisecond:
/// exact integer arithmetic, no float.
pub fn rfc3339_millis(text: &str) -> Result<i64, Unmapped> {
    let time = DateTime::parse_from_rfc3339(text).map_err(|_| Unmapped::BadTimestamp)?;
    let ms = time.timestamp_millis();
    if ms < 0 {
        return Err(Unmapped::BadTimestamp);
    }
    Ok(ms)
}

/// The vendor's ticker as our symbol; one we cannot represent counts as unknown.
pub fn symbol(raw: &str) -> Result<Symbol, Unmapped> {
    Symbol::parse(raw).map_err(|_| Unmapped::UnknownSymbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn prices_keep_the_text_sent() {
        let p = price(Some(&raw("189.12"))).unwrap().unwrap();
        assert_eq!(p.to_string(), "189.12");
        assert_eq!(price(Some(&raw("0"))), Ok(None));
        assert_eq!(price(Some(&raw("0.0"))), Ok(None));
        assert_eq!(price(None), Ok(None));
        for bad in ["1.0000001", "-1", "\"1\"", "null", "1e400"] {
            assert_eq!(price(Some(&raw(bad))), Err(Unmapped::BadPrice), "{bad}");
        }
    }

    #[test]
    fn sizes_are_whole_numbers_of_shares() {
        assert_eq!(size(&raw("100"), 1), Ok(100));
        assert_eq!(size(&raw("100.0"), 1), Ok(100));
        assert_eq!(size(&raw("3"), 100), Ok(300));
        assert_eq!(size(&raw("0"), 1), Ok(0));
        for bad in [
            "0.5",
            "-1",
            "1e2",
            "\"1\"",
            "18446744073709551616",
            "9007199254740992",
        ] {
            assert_eq!(size(&raw(bad), 1), Err(Unmapped::BadSize), "{bad}");
        }
        assert_eq!(size(&raw("90071992547410"), 100), Err(Unmapped::BadSize));
    }

    #[test]
    fn timestamps_convert_exactly_truncating_below_the_millisecond() {
        assert_eq!(
            rfc3339_millis("2021-02-22T15:51:45.335689322Z"),
            Ok(1_614_009_105_335)
        );
        assert_eq!(
            rfc3339_millis("2021-02-22T15:51:45.999999999Z"),
            Ok(1_614_009_105_999)
        );
        assert_eq!(
            rfc3339_millis("2021-02-22T10:51:45.1-05:00"),
            Ok(1_614_009_105_100)
        );
        assert_eq!(rfc3339_millis("2021-02-22"), Err(Unmapped::BadTimestamp));
        assert_eq!(millis(&raw("1672348887195")), Ok(1_672_348_887_195));
        assert_eq!(millis(&raw("-5")), Err(Unmapped::BadTimestamp));
        assert_eq!(millis(&raw("1.5")), Err(Unmapped::BadTimestamp));
    }
}

use super::{Price, Symbol, SymbolId};

/// One market event for one symbol, validated: prices are exact and positive.
///
/// A tick may carry a trade (`price` with an optional `size` that adds to the volume),
/// a new top of book (`bid`/`ask` with sizes), or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    pub symbol: SymbolId,
    pub price: Option<Price>,
    pub size: Option<u64>,
    pub bid: Option<Price>,
    pub bid_size: Option<u64>,
    pub ask: Option<Price>,
    pub ask_size: Option<u64>,
    /// Event time, milliseconds since the Unix epoch.
    pub ts: i64,
}

/// Largest size a tick may carry: 2^53 - 1, the largest integer a JavaScript (or any
/// `f64`) client reads exactly, so a dashboard's merge equals the server's volume.
pub const MAX_SIZE: u64 = (1 << 53) - 1;

/// A tick as a source produced it, validated, before its symbol is resolved to this
/// instance's id: what every source hands the broker. `seq` is the publisher's
/// sequence number (publishers only), carried with the tick so it can never drift
/// from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTick {
    pub symbol: Symbol,
    pub price: Option<Price>,
    pub size: Option<u64>,
    pub bid: Option<Price>,
    pub bid_size: Option<u64>,
    pub ask: Option<Price>,
    pub ask_size: Option<u64>,
    pub ts: Option<i64>,
    pub seq: Option<u64>,
}

impl ParsedTick {
    /// A tick for `symbol` at `ts` with no fields yet: sources fill in what they have
    /// (`ParsedTick { price: Some(p), ..ParsedTick::at(symbol, ts) }`).
    pub fn at(symbol: Symbol, ts: i64) -> ParsedTick {
        ParsedTick {
            symbol,
            price: None,
            size: None,
            bid: None,
            bid_size: None,
            ask: None,
            ask_size: None,
            ts: Some(ts),
            seq: None,
        }
    }

    /// The store's tick for symbol `id`, stamped `now` unless it carries its own `ts`.
    pub fn to_tick(&self, id: SymbolId, now: i64) -> Tick {
        Tick {
            symbol: id,
            price: self.price,
            size: self.size,
            bid: self.bid,
            bid_size: self.bid_size,
            ask: self.ask,
            ask_size: self.ask_size,
            ts: self.ts.unwrap_or(now),
        }
    }
}

/// The server clock in contract units (milliseconds since the Unix epoch, UTC).
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

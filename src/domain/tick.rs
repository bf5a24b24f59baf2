use super::{Price, SymbolId};

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

/// The server clock in contract units (milliseconds since the Unix epoch, UTC).
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

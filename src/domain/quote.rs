//! The quote every client sees, and the rules that derive it from ticks.
//!
//! Fields are a fixed table (`Field`) over an array of integers with a presence mask,
//! so "what changed since this client was last sent the symbol" is one loop of integer
//! compares, a copy of a quote is a 112-byte memcpy, and encoding never branches on
//! thirteen hand-written cases.

use super::price::{write_fixed, PRICE_SCALE};
use super::{Percent, Price, Tick};

/// One quote field, in wire order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Field {
    P,
    Bp,
    Bs,
    Ap,
    As,
    V,
    O,
    H,
    L,
    Pc,
    D,
    Dp,
    T,
}

/// How a field's integer is printed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Millionths (a price or a change of price).
    Price,
    /// A plain integer (sizes, volume, millisecond times).
    Integer,
    /// Hundredths of a percent.
    Percent,
}

impl Field {
    pub const COUNT: usize = 13;
    pub const ALL: [Field; Field::COUNT] = [
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
        Field::D,
        Field::Dp,
        Field::T,
    ];

    /// The wire key (contract section 1).
    pub const fn key(self) -> &'static str {
        match self {
            Field::P => "p",
            Field::Bp => "bp",
            Field::Bs => "bs",
            Field::Ap => "ap",
            Field::As => "as",
            Field::V => "v",
            Field::O => "o",
            Field::H => "h",
            Field::L => "l",
            Field::Pc => "pc",
            Field::D => "d",
            Field::Dp => "dp",
            Field::T => "t",
        }
    }

    const fn kind(self) -> Kind {
        match self {
            Field::P | Field::Bp | Field::Ap | Field::O | Field::H | Field::L | Field::Pc => {
                Kind::Price
            }
            Field::D => Kind::Price,
            Field::Dp => Kind::Percent,
            Field::Bs | Field::As | Field::V | Field::T => Kind::Integer,
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A set of fields as a bitmask.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct FieldSet(u16);

impl FieldSet {
    pub const EMPTY: FieldSet = FieldSet(0);
    pub const ALL: FieldSet = FieldSet((1 << Field::COUNT) - 1);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The set as a bit mask: bit `Field as usize` for each field.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// This set plus `field`.
    pub fn with(self, field: Field) -> FieldSet {
        FieldSet(self.0 | field.bit())
    }

    /// The fields in both sets.
    pub fn and(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 & other.0)
    }

    /// The fields' indexes (`Field as usize`), in wire order.
    pub fn indexes(self) -> impl Iterator<Item = usize> {
        let mut mask = self.0;
        std::iter::from_fn(move || {
            (mask != 0).then(|| {
                let index = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                index
            })
        })
    }
}

/// The current state of one symbol. `None` fields have no value yet and are never sent.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Quote {
    present: u16,
    values: [i64; Field::COUNT],
}

impl Quote {
    /// The raw parts: the bit set of present fields and every field's value (0 when
    /// absent), for the store's lock-free published copy.
    pub fn to_parts(&self) -> (u16, [i64; Field::COUNT]) {
        (self.present, self.values)
    }

    /// A quote from [`Quote::to_parts`]'s output.
    pub fn from_parts(present: u16, values: [i64; Field::COUNT]) -> Quote {
        Quote { present, values }
    }

    /// A quote that knows only its reference price.
    pub fn with_previous_close(pc: Option<Price>) -> Quote {
        let mut quote = Quote::default();
        if let Some(pc) = pc {
            quote.set(Field::Pc, pc.micros());
        }
        quote
    }

    pub fn get(&self, field: Field) -> Option<i64> {
        (self.present & field.bit() != 0).then(|| self.values[field as usize])
    }

    pub fn price(&self, field: Field) -> Option<Price> {
        self.get(field).map(Price::from_micros)
    }

    pub fn set(&mut self, field: Field, value: i64) {
        self.present |= field.bit();
        self.values[field as usize] = value;
    }

    pub fn clear(&mut self, field: Field) {
        self.present &= !field.bit();
        self.values[field as usize] = 0;
    }

    /// A new trading day: the last price becomes the reference close, volume
    /// restarts at zero, and open/high/low wait for the day's first trade.
    pub fn roll_over(&mut self) {
        if let Some(p) = self.get(Field::P) {
            self.set(Field::Pc, p);
        }
        for field in [Field::O, Field::H, Field::L] {
            self.clear(field);
        }
        self.set(Field::V, 0);
        self.derive_change();
    }

    pub fn present(&self) -> FieldSet {
        FieldSet(self.present)
    }

    /// Fields that have a value here and a different (or no) value in `sent`.
    ///
    /// Without branches: whether a value moved is data the CPU cannot predict, and a
    /// loop that branched per present field was most of the diff's cost in W1's profile
    /// (issue 13). Comparing absent fields too is safe: the mask drops them.
    pub fn changed_since(&self, sent: &Quote) -> FieldSet {
        let mut differ = 0u16;
        for (index, (now, before)) in self.values.iter().zip(&sent.values).enumerate() {
            differ |= u16::from(now != before) << index;
        }
        FieldSet(self.present & (!sent.present | differ))
    }

    /// True when `sent` holds a field this quote no longer has. A partial update cannot
    /// express "remove", so such a symbol must be re-sent in full (as a snapshot).
    pub fn lost_fields_since(&self, sent: &Quote) -> bool {
        sent.present & !self.present != 0
    }

    /// Applies one tick (already validated) with the contract's rules:
    /// a trade adds its size to the volume and moves `p`, `o`, `h`, `l`; bid and ask
    /// replace the book top; `d`/`dp` follow `p` and `pc`. A tick older than the last one
    /// applied (out of order) still counts its volume but moves no price and not `t`.
    pub fn apply(&mut self, tick: &Tick) {
        let in_order = self.get(Field::T).is_none_or(|t| tick.ts >= t);
        if let Some(price) = tick.price {
            let volume = self.get(Field::V).unwrap_or(0);
            self.set(
                Field::V,
                volume.saturating_add(tick.size.unwrap_or(0).min(i64::MAX as u64) as i64),
            );
            if in_order {
                let p = price.micros();
                self.set(Field::P, p);
                if self.get(Field::O).is_none() {
                    self.set(Field::O, p);
                }
                let high = self.get(Field::H).map_or(p, |h| h.max(p));
                let low = self.get(Field::L).map_or(p, |l| l.min(p));
                self.set(Field::H, high);
                self.set(Field::L, low);
            }
        }
        if !in_order {
            return;
        }
        if let Some(bid) = tick.bid {
            self.set(Field::Bp, bid.micros());
        }
        if let Some(size) = tick.bid_size {
            self.set(Field::Bs, size.min(i64::MAX as u64) as i64);
        }
        if let Some(ask) = tick.ask {
            self.set(Field::Ap, ask.micros());
        }
        if let Some(size) = tick.ask_size {
            self.set(Field::As, size.min(i64::MAX as u64) as i64);
        }
        self.set(Field::T, tick.ts);
        self.derive_change();
    }

    /// Recomputes `d` and `dp` from `p` and `pc`.
    pub fn derive_change(&mut self) {
        if let (Some(p), Some(pc)) = (self.price(Field::P), self.price(Field::Pc)) {
            self.set(Field::D, p.micros() - pc.micros());
            if let Some(dp) = Percent::change(p, pc) {
                self.set(Field::Dp, dp.hundredths());
            }
        }
    }

    /// Appends `{"s":"SYM",...}` with the fields in `fields` that have a value.
    pub fn write_json(&self, symbol: &str, fields: FieldSet, out: &mut Vec<u8>) {
        write_json_start(symbol, out);
        for index in fields.and(self.present()).indexes() {
            self.write_json_field(index, out);
        }
        out.push(b'}');
    }

    /// Appends `,"key":value` for the field at `index` (`Field as usize`), which must
    /// have a value: one piece of [`Quote::write_json`]'s output.
    pub fn write_json_field(&self, index: usize, out: &mut Vec<u8>) {
        let field = Field::ALL[index];
        out.extend_from_slice(b",\"");
        out.extend_from_slice(field.key().as_bytes());
        out.extend_from_slice(b"\":");
        let value = self.values[index];
        match field.kind() {
            Kind::Price => write_fixed(value, PRICE_SCALE, out),
            Kind::Percent => write_fixed(value, 100, out),
            Kind::Integer => out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes()),
        }
    }
}

/// Appends `{"s":"SYM"`, the start of [`Quote::write_json`]'s output.
pub fn write_json_start(symbol: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"s\":\"");
    // Symbols are validated to [A-Z0-9.-]: nothing to escape.
    out.extend_from_slice(symbol.as_bytes());
    out.push(b'"');
}

impl std::fmt::Debug for Quote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write_json("?", FieldSet::ALL, &mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SymbolId;

    fn price(text: &str) -> Option<Price> {
        Some(Price::parse(text).unwrap())
    }

    fn trade(p: &str, size: u64, ts: i64) -> Tick {
        Tick {
            symbol: SymbolId(0),
            price: price(p),
            size: Some(size),
            ts,
            ..Tick::default()
        }
    }

    fn json(quote: &Quote, fields: FieldSet) -> String {
        let mut out = Vec::new();
        quote.write_json("AAPL", fields, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn derives_the_trading_days_fields_from_trades() {
        let mut quote = Quote::with_previous_close(price("187.30"));
        quote.apply(&trade("189.12", 100, 1_000));
        quote.apply(&trade("188.5", 50, 2_000));
        quote.apply(&trade("190", 25, 3_000));
        assert_eq!(
            json(&quote, FieldSet::ALL),
            r#"{"s":"AAPL","p":190,"v":175,"o":189.12,"h":190,"l":188.5,"pc":187.3,"d":2.7,"dp":1.44,"t":3000}"#
        );
    }

    #[test]
    fn out_of_order_trade_adds_volume_only() {
        let mut quote = Quote::with_previous_close(price("100"));
        quote.apply(&trade("101", 10, 2_000));
        quote.apply(&trade("50", 5, 1_000));
        assert_eq!(quote.price(Field::P), price("101"));
        assert_eq!(quote.price(Field::L), price("101"));
        assert_eq!(quote.get(Field::V), Some(15));
        assert_eq!(quote.get(Field::T), Some(2_000));
    }

    #[test]
    fn book_ticks_leave_trade_fields_alone() {
        let mut quote = Quote::default();
        quote.apply(&Tick {
            bid: price("10.01"),
            bid_size: Some(300),
            ask: price("10.03"),
            ask_size: Some(200),
            ts: 5,
            ..Tick::default()
        });
        assert_eq!(
            json(&quote, FieldSet::ALL),
            r#"{"s":"AAPL","bp":10.01,"bs":300,"ap":10.03,"as":200,"t":5}"#
        );
    }

    #[test]
    fn diff_lists_new_and_changed_fields_only() {
        let mut sent = Quote::with_previous_close(price("100"));
        sent.apply(&trade("101", 10, 1));
        let mut now = sent;
        now.apply(&Tick {
            bid: price("100.99"),
            ts: 2,
            ..Tick::default()
        });
        let changed = now.changed_since(&sent);
        assert_eq!(json(&now, changed), r#"{"s":"AAPL","bp":100.99,"t":2}"#);
        assert!(now.changed_since(&now).is_empty());
        assert!(!now.lost_fields_since(&sent));
        assert!(Quote::default().lost_fields_since(&sent));
    }
}

//! Exact decimal prices.
//!
//! The contract promises that a price published as `189.12` is served as `189.12`, and
//! that `d = p - pc` carries no float noise. Prices are therefore fixed-point integers
//! of millionths (six decimals, the most the contract accepts), and are printed by hand
//! with trailing zeros trimmed.

use std::fmt;

/// Millionths per unit: prices carry at most six decimals.
pub const PRICE_SCALE: i64 = 1_000_000;
const PRICE_DECIMALS: i32 = 6;
/// Largest magnitude accepted: one trillion. Well inside `i64` millionths, and it keeps
/// every price within 15 significant digits, where `f64` and decimal text round-trip exactly.
const MAX_UNITS: i64 = 1_000_000_000;

/// A signed fixed-point decimal with six decimals (a price, or a change of price).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price must be a decimal number")]
    NotANumber,
    #[error("price has more than 6 decimals")]
    TooManyDecimals,
    #[error("price is out of range (at most 1e9)")]
    OutOfRange,
    #[error("price must be positive")]
    NotPositive,
}

impl Price {
    pub const ZERO: Price = Price(0);

    pub const fn from_micros(micros: i64) -> Price {
        Price(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses decimal text (`189.12`, `-0.5`, `1e2`) exactly.
    pub fn parse(text: &str) -> Result<Price, PriceError> {
        parse_decimal(text, PRICE_DECIMALS).map(Price)
    }

    /// A published price from its JSON number text, exactly as sent: no detour
    /// through `f64`, which could not tell `999999999.9999991` (7 decimals, refused)
    /// from `999999999.999999`. Must be positive.
    pub fn positive_from_json(raw: &serde_json::value::RawValue) -> Result<Price, PriceError> {
        let text = raw.get();
        if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Err(PriceError::NotANumber);
        }
        let price = Price::parse(text)?;
        if price.0 <= 0 {
            return Err(PriceError::NotPositive);
        }
        Ok(price)
    }

    /// Appends the shortest exact decimal text (`189.12`, `-3`, `0.000001`).
    pub fn write_to(self, out: &mut Vec<u8>) {
        write_fixed(self.0, PRICE_SCALE, out);
    }

    /// Rounds to the nearest multiple of `step` micros (half away from zero); used by
    /// the simulator to keep prices on a realistic tick size.
    pub fn round_to(self, step: i64) -> Price {
        Price(div_round_half_away(self.0 as i128, step as i128) as i64 * step)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(24);
        self.write_to(&mut buf);
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Price({self})")
    }
}

/// A percentage with two decimals (`dp`), stored as hundredths.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Percent(i64);

impl Percent {
    pub const fn from_hundredths(h: i64) -> Percent {
        Percent(h)
    }

    pub const fn hundredths(self) -> i64 {
        self.0
    }

    /// `100 * (p - pc) / pc` rounded half away from zero to two decimals, computed on
    /// the integers so it is the same on every platform. `None` when `pc` is zero.
    pub fn change(p: Price, pc: Price) -> Option<Percent> {
        if pc.0 == 0 {
            return None;
        }
        let numerator = (p.0 as i128 - pc.0 as i128) * 10_000;
        let hundredths = div_round_half_away(numerator, pc.0 as i128);
        // Only a move from a reference of a millionth to near the 1e9 ceiling leaves
        // i64 hundredths (about 9.2e16 percent); it is clamped, never wrapped.
        Some(Percent(
            hundredths.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        ))
    }

    pub fn write_to(self, out: &mut Vec<u8>) {
        write_fixed(self.0, 100, out);
    }
}

fn div_round_half_away(numerator: i128, denominator: i128) -> i128 {
    let (n, d) = if denominator < 0 {
        (-numerator, -denominator)
    } else {
        (numerator, denominator)
    };
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

/// Writes `value / scale` as the shortest decimal text; `scale` is a power of ten.
pub(crate) fn write_fixed(value: i64, scale: i64, out: &mut Vec<u8>) {
    let mut itoa_buf = itoa::Buffer::new();
    if value < 0 {
        out.push(b'-');
    }
    let magnitude = value.unsigned_abs();
    let scale = scale as u64;
    out.extend_from_slice(itoa_buf.format(magnitude / scale).as_bytes());
    let mut frac = magnitude % scale;
    if frac == 0 {
        return;
    }
    out.push(b'.');
    let mut digit_value = scale / 10;
    while frac > 0 {
        let digit = frac / digit_value;
        out.push(b'0' + digit as u8);
        frac -= digit * digit_value;
        digit_value /= 10;
    }
}

/// Parses `-?digits(.digits)?([eE][+-]?digits)?` into an integer scaled by 10^decimals,
/// rejecting anything that would need more decimals or exceed [`MAX_UNITS`].
fn parse_decimal(text: &str, decimals: i32) -> Result<i64, PriceError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    // Significant digits, with the count of digits seen after the decimal point.
    let mut mantissa: u128 = 0;
    let mut digits = 0usize;
    let mut frac_digits: i32 = 0;
    let mut seen_point = false;
    let mut any_digit = false;
    while i < bytes.len() {
        match bytes[i] {
            b @ b'0'..=b'9' => {
                any_digit = true;
                if mantissa != 0 || b != b'0' {
                    digits += 1;
                }
                if digits > 30 {
                    return Err(PriceError::OutOfRange);
                }
                mantissa = mantissa * 10 + u128::from(b - b'0');
                if seen_point {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => break,
            _ => return Err(PriceError::NotANumber),
        }
        i += 1;
    }
    if !any_digit {
        return Err(PriceError::NotANumber);
    }
    let mut exponent: i32 = 0;
    if i < bytes.len() {
        // Exponent part.
        i += 1;
        let exp_negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(i32::from(bytes[i] - b'0'));
            i += 1;
        }
        if start == i || i != bytes.len() {
            return Err(PriceError::NotANumber);
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    // value = mantissa * 10^(exponent - frac_digits); scaled = value * 10^decimals.
    let shift = exponent
        .saturating_sub(frac_digits)
        .saturating_add(decimals);
    let scaled: u128 = if mantissa == 0 {
        0
    } else if shift >= 0 {
        if shift > 30 {
            return Err(PriceError::OutOfRange);
        }
        mantissa
            .checked_mul(10u128.pow(shift as u32))
            .ok_or(PriceError::OutOfRange)?
    } else {
        if -shift > 38 {
            return Err(PriceError::TooManyDecimals);
        }
        let divisor = 10u128.pow((-shift) as u32);
        if !mantissa.is_multiple_of(divisor) {
            return Err(PriceError::TooManyDecimals);
        }
        mantissa / divisor
    };
    let limit = (MAX_UNITS as u128) * 10u128.pow(decimals as u32);
    if scaled > limit {
        return Err(PriceError::OutOfRange);
    }
    let scaled = scaled as i64;
    Ok(if negative { -scaled } else { scaled })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: Price) -> String {
        p.to_string()
    }

    #[test]
    fn parses_and_prints_exact_decimals() {
        for (input, expected) in [
            ("189.12", "189.12"),
            ("189.120000", "189.12"),
            ("0.000001", "0.000001"),
            ("100", "100"),
            ("1e2", "100"),
            ("1.5E-3", "0.0015"),
            ("-0.5", "-0.5"),
            ("0", "0"),
            ("999999999.999999", "999999999.999999"),
        ] {
            assert_eq!(text(Price::parse(input).unwrap()), expected, "{input}");
        }
    }

    #[test]
    fn rejects_more_than_six_decimals_and_garbage() {
        assert_eq!(Price::parse("1.0000001"), Err(PriceError::TooManyDecimals));
        assert_eq!(Price::parse("1e-7"), Err(PriceError::TooManyDecimals));
        assert_eq!(Price::parse("1e10"), Err(PriceError::OutOfRange));
        for bad in ["", "-", ".", "1..2", "abc", "1e", "1e+", "0x10", "1,5"] {
            assert_eq!(Price::parse(bad), Err(PriceError::NotANumber), "{bad:?}");
        }
    }

    #[test]
    fn json_number_text_is_taken_exactly_and_must_be_positive() {
        let json = |t: &str| {
            Price::positive_from_json(&serde_json::value::RawValue::from_string(t.into()).unwrap())
        };
        assert_eq!(text(json("189.12").unwrap()), "189.12");
        assert_eq!(text(json("999999999.999999").unwrap()), "999999999.999999");
        assert_eq!(text(json("1.5e2").unwrap()), "150");
        assert_eq!(json("999999999.9999991"), Err(PriceError::TooManyDecimals));
        assert_eq!(
            json("0.30000000000000004"),
            Err(PriceError::TooManyDecimals)
        );
        assert_eq!(json("-1"), Err(PriceError::NotPositive));
        assert_eq!(json("0"), Err(PriceError::NotPositive));
        assert_eq!(json("-0"), Err(PriceError::NotPositive));
        assert_eq!(json("\"1\""), Err(PriceError::NotANumber));
        assert_eq!(json("true"), Err(PriceError::NotANumber));
    }

    #[test]
    fn change_percent_is_clamped_not_wrapped_at_the_extremes() {
        let p = Price::parse("1000000000").unwrap();
        let pc = Price::parse("0.000001").unwrap();
        assert_eq!(
            Percent::change(p, pc),
            Some(Percent::from_hundredths(i64::MAX))
        );
        let down = Percent::change(Price::parse("0.000001").unwrap(), p).unwrap();
        assert_eq!(down, Percent::from_hundredths(-10_000), "-100.00 %");
    }

    #[test]
    fn differences_are_exact() {
        let p = Price::parse("189.12").unwrap();
        let pc = Price::parse("187.3").unwrap();
        assert_eq!(text(Price::from_micros(p.micros() - pc.micros())), "1.82");
    }

    #[test]
    fn percent_change_rounds_half_away_from_zero() {
        let pc = Price::parse("200").unwrap();
        let pct = |p: &str| {
            let mut out = Vec::new();
            Percent::change(Price::parse(p).unwrap(), pc)
                .unwrap()
                .write_to(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(pct("201"), "0.5");
        assert_eq!(pct("200.01"), "0.01"); // 0.005 % rounds up
        assert_eq!(pct("199.99"), "-0.01"); // -0.005 % rounds away from zero
        assert_eq!(pct("199.999"), "0");
        assert_eq!(pct("100"), "-50");
        assert_eq!(Percent::change(pc, Price::ZERO), None);
    }

    #[test]
    fn rounds_to_a_tick_size() {
        let p = Price::parse("189.125").unwrap();
        assert_eq!(text(p.round_to(10_000)), "189.13");
        assert_eq!(
            text(Price::parse("-0.015").unwrap().round_to(10_000)),
            "-0.02"
        );
    }
}
